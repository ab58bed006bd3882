//! The table of settings: every key of the config file declared once, with
//! its value syntax and range, its command-line flag, its help line and the
//! field it sets.
//!
//! Everything else is derived from [`SETTINGS`] by the code in
//! `config::setting`: the config parser (through
//! [`Setting::apply`]), the command-line flags that override a key, the
//! `kvmsched help` text and the sample `contrib/kvmsched.conf` (checked by a
//! test against [`sample_config`]). Defaults are never written here:
//! they are read from [`Resolved::default`], that is from
//! [`VcpuConfig::default`], [`MemConfig::default`] and
//! [`DEFAULT_INTERVAL`].
//!
//! # Adding a key
//!
//! Add one [`Setting`] to [`SETTINGS`] (a `field` closure names the policy
//! field it sets) and use that field in the policy. Then regenerate the
//! sample file with `UPDATE_SAMPLE_CONFIG=1 cargo test --lib config` (the
//! test says so when it differs).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::policy::memory::{MemConfig, MIB};
use crate::policy::vcpu::VcpuConfig;

pub use super::setting::{flag_help, key_help, sample_config, seconds};

/// Shortest accepted interval or window (seconds).
pub const MIN_INTERVAL_S: f64 = 0.05;
/// Longest accepted interval or window (seconds; one day).
pub const MAX_INTERVAL_S: f64 = 86_400.0;
/// Interval of each loop when neither the file nor a flag sets it.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Largest MiB value: its KiB must fit in a `u64`.
pub const MAX_MIB: u64 = u64::MAX / MIB;

/// Everything the settings decide for one run: the policies' configs, the
/// loop intervals and the excluded domains.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The vCPU scheduler's configuration.
    pub vcpu: VcpuConfig,
    /// The memory coordinator's configuration.
    pub memory: MemConfig,
    /// Interval of the vCPU loop.
    pub vcpu_interval: Duration,
    /// Interval of the memory loop.
    pub memory_interval: Duration,
    /// Domain names or globs never pinned and never ballooned.
    pub exclude: Vec<String>,
}

impl Default for Resolved {
    fn default() -> Self {
        Resolved {
            vcpu: VcpuConfig::default(),
            memory: MemConfig::default(),
            vcpu_interval: DEFAULT_INTERVAL,
            memory_interval: DEFAULT_INTERVAL,
            exclude: Vec::new(),
        }
    }
}

/// Where a setting belongs; it groups the sample file and decides which
/// commands accept its flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The vCPU scheduler (`vcpu`, `run`).
    Vcpu,
    /// The memory coordinator (`memory`, `run`).
    Memory,
    /// Loop intervals (flags for `run`; `vcpu`/`memory` take it as argument).
    Interval,
    /// Which domains are managed, and how.
    Domains,
}

impl Section {
    pub(super) fn title(self) -> &'static str {
        match self {
            Section::Vcpu => "vCPU scheduler",
            Section::Memory => "Memory coordinator (all sizes in MiB)",
            Section::Interval => "Intervals",
            Section::Domains => "Domains",
        }
    }
}

/// A setting's value syntax and range, and the field of [`Resolved`] it
/// sets (a closure such as `|r| &mut r.vcpu.threshold`).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A finite number from `min` to `max` (`f64::INFINITY`: no maximum).
    Number {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
        /// The field set.
        field: fn(&mut Resolved) -> &mut f64,
    },
    /// A finite number from `min` to `max`, or unset (`None`): then the
    /// policy derives it, as `absent` says.
    OptionalNumber {
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
        /// The field set.
        field: fn(&mut Resolved) -> &mut Option<f64>,
        /// What the unset default means, for help text.
        absent: &'static str,
    },
    /// A number greater than 0 and at most 1.
    Fraction {
        /// The field set.
        field: fn(&mut Resolved) -> &mut f64,
    },
    /// A whole number `>= min` that fits a `u32`.
    Count {
        /// Smallest accepted value.
        min: u32,
        /// The field set.
        field: fn(&mut Resolved) -> &mut u32,
    },
    /// A whole number `>= min` that fits a `usize`.
    Size {
        /// Smallest accepted value.
        min: usize,
        /// The field set.
        field: fn(&mut Resolved) -> &mut usize,
    },
    /// Whole MiB up to [`MAX_MIB`], stored in KiB.
    Mib {
        /// The field set (KiB).
        field: fn(&mut Resolved) -> &mut u64,
    },
    /// A CPU list such as `0-3,8`; the default `None` means all online.
    CpuList {
        /// The field set.
        field: fn(&mut Resolved) -> &mut Option<Vec<u32>>,
    },
    /// Seconds from [`MIN_INTERVAL_S`] to [`MAX_INTERVAL_S`].
    Seconds {
        /// The field set.
        field: fn(&mut Resolved) -> &mut Duration,
    },
    /// Comma-separated names or globs, appended (the key may repeat).
    Names {
        /// The list appended to.
        field: fn(&mut Resolved) -> &mut Vec<String>,
    },
    /// `<key prefix><domain-name> = MiB`: one entry per domain, in KiB.
    PerDomainMib {
        /// The map set, by domain name.
        field: fn(&mut Resolved) -> &mut BTreeMap<String, u64>,
    },
}

