//! A strict checker for Prometheus text (format 0.0.4) as kvmsched writes
//! it: the tests validate every rendered or scraped page with it, and it is
//! the reference a scraper-side checker (such as the lab's) can follow.
//!
//! What [`check`] accepts, and nothing more:
//! - the text is non-empty, ends with a newline and has no `\r`, blank
//!   lines or comments other than HELP and TYPE;
//! - each family starts with `# HELP NAME TEXT` and, on the very next line,
//!   `# TYPE NAME counter|gauge`; a family appears once, and its samples
//!   follow its TYPE line before the next family starts;
//! - metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*` and start `kvmsched_`;
//!   a counter's name ends `_total`, a gauge's does not; a sample's name is
//!   its family's name (no histograms or summaries);
//! - HELP text escapes only `\\` and `\n`;
//! - label names match `[a-zA-Z_][a-zA-Z0-9_]*`, do not start `__`, and are
//!   not repeated in one sample; label values are quoted and escape only
//!   `\\`, `\"` and `\n`;
//! - one space, then the value: `NaN`, `+Inf`, `-Inf` or a decimal number
//!   (`-?DIGITS[.DIGITS][e[+-]DIGITS]`), and no timestamp; a counter's value
//!   is a number `>= 0` or `+Inf`;
//! - no two samples have the same name and label set.

use std::collections::{BTreeSet, HashSet};

/// One sample line, its label values unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// The value of the sample named `name` that has no labels (`label:
/// None`) or carries the label `(key, value)`.
pub fn find(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && match label {
                    None => s.labels.is_empty(),
                    Some((k, v)) => s.labels.iter().any(|(a, b)| a == k && b == v),
                }
        })
        .map(|s| s.value)
}

/// Checks `text` against the rules in the module doc; returns its samples,
/// or the first violation with its line number.
pub fn check(text: &str) -> Result<Vec<Sample>, String> {
    if text.is_empty() {
        return Err("empty exposition".into());
    }
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    let mut samples = Vec::new();
    let mut families: HashSet<&str> = HashSet::new();
    let mut series: HashSet<(String, BTreeSet<(String, String)>)> = HashSet::new();
    // The family whose samples may follow, and whether it is a counter.
    let mut current: Option<(&str, bool)> = None;
    // A HELP line waiting for its TYPE line.
    let mut help_for: Option<&str> = None;
    for (i, line) in text.split_terminator('\n').enumerate() {
        let at = |m: &str| format!("line {}: {m}: {line:?}", i + 1);
        if line.contains('\r') {
            return Err(at("carriage return"));
        }
        if let Some(want) = help_for.take() {
            let rest = line
                .strip_prefix("# TYPE ")
                .ok_or_else(|| at(&format!("HELP of {want} not followed by its TYPE")))?;
            let (name, kind) = rest
                .split_once(' ')
                .ok_or_else(|| at("TYPE without a type"))?;
            if name != want {
                return Err(at(&format!("TYPE of {name} after HELP of {want}")));
            }
            let counter = match kind {
                "counter" => true,
                "gauge" => false,
                _ => return Err(at(&format!("type {kind:?} (want counter or gauge)"))),
            };
            if counter != name.ends_with("_total") {
                return Err(at("a counter's name, and only a counter's, ends _total"));
            }
            current = Some((name, counter));
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest
                .split_once(' ')
                .ok_or_else(|| at("HELP without text"))?;
            if !metric_name(name) {
                return Err(at("bad metric name"));
            }
            if !families.insert(name) {
                return Err(at(&format!("family {name} repeated")));
            }
            if help.trim().is_empty() {
                return Err(at("empty HELP text"));
            }
            check_help(help).map_err(|m| at(&m))?;
            help_for = Some(name);
            current = None;
        } else if line.starts_with('#') || line.is_empty() {
            return Err(at("comment or blank line"));
        } else {
            let (family, counter) = current.ok_or_else(|| at("sample outside a family"))?;
            let sample = parse_sample(line).map_err(|m| at(&m))?;
            if sample.name != family {
                return Err(at(&format!("sample of {} in family {family}", sample.name)));
            }
            if counter && (sample.value.is_nan() || sample.value < 0.0) {
                return Err(at("counter below 0 or NaN"));
            }
            let key: BTreeSet<(String, String)> = sample.labels.iter().cloned().collect();
            if !series.insert((sample.name.clone(), key)) {
                return Err(at("duplicate series"));
            }
            samples.push(sample);
        }
    }
    if let Some(name) = help_for {
        return Err(format!("HELP of {name} without TYPE at the end"));
    }
    Ok(samples)
}

fn metric_name(n: &str) -> bool {
    name_like(n, true) && n.starts_with("kvmsched_")
}

fn name_like(n: &str, colon: bool) -> bool {
    let ok = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    let mut cs = n.chars();
    matches!(cs.next(), Some(c) if ok(c)) && cs.all(|c| ok(c) || c.is_ascii_digit())
}

fn check_help(help: &str) -> Result<(), String> {
    let mut cs = help.chars();
    while let Some(c) = cs.next() {
        if c == '\\' && !matches!(cs.next(), Some('\\' | 'n')) {
            return Err("bad escape in HELP".into());
        }
    }
    Ok(())
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    if !metric_name(name) {
        return Err("bad metric name".into());
    }
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end..])?
    } else {
        (Vec::new(), &line[name_end..])
    };
    let v = rest.strip_prefix(' ').ok_or("no space before the value")?;
    Ok(Sample {
        name: name.to_string(),
        labels,
        value: parse_value(v)?,
    })
}

type Labels = Vec<(String, String)>;

