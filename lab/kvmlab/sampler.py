"""The sampler thread: every 1 s per-vCPU time/affinity/pCPU and host /proc/stat; every 2nd
sample the balloon stats and host memory. It records into a Samples object."""
import threading
import time

from . import config
from .common import log
from .host import host_free_mib, mem_available_mib, read_proc_stat
from .samples import Samples, affinity_text
from .virsh import VirshShell, host_pcpus, parse_domstats, parse_vcpuinfo


class Sampler(threading.Thread):
    """Samples every running lab guest of `guests` (a list the run may append to)."""

    def __init__(self, guests, t0, mem_every=2):
        super().__init__(daemon=True)
        self.guests, self.t0, self.mem_every = guests, t0, mem_every
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.samples = Samples(host_pcpus())

    @property
    def npcpu(self):
        return self.samples.npcpu

    def run(self):
        shell = VirshShell()
        prev, prev_stat, count = None, None, 0
        next_t = time.monotonic()
        while not self.stop_event.is_set():
            try:
                before = time.monotonic()
                # every running domain (the guest set may change mid-run: destroy / start events)
                out = shell.run("domstats --vcpu --balloon --list-running")
                after = time.monotonic()
                if "error:" in out and "Domain:" not in out:
                    raise RuntimeError(out.strip().splitlines()[-1])
                stats = parse_domstats(out)
                proc_stat = read_proc_stat()
                vcpu_info = {g.name: parse_vcpuinfo(shell.run(f"vcpuinfo {g.name}"))
                             for g in list(self.guests) if g.name in stats}
                t = (before + after) / 2 - self.t0
                self._record(t, stats, vcpu_info, proc_stat, prev, prev_stat, count)
                prev, prev_stat = (t, stats), proc_stat
                count += 1
            except Exception as e:  # a missed sample is recorded as a gap
                self.samples.errors += 1
                if self.samples.errors < 5:
                    log(f"sampler: {e}")
                shell.close()  # a fresh virsh (and connection) next time: libvirtd may have restarted
            next_t += 1.0
            if next_t < time.monotonic() + 0.5:
                # behind after a stall (libvirt did not answer): no catch-up burst of samples
                # a few ms apart (10 ms vCPU-time resolution would make their usage noise)
                next_t = time.monotonic() + 1.0
            self.stop_event.wait(max(0.0, next_t - time.monotonic()))
        shell.close()

    def _record(self, t, stats, vcpu_info, proc_stat, prev, prev_stat, count):
        npcpu = self.samples.npcpu
        loads = [0.0] * npcpu
        have_usage = prev is not None and t - prev[0] >= 0.5
        rows = []
        for g in list(self.guests):
            st = stats.get(g.name, {})
            info = {v["vcpu"]: v for v in vcpu_info.get(g.name, [])}
            for i in range(g.vcpus):
                key = f"vcpu.{i}.time"
                if key not in st:
                    continue
                ns = int(st[key])
                usage = ""
                if have_usage and key in prev[1].get(g.name, {}):
                    prev_ns = int(prev[1][g.name][key])
                    if ns >= prev_ns:  # a restarted guest's vCPU time starts again from 0
                        usage = (ns - prev_ns) / ((t - prev[0]) * 1e9) * 100
                affinity = info.get(i, {}).get("affinity", ())
                ran_on = info.get(i, {}).get("cpu", -1)
                counted_on = affinity[0] if len(affinity) == 1 else ran_on
                if usage != "" and 0 <= counted_on < npcpu:
                    loads[counted_on] += usage
                rows.append({"t": round(t, 3), "guest": g.name, "vcpu": i, "time_ns": ns,
                             "usage_pct": "" if usage == "" else round(usage, 2),
                             "ran_on": ran_on, "affinity": affinity_text(affinity),
                             "counted_on": counted_on})
        with self.lock:
            self.samples.vcpu_rows.extend(rows)
            if have_usage and prev_stat:
                for c in range(npcpu):
                    busy = ""
                    if c in proc_stat and c in prev_stat:
                        total = proc_stat[c][0] - prev_stat[c][0]
                        idle = proc_stat[c][1] - prev_stat[c][1]
                        busy = round(100.0 * (total - idle) / total, 2) if total > 0 else 0.0
                    self.samples.pcpu_rows.append({"t": round(t, 3), "pcpu": c,
                                                   "load_pct": round(loads[c], 2),
                                                   "host_busy_pct": busy})
            if count % self.mem_every == 0:
                self.samples.host_mem.append({"t": round(t, 3),
                                              "host_memavailable_mib": round(mem_available_mib(), 1),
                                              "host_free_buf_cache_mib": round(host_free_mib(), 1)})
                for g in list(self.guests):
                    st = stats.get(g.name, {})

                    def mib(key):
                        return round(int(st[key]) / config.KIB_PER_MIB, 1) if key in st else ""
                    if "balloon.current" in st:
                        self.samples.mem_rows.append({"t": round(t, 3), "guest": g.name,
                                                      "actual_mib": mib("balloon.current"),
                                                      "unused_mib": mib("balloon.unused"),
                                                      "available_mib": mib("balloon.available"),
                                                      "usable_mib": mib("balloon.usable"),
                                                      "rss_mib": mib("balloon.rss")})

    def stop(self):
        self.stop_event.set()
        self.join(timeout=10)

    def write_csv(self, outdir):
        with self.lock:
            self.samples.write_csv(outdir)
