"""The recorded samples (what vcpu.csv, pcpu.csv, mem.csv and host_mem.csv hold) and the series
the criteria, tables and plots derive from them. Times are seconds since the guests started."""
import csv
import os

from .common import mean, pstdev

VCPU_FIELDS = ["t", "guest", "vcpu", "time_ns", "usage_pct", "ran_on", "affinity", "counted_on"]
PCPU_FIELDS = ["t", "pcpu", "load_pct", "host_busy_pct"]
MEM_FIELDS = ["t", "guest", "actual_mib", "unused_mib", "available_mib", "usable_mib", "rss_mib"]
HOST_MEM_FIELDS = ["t", "host_memavailable_mib", "host_free_buf_cache_mib"]
CSV_FILES = (("vcpu.csv", "vcpu_rows", VCPU_FIELDS), ("pcpu.csv", "pcpu_rows", PCPU_FIELDS),
             ("mem.csv", "mem_rows", MEM_FIELDS), ("host_mem.csv", "host_mem", HOST_MEM_FIELDS))
_INT_FIELDS = {"vcpu", "time_ns", "ran_on", "counted_on", "pcpu"}
_TEXT_FIELDS = {"guest", "affinity"}


def affinity_text(pcpus):
    """(0, 1) -> '0+1'; () -> '-' (affinity not read)."""
    return "+".join(str(c) for c in pcpus) if pcpus else "-"


def hard_pinned(affinity):
    """An affinity text names exactly one pCPU."""
    return "+" not in affinity and affinity != "-"


def _typed(row):
    out = {}
    for k, v in row.items():
        if k in _TEXT_FIELDS or v == "":
            out[k] = v
        elif k in _INT_FIELDS:
            out[k] = int(v)
        else:
            out[k] = float(v)
    return out


class Samples:
    """Rows as the sampler records them ('' = not measured in that sample)."""

    def __init__(self, npcpu):
        self.npcpu = npcpu
        self.vcpu_rows, self.pcpu_rows, self.mem_rows, self.host_mem = [], [], [], []
        self.errors = 0  # missed samples

    def write_csv(self, outdir):
        for name, attr, fields in CSV_FILES:
            with open(os.path.join(outdir, name), "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(getattr(self, attr))

    @classmethod
    def load(cls, outdir, npcpu=None):
        """Samples from a run's CSVs (as write_csv wrote them); npcpu from pcpu.csv if not given."""
        rows = {}
        for name, attr, _fields in CSV_FILES:
            path = os.path.join(outdir, name)
            if os.path.exists(path):
                with open(path, newline="") as f:
                    rows[attr] = [_typed(r) for r in csv.DictReader(f)]
            else:
                rows[attr] = []
        if npcpu is None:
            npcpu = 1 + max((r["pcpu"] for r in rows["pcpu_rows"]), default=0)
        samples = cls(npcpu)
        for attr, value in rows.items():
            setattr(samples, attr, value)
        return samples


def pcpu_series(samples, pcpus=None):
    """{t: [load per pCPU]} from the pCPU load rows."""
    by_t = {}
    for r in samples.pcpu_rows:
        by_t.setdefault(r["t"], {})[r["pcpu"]] = r["load_pct"]
    pcs = pcpus if pcpus is not None else list(range(samples.npcpu))
    return {t: [d.get(c, 0.0) for c in pcs] for t, d in sorted(by_t.items())}


def window_loads(series, t1, t2):
    """(mean load per pCPU, per-sample std-devs, sample count) over t1..t2; (None, [], 0) if empty."""
    rows = [v for t, v in series.items() if t1 <= t <= t2]
    if not rows:
        return None, [], 0
    n = len(rows[0])
    means = [mean([r[c] for r in rows]) for c in range(n)]
    return means, [pstdev(r) for r in rows], len(rows)


def balanced_at(series, times, threshold):
    """First t in `times` (sorted) where the 3-sample rolling mean loads ending there have
    std-dev <= threshold; None if never."""
    for j in range(2, len(times)):
        window = [series[t] for t in times[j - 2:j + 1]]
        means = [mean([w[p] for w in window]) for p in range(len(window[0]))]
        if pstdev(means) <= threshold:
            return times[j]
    return None


def guest_usage(samples, t1, t2):
    """{guest: mean over samples of the summed vCPU usage %} over t1..t2."""
    acc = {}
    for r in samples.vcpu_rows:
        if r["usage_pct"] != "" and t1 <= r["t"] <= t2:
            acc.setdefault(r["guest"], {}).setdefault(r["t"], 0.0)
            acc[r["guest"]][r["t"]] += r["usage_pct"]
    return {g: mean(list(d.values())) for g, d in acc.items()}


def affinity_history(samples):
    """{(guest, vcpu): [(t, affinity text)]} in sample order."""
    hist = {}
    for r in samples.vcpu_rows:
        hist.setdefault((r["guest"], r["vcpu"]), []).append((r["t"], r["affinity"]))
    return hist


def read_affinities(hist):
    """A vCPU's history without the samples whose affinity was not read ('-', e.g. the guest
    going away between domstats and vcpuinfo): those are not a pin change."""
    return [(t, a) for t, a in hist if a != "-"]


def pin_changes(samples, after_t):
    """{(guest, vcpu): (count, [t])}: measured affinity changes between samples after after_t."""
    res = {}
    for key, hist in affinity_history(samples).items():
        hist = read_affinities(hist)
        times = [t1 for (_t0, a0), (t1, a1) in zip(hist, hist[1:]) if a1 != a0 and t1 > after_t]
        res[key] = (len(times), times)
    return res


def first_hard_pinned(samples, guest, vcpus, from_t):
    """First sample time >= from_t at which every vCPU of `guest` is hard-pinned; None if never."""
    by_t = {}
    for r in samples.vcpu_rows:
        if r["guest"] == guest and r["t"] >= from_t:
            by_t.setdefault(r["t"], {})[r["vcpu"]] = r["affinity"]
    for t, affinities in sorted(by_t.items()):
        if len(affinities) == vcpus and all(hard_pinned(a) for a in affinities.values()):
            return t
    return None


def affinity_at(samples, t, guests=None):
    """{(guest, vcpu): affinity} in the last sample at or before t, of the guests in `guests`
    (names; all if None). A vCPU absent from that sample is absent from the result."""
    at_or_before = [r["t"] for r in samples.vcpu_rows if r["t"] <= t]
    if not at_or_before:
        return {}
    last = max(at_or_before)
    return {(r["guest"], r["vcpu"]): r["affinity"] for r in samples.vcpu_rows
            if r["t"] == last and (guests is None or r["guest"] in guests)}


def final_affinity(samples):
    """{(guest, vcpu): affinity in that vCPU's last sample} (of every guest ever sampled)."""
    return {k: h[-1][1] for k, h in affinity_history(samples).items() if h}