/// Parses `{a="x",b="y"}`, unescaping values; returns the labels and the
/// rest of the line.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut rest = s.strip_prefix('{').ok_or("no '{'")?;
    let mut labels: Labels = Vec::new();
    loop {
        if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = &rest[..eq];
        if !name_like(name, false) || name.starts_with("__") {
            return Err(format!("bad label name {name:?}"));
        }
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label {name} repeated"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("unquoted value")?;
        let mut val = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => val.push('\\'),
                    Some((_, '"')) => val.push('"'),
                    Some((_, 'n')) => val.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, c)) => val.push(c),
            }
        };
        labels.push((name.to_string(), val));
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if !rest.starts_with('}') {
            return Err(format!("expected ',' or '}}' at {rest:?}"));
        }
    }
}

/// `NaN`, `+Inf`, `-Inf`, or `-?DIGITS[.DIGITS][e[+-]DIGITS]`.
fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "NaN" => return Ok(f64::NAN),
        "+Inf" => return Ok(f64::INFINITY),
        "-Inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    let bad = || format!("bad value {v:?}");
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let unsigned = v.strip_prefix('-').unwrap_or(v);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let exp_ok = exponent.map_or(true, |e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    if !digits(int) || !frac.map_or(true, digits) || !exp_ok {
        return Err(bad());
    }
    v.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "# HELP kvmsched_x h\n# TYPE kvmsched_x gauge\n";

    #[test]
    fn accepts_what_render_writes() {
        let text = format!(
            "{HEAD}kvmsched_x 1\nkvmsched_x{{a=\"q\\\"\\\\\\n\",b=\"\"}} -0.5\n\
             # HELP kvmsched_n_total a \\\\ b\\n\n# TYPE kvmsched_n_total counter\n\
             kvmsched_n_total +Inf\n# HELP kvmsched_e h\n# TYPE kvmsched_e gauge\n"
        );
        let s = check(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.len(), 3);
        assert_eq!(find(&s, "kvmsched_x", Some(("a", "q\"\\\n"))), Some(-0.5));
        assert_eq!(find(&s, "kvmsched_x", None), Some(1.0));
        assert_eq!(find(&s, "kvmsched_n_total", None), Some(f64::INFINITY));
        for v in ["0", "12", "1.5", "-3", "1e9", "2.5E-3", "NaN", "-Inf"] {
            assert!(check(&format!("{HEAD}kvmsched_x {v}\n")).is_ok(), "{v}");
        }
    }

    #[test]
    fn rejects_each_broken_rule() {
        let counter = "# HELP kvmsched_c_total h\n# TYPE kvmsched_c_total counter\n";
        let bad = [
            String::new(),
            format!("{HEAD}kvmsched_x 1"),
            "kvmsched_x 1\n".into(),
            "# HELP kvmsched_x h\nkvmsched_x 1\n".into(),
            "# TYPE kvmsched_x gauge\nkvmsched_x 1\n".into(),
            "# HELP kvmsched_x h\n# TYPE kvmsched_y gauge\n".into(),
            "# HELP kvmsched_x h\n# TYPE kvmsched_x untyped\n".into(),
            "# HELP kvmsched_x h\n# TYPE kvmsched_x counter\n".into(),
            "# HELP kvmsched_x_total h\n# TYPE kvmsched_x_total gauge\n".into(),
            "# HELP kvmsched_x \n# TYPE kvmsched_x gauge\n".into(),
            "# HELP kvmsched_x a\\tb\n# TYPE kvmsched_x gauge\n".into(),
            "# HELP other_x h\n# TYPE other_x gauge\n".into(),
            "# HELP kvmsched_x h\n".into(),
            format!("{HEAD}{HEAD}"),
            format!("{HEAD}# a comment\n"),
            format!("{HEAD}\nkvmsched_x 1\n"),
            format!("{HEAD}kvmsched_x 1\r\n"),
            format!("{HEAD}kvmsched_y 1\n"),
            format!("{HEAD}kvmsched_x one\n"),
            format!("{HEAD}kvmsched_x inf\n"),
            format!("{HEAD}kvmsched_x nan\n"),
            format!("{HEAD}kvmsched_x +1\n"),
            format!("{HEAD}kvmsched_x .5\n"),
            format!("{HEAD}kvmsched_x 1.\n"),
            format!("{HEAD}kvmsched_x 1e\n"),
            format!("{HEAD}kvmsched_x 1 1700000000\n"),
            format!("{HEAD}kvmsched_x  1\n"),
            format!("{HEAD}kvmsched_x\n"),
            format!("{HEAD}kvmsched_x 1\nkvmsched_x 2\n"),
            format!("{HEAD}kvmsched_x{{a=\"1\",b=\"2\"}} 1\nkvmsched_x{{b=\"2\",a=\"1\"}} 1\n"),
            format!("{HEAD}kvmsched_x{{a=\"b}} 1\n"),
            format!("{HEAD}kvmsched_x{{a=b}} 1\n"),
            format!("{HEAD}kvmsched_x{{a=\"\\t\"}} 1\n"),
            format!("{HEAD}kvmsched_x{{a=\"1\",a=\"2\"}} 1\n"),
            format!("{HEAD}kvmsched_x{{__a=\"1\"}} 1\n"),
            format!("{HEAD}kvmsched_x{{1a=\"1\"}} 1\n"),
            format!("{HEAD}kvmsched_x{{a:b=\"1\"}} 1\n"),
            format!("{HEAD}kvmsched_x{{a=\"1\"b=\"2\"}} 1\n"),
            format!("{counter}kvmsched_c_total -1\n"),
            format!("{counter}kvmsched_c_total NaN\n"),
            format!("{HEAD}kvmsched_x 1\n{counter}kvmsched_x 2\n"),
        ];
        for b in &bad {
            assert!(check(b).is_err(), "accepted {b:?}");
        }
    }
}
