//! The release artifact (`scripts/release`) must not need a newer glibc or
//! libvirt than README's `## Deployment` section promises, must link only
//! libvirt and the C runtime, and must be stripped.
//!
//! The artifact is `target/x86_64-unknown-linux-gnu/release/kvmsched`, or the
//! file `KVMSCHED_RELEASE_BIN` names; `scripts/test` builds it first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Libraries the artifact may need besides libvirt.so.0: glibc's C runtime
/// (older glibc splits libpthread, libdl, librt and libm out of libc) and
/// libgcc_s for unwinding.
const C_RUNTIME: &[&str] = &[
    "libc.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libm.so.6",
    "libgcc_s.so.1",
];

type Version = Vec<u32>;

fn parse_version(s: &str) -> Version {
    s.split('.')
        .map(|p| p.parse().expect("numeric version component"))
        .collect()
}

fn show(v: &[u32]) -> String {
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(".")
}

/// The floor README states as `<what> ≥ X.Y[.Z]` in `## Deployment`.
fn readme_floor(what: &str) -> Version {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Deployment")
        .nth(1)
        .expect("README has '## Deployment'");
    let section = section.split("\n## ").next().unwrap_or(section);
    let needle = format!("{what} ≥ ");
    let at = section
        .find(&needle)
        .unwrap_or_else(|| panic!("README '## Deployment' states '{needle}X.Y'"));
    let v: String = section[at + needle.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    parse_version(v.trim_end_matches('.'))
}

/// Every `PREFIX<version>` symbol version in `objdump -T` output.
fn symbol_versions(objdump: &str, prefix: &str) -> BTreeSet<Version> {
    objdump
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|w| w.strip_prefix(prefix))
        .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(parse_version)
        .collect()
}

/// The symbol versions above `floor`, as text for the failure message.
fn above(versions: &BTreeSet<Version>, floor: &[u32], prefix: &str) -> Vec<String> {
    versions
        .iter()
        .filter(|v| v.as_slice() > floor)
        .map(|v| format!("{prefix}{}", show(v)))
        .collect()
}

fn artifact() -> PathBuf {
    let path = std::env::var_os("KVMSCHED_RELEASE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target"));
            target.join("x86_64-unknown-linux-gnu/release/kvmsched")
        });
    assert!(
        path.is_file(),
        "no release artifact at {} (build it with scripts/release)",
        path.display()
    );
    path
}

fn tool(cmd: &str, args: &[&str], bin: &Path) -> String {
    let out = Command::new(cmd)
        .args(args)
        .arg(bin)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd} (binutils): {e}"));
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn artifact_needs_no_newer_glibc_or_libvirt_than_readme_states() {
    let bin = artifact();
    let dynsyms = tool("objdump", &["-T"], &bin);
    let glibc = symbol_versions(&dynsyms, "GLIBC_");
    let libvirt = symbol_versions(&dynsyms, "LIBVIRT_");
    assert!(!glibc.is_empty(), "no GLIBC_ symbol versions read");
    assert!(!libvirt.is_empty(), "no LIBVIRT_ symbol versions read");
    let glibc_floor = readme_floor("glibc");
    let libvirt_floor = readme_floor("libvirt");
    // The portable build's promise is glibc 2.17 (Rust's own floor for
    // x86_64-unknown-linux-gnu): README may not raise it.
    assert_eq!(
        glibc_floor,
        vec![2, 17],
        "README's glibc floor must stay 2.17"
    );
    let too_new_glibc = above(&glibc, &glibc_floor, "GLIBC_");
    let too_new_libvirt = above(&libvirt, &libvirt_floor, "LIBVIRT_");
    assert!(
        too_new_glibc.is_empty() && too_new_libvirt.is_empty(),
        "{} needs {too_new_glibc:?} {too_new_libvirt:?}, above README's floors glibc ≥ {} and libvirt ≥ {}",
        bin.display(),
        show(&glibc_floor),
        show(&libvirt_floor)
    );
}

#[test]
fn artifact_links_only_libvirt_and_the_c_runtime_and_is_stripped() {
    let bin = artifact();
    let dynamic = tool("readelf", &["-d"], &bin);
    let needed: BTreeSet<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(needed.contains("libvirt.so.0"), "NEEDED: {needed:?}");
    let other: Vec<_> = needed
        .iter()
        .filter(|n| **n != "libvirt.so.0" && !C_RUNTIME.contains(n))
        .collect();
    assert!(
        other.is_empty(),
        "NEEDED beyond libvirt + C runtime: {other:?}"
    );
    let sections = tool("readelf", &["-S", "-W"], &bin);
    assert!(
        !sections.contains(".symtab"),
        "{} is not stripped (has .symtab)",
        bin.display()
    );
}

#[test]
fn version_check_flags_a_symbol_above_the_floor() {
    // objdump -T lines of a host (glibc 2.36) build: GLIBC_2.34 is above 2.17.
    let sample = "0000 DF *UND* 0000 (GLIBC_2.34) __libc_start_main\n\
                  0000 DF *UND* 0000 (GLIBC_2.2.5) free\n\
                  0000 DF *UND* 0000 (LIBVIRT_1.2.8) virConnectGetAllDomainStats\n\
                  0000 DF *UND* 0000  LIBVIRT_0.0.3 virInitialize\n";
    let glibc = symbol_versions(sample, "GLIBC_");
    assert_eq!(glibc.len(), 2);
    assert_eq!(above(&glibc, &[2, 17], "GLIBC_"), vec!["GLIBC_2.34"]);
    let libvirt = symbol_versions(sample, "LIBVIRT_");
    assert_eq!(libvirt.len(), 2);
    assert!(above(&libvirt, &[7, 0, 0], "LIBVIRT_").is_empty());
    assert_eq!(
        above(&libvirt, &[1, 2, 7], "LIBVIRT_"),
        vec!["LIBVIRT_1.2.8"]
    );
    // 2.17 is not above 2.17; 2.17.1 would be
    assert!(above(&[vec![2, 17]].into(), &[2, 17], "GLIBC_").is_empty());
}
