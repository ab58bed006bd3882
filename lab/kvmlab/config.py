"""Paths and environment of the lab (one place for each)."""
import os

LAB = os.environ.get("LAB_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.environ.get("REPO_DIR") or os.path.dirname(LAB)
URI = os.environ.get("KVL_URI", "qemu:///system")
STATE = os.environ.get("KVL_STATE", "/run/kvmsched-lab")
PREFIX = "kvl-"
CACHE = os.path.join(LAB, "cache")
OUTROOT = os.path.join(LAB, "out")
SCENARIO_DIR = os.path.join(LAB, "scenarios")
KIB_PER_MIB = 1024

# tcg | kvm | auto (probe-boot a KVM guest); guests.probe_kvm() resolves auto at run time
accel = os.environ.get("KVL_ACCEL", "tcg")


def kvmsched_path():
    """$KVMSCHED (default target/release/kvmsched), relative to the repo root."""
    p = os.environ.get("KVMSCHED", "target/release/kvmsched")
    return p if os.path.isabs(p) else os.path.join(REPO, p)
