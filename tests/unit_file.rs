//! `contrib/kvmsched.service` must be safe on both libvirt daemon layouts:
//! ordered after the monolithic and the modular daemons' sockets and services,
//! never pulling one in or stopping with one (the modular units declare
//! `Conflicts=libvirtd.service`), and valid for `systemd-analyze verify`.

use std::path::Path;
use std::process::Command;

const DEPENDENCY_KEYS: &[&str] = &[
    "Wants",
    "Requires",
    "Requisite",
    "BindsTo",
    "PartOf",
    "Upholds",
];

/// The units a layout's libvirt daemons come as: libvirtd*, virtlogd*,
/// virtlockd*, virtqemud*, virtproxyd*, ... (`.service` and `.socket`).
fn is_libvirt_daemon(unit: &str) -> bool {
    let stem = unit.split('.').next().unwrap_or(unit);
    let stem = stem.split('-').next().unwrap_or(stem);
    stem.starts_with("libvirt") || (stem.starts_with("virt") && stem.ends_with('d'))
}

/// `(key, value)` of every assignment, comments and section headers skipped.
fn assignments(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .filter(|l| !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Each dependency on a libvirt daemon, as `Key=unit`.
fn daemon_dependencies(unit: &str) -> Vec<String> {
    assignments(unit)
        .into_iter()
        .filter(|(k, _)| DEPENDENCY_KEYS.contains(&k.as_str()))
        .flat_map(|(k, v)| {
            v.split_whitespace()
                .filter(|u| is_libvirt_daemon(u))
                .map(|u| format!("{k}={u}"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn unit_text() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("contrib/kvmsched.service"))
        .expect("contrib/kvmsched.service")
}

#[test]
fn unit_depends_on_no_libvirt_daemon() {
    let deps = daemon_dependencies(&unit_text());
    assert!(deps.is_empty(), "kvmsched.service depends on {deps:?}");
}

#[test]
fn unit_is_ordered_after_both_layouts_and_restarts_on_failure() {
    let a = assignments(&unit_text());
    let after: Vec<&str> = a
        .iter()
        .filter(|(k, _)| k == "After")
        .flat_map(|(_, v)| v.split_whitespace())
        .collect();
    for unit in [
        "libvirtd.socket",
        "libvirtd.service",
        "virtqemud.socket",
        "virtqemud.service",
    ] {
        assert!(after.contains(&unit), "no After={unit} (After: {after:?})");
    }
    assert!(
        a.iter().any(|(k, v)| k == "Restart" && v == "on-failure"),
        "Restart=on-failure missing"
    );
}

#[test]
fn dependency_check_catches_a_libvirt_daemon() {
    let old = "[Unit]\nAfter=libvirtd.service\nWants=libvirtd.service\n\
               Requires=network.target virtqemud.socket\n# BindsTo=libvirtd.service\n\
               PartOf=virtlogd.service\nWants=dbus.service virt-guest-shutdown.target\n";
    assert_eq!(
        daemon_dependencies(old),
        vec![
            "Wants=libvirtd.service",
            "Requires=virtqemud.socket",
            "PartOf=virtlogd.service"
        ]
    );
    assert!(!is_libvirt_daemon("virt-guest-shutdown.target"));
    assert!(is_libvirt_daemon("virtqemud-ro.socket"));
    assert!(is_libvirt_daemon("libvirtd-admin.socket"));
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    // ExecStart names the installed path; point it at the freshly built binary so
    // verify can check it is executable. Everything else is verified as shipped.
    let dir = std::env::temp_dir().join(format!("kvmsched-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let unit = unit_text().replace("/usr/local/bin/kvmsched", env!("CARGO_BIN_EXE_kvmsched"));
    let path = dir.join("kvmsched.service");
    std::fs::write(&path, unit).expect("write unit copy");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.expect("run systemd-analyze (package systemd; scripts/install-deps installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and sections are only warnings (exit 0): fail on those too.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("kvmsched.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: exit {:?}: {stderr}",
        out.status.code()
    );
}
