"""The lab's libvirtd (PID file in $KVL_STATE) and libvirtd's own view of kvmsched's connection."""
import os
import subprocess
import time

from . import config


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def lab_libvirtd_pid():
    """PID of the libvirtd the lab started (its PID file names a live libvirtd), else None."""
    try:
        with open(os.path.join(config.STATE, "libvirtd.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if proc_comm(pid) == "libvirtd" else None


def libvirt_answers():
    try:
        return subprocess.run(["virsh", "-q", "-c", config.URI, "nodeinfo"], capture_output=True,
                              timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def start_libvirtd(timeout=60):
    """Start libvirtd the way lab/lib/setup.sh does (setsid, --pid-file in the state dir, so
    teardown finds it), then wait until it answers. Returns the new PID."""
    pid_file = os.path.join(config.STATE, "libvirtd.pid")
    out_file = os.path.join(config.STATE, "libvirtd.out")
    subprocess.run(["bash", "-c", 'setsid libvirtd --pid-file "$1" >>"$2" 2>&1 </dev/null &', "_",
                    pid_file, out_file], check=True)
    deadline = time.monotonic() + timeout
    pid = None
    while time.monotonic() < deadline:
        pid = pid or lab_libvirtd_pid()
        if pid and libvirt_answers():
            return pid
        time.sleep(0.1)
    raise RuntimeError(f"libvirtd did not come back within {timeout} s (see {out_file})")


def kvmsched_clients(kvmsched_pid):
    """libvirtd's own view (virt-admin) of kvmsched's connections: [(id, readonly)];
    None when virt-admin failed (libvirtd down)."""
    try:
        out = subprocess.run(["virt-admin", "srv-clients-list", "libvirtd"], capture_output=True,
                             text=True, timeout=5).stdout
    except Exception:
        return None
    res = []
    for line in out.splitlines()[2:]:
        if not line.split():
            continue
        client_id = line.split()[0]
        info = subprocess.run(["virt-admin", "client-info", "libvirtd", client_id],
                              capture_output=True, text=True, timeout=5).stdout
        kv = dict((a.strip(), b.strip()) for a, b in
                  (entry.split(":", 1) for entry in info.splitlines() if ":" in entry))
        if kv.get("unix_process_id") == str(kvmsched_pid):
            res.append((client_id, kv.get("readonly")))
    return res
