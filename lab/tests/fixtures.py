"""Small recorded-run builders for the unit tests: CSV text in a temp dir, loaded back with
Samples.load exactly as a run's output directory would be."""
import os
import tempfile

from kvmlab.guests import Guest
from kvmlab.run import EventRecord, RunRecord
from kvmlab.samples import Samples
from kvmlab.scenario import GuestSpec, parse_event

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def write_run(files):
    """{'vcpu.csv': 'header\\nrows...', ...} -> a temp output dir holding those files."""
    outdir = tempfile.mkdtemp(prefix="kvmlab-test-")
    for name, text in files.items():
        with open(os.path.join(outdir, name), "w") as f:
            f.write(text.strip() + "\n")
    return outdir


def vcpu_csv(rows):
    """rows: (t, guest, vcpu, affinity[, usage]) -> vcpu.csv text (counted_on = the pinned pCPU)."""
    lines = ["t,guest,vcpu,time_ns,usage_pct,ran_on,affinity,counted_on"]
    for row in rows:
        t, guest, vcpu, affinity = row[:4]
        usage = row[4] if len(row) > 4 else 50.0
        ran = affinity.split("+")[0] if affinity != "-" else "-1"
        lines.append(f"{t},{guest},{vcpu},{int(t * 1e9)},{usage},{ran},{affinity},{ran}")
    return "\n".join(lines)


def pcpu_csv(loads_by_t):
    """{t: [load per pCPU]} -> pcpu.csv text."""
    lines = ["t,pcpu,load_pct,host_busy_pct"]
    for t, loads in sorted(loads_by_t.items()):
        for c, load in enumerate(loads):
            lines.append(f"{t},{c},{load},{load}")
    return "\n".join(lines)


def mem_csv(rows):
    """rows: (t, guest, actual[, unused[, rss]]) -> mem.csv text."""
    lines = ["t,guest,actual_mib,unused_mib,available_mib,usable_mib,rss_mib"]
    for row in rows:
        t, guest, actual = row[:3]
        unused = row[3] if len(row) > 3 else ""
        rss = row[4] if len(row) > 4 else ""
        lines.append(f"{t},{guest},{actual},{unused},,,{rss}")
    return "\n".join(lines)


def host_mem_csv(times, available=8000.0):
    return "\n".join(["t,host_memavailable_mib,host_free_buf_cache_mib"]
                     + [f"{t},{available},{available}" for t in times])


def load(files, npcpu=2):
    outdir = write_run(files)
    return Samples.load(outdir, npcpu), outdir


def guest(index, outdir, workload="cpu", vcpus=1, memory=256, max_memory=256, started=None, ready=None,
          stats_period=2):
    """A Guest as a run leaves it (started/ready in seconds since the run's t0 = 0)."""
    g = Guest(GuestSpec(index=index, vcpus=vcpus, memory_mib=memory, max_memory_mib=max_memory,
                        workload=workload, pins=(None,) * vcpus, balloon="virtio",
                        stats_period=stats_period), outdir)
    g.started, g.ready = started, ready
    return g


def event(t, text, done_t=None, detail=""):
    """An EventRecord of `text` ('destroy kvl-2') that began at t (s since guests started)."""
    return EventRecord(t=t, event=parse_event(t, text, "test"), detail=detail or text,
                       done_t=t if done_t is None else done_t)


def record(outdir, events=(), initial=()):
    return RunRecord(t0=0.0, outdir=outdir, events=list(events), initial_guests=list(initial))
