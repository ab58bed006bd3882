//! Generates the libvirt bindings with bindgen and compiles the cpumap shim.

use std::env;
use std::path::PathBuf;

/// Oldest libvirt whose API kvmsched relies on (virDomainSetMemoryStatsPeriod
/// 1.1.1, virConnectGetAllDomainStats 1.2.8, balloon stats in bulk 6.x;
/// 8.0.0 is what Debian 11+ and RHEL 9 ship).
const MIN_LIBVIRT: &str = "8.0.0";

/// Exactly the functions kvmsched calls; README's `## libvirt calls` lists the
/// same names and a test compares them with the binary's undefined symbols.
const FUNCTIONS: &[&str] = &[
    "virInitialize",
    "virSetErrorFunc",
    "virGetLastError",
    "virResetLastError",
    "virConnectOpen",
    "virConnectOpenReadOnly",
    "virConnectClose",
    "virConnectIsAlive",
    "virConnectGetLibVersion",
    "virConnectGetURI",
    "virConnectListAllDomains",
    "virConnectGetAllDomainStats",
    "virDomainStatsRecordListFree",
    "virDomainRef",
    "virDomainFree",
    "virDomainGetName",
    "virDomainGetUUIDString",
    "virDomainGetID",
    "virDomainGetInfo",
    "virDomainGetMaxMemory",
    "virDomainGetVcpus",
    "virDomainPinVcpu",
    "virDomainMemoryStats",
    "virDomainSetMemoryStatsPeriod",
    "virDomainSetMemoryFlags",
    "virNodeGetInfo",
    "virNodeGetCPUMap",
    "virNodeGetCPUStats",
    "virNodeGetMemoryStats",
    "virNodeGetFreeMemory",
];

/// Enumerations and structs the functions above take or return.
const TYPES: &[&str] = &[
    "virError",
    "virErrorNumber",
    "virErrorDomain",
    "virErrorLevel",
    "virDomainInfo",
    "virNodeInfo",
    "virVcpuInfo",
    "virVcpuState",
    "virDomainState",
    "virDomainMemoryStatStruct",
    "virDomainMemoryStatTags",
    "virDomainMemoryModFlags",
    "virDomainModificationImpact",
    "virNodeCPUStats",
    "virNodeMemoryStats",
    "virTypedParameter",
    "virTypedParameterType",
    "virConnectListAllDomainsFlags",
    "virConnectGetAllDomainStatsFlags",
    "virDomainStatsTypes",
    "virDomainStatsRecord",
];

const VARS: &[&str] = &[
    "VIR_UUID_BUFLEN",
    "VIR_UUID_STRING_BUFLEN",
    "VIR_TYPED_PARAM_FIELD_LENGTH",
    "VIR_NODE_CPU_STATS_ALL_CPUS",
    "VIR_NODE_CPU_STATS_FIELD_LENGTH",
    "VIR_NODE_CPU_STATS_KERNEL",
    "VIR_NODE_CPU_STATS_USER",
    "VIR_NODE_CPU_STATS_IDLE",
    "VIR_NODE_CPU_STATS_IOWAIT",
    "VIR_NODE_MEMORY_STATS_ALL_CELLS",
    "VIR_NODE_MEMORY_STATS_FIELD_LENGTH",
    "VIR_NODE_MEMORY_STATS_TOTAL",
    "VIR_NODE_MEMORY_STATS_FREE",
    "VIR_NODE_MEMORY_STATS_BUFFERS",
    "VIR_NODE_MEMORY_STATS_CACHED",
];

const SHIM_FUNCTIONS: &str = "kvmsched_shim_.*";

fn main() {
    for var in [
        "LIBVIRT_NO_PKG_CONFIG",
        "PKG_CONFIG_PATH",
        "PKG_CONFIG_LIBDIR",
        "PKG_CONFIG_SYSROOT_DIR",
        "LIBCLANG_PATH",
        "BINDGEN_EXTRA_CLANG_ARGS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=shim/shim.c");

    let lib = match pkg_config::Config::new()
        .atleast_version(MIN_LIBVIRT)
        .probe("libvirt")
    {
        Ok(lib) => lib,
        Err(err) => {
            eprintln!(
                "error: libvirt >= {MIN_LIBVIRT} not found through pkg-config ({err}).\n\
                 Install the build packages: apt-get install libvirt-dev libclang-dev pkg-config"
            );
            std::process::exit(1);
        }
    };

    let clang_includes: Vec<String> = lib
        .include_paths
        .iter()
        .map(|p| format!("-I{}", p.display()))
        .collect();

    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&clang_includes)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(true)
        .allowlist_recursively(true)
        .allowlist_function(SHIM_FUNCTIONS);
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for v in VARS {
        builder = builder.allowlist_var(v);
    }
    let bindings = match builder.generate() {
        Ok(b) => b,
        Err(err) => {
            eprintln!(
                "error: bindgen could not read libvirt's headers ({err}).\n\
                 Install the build packages: apt-get install libvirt-dev libclang-dev pkg-config"
            );
            std::process::exit(1);
        }
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(err) = bindings.write_to_file(out.join("bindings.rs")) {
        eprintln!("error: cannot write bindings.rs: {err}");
        std::process::exit(1);
    }

    let mut shim = cc::Build::new();
    shim.file("shim/shim.c").warnings(true).extra_warnings(true);
    for p in &lib.include_paths {
        shim.include(p);
    }
    shim.compile("kvmsched_shim");
}