/// One setting: a config key, optionally a command-line flag, and its help.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// The config-file key; for [`Kind::PerDomainMib`] the prefix followed
    /// by `<domain>`, e.g. `floor.<domain>`.
    pub key: &'static str,
    /// The command-line flag that overrides it, if any.
    pub flag: Option<&'static str>,
    /// Its group.
    pub section: Section,
    /// Value syntax, range and field.
    pub kind: Kind,
    /// One line for `kvmsched help` and the module doc (no final period).
    pub help: &'static str,
    /// More explanation for the sample config file, or empty.
    pub note: &'static str,
    /// A value shown as an example where the default is no value (a CPU
    /// list, names), or empty.
    pub example: &'static str,
}

/// `interval.vcpu`, also the argument of `kvmsched vcpu <interval>`.
pub const VCPU_INTERVAL: Setting = Setting {
    key: "interval.vcpu",
    flag: Some("--vcpu-interval"),
    section: Section::Interval,
    kind: Kind::Seconds {
        field: |r| &mut r.vcpu_interval,
    },
    help: "vCPU loop interval",
    note: "`kvmsched vcpu <interval>` takes it as its argument.",
    example: "",
};

/// `interval.memory`, also the argument of `kvmsched memory <interval>`.
pub const MEMORY_INTERVAL: Setting = Setting {
    key: "interval.memory",
    flag: Some("--memory-interval"),
    section: Section::Interval,
    kind: Kind::Seconds {
        field: |r| &mut r.memory_interval,
    },
    help: "memory loop interval",
    note: "`kvmsched memory <interval>` takes it as its argument.",
    example: "",
};

