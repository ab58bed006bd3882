//! What one [`Setting`] of the table in [`settings`](super::settings)
//! does: parse and apply a value ([`Setting::apply`], the only place a
//! setting's value is read, for the file and the command line alike), and
//! render itself for `kvmsched help` and the sample config file.

use std::fmt::Write as _;
use std::time::Duration;

use super::settings::{
    Kind, Resolved, Section, Setting, MAX_INTERVAL_S, MAX_MIB, MIN_INTERVAL_S, SETTINGS,
};
use crate::policy::memory::MIB;
use crate::policy::vcpu::parse_cpu_list;

fn bad(what: &str, value: &str, why: &str) -> String {
    format!("bad value {value:?} for {what}: {why}")
}

/// A non-negative whole number, digits only.
fn whole(what: &str, value: &str) -> Result<u64, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(what, value, "expected a whole number >= 0"));
    }
    value
        .parse::<u64>()
        .map_err(|_| bad(what, value, "expected a whole number >= 0 (too large)"))
}

/// Seconds from [`MIN_INTERVAL_S`] to [`MAX_INTERVAL_S`]; `what` names
/// the key, flag or argument in the error.
pub fn seconds(what: &str, value: &str) -> Result<Duration, String> {
    match value.parse::<f64>() {
        Ok(v) if (MIN_INTERVAL_S..=MAX_INTERVAL_S).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(bad(
            what,
            value,
            &format!("expected seconds from {MIN_INTERVAL_S} to {MAX_INTERVAL_S}"),
        )),
    }
}

/// Whole MiB whose KiB fit in a `u64`, returned in KiB.
fn mib_as_kib(what: &str, value: &str) -> Result<u64, String> {
    let n = whole(what, value)?;
    if n > MAX_MIB {
        return Err(bad(what, value, &format!("at most {MAX_MIB} MiB")));
    }
    Ok(n * MIB)
}

