//! CPU bitmaps in libvirt's layout: one bit per physical CPU, 8 CPUs a byte,
//! CPU n at bit n % 8 of byte n / 8 (the `VIR_USE_CPU` family of macros).

use std::fmt;

/// Bytes needed for a map of `cpus` CPUs (`VIR_CPU_MAPLEN`).
pub fn maplen(cpus: u32) -> usize {
    (cpus as usize).div_ceil(8)
}

/// A set of physical CPUs, sized for a host with `cpus` CPUs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CpuMap {
    bytes: Vec<u8>,
    cpus: u32,
}

impl CpuMap {
    /// An empty map for a host of `cpus` CPUs.
    pub fn new(cpus: u32) -> Self {
        CpuMap {
            bytes: vec![0; maplen(cpus)],
            cpus,
        }
    }

    /// A map holding exactly `list`; CPUs at or past `cpus` are an error.
    pub fn from_cpus(cpus: u32, list: &[u32]) -> Result<Self, String> {
        let mut map = CpuMap::new(cpus);
        for &cpu in list {
            map.set(cpu)?;
        }
        Ok(map)
    }

    /// Wraps raw bytes as libvirt returned them (`bytes.len()` must be
    /// `maplen(cpus)`; shorter input is padded, bits past `cpus` are dropped).
    pub fn from_bytes(cpus: u32, bytes: &[u8]) -> Self {
        let mut map = CpuMap::new(cpus);
        for (dst, src) in map.bytes.iter_mut().zip(bytes) {
            *dst = *src;
        }
        map.mask_tail();
        map
    }

    fn mask_tail(&mut self) {
        let rem = self.cpus % 8;
        if rem != 0 {
            if let Some(last) = self.bytes.last_mut() {
                *last &= (1u8 << rem) - 1;
            }
        }
    }

    /// Number of CPUs the map is sized for.
    pub fn size(&self) -> u32 {
        self.cpus
    }

    /// Adds `cpu` (`VIR_USE_CPU`).
    pub fn set(&mut self, cpu: u32) -> Result<(), String> {
        if cpu >= self.cpus {
            return Err(format!(
                "CPU {cpu} is out of range (host has {} CPUs)",
                self.cpus
            ));
        }
        self.bytes[(cpu / 8) as usize] |= 1 << (cpu % 8);
        Ok(())
    }

    /// Removes `cpu` (`VIR_UNUSE_CPU`); out of range is a no-op.
    pub fn clear(&mut self, cpu: u32) {
        if cpu < self.cpus {
            self.bytes[(cpu / 8) as usize] &= !(1 << (cpu % 8));
        }
    }

    /// Whether `cpu` is in the map (`VIR_CPU_USED`).
    pub fn is_set(&self, cpu: u32) -> bool {
        cpu < self.cpus && self.bytes[(cpu / 8) as usize] & (1 << (cpu % 8)) != 0
    }

    /// The CPUs in the map, ascending.
    pub fn cpus(&self) -> Vec<u32> {
        (0..self.cpus).filter(|&c| self.is_set(c)).collect()
    }

    /// How many CPUs are in the map.
    pub fn count(&self) -> u32 {
        self.bytes.iter().map(|b| b.count_ones()).sum()
    }

    /// The raw bytes, `maplen(size())` long.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Splits libvirt's array of per-vCPU maps (`VIR_GET_CPUMAP` layout:
    /// map i at `i * maplen`) into `n` maps.
    pub fn split(cpus: u32, buf: &[u8], n: usize) -> Vec<CpuMap> {
        let len = maplen(cpus);
        (0..n)
            .map(|i| {
                let start = (i * len).min(buf.len());
                let end = (start + len).min(buf.len());
                CpuMap::from_bytes(cpus, &buf[start..end])
            })
            .collect()
    }
}

pub use crate::cpulist::format_cpu_list;

impl fmt::Display for CpuMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = self.cpus();
        if list.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&format_cpu_list(&list))
        }
    }
}

