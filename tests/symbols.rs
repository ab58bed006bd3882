//! The libvirt functions the release binary imports must be exactly the ones
//! README's `## libvirt calls` section lists (and justifies).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn readme_calls() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let section = readme
        .split("\n## libvirt calls")
        .nth(1)
        .expect("README has '## libvirt calls'");
    let section = section.split("\n## ").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .map(|l| {
            let start = l.find("vir").expect("each item names a vir* function");
            l[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
        })
        .collect()
}

#[test]
fn release_binary_imports_exactly_the_documented_calls() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--bin", "kvmsched"])
        .current_dir(root)
        .status()
        .expect("run cargo build --release");
    assert!(status.success(), "release build failed");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target.join("release/kvmsched");
    let out = Command::new("nm")
        .args(["-D", "--undefined-only"])
        .arg(&bin)
        .output()
        .expect("run nm (binutils)");
    assert!(
        out.status.success(),
        "nm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .filter(|s| s.starts_with("vir"))
        .collect();
    let documented = readme_calls();
    let missing: Vec<_> = imported.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&imported).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "imported but not in README: {missing:?}; in README but not imported: {extra:?}"
    );
    assert!(
        imported.len() >= 20,
        "suspiciously few libvirt imports: {imported:?}"
    );
}

#[test]
fn readme_list_matches_the_bindgen_allowlist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let build = std::fs::read_to_string(root.join("libvirt-sys/build.rs")).expect("build.rs");
    let list = build
        .split("const FUNCTIONS")
        .nth(1)
        .and_then(|s| s.split("];").next())
        .expect("FUNCTIONS list");
    let allow: BTreeSet<String> = list
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"'))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect();
    assert_eq!(
        allow,
        readme_calls(),
        "build.rs allowlist and README list differ"
    );
}
