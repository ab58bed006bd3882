//! The safe wrapper against libvirt's built-in test driver (no daemon).

mod common;

use common::{node_uri, Guest};
use kvmsched::virt::{stats, Connection, CpuMap, ListFilter, STATE_RUNNING};

fn four_guests(test: &str) -> String {
    node_uri(
        test,
        4,
        &[
            Guest {
                name: "alpha",
                vcpus: 2,
                ..Default::default()
            },
            Guest {
                name: "beta",
                vcpus: 1,
                ..Default::default()
            },
            Guest {
                name: "gamma",
                vcpus: 4,
                ..Default::default()
            },
            Guest {
                name: "off",
                vcpus: 1,
                state: "shutoff",
                ..Default::default()
            },
        ],
    )
}

#[test]
fn lists_all_and_active_domains() {
    let conn = Connection::open(&four_guests("list")).expect("open");
    let mut all: Vec<String> = conn
        .list_all_domains(ListFilter::All)
        .expect("list")
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    all.sort();
    assert_eq!(all, ["alpha", "beta", "gamma", "off"]);
    let active = conn.list_all_domains(ListFilter::Active).expect("list");
    let mut names: Vec<&str> = active.iter().map(|d| d.name()).collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta", "gamma"]);
    let alpha = active.iter().find(|d| d.name() == "alpha").expect("alpha");
    assert_eq!(alpha.uuid().len(), 36);
    let info = alpha.info().expect("info");
    assert_eq!(info.state, STATE_RUNNING);
    assert_eq!(info.nr_virt_cpu, 2);
    assert_eq!(info.max_mem_kib, 2_097_152);
    assert_eq!(alpha.max_memory().expect("max"), 2_097_152);
}

#[test]
fn vcpu_info_reports_affinity_and_pin_reads_back() {
    let uri = node_uri(
        "pin",
        4,
        &[Guest {
            name: "p",
            vcpus: 2,
            cpuset: Some("0-1"),
            ..Default::default()
        }],
    );
    let conn = Connection::open(&uri).expect("open");
    let host = conn.node_cpu_map().expect("cpu map");
    // The test driver reports a fixed 8-CPU host with CPUs 0, 2 and 4 online.
    assert_eq!(host.present, 8);
    assert_eq!(host.online.cpus(), [0, 2, 4]);
    let doms = conn.list_all_domains(ListFilter::Active).expect("list");
    let d = &doms[0];
    let before = d.vcpus(2, host.present).expect("vcpus");
    assert_eq!(before.len(), 2);
    assert_eq!(before[0].affinity.cpus(), [0, 1]);
    assert_eq!(before[1].number, 1);

    let target = CpuMap::from_cpus(host.present, &[3]).expect("map");
    d.pin_vcpu(1, &target).expect("pin");
    let after = d.vcpus(2, host.present).expect("vcpus");
    assert_eq!(after[1].affinity.cpus(), [3], "vCPU 1 pinned to pCPU 3");
    assert_eq!(after[0].affinity.cpus(), [0, 1], "vCPU 0 untouched");

    // A vCPU that does not exist is an error naming the call and domain.
    let err = d.pin_vcpu(7, &target).expect_err("no vCPU 7");
    assert_eq!(err.call, "virDomainPinVcpu");
    assert_eq!(err.target.as_deref(), Some("p"));
    assert!(!err.message.is_empty());
}

#[test]
fn set_memory_reads_back_and_above_max_fails() {
    let uri = node_uri(
        "setmem",
        2,
        &[Guest {
            name: "m",
            memory_kib: 1_048_576,
            current_kib: 524_288,
            ..Default::default()
        }],
    );
    let conn = Connection::open(&uri).expect("open");
    let doms = conn.list_all_domains(ListFilter::Active).expect("list");
    let d = &doms[0];
    assert_eq!(d.info().expect("info").memory_kib, 524_288);
    d.set_memory(786_432).expect("setmem");
    assert_eq!(d.info().expect("info").memory_kib, 786_432);
    let err = d.set_memory(2_000_000).expect_err("above max");
    assert_eq!(err.call, "virDomainSetMemoryFlags");
    assert_eq!(
        d.info().expect("info").memory_kib,
        786_432,
        "failed call changed nothing"
    );
}

#[test]
fn memory_stats_and_stats_period() {
    let uri = node_uri(
        "memstats",
        2,
        &[Guest {
            name: "s",
            ..Default::default()
        }],
    );
    let conn = Connection::open(&uri).expect("open");
    let doms = conn.list_all_domains(ListFilter::Active).expect("list");
    let d = &doms[0];
    let st = d.memory_stats().expect("stats");
    // The test driver reports at least the balloon size it was given.
    assert!(
        st.actual.is_some() || st.available.is_some() || st.rss.is_some(),
        "{st:?}"
    );
    match d.set_memory_stats_period(2) {
        Ok(()) => {}
        Err(e) => assert!(e.is_unsupported(), "unexpected error: {e}"),
    }
}