impl Setting {
    /// For [`Kind::PerDomainMib`], the key up to `<domain>` (`floor.`).
    pub(super) fn prefix(&self) -> &'static str {
        self.key.strip_suffix("<domain>").unwrap_or(self.key)
    }

    /// Parses `value` and sets it in `r`. `what` names the key or flag in
    /// the error (one line, `bad value "<value>" for <what>: ...`);
    /// `domain` is the domain of a per-domain key. This is the only place
    /// a setting's value is read, for the file and the command line alike.
    pub fn apply(
        &self,
        r: &mut Resolved,
        what: &str,
        domain: Option<&str>,
        value: &str,
    ) -> Result<(), String> {
        match self.kind {
            Kind::Number { min, max, field } => match value.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= min && v <= max => *field(r) = v,
                _ => return Err(bad(what, value, &format!("expected {}", self.range()))),
            },
            Kind::OptionalNumber {
                min, max, field, ..
            } => match value.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= min && v <= max => *field(r) = Some(v),
                _ => return Err(bad(what, value, &format!("expected {}", self.range()))),
            },
            Kind::Fraction { field } => match value.parse::<f64>() {
                Ok(v) if v > 0.0 && v <= 1.0 => *field(r) = v,
                _ => {
                    return Err(bad(
                        what,
                        value,
                        "expected a number greater than 0 and at most 1",
                    ))
                }
            },
            Kind::Count { min, field } => {
                let n = whole(what, value)?;
                let n = u32::try_from(n).map_err(|_| bad(what, value, "too large"))?;
                if n < min {
                    return Err(bad(
                        what,
                        value,
                        &format!("expected a whole number >= {min}"),
                    ));
                }
                *field(r) = n;
            }
            Kind::Size { min, field } => {
                let n = whole(what, value)?;
                let n = usize::try_from(n).map_err(|_| bad(what, value, "too large"))?;
                if n < min {
                    return Err(bad(
                        what,
                        value,
                        &format!("expected a whole number >= {min}"),
                    ));
                }
                *field(r) = n;
            }
            Kind::Mib { field } => *field(r) = mib_as_kib(what, value)?,
            Kind::CpuList { field } => {
                let cpus =
                    parse_cpu_list(value).map_err(|e| format!("bad value for {what}: {e}"))?;
                *field(r) = Some(cpus);
            }
            Kind::Seconds { field } => *field(r) = seconds(what, value)?,
            Kind::Names { field } => {
                let mut names = Vec::new();
                for item in value.split(',') {
                    let item = item.trim();
                    if item.is_empty() {
                        return Err(bad(what, value, "empty name in the list"));
                    }
                    names.push(item.to_string());
                }
                field(r).extend(names);
            }
            Kind::PerDomainMib { field } => {
                let name = domain.map(str::trim).unwrap_or_default();
                if name.is_empty() {
                    return Err(format!("missing domain name in key {what:?}"));
                }
                let kib = mib_as_kib(what, value)?;
                field(r).insert(name.to_string(), kib);
            }
        }
        Ok(())
    }

    /// Whether the key may be given more than once in a file.
    pub fn repeatable(&self) -> bool {
        matches!(self.kind, Kind::Names { .. })
    }

    /// The default as it would be written in the file, or `None` when the
    /// default is no value (all CPUs, no names).
    pub fn default_value(&self) -> Option<String> {
        let mut d = Resolved::default();
        match self.kind {
            Kind::Number { field, .. } | Kind::Fraction { field } => {
                Some(field(&mut d).to_string())
            }
            Kind::OptionalNumber { field, .. } => field(&mut d).map(|v| v.to_string()),
            Kind::Count { field, .. } => Some(field(&mut d).to_string()),
            Kind::Size { field, .. } => Some(field(&mut d).to_string()),
            Kind::Mib { field } => Some((*field(&mut d) / MIB).to_string()),
            Kind::Seconds { field } => Some(field(&mut d).as_secs_f64().to_string()),
            Kind::CpuList { field } => field(&mut d)
                .as_ref()
                .map(|c| crate::virt::format_cpu_list(c)),
            Kind::Names { field } => {
                let v = field(&mut d);
                (!v.is_empty()).then(|| v.join(", "))
            }
            Kind::PerDomainMib { .. } => None,
        }
    }

    /// What the default means when it is no value.
    fn absent(&self) -> &'static str {
        match self.kind {
            Kind::CpuList { .. } => "all online pCPUs",
            Kind::OptionalNumber { absent, .. } => absent,
            _ => "none",
        }
    }

    /// The default for help text: the value, or what no value means.
    pub fn default_text(&self) -> String {
        self.default_value()
            .unwrap_or_else(|| self.absent().to_string())
    }

    /// [`Setting::default_text`] with its unit (`200 MiB`, `2 s`).
    fn default_with_unit(&self) -> String {
        let unit = match (self.kind, self.default_value()) {
            (_, None) => "",
            (Kind::Mib { .. }, _) => " MiB",
            (Kind::Seconds { .. }, _) => " s",
            _ => "",
        };
        format!("{}{unit}", self.default_text())
    }

    /// The accepted values, as a phrase (`a number >= 0`).
    pub fn range(&self) -> String {
        match self.kind {
            Kind::Number { min, max, .. } if max == f64::INFINITY => format!("a number >= {min}"),
            Kind::Number { min, max, .. } | Kind::OptionalNumber { min, max, .. } => {
                format!("a number from {min} to {max}")
            }
            Kind::Fraction { .. } => "a number greater than 0 and at most 1".to_string(),
            Kind::Count { min, .. } => format!("a whole number >= {min}"),
            Kind::Size { min, .. } => format!("a whole number >= {min}"),
            Kind::Mib { .. } | Kind::PerDomainMib { .. } => "whole MiB".to_string(),
            Kind::CpuList { .. } => "a CPU list such as 0-3,8".to_string(),
            Kind::Seconds { .. } => format!("seconds from {MIN_INTERVAL_S} to {MAX_INTERVAL_S}"),
            Kind::Names { .. } => {
                "comma-separated names or globs (`*`, `?`); the key may repeat".to_string()
            }
        }
    }

    /// The placeholder of the flag's value in help text.
    fn metavar(&self) -> &'static str {
        match self.kind {
            Kind::Number { .. } | Kind::OptionalNumber { .. } | Kind::Fraction { .. } => "N",
            Kind::Count { .. } | Kind::Size { .. } => "N",
            Kind::Mib { .. } | Kind::PerDomainMib { .. } => "MIB",
            Kind::CpuList { .. } => "LIST",
            Kind::Seconds { .. } => "S",
            Kind::Names { .. } => "NAMES",
        }
    }

    /// A `key = value` line as the sample file shows it: the default, or
    /// else the example.
    fn shown(&self) -> String {
        let value = self
            .default_value()
            .unwrap_or_else(|| self.example.to_string());
        match self.kind {
            Kind::PerDomainMib { .. } => format!("{}db01 = {value}", self.prefix()),
            _ => format!("{} = {value}", self.key),
        }
    }
}

