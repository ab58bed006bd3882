//! CPU lists as virsh, cpusets and `--cpus` write them (`0-3,8`), in both
//! directions: [`parse_cpu_list`] for input, [`format_cpu_list`] for output.

/// Highest CPU number accepted by [`parse_cpu_list`].
pub const MAX_CPU_ID: u32 = 65_535;

/// Parses a CPU list such as `0-3,8` into sorted, distinct CPU numbers.
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>, String> {
    let num = |t: &str| -> Result<u32, String> {
        let t = t.trim();
        if t.is_empty() {
            return Err(format!("invalid CPU list {s:?}: missing CPU number"));
        }
        let n: u32 = t
            .parse()
            .map_err(|_| format!("invalid CPU list {s:?}: {t:?} is not a CPU number"))?;
        if n > MAX_CPU_ID {
            return Err(format!(
                "invalid CPU list {s:?}: CPU {n} is above the maximum {MAX_CPU_ID}"
            ));
        }
        Ok(n)
    };
    if s.trim().is_empty() {
        return Err("invalid CPU list: empty".to_string());
    }
    let mut out = Vec::new();
    for item in s.split(',') {
        if item.trim().is_empty() {
            return Err(format!("invalid CPU list {s:?}: empty item"));
        }
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!(
                        "invalid CPU list {s:?}: range {a}-{b} is backwards"
                    ));
                }
                out.extend(a..=b);
            }
            None => out.push(num(item)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Formats sorted CPU numbers as a CPU list: `0-3,8` (empty input: "").
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_ranges_and_rejects_garbage() {
        assert_eq!(parse_cpu_list("0-3,8"), Ok(vec![0, 1, 2, 3, 8]));
        assert_eq!(parse_cpu_list(" 8, 0-1 ,1"), Ok(vec![0, 1, 8]));
        assert_eq!(parse_cpu_list("5"), Ok(vec![5]));
        assert_eq!(parse_cpu_list("2-2"), Ok(vec![2]));
        for bad in [
            "", " ", "0,,1", "a", "1-", "-1", "3-1", "1-2-3", "70000", "0,x",
        ] {
            let e = parse_cpu_list(bad);
            assert!(e.is_err(), "{bad:?} gave {e:?}");
        }
        let e = parse_cpu_list("3-1").err().unwrap_or_default();
        assert!(e.contains("backwards"), "{e}");
        let e = parse_cpu_list("0,x").err().unwrap_or_default();
        assert!(e.contains("\"x\" is not a CPU number"), "{e}");
    }

    #[test]
    fn format_is_like_virsh() {
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8]), "0-3,8");
        assert_eq!(format_cpu_list(&[1, 3, 5]), "1,3,5");
        assert_eq!(format_cpu_list(&[]), "");
    }

    #[test]
    fn format_then_parse_is_identity() {
        for list in [
            vec![0],
            vec![0, 1, 2, 3, 8],
            vec![1, 3, 5, 6, 7, 100],
            vec![65_535],
        ] {
            assert_eq!(parse_cpu_list(&format_cpu_list(&list)), Ok(list));
        }
    }
}