/// Every setting, in the order of the sample file.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "vcpu.threshold",
        flag: Some("--threshold"),
        section: Section::Vcpu,
        kind: Kind::Number {
            min: 0.0,
            max: f64::INFINITY,
            field: |r| &mut r.vcpu.threshold,
        },
        help: "std-dev of pCPU loads (points) counted as balanced",
        note: "Nothing moves while the std-dev is at or below it.",
        example: "",
    },
    Setting {
        key: "vcpu.aim",
        flag: None,
        section: Section::Vcpu,
        kind: Kind::OptionalNumber {
            min: 0.0,
            max: 100.0,
            field: |r| &mut r.vcpu.aim,
            absent: "half the threshold",
        },
        help: "std-dev (points) a rebalance plans down to once the threshold is crossed; at most the threshold",
        note: "Planning below the trigger leaves room for noise, so a balanced host is not pushed back over the threshold.",
        example: "2.5",
    },
    Setting {
        key: "vcpu.max_moves",
        flag: None,
        section: Section::Vcpu,
        kind: Kind::Size {
            min: 1,
            field: |r| &mut r.vcpu.max_moves,
        },
        help: "most pin changes per interval",
        note: "A swap counts two; the first placement of unpinned vCPUs is not counted.",
        example: "",
    },
    Setting {
        key: "vcpu.confirm_intervals",
        flag: None,
        section: Section::Vcpu,
        kind: Kind::Count {
            min: 1,
            field: |r| &mut r.vcpu.confirm,
        },
        help: "intervals a small imbalance must last before pins change",
        note: "Hysteresis against noise: an imbalance of at most twice the threshold must \
               be seen this many intervals in a row; a larger one is fixed at once; 1 = act \
               at once.",
        example: "",
    },
    Setting {
        key: "vcpu.cpus",
        flag: Some("--cpus"),
        section: Section::Vcpu,
        kind: Kind::CpuList {
            field: |r| &mut r.vcpu.cpus,
        },
        help: "pCPUs the vCPUs may be pinned to",
        note: "",
        example: "0-3,8",
    },
    Setting {
        key: "vcpu.smoothing",
        flag: None,
        section: Section::Vcpu,
        kind: Kind::Fraction {
            field: |r| &mut r.vcpu.smoothing,
        },
        help: "EWMA weight of the newest usage sample",
        note: "1 = no smoothing.",
        example: "",
    },
    Setting {
        key: "memory.target_free_mib",
        flag: Some("--target-free"),
        section: Section::Memory,
        kind: Kind::Mib {
            field: |r| &mut r.memory.target_free_kib,
        },
        help: "free memory each guest should keep",
        note: "",
        example: "",
    },
    Setting {
        key: "memory.band_mib",
        flag: None,
        section: Section::Memory,
        kind: Kind::Mib {
            field: |r| &mut r.memory.band_kib,
        },
        help: "dead band above the target",
        note: "A guest with free memory between the target and target + band is left alone.",
        example: "",
    },
    Setting {
        key: "memory.release_fraction",
        flag: None,
        section: Section::Memory,
        kind: Kind::Fraction {
            field: |r| &mut r.memory.release_fraction,
        },
        help: "share of a guest's excess free memory released per period",
        note: "",
        example: "",
    },
    Setting {
        key: "memory.release_cap_mib",
        flag: None,
        section: Section::Memory,
        kind: Kind::Mib {
            field: |r| &mut r.memory.release_cap_kib,
        },
        help: "largest release from one guest in one period",
        note: "",
        example: "",
    },
    Setting {
        key: "memory.stale_grant_mib",
        flag: None,
        section: Section::Memory,
        kind: Kind::Mib {
            field: |r| &mut r.memory.stale_grant_kib,
        },
        help: "most granted once to a guest whose balloon stats stalled while it is short (0: never)",
        note: "Stale stats never shrink a guest; a guest that, extrapolated from its last fresh sample, is short gets one bounded grant per stall.",
        example: "",
    },
    Setting {
        key: "memory.min_step_mib",
        flag: None,
        section: Section::Memory,
        kind: Kind::Mib {
            field: |r| &mut r.memory.min_step_kib,
        },
        help: "smallest balloon change issued",
        note: "",
        example: "",
    },
    Setting {
        key: "memory.min_floor_mib",
        flag: Some("--min-floor"),
        section: Section::Memory,
        kind: Kind::Mib {
            field: |r| &mut r.memory.min_floor_kib,
        },
        help: "lowest balloon size any shrink may set",
        note: "",
        example: "",
    },
    Setting {
        key: "memory.host_reserve_mib",
        flag: Some("--host-reserve"),
        section: Section::Memory,
        kind: Kind::Mib {
            field: |r| &mut r.memory.host_reserve_kib,
        },
        help: "host free memory never granted to guests",
        note: "",
        example: "",
    },
    Setting {
        key: "memory.growth_lookahead_periods",
        flag: None,
        section: Section::Memory,
        kind: Kind::Count {
            min: 0,
            field: |r| &mut r.memory.growth_lookahead_periods,
        },
        help: "periods of consumption granted ahead to a growing guest",
        note: "",
        example: "",
    },
    VCPU_INTERVAL,
    MEMORY_INTERVAL,
    Setting {
        key: "exclude",
        flag: None,
        section: Section::Domains,
        kind: Kind::Names {
            field: |r| &mut r.exclude,
        },
        help: "domains never pinned and never ballooned",
        note: "Globs match whole, case-sensitive names: `*` matches any run of characters \
               (also none), `?` one character; there is no escaping.",
        example: "win-*, build-??, db01",
    },
    Setting {
        key: "floor.<domain>",
        flag: None,
        section: Section::Domains,
        kind: Kind::PerDomainMib {
            field: |r| &mut r.memory.per_domain_floor,
        },
        help: "balloon floor of one domain",
        note: "A shrink never goes below the larger of this and memory.min_floor_mib.",
        example: "4096",
    },
];

/// The setting a config key names (`floor.db01` names `floor.<domain>`)
/// and, for a per-domain key, the domain name.
pub fn by_key(key: &str) -> Option<(&'static Setting, Option<&str>)> {
    SETTINGS.iter().find_map(|s| match s.kind {
        Kind::PerDomainMib { .. } => key.strip_prefix(s.prefix()).map(|name| (s, Some(name))),
        _ => (s.key == key).then_some((s, None)),
    })
}

/// The setting a command-line flag overrides.
pub fn by_flag(flag: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.flag == Some(flag))
}