impl fmt::Debug for CpuMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuMap({}/{})", self, self.cpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libvirt_sys as sys;
    use std::os::raw::c_int;

    const SIZES: &[u32] = &[1, 7, 8, 9, 64, 65, 1024];

    fn shim_maplen(cpus: u32) -> usize {
        // SAFETY: pure arithmetic on an int, no pointers.
        unsafe { sys::kvmsched_shim_cpu_maplen(cpus as c_int) as usize }
    }

    #[test]
    fn maplen_matches_libvirt_macro() {
        for cpus in (0..=1030).chain(SIZES.iter().copied()) {
            assert_eq!(maplen(cpus), shim_maplen(cpus), "cpus={cpus}");
        }
    }

    #[test]
    fn set_bits_match_vir_use_cpu() {
        for &cpus in SIZES {
            for cpu in [0, cpus / 3, cpus / 2, cpus - 1] {
                let mut ours = CpuMap::new(cpus);
                ours.set(cpu).expect("in range");
                let mut theirs = vec![0u8; shim_maplen(cpus)];
                // SAFETY: theirs has maplen(cpus) bytes and cpu < cpus, so the
                // macro writes inside the buffer.
                unsafe { sys::kvmsched_shim_use_cpu(theirs.as_mut_ptr(), cpu as c_int) };
                assert_eq!(ours.as_bytes(), &theirs[..], "cpus={cpus} cpu={cpu}");
                for probe in 0..cpus {
                    // SAFETY: theirs is maplen(cpus) bytes, probe < cpus.
                    let used =
                        unsafe { sys::kvmsched_shim_cpu_used(theirs.as_ptr(), probe as c_int) };
                    assert_eq!(ours.is_set(probe), used != 0, "cpus={cpus} probe={probe}");
                }
                // SAFETY: same buffer and bounds as above.
                unsafe { sys::kvmsched_shim_unuse_cpu(theirs.as_mut_ptr(), cpu as c_int) };
                ours.clear(cpu);
                assert_eq!(ours.as_bytes(), &theirs[..]);
                assert_eq!(ours.count(), 0);
            }
        }
    }

    #[test]
    fn split_matches_vir_get_cpumap_and_cpu_usable() {
        for &cpus in SIZES {
            let len = shim_maplen(cpus);
            let nvcpus = 5usize;
            let mut buf = vec![0u8; len * nvcpus];
            // A different pattern per vCPU: vCPU v uses CPUs ≡ v (mod 5).
            for v in 0..nvcpus {
                for cpu in (v as u32..cpus).step_by(nvcpus) {
                    // SAFETY: get_cpumap returns &buf[v * len], which has len
                    // bytes left; cpu < cpus keeps the write inside them.
                    unsafe {
                        let map = sys::kvmsched_shim_get_cpumap(
                            buf.as_mut_ptr(),
                            len as c_int,
                            v as c_int,
                        );
                        sys::kvmsched_shim_use_cpu(map, cpu as c_int)
                    };
                }
            }
            let maps = CpuMap::split(cpus, &buf, nvcpus);
            for (v, map) in maps.iter().enumerate() {
                let mut copy = vec![0u8; len];
                // SAFETY: buf holds nvcpus maps of len bytes, copy has len bytes.
                unsafe {
                    sys::kvmsched_shim_copy_cpumap(
                        buf.as_ptr(),
                        len as c_int,
                        v as c_int,
                        copy.as_mut_ptr(),
                    )
                };
                assert_eq!(map.as_bytes(), &copy[..], "cpus={cpus} vcpu={v}");
                for cpu in 0..cpus {
                    // SAFETY: buf holds nvcpus maps of len bytes; v < nvcpus, cpu < cpus.
                    let usable = unsafe {
                        sys::kvmsched_shim_cpu_usable(
                            buf.as_ptr(),
                            len as c_int,
                            v as c_int,
                            cpu as c_int,
                        )
                    };
                    assert_eq!(
                        map.is_set(cpu),
                        usable != 0,
                        "cpus={cpus} vcpu={v} cpu={cpu}"
                    );
                    assert_eq!(map.is_set(cpu), cpu as usize % nvcpus == v);
                }
            }
        }
    }

    #[test]
    fn out_of_range_is_an_error_and_tail_bits_are_dropped() {
        let mut m = CpuMap::new(9);
        assert!(m.set(9).is_err());
        assert!(!m.is_set(9));
        let m2 = CpuMap::from_bytes(9, &[0xff, 0xff]);
        assert_eq!(m2.count(), 9);
        assert_eq!(m2.to_string(), "0-8");
    }

    #[test]
    fn formats_lists_like_virsh() {
        let m = CpuMap::from_cpus(16, &[0, 2, 3, 15]).expect("in range");
        assert_eq!(m.to_string(), "0,2-3,15");
        assert_eq!(CpuMap::new(4).to_string(), "-");
    }
}
