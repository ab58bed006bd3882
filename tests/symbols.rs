//! The libvirt functions the release binary imports must be exactly the ones
//! README's `## libvirt calls` section lists (and justifies), each naming the
//! access-control permission it needs or saying it is local; and the polkit
//! rule in `contrib/` must grant exactly those permissions.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The list items of README's `## libvirt calls` (up to its first subsection).
fn readme_items() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let section = readme
        .split("\n## libvirt calls")
        .nth(1)
        .expect("README has '## libvirt calls'");
    let section = section.split("\n#").next().unwrap_or(section);
    section
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .map(str::to_string)
        .collect()
}

fn readme_calls() -> BTreeSet<String> {
    readme_items()
        .iter()
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

/// What an item says libvirtd checks: `Ok(None)` for "local, no RPC",
/// `Ok(Some(perms))` for "ACL ..." (the permissions before any `;`
/// qualifier, `none` giving an empty set), `Err` when it names neither.
fn item_acl(item: &str) -> Result<Option<BTreeSet<String>>, String> {
    let head = item.split(" — ").next().unwrap_or(item);
    let paren = head
        .split_once(" (")
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map(|(inside, _)| inside.trim())
        .ok_or_else(|| format!("no '(ACL ...)' or '(local, no RPC)' in: {item}"))?;
    if paren == "local, no RPC" {
        return Ok(None);
    }
    let acl = paren
        .strip_prefix("ACL ")
        .ok_or_else(|| format!("'({paren})' is neither 'ACL ...' nor 'local, no RPC': {item}"))?;
    let required = acl.split(';').next().unwrap_or(acl).trim();
    if required == "none" {
        return Ok(Some(BTreeSet::new()));
    }
    let perms: BTreeSet<String> = required
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    let valid = |p: &String| {
        p.split_once(':').is_some_and(|(obj, perm)| {
            ["connect", "domain"].contains(&obj)
                && !perm.is_empty()
                && perm.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
    };
    if perms.is_empty() || !perms.iter().all(valid) {
        return Err(format!("'ACL {acl}' names no `object:permission`: {item}"));
    }
    Ok(Some(perms))
}

#[test]
fn every_listed_call_names_its_permission_or_says_local() {
    let items = readme_items();
    assert!(items.len() >= 20, "suspiciously few items: {items:?}");
    let bad: Vec<String> = items.iter().filter_map(|i| item_acl(i).err()).collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn polkit_rule_grants_exactly_the_listed_permissions() {
    let needed: BTreeSet<String> = readme_items()
        .iter()
        .filter_map(|i| item_acl(i).ok().flatten())
        .flatten()
        .map(|p| format!("org.libvirt.api.{}", p.replace(':', ".").replace('_', "-")))
        .collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rule = std::fs::read_to_string(root.join("contrib/50-kvmsched.rules")).expect("rule");
    let list = rule
        .split("var needed = [")
        .nth(1)
        .and_then(|s| s.split("];").next())
        .expect("rule has 'var needed = [...];'");
    let granted: BTreeSet<String> = list
        .lines()
        .filter_map(|l| l.trim().strip_prefix('"'))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect();
    assert_eq!(granted, needed, "polkit rule vs README's permissions");
}

#[test]
fn permission_parser_rejects_an_item_without_one() {
    assert!(item_acl("- `virDomainPinVcpu` — apply a pin.").is_err());
    assert!(item_acl("- `virDomainPinVcpu` (ACL) — apply a pin.").is_err());
    assert!(item_acl("- `virDomainPinVcpu` (ACL `write`) — apply a pin.").is_err());
    assert_eq!(
        item_acl("- `virDomainGetName` (local, no RPC) — name."),
        Ok(None)
    );
    assert_eq!(
        item_acl("- `virX` (ACL `domain:write`; `domain:save` only without LIVE) — y."),
        Ok(Some(["domain:write".to_string()].into()))
    );
}
