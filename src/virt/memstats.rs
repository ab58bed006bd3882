//! Guest memory statistics as the balloon driver reports them (KiB).

use libvirt_sys as sys;

use super::typed_params::TypedParams;

/// Balloon statistics of one domain; every field is optional because what a
/// guest reports depends on its balloon driver (before the guest loads
/// virtio_balloon and a stats period is set, only `actual` and `rss`).
///
/// Units: KiB, except the counters (`*_fault`, `hugetlb_*`) and
/// `last_update` (guest timestamp, seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Memory swapped in (KiB).
    pub swap_in: Option<u64>,
    /// Memory swapped out (KiB).
    pub swap_out: Option<u64>,
    /// Major page faults.
    pub major_fault: Option<u64>,
    /// Minor page faults.
    pub minor_fault: Option<u64>,
    /// Memory the guest leaves completely unused (KiB): "free".
    pub unused: Option<u64>,
    /// Memory the guest sees (KiB): current balloon size less reserved.
    pub available: Option<u64>,
    /// Current balloon size (KiB): what the guest was given.
    pub actual: Option<u64>,
    /// Host resident set of the emulator process (KiB).
    pub rss: Option<u64>,
    /// Memory usable without swapping (KiB).
    pub usable: Option<u64>,
    /// When the guest last refreshed these figures (seconds).
    pub last_update: Option<u64>,
    /// Guest disk caches (KiB).
    pub disk_caches: Option<u64>,
    /// Balloon maximum (KiB); only from bulk stats (`balloon.maximum`).
    pub maximum: Option<u64>,
}

impl MemoryStats {
    /// Parses the tag/value array of `virDomainMemoryStats`.
    pub fn from_tags(stats: &[sys::virDomainMemoryStatStruct]) -> Self {
        let mut m = MemoryStats::default();
        for s in stats {
            let v = Some(s.val);
            match s.tag as u32 {
                sys::VIR_DOMAIN_MEMORY_STAT_SWAP_IN => m.swap_in = v,
                sys::VIR_DOMAIN_MEMORY_STAT_SWAP_OUT => m.swap_out = v,
                sys::VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT => m.major_fault = v,
                sys::VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT => m.minor_fault = v,
                sys::VIR_DOMAIN_MEMORY_STAT_UNUSED => m.unused = v,
                sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE => m.available = v,
                sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON => m.actual = v,
                sys::VIR_DOMAIN_MEMORY_STAT_RSS => m.rss = v,
                sys::VIR_DOMAIN_MEMORY_STAT_USABLE => m.usable = v,
                sys::VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE => m.last_update = v,
                sys::VIR_DOMAIN_MEMORY_STAT_DISK_CACHES => m.disk_caches = v,
                _ => {}
            }
        }
        m
    }

    /// Parses the `balloon.*` fields of `virConnectGetAllDomainStats`.
    pub fn from_bulk(p: &TypedParams) -> Self {
        MemoryStats {
            swap_in: p.get_u64("balloon.swap_in"),
            swap_out: p.get_u64("balloon.swap_out"),
            major_fault: p.get_u64("balloon.major_fault"),
            minor_fault: p.get_u64("balloon.minor_fault"),
            unused: p.get_u64("balloon.unused"),
            available: p.get_u64("balloon.available"),
            actual: p.get_u64("balloon.current"),
            rss: p.get_u64("balloon.rss"),
            usable: p.get_u64("balloon.usable"),
            last_update: p.get_u64("balloon.last-update"),
            disk_caches: p.get_u64("balloon.disk_caches"),
            maximum: p.get_u64("balloon.maximum"),
        }
    }

    /// Memory the guest uses (KiB): available − unused, when both are known.
    pub fn used(&self) -> Option<u64> {
        Some(self.available?.saturating_sub(self.unused?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virt::typed_params::ParamValue;

    fn stat(tag: u32, val: u64) -> sys::virDomainMemoryStatStruct {
        sys::virDomainMemoryStatStruct {
            tag: tag as i32,
            val,
        }
    }

    #[test]
    fn tags_map_to_fields_and_unknown_tags_are_ignored() {
        let m = MemoryStats::from_tags(&[
            stat(sys::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON, 524_288),
            stat(sys::VIR_DOMAIN_MEMORY_STAT_UNUSED, 300_000),
            stat(sys::VIR_DOMAIN_MEMORY_STAT_AVAILABLE, 500_000),
            stat(sys::VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE, 1234),
            stat(sys::VIR_DOMAIN_MEMORY_STAT_RSS, 100_000),
            stat(999, 1),
        ]);
        assert_eq!(m.actual, Some(524_288));
        assert_eq!(m.unused, Some(300_000));
        assert_eq!(m.available, Some(500_000));
        assert_eq!(m.last_update, Some(1234));
        assert_eq!(m.rss, Some(100_000));
        assert_eq!(m.usable, None);
        assert_eq!(m.used(), Some(200_000));
    }

    #[test]
    fn used_needs_both_figures() {
        let m = MemoryStats {
            actual: Some(1),
            unused: Some(5),
            ..Default::default()
        };
        assert_eq!(m.used(), None);
    }

    #[test]
    fn bulk_fields_parse_by_name() {
        let p = TypedParams::from_pairs(vec![
            ("balloon.current".into(), ParamValue::ULLong(524_288)),
            ("balloon.maximum".into(), ParamValue::ULLong(2_097_152)),
            ("balloon.unused".into(), ParamValue::ULLong(100)),
            ("balloon.available".into(), ParamValue::ULLong(400)),
            ("balloon.last-update".into(), ParamValue::ULLong(77)),
            ("balloon.rss".into(), ParamValue::String("odd".into())),
        ]);
        let m = MemoryStats::from_bulk(&p);
        assert_eq!(m.actual, Some(524_288));
        assert_eq!(m.maximum, Some(2_097_152));
        assert_eq!(m.used(), Some(300));
        assert_eq!(m.last_update, Some(77));
        assert_eq!(m.rss, None, "wrong type is absent, not a panic");
    }
}