/// Help lines for the flags of `section` (`  --threshold N  ... (default 5)`).
pub fn flag_help(section: Section) -> String {
    let mut out = String::new();
    for s in SETTINGS.iter().filter(|s| s.section == section) {
        if let Some(flag) = s.flag {
            let left = format!("{flag} {}", s.metavar());
            let _ = writeln!(
                out,
                "  {left:<20} {} (default {})",
                s.help,
                s.default_with_unit()
            );
        }
    }
    out
}

/// The key list of `kvmsched help run`: one line per setting.
pub fn key_help() -> String {
    let mut out = String::new();
    for s in SETTINGS {
        let mut line = format!("  {:<33} {}", s.shown(), s.help);
        if s.default_value().is_none() {
            let _ = write!(line, " (default: {})", s.absent());
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// Words of `text` as `# ` comment lines of at most 76 characters.
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > 76 {
            let _ = writeln!(out, "{line}");
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        let _ = writeln!(out, "{line}");
    }
}

/// Capitalises the first letter, unless the word is written like `vCPU`.
fn sentence(s: &str) -> String {
    let mut c = s.chars();
    match (c.next(), s.chars().nth(1)) {
        (Some(_), Some(second)) if second.is_uppercase() => s.to_string(),
        (Some(first), _) => first.to_uppercase().chain(c).collect(),
        (None, _) => String::new(),
    }
}

/// The sample configuration file, `contrib/kvmsched.conf`: every setting
/// commented out as `#key = default` (or an `Example:` line when the
/// default is no value).
pub fn sample_config() -> String {
    let mut out = String::from(
        "# /etc/kvmsched.conf: sample configuration for kvmsched.\n\
         # Generated from the settings table (src/config/settings.rs); a test\n\
         # keeps it equal to that table.\n\
         #\n\
         # Format: one \"key = value\" per line; \"#\" starts a comment anywhere on a\n\
         # line; blank lines are ignored; values are written without quotes.\n\
         # Every key may appear at most once, except \"exclude\".\n\
         # Unknown keys and bad values are errors reported as FILE:LINE.\n\
         # Command-line flags override these settings. \"systemctl reload kvmsched\"\n\
         # (SIGHUP) re-reads this file; if it is bad, the last good settings stay.\n\
         #\n\
         # Each setting below is commented out and shows its default.\n",
    );
    let mut section = None;
    for s in SETTINGS {
        if section != Some(s.section) {
            section = Some(s.section);
            let title = format!("## {} ", s.section.title());
            let _ = writeln!(out, "\n{title:#<76}");
        }
        out.push('\n');
        let mut text = format!("{}: {}.", sentence(s.help), s.range());
        if !s.note.is_empty() {
            text = format!("{text} {}", s.note);
        }
        match s.default_value() {
            Some(_) => {
                comment(&mut out, &text);
                let _ = writeln!(out, "#{}", s.shown());
            }
            None => {
                comment(&mut out, &format!("{text} Default: {}.", s.absent()));
                let _ = writeln!(out, "# Example: {}", s.shown());
            }
        }
    }
    out
}
