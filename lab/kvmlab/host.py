"""The host's own figures from /proc (never from kvmsched)."""
import re


def read_proc_stat():
    """{cpu: (total jiffies, idle+iowait jiffies)} from /proc/stat."""
    cpus = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                cpus[int(m.group(1))] = (sum(v[:8]), idle)
    return cpus


def _meminfo():
    v = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, rest = line.split(":", 1)
            v[k] = int(rest.split()[0])
    return v


def host_free_mib():
    """MemFree + Buffers + Cached (MiB): what virNodeGetMemoryStats free+buffers+cached gives."""
    v = _meminfo()
    return (v.get("MemFree", 0) + v.get("Buffers", 0) + v.get("Cached", 0)) / 1024.0


def mem_available_mib():
    v = _meminfo()
    return v["MemAvailable"] / 1024.0 if "MemAvailable" in v else float("nan")
