//! Shared helpers for tests against libvirt's test driver: one custom node
//! XML per test, so no test sees another's state; [`prometheus`] runs the
//! lab's Prometheus-text checker.

#![allow(dead_code)]

use std::path::PathBuf;

pub mod prometheus;

/// One guest in a test node file.
pub struct Guest<'a> {
    pub name: &'a str,
    pub vcpus: u32,
    pub memory_kib: u64,
    pub current_kib: u64,
    /// Optional `cpuset` for all vCPUs (e.g. "0").
    pub cpuset: Option<&'a str>,
    /// `running` or `shutoff`.
    pub state: &'a str,
}

impl Default for Guest<'_> {
    fn default() -> Self {
        Guest {
            name: "g",
            vcpus: 1,
            memory_kib: 2_097_152,
            current_kib: 524_288,
            cpuset: None,
            state: "running",
        }
    }
}

/// Writes a node XML with `cpus` host CPUs and `guests`, returns a
/// `test:///<file>` URI unique to this test.
pub fn node_uri(test: &str, cpus: u32, guests: &[Guest]) -> String {
    let mut xml = String::from("<node>\n");
    xml.push_str(&format!(
        "  <cpu><mhz>2000</mhz><model>kvmsched-test</model><active>{cpus}</active><nodes>1</nodes><sockets>1</sockets><cores>{cpus}</cores><threads>1</threads></cpu>\n  <memory>8388608</memory>\n"
    ));
    for (i, g) in guests.iter().enumerate() {
        let cpuset = g
            .cpuset
            .map(|c| format!(" cpuset='{c}'"))
            .unwrap_or_default();
        xml.push_str(&format!(
            "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\n    <name>{name}</name>\n    <uuid>6695eb01-f6a4-8304-79aa-97f2502e{i:04x}</uuid>\n    <memory unit='KiB'>{mem}</memory>\n    <currentMemory unit='KiB'>{cur}</currentMemory>\n    <vcpu placement='static'{cpuset}>{vcpus}</vcpu>\n    <os><type arch='x86_64'>hvm</type></os>\n    <devices><memballoon model='virtio'/></devices>\n    <test:runstate>{state}</test:runstate>\n  </domain>\n",
            name = g.name,
            mem = g.memory_kib,
            cur = g.current_kib,
            vcpus = g.vcpus,
            state = if g.state == "running" { 1 } else { 5 },
        ));
    }
    xml.push_str("</node>\n");
    let dir = std::env::temp_dir().join(format!("kvmsched-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path: PathBuf = dir.join(format!("{test}.xml"));
    std::fs::write(&path, xml).expect("write node xml");
    format!("test://{}", path.display())
}