#[test]
fn bulk_stats_give_vcpu_and_balloon_fields() {
    let conn = Connection::open(&four_guests("bulk")).expect("open");
    let recs = conn
        .all_domain_stats(stats::STATE | stats::VCPU | stats::BALLOON)
        .expect("bulk");
    let mut names: Vec<&str> = recs.iter().map(|r| r.domain.name()).collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta", "gamma"], "only active domains");
    let gamma = recs
        .iter()
        .find(|r| r.domain.name() == "gamma")
        .expect("gamma");
    assert_eq!(
        gamma.params.get_i64("state.state"),
        Some(1),
        "{:?}",
        gamma.params
    );
    // libvirt 9.0's test driver fills only the state group; where a driver
    // fills vCPU and balloon groups, their figures must match the XML.
    if let Some(n) = gamma.params.get_u64("vcpu.current") {
        assert_eq!(n, 4);
    }
    if let Some(cur) = gamma.params.get_u64("balloon.current") {
        assert_eq!(cur, 524_288);
    }
    // The domains outlive the freed record list and still work.
    assert_eq!(gamma.domain.info().expect("info").nr_virt_cpu, 4);
}

#[test]
fn node_figures() {
    let conn = Connection::open(&four_guests("node")).expect("open");
    let info = conn.node_info().expect("node info");
    assert_eq!(info.cpus, 4);
    assert_eq!(info.model, "kvmsched-test");
    assert_eq!(info.memory_kib, 8_388_608);
    // A custom node has no NUMA cells, so the driver returns 0 free bytes,
    // which is virNodeGetFreeMemory's error value: it must surface as one.
    let err = conn
        .node_free_memory()
        .expect_err("0 is the error sentinel");
    assert_eq!(err.call, "virNodeGetFreeMemory");
    let default = Connection::open_read_only("test:///default").expect("default");
    assert!(default.node_free_memory().expect("free memory") > 0);
    // The test driver implements neither per-CPU nor memory stats in every
    // version; when it does, the figures must be coherent.
    match conn.node_cpu_stats(Some(0)) {
        Ok(s) => assert!(s.total() >= s.busy()),
        Err(e) => assert!(e.is_unsupported(), "{e}"),
    }
    match conn.node_memory_stats() {
        Ok(m) => assert!(m.total.unwrap_or(u64::MAX) >= m.free.unwrap_or(0)),
        Err(e) => assert!(e.is_unsupported(), "{e}"),
    }
    assert!(conn.lib_version().expect("version") >= 8_000_000);
    assert!(conn.is_alive().expect("alive"));
}

#[test]
fn read_only_connection_refuses_changes() {
    let uri = node_uri(
        "readonly",
        2,
        &[Guest {
            name: "ro",
            ..Default::default()
        }],
    );
    let conn = Connection::open_read_only(&uri).expect("open ro");
    assert!(conn.is_read_only());
    let doms = conn.list_all_domains(ListFilter::Active).expect("list");
    let d = &doms[0];
    let map = CpuMap::from_cpus(2, &[1]).expect("map");
    let err = d.pin_vcpu(0, &map).expect_err("read-only pin");
    assert!(err.is_denied(), "{err:?}");
    let err = d.set_memory(600_000).expect_err("read-only setmem");
    assert!(err.is_denied(), "{err:?}");
    assert_eq!(d.info().expect("info").memory_kib, 524_288);
}

#[test]
fn bad_uri_is_an_error_value() {
    let err = Connection::open("nosuchdriver:///nowhere").expect_err("bad uri");
    assert_eq!(err.call, "virConnectOpen");
    assert_eq!(err.target.as_deref(), Some("nosuchdriver:///nowhere"));
    assert!(!err.message.is_empty());
    let err = Connection::open("test:///no/such/file.xml").expect_err("missing file");
    assert!(
        err.to_string()
            .contains("virConnectOpen(test:///no/such/file.xml)"),
        "{err}"
    );
    let err = Connection::open("a\0b").expect_err("NUL");
    assert!(err.message.contains("NUL"));
}

#[test]
fn errors_do_not_leak_into_later_calls() {
    let uri = node_uri(
        "errslot",
        2,
        &[Guest {
            name: "e",
            ..Default::default()
        }],
    );
    let conn = Connection::open(&uri).expect("open");
    let doms = conn.list_all_domains(ListFilter::Active).expect("list");
    assert!(doms[0].set_memory(u64::from(u32::MAX)).is_err());
    // The last error was reset: a later success reports no stale error and
    // a later failure reports its own call.
    assert!(doms[0].info().is_ok());
    let err = doms[0]
        .pin_vcpu(5, &CpuMap::from_cpus(2, &[0]).expect("map"))
        .expect_err("bad vcpu");
    assert_eq!(err.call, "virDomainPinVcpu");
}

#[test]
fn running_domains_have_distinct_ids_and_stopped_ones_none() {
    let conn = Connection::open(&four_guests("ids")).expect("open");
    let all = conn.list_all_domains(ListFilter::All).expect("list");
    let mut ids = Vec::new();
    for d in &all {
        let id = d.id().expect("id");
        if d.name() == "off" {
            assert_eq!(id, None, "a stopped domain has no ID");
        } else {
            ids.push(id.expect("a running domain has an ID"));
        }
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 3, "{ids:?}");
}
