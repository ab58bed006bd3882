#!/usr/bin/env python3
"""kvmsched lab runner: guests, independent measurement, criteria, report, SVG plots.

Standard library only. Measurement reads libvirt (through virsh) and /proc, never
kvmsched's own output. See lab/README.md.
"""
import configparser
import csv
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

LAB = os.environ.get("LAB_DIR") or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.environ.get("REPO_DIR") or os.path.dirname(LAB)
URI = os.environ.get("KVL_URI", "qemu:///system")
PREFIX = "kvl-"
CACHE = os.path.join(LAB, "cache")
OUTROOT = os.path.join(LAB, "out")
SCEN_DIR = os.path.join(LAB, "scenarios")
ACCEL = os.environ.get("KVL_ACCEL", "tcg")  # tcg | kvm | auto (probe-boot a KVM guest)
KIB_PER_MIB = 1024


def log(msg):
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


# --------------------------------------------------------------------------- virsh
def virsh(*args, check=True, timeout=60):
    r = subprocess.run(["virsh", "-q", "-c", URI, *args], capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


class VirshShell:
    """One long-lived interactive virsh: ~1 ms per command, so sample timestamps are tight."""

    def __init__(self):
        self.p = None

    def _start(self):
        # (not -q: quiet mode also silences 'echo', which frames each answer)
        self.p = subprocess.Popen(["virsh", "-c", URI], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  bufsize=1)
        self.p.stdin.write("echo @@END\n")
        self.p.stdin.flush()
        while True:
            line = self.p.stdout.readline()
            if not line or line.strip() == "@@END":
                break

    def run(self, cmd):
        if self.p is None or self.p.poll() is not None:
            self._start()
        self.p.stdin.write(cmd + "\necho @@END\n")
        self.p.stdin.flush()
        out = []
        while True:
            line = self.p.stdout.readline()
            if not line:
                self.p = None
                raise RuntimeError("virsh shell ended")
            if line.strip() == "@@END":
                break
            if line.startswith("virsh # "):
                continue
            out.append(line)
        return "".join(out)

    def close(self):
        if self.p and self.p.poll() is None:
            try:
                self.p.stdin.close()
                self.p.wait(timeout=5)
            except Exception:
                self.p.kill()


def host_pcpus():
    for line in virsh("nodeinfo").splitlines():
        if line.startswith("CPU(s):"):
            return int(line.split(":")[1])
    return os.cpu_count()


def parse_domstats(text):
    doms, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"Domain: '(.*)'", line.strip())
        if m:
            cur = doms.setdefault(m.group(1), {})
        elif cur is not None and "=" in line:
            k, v = line.strip().split("=", 1)
            cur[k] = v
    return doms


def parse_vcpuinfo(text):
    res, cur = [], None
    for line in text.splitlines():
        if ":" not in line:
            continue
        k, v = [x.strip() for x in line.split(":", 1)]
        if k == "VCPU":
            cur = {"vcpu": int(v)}
            res.append(cur)
        elif cur is None:
            continue
        elif k == "CPU":
            cur["cpu"] = int(v) if v.lstrip("-").isdigit() else -1
        elif k == "CPU Affinity":
            cur["affinity"] = tuple(i for i, c in enumerate(v) if c == "y")
    return res


def read_proc_stat():
    cpus = {}
    with open("/proc/stat") as f:
        for line in f:
            m = re.match(r"cpu(\d+) (.*)", line)
            if m:
                v = [int(x) for x in m.group(2).split()]
                idle = v[3] + (v[4] if len(v) > 4 else 0)
                cpus[int(m.group(1))] = (sum(v[:8]), idle)
    return cpus


def host_free_mib():
    """MemFree + Buffers + Cached (MiB): what virNodeGetMemoryStats free+buffers+cached gives."""
    v = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, rest = line.split(":", 1)
            v[k] = int(rest.split()[0])
    return (v.get("MemFree", 0) + v.get("Buffers", 0) + v.get("Cached", 0)) / 1024.0


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def affstr(aff):
    return "+".join(str(c) for c in aff) if aff else "-"


# --------------------------------------------------------------------------- guests
class Guest:
    def __init__(self, name, vcpus, mem, maxmem, workload, pins, outdir, balloon="virtio"):
        self.name, self.vcpus, self.mem, self.maxmem = name, vcpus, mem, maxmem
        # balloon = none: the balloon device is there, but the guest kernel refuses to load
        # virtio_balloon (module_blacklist=), so no driver, no stats, and the balloon cannot move
        self.balloon = balloon
        self.workload, self.pins = workload, pins  # pins: list per vCPU of "0" / "0,1" / None
        self.serial = os.path.join(outdir, f"serial-{name}.log")
        self.started = None
        self.ready = None

    @property
    def kind(self):
        w = self.workload
        phases = [t.split(":")[0] for t in w.split(",")]
        if "mem" in phases:
            return "consumer"
        if "duty" in phases:
            return "light"
        if "cpu" in phases:
            return "heavy"
        return "idle"

    def mem_upto(self):
        m = re.search(r"upto=(\w+)", self.workload)
        return (m.group(1) if m else "max") if self.kind == "consumer" else None

    def xml(self):
        pin_xml = "".join(f"<vcpupin vcpu='{i}' cpuset='{p}'/>"
                          for i, p in enumerate(self.pins) if p is not None)
        cputune = f"<cputune>{pin_xml}</cputune>" if pin_xml else ""
        dtype = "kvm" if ACCEL == "kvm" else "qemu"
        cmdline = f"console=ttyS0 quiet panic=-1 wl={self.workload}"
        if self.balloon == "none":
            cmdline += " module_blacklist=virtio_balloon"
        return f"""<domain type='{dtype}'>
  <name>{self.name}</name>
  <memory unit='MiB'>{self.maxmem}</memory>
  <currentMemory unit='MiB'>{self.mem}</currentMemory>
  <vcpu placement='static'>{self.vcpus}</vcpu>
  {cputune}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{CACHE}/vmlinuz</kernel>
    <initrd>{CACHE}/initramfs.gz</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <serial type='file'><source path='{self.serial}'/><target port='0'/></serial>
    <memballoon model='virtio'><stats period='2'/></memballoon>
  </devices>
</domain>
"""


def list_lab_domains():
    out = virsh("list", "--all", "--name", check=False)
    return [d.strip() for d in out.splitlines() if d.strip().startswith(PREFIX)]


def remove_domain(name):
    virsh("destroy", name, check=False)
    virsh("undefine", name, check=False)


def start_guests(guests, outdir):
    for g in guests:
        if os.path.exists(g.serial):
            os.remove(g.serial)
        path = os.path.join(outdir, f"{g.name}.xml")
        with open(path, "w") as f:
            f.write(g.xml())
        virsh("define", path)
    for g in guests:
        virsh("start", g.name)
        g.started = time.monotonic()
        log(f"started {g.name}: {g.vcpus} vCPU, {g.mem}/{g.maxmem} MiB, pins={g.pins}, wl={g.workload}"
            + (" (no balloon driver)" if g.balloon == "none" else ""))


def wait_ready(guests, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for g in guests:
            if g.ready is None and os.path.exists(g.serial):
                with open(g.serial, errors="replace") as f:
                    if "kvl: ready" in f.read():
                        g.ready = time.monotonic()
        if all(g.ready for g in guests):
            return
        time.sleep(0.5)
    missing = [g.name for g in guests if not g.ready]
    raise RuntimeError(f"guests not ready after {timeout} s: {missing} (see their serial logs)")


def oom_kills(guests):
    res = {}
    for g in guests:
        n = 0
        if os.path.exists(g.serial):
            with open(g.serial, errors="replace") as f:
                for line in f:
                    if "Out of memory" in line or "oom-kill" in line or "Killed process" in line:
                        n += 1
        res[g.name] = n
    return res


# --------------------------------------------------------------------------- sampler
class Sampler(threading.Thread):
    """1 s: per-vCPU time/affinity/pCPU + host /proc/stat; every 2nd: balloon stats + MemAvailable."""

    def __init__(self, guests, t0, mem_every=2):
        super().__init__(daemon=True)
        self.guests, self.t0, self.mem_every = guests, t0, mem_every
        self.stop_ev = threading.Event()
        self.vcpu_rows, self.pcpu_rows, self.mem_rows, self.host_mem = [], [], [], []
        self.errors = 0
        self.lock = threading.Lock()
        self.npcpu = host_pcpus()

    def run(self):
        sh = VirshShell()
        prev, prev_stat, k = None, None, 0
        next_t = time.monotonic()
        while not self.stop_ev.is_set():
            try:
                ta = time.monotonic()
                # every running domain (the guest set may change mid-run: destroy / start events)
                out = sh.run("domstats --vcpu --balloon --list-running")
                tb = time.monotonic()
                if "error:" in out and "Domain:" not in out:
                    raise RuntimeError(out.strip().splitlines()[-1])
                ds = parse_domstats(out)
                stat = read_proc_stat()
                vi = {g.name: parse_vcpuinfo(sh.run(f"vcpuinfo {g.name}")) for g in list(self.guests)
                      if g.name in ds}
                t = (ta + tb) / 2 - self.t0
                self._record(t, ds, vi, stat, prev, prev_stat, k)
                prev, prev_stat = (t, ds), stat
                k += 1
            except Exception as e:  # a missed sample is recorded as a gap
                self.errors += 1
                if self.errors < 5:
                    log(f"sampler: {e}")
                sh.close()  # a fresh virsh (and connection) next time: libvirtd may have restarted
                sh.p = None
            next_t += 1.0
            if next_t < time.monotonic() + 0.5:
                # behind after a stall (libvirt did not answer): no catch-up burst of samples
                # a few ms apart (10 ms vCPU-time resolution would make their usage noise)
                next_t = time.monotonic() + 1.0
            self.stop_ev.wait(max(0.0, next_t - time.monotonic()))
        sh.close()

    def _record(self, t, ds, vi, stat, prev, prev_stat, k):
        loads = [0.0] * self.npcpu
        have_usage = prev is not None and t - prev[0] >= 0.5
        rows = []
        for g in list(self.guests):
            st = ds.get(g.name, {})
            info = {v["vcpu"]: v for v in vi.get(g.name, [])}
            for i in range(g.vcpus):
                key = f"vcpu.{i}.time"
                if key not in st:
                    continue
                ns = int(st[key])
                usage = ""
                if have_usage and key in prev[1].get(g.name, {}):
                    usage = (ns - int(prev[1][g.name][key])) / ((t - prev[0]) * 1e9) * 100
                aff = info.get(i, {}).get("affinity", ())
                ran = info.get(i, {}).get("cpu", -1)
                pc = aff[0] if len(aff) == 1 else ran
                if usage != "" and 0 <= pc < self.npcpu:
                    loads[pc] += usage
                rows.append({"t": round(t, 3), "guest": g.name, "vcpu": i, "time_ns": ns,
                             "usage_pct": "" if usage == "" else round(usage, 2),
                             "ran_on": ran, "affinity": affstr(aff), "counted_on": pc})
        with self.lock:
            self.vcpu_rows.extend(rows)
            if have_usage and prev_stat:
                for c in range(self.npcpu):
                    busy = ""
                    if c in stat and c in prev_stat:
                        dt = stat[c][0] - prev_stat[c][0]
                        di = stat[c][1] - prev_stat[c][1]
                        busy = round(100.0 * (dt - di) / dt, 2) if dt > 0 else 0.0
                    self.pcpu_rows.append({"t": round(t, 3), "pcpu": c, "load_pct": round(loads[c], 2),
                                           "host_busy_pct": busy})
            if k % self.mem_every == 0:
                self.host_mem.append({"t": round(t, 3), "host_memavailable_mib": round(mem_available_mib(), 1),
                                      "host_free_buf_cache_mib": round(host_free_mib(), 1)})
                for g in list(self.guests):
                    st = ds.get(g.name, {})
                    def mib(key):
                        return round(int(st[key]) / KIB_PER_MIB, 1) if key in st else ""
                    if "balloon.current" in st:
                        self.mem_rows.append({"t": round(t, 3), "guest": g.name,
                                              "actual_mib": mib("balloon.current"),
                                              "unused_mib": mib("balloon.unused"),
                                              "available_mib": mib("balloon.available"),
                                              "usable_mib": mib("balloon.usable"),
                                              "rss_mib": mib("balloon.rss")})

    def stop(self):
        self.stop_ev.set()
        self.join(timeout=10)

    def write_csv(self, outdir):
        def w(name, rows, fields):
            with open(os.path.join(outdir, name), "w", newline="") as f:
                wr = csv.DictWriter(f, fieldnames=fields)
                wr.writeheader()
                wr.writerows(rows)
        with self.lock:
            w("vcpu.csv", self.vcpu_rows, ["t", "guest", "vcpu", "time_ns", "usage_pct", "ran_on",
                                           "affinity", "counted_on"])
            w("pcpu.csv", self.pcpu_rows, ["t", "pcpu", "load_pct", "host_busy_pct"])
            w("mem.csv", self.mem_rows, ["t", "guest", "actual_mib", "unused_mib", "available_mib",
                                         "usable_mib", "rss_mib"])
            w("host_mem.csv", self.host_mem, ["t", "host_memavailable_mib", "host_free_buf_cache_mib"])


# --------------------------------------------------------------------------- analysis
def pstdev(xs):
    return statistics.pstdev(xs) if len(xs) > 1 else 0.0


def mean(xs):
    xs = [x for x in xs if x is not None and x != ""]
    return sum(xs) / len(xs) if xs else float("nan")


def pcpu_series(s, pcpus=None):
    """{t: [load per pCPU]} from the GT metric rows."""
    by_t = {}
    for r in s.pcpu_rows:
        by_t.setdefault(r["t"], {})[r["pcpu"]] = r["load_pct"]
    pcs = pcpus if pcpus is not None else list(range(s.npcpu))
    return {t: [d.get(c, 0.0) for c in pcs] for t, d in sorted(by_t.items())}


def window_loads(series, t1, t2):
    rows = [v for t, v in series.items() if t1 <= t <= t2]
    if not rows:
        return None, [], 0
    n = len(rows[0])
    means = [mean([r[c] for r in rows]) for c in range(n)]
    return means, [pstdev(r) for r in rows], len(rows)


def guest_usage(s, t1, t2):
    acc = {}
    for r in s.vcpu_rows:
        if r["usage_pct"] != "" and t1 <= r["t"] <= t2:
            acc.setdefault(r["guest"], {}).setdefault(r["t"], 0.0)
            acc[r["guest"]][r["t"]] += r["usage_pct"]
    return {g: mean(list(d.values())) for g, d in acc.items()}


def affinity_history(s):
    hist = {}
    for r in s.vcpu_rows:
        hist.setdefault((r["guest"], r["vcpu"]), []).append((r["t"], r["affinity"]))
    return hist


def pin_changes(s, after_t):
    res = {}
    for key, h in affinity_history(s).items():
        n, times = 0, []
        for (t0, a0), (t1, a1) in zip(h, h[1:]):
            if a1 != a0 and t1 > after_t:
                n += 1
                times.append(t1)
        res[key] = (n, times)
    return res


def final_affinity(s):
    return {k: h[-1][1] for k, h in affinity_history(s).items() if h}


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fmt(x, nd=1):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{nd}f}"


# --------------------------------------------------------------------------- SVG
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def nice_ticks(lo, hi, n=6):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 0.5:
        ticks.append(round(v, 6))
        v += step
    return ticks


def svg_chart(path, title, xlabel, ylabel, series, vlines=(), hlines=(), ymin=None, ymax=None):
    """series: [{label, pts:[(x,y)], color, dash, width}] -> a standalone SVG line chart."""
    W, H, L, R, T, B = 980, 460, 70, 220, 40, 55
    xs = [x for s in series for x, _ in s["pts"]] + [v[0] for v in vlines]
    ys = [y for s in series for _, y in s["pts"] if isinstance(y, (int, float)) and not math.isnan(y)]
    ys += [h[0] for h in hlines]
    if not xs:
        xs, ys = [0, 1], [0, 1]
    x0, x1 = min(xs), max(xs)
    y0 = min(ys) if ymin is None else ymin
    y1 = max(ys) * 1.05 if ymax is None else ymax
    yt = nice_ticks(y0, y1)
    y0, y1 = min(y0, yt[0]), max(y1, yt[-1])
    xt = nice_ticks(x0, x1, 10)
    x0, x1 = min(x0, xt[0]), max(x1, xt[-1])
    pw, ph = W - L - R, H - T - B

    def X(x):
        return L + (x - x0) / ((x1 - x0) or 1) * pw

    def Y(y):
        return T + ph - (y - y0) / ((y1 - y0) or 1) * ph

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L + pw / 2}" y="22" text-anchor="middle" font-size="15" '
         f'font-weight="bold">{esc(title)}</text>']
    for t in yt:
        o.append(f'<line x1="{L}" y1="{Y(t):.1f}" x2="{L + pw}" y2="{Y(t):.1f}" stroke="#e5e5e5"/>')
        o.append(f'<text x="{L - 6}" y="{Y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    for t in xt:
        o.append(f'<line x1="{X(t):.1f}" y1="{T}" x2="{X(t):.1f}" y2="{T + ph}" stroke="#f0f0f0"/>')
        o.append(f'<text x="{X(t):.1f}" y="{T + ph + 16}" text-anchor="middle">{t:g}</text>')
    o.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{L + pw / 2}" y="{H - 12}" text-anchor="middle">{esc(xlabel)}</text>')
    o.append(f'<text x="18" y="{T + ph / 2}" text-anchor="middle" '
             f'transform="rotate(-90 18 {T + ph / 2})">{esc(ylabel)}</text>')
    for y, label, color in hlines:
        o.append(f'<line x1="{L}" y1="{Y(y):.1f}" x2="{L + pw}" y2="{Y(y):.1f}" stroke="{color}" '
                 f'stroke-dasharray="2,3"/>')
        o.append(f'<text x="{L + pw - 4}" y="{Y(y) - 4:.1f}" text-anchor="end" fill="{color}">'
                 f'{esc(label)}</text>')
    last_x, row = -1e9, 0
    for x, label in sorted(vlines):
        o.append(f'<line x1="{X(x):.1f}" y1="{T}" x2="{X(x):.1f}" y2="{T + ph}" stroke="#000" '
                 f'stroke-dasharray="6,4"/>')
        row = row + 1 if X(x) - last_x < 7 * len(label) + 10 else 0  # stagger close labels
        last_x = X(x)
        o.append(f'<text x="{X(x) + 4:.1f}" y="{T + 14 + 15 * row}" fill="#000">{esc(label)}</text>')
    for s in series:
        pts = [(x, y) for x, y in s["pts"] if y is not None and not (isinstance(y, float) and math.isnan(y))]
        if not pts:
            continue
        d = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in pts)
        dash = f' stroke-dasharray="{s["dash"]}"' if s.get("dash") else ""
        o.append(f'<polyline fill="none" stroke="{s["color"]}" stroke-width="{s.get("width", 2)}"'
                 f'{dash} points="{d}"/>')
    ly = T + 8
    for s in series:
        dash = f' stroke-dasharray="{s["dash"]}"' if s.get("dash") else ""
        o.append(f'<line x1="{L + pw + 14}" y1="{ly}" x2="{L + pw + 44}" y2="{ly}" stroke="{s["color"]}"'
                 f' stroke-width="{s.get("width", 2)}"{dash}/>')
        o.append(f'<text x="{L + pw + 50}" y="{ly + 4}">{esc(s["label"])}</text>')
        ly += 18
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")
    return path


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plot_cpu(s, outdir, marks, title):
    series = []
    by_c = {}
    for r in s.pcpu_rows:
        by_c.setdefault(r["pcpu"], []).append(r)
    for c, rows in sorted(by_c.items()):
        col = PALETTE[c % len(PALETTE)]
        series.append({"label": f"pCPU{c} load (sum of vCPUs)", "color": col,
                       "pts": [(r["t"], r["load_pct"]) for r in rows]})
        series.append({"label": f"pCPU{c} host busy /proc/stat", "color": col, "dash": "3,3",
                       "width": 1, "pts": [(r["t"], r["host_busy_pct"] if r["host_busy_pct"] != "" else None)
                                           for r in rows]})
    ser = pcpu_series(s)
    series.append({"label": "std-dev of pCPU loads", "color": "#777", "width": 1.5, "dash": "8,3",
                   "pts": [(t, pstdev(v)) for t, v in ser.items()]})
    return svg_chart(os.path.join(outdir, "pcpu.svg"), title, "time since guests started (s)",
                     "load (% of one pCPU)", series, vlines=marks, hlines=[(5, "std-dev 5", "#777")],
                     ymin=0)


def plot_vcpu(s, outdir, marks, title):
    by_g = {}
    for r in s.vcpu_rows:
        if r["usage_pct"] != "":
            by_g.setdefault(r["guest"], {}).setdefault(r["t"], 0.0)
            by_g[r["guest"]][r["t"]] += r["usage_pct"]
    series = [{"label": g, "color": PALETTE[i % len(PALETTE)], "pts": sorted(d.items())}
              for i, (g, d) in enumerate(sorted(by_g.items()))]
    return svg_chart(os.path.join(outdir, "guests-cpu.svg"), title, "time since guests started (s)",
                     "guest CPU usage (% of one pCPU)", series, vlines=marks, ymin=0)


def plot_mem(s, outdir, marks, title):
    by_g = {}
    for r in s.mem_rows:
        by_g.setdefault(r["guest"], []).append(r)
    series = []
    for i, (g, rows) in enumerate(sorted(by_g.items())):
        col = PALETTE[i % len(PALETTE)]
        series.append({"label": f"{g} actual", "color": col, "pts": [(r["t"], r["actual_mib"]) for r in rows]})
        series.append({"label": f"{g} unused", "color": col, "dash": "5,4", "width": 1.5,
                       "pts": [(r["t"], r["unused_mib"] if r["unused_mib"] != "" else None) for r in rows]})
    return svg_chart(os.path.join(outdir, "memory.svg"), title, "time since guests started (s)",
                     "MiB", series, vlines=marks, hlines=[(100, "100 MiB", "#777")], ymin=0)


# --------------------------------------------------------------------------- scenarios
class Scenario:
    def __init__(self, name):
        self.name = name
        self.path = os.path.join(SCEN_DIR, f"{name}.ini")
        if not os.path.exists(self.path):
            raise SystemExit(f"lab: no scenario {self.path} (try: lab/lab list)")
        cp = configparser.ConfigParser(inline_comment_prefixes=("#",), interpolation=None)
        cp.read(self.path)
        self.cp = cp
        self.kind = cp.get("scenario", "kind")
        self.description = cp.get("scenario", "description", fallback="")
        self.g = cp["guests"]
        self.k = cp["kvmsched"]
        self.c = cp["criteria"] if cp.has_section("criteria") else {}
        self.tm = cp["timing"]

    def timing(self, short):
        p = "short_" if short else ""
        return (self.tm.getfloat(p + "before", fallback=self.tm.getfloat("before")),
                self.tm.getfloat(p + "after", fallback=self.tm.getfloat("after")))

    def guests(self, outdir, npcpu, short):
        cnt = self.g.get("count").strip()
        # "2x" = two guests per host pCPU (scales the CPU scenarios to the host)
        n = int(cnt[:-1]) * npcpu if cnt.endswith("x") else int(cnt)
        return [self.guest(i, n, outdir, npcpu, short) for i in range(1, n + 1)]

    def guest(self, i, n, outdir, npcpu, short):
        """Guest kvl-i from [guests] (also for guests started later by a start-guest event)."""
        parity = "odd" if i % 2 else "even"

        def get(key, fb=None):
            keys = (f"{key}.{i}", f"{key}.{parity}", key)
            if short:
                keys = tuple("short_" + k for k in keys) + keys
            for k in keys:
                if k in self.g:
                    return self.g[k]
            return fb
        vcpus = int(get("vcpus", "1"))
        pins = pin_spec(get("pin", "none"), i, n, vcpus, npcpu)
        return Guest(f"{PREFIX}{i}", vcpus, int(get("memory_mib", "256")),
                     int(get("max_memory_mib", get("memory_mib", "256"))), get("workload", "idle"),
                     pins, outdir, balloon=get("balloon", "virtio").strip())

    def events(self):
        """[events]: 'at S = action args; action args' (S = seconds after kvmsched start)."""
        if not self.cp.has_section("events"):
            return []
        ev = []
        for k, val in self.cp["events"].items():
            m = re.fullmatch(r"at\s+([0-9.]+)", k.strip())
            if not m:
                raise SystemExit(f"lab: {self.path}: [events] key '{k}' is not 'at <seconds>'")
            for a in val.split(";"):
                if a.strip():
                    ev.append((float(m.group(1)), a.split()))
        for _, a in ev:
            if a[0] not in EVENT_ACTIONS:
                raise SystemExit(f"lab: {self.path}: unknown event action '{a[0]}' "
                                 f"(known: {', '.join(EVENT_ACTIONS)})")
        return sorted(ev, key=lambda e: e[0])


def pin_spec(spec, i, n, vcpus, npcpu):
    """none | all:<cpus> | spread (guest i -> pCPU (i-1) mod P) | <cpus> (every vCPU of this guest)
    | a;b;c (per vCPU). <cpus> is a libvirt cpuset ('0', '0-1', '0,1')."""
    spec = spec.strip()
    if spec == "none":
        return [None] * vcpus
    if spec == "spread":
        return [str((i - 1) % npcpu)] * vcpus
    if spec.startswith("all:"):
        return [spec[4:]] * vcpus
    if ";" in spec:
        parts = spec.split(";")
        return [parts[v % len(parts)] for v in range(vcpus)]
    return [spec] * vcpus


def kvmsched_path():
    p = os.environ.get("KVMSCHED", "target/release/kvmsched")
    return p if os.path.isabs(p) else os.path.join(REPO, p)


def kvmsched_pending(sub):
    exe = kvmsched_path()
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return f"kvmsched binary {exe} missing"
    try:
        r = subprocess.run([exe, sub, "--help"], capture_output=True, text=True, timeout=20)
    except Exception as e:
        return f"'{exe} {sub} --help' failed: {e}"
    if r.returncode != 0:
        return f"'{exe} {sub} --help' exits {r.returncode} (subcommand not implemented yet)"
    return None


def prepare_outdir(name):
    d = os.path.join(OUTROOT, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        fp = os.path.join(d, f)
        if os.path.isfile(fp):
            os.remove(fp)
    return d


def check_env():
    try:
        virsh("version")
    except Exception as e:
        raise SystemExit(f"lab: libvirt not reachable on {URI} ({e}); run lab/lab setup")
    for f in ("vmlinuz", "initramfs.gz"):
        if not os.path.exists(os.path.join(CACHE, f)):
            raise SystemExit(f"lab: {CACHE}/{f} missing; run lab/lab image")
    probe_kvm()


def probe_kvm():
    """KVL_ACCEL=auto: use KVM only if a KVM guest boots to 'kvl: ready' within 45 s."""
    global ACCEL
    if ACCEL != "auto":
        return
    ACCEL = "tcg"
    if not os.path.exists("/dev/kvm"):
        log("accel probe: no /dev/kvm, using TCG")
        return
    d = os.path.join(OUTROOT, "kvm-probe")
    os.makedirs(d, exist_ok=True)
    g = Guest(f"{PREFIX}probe", 1, 256, 256, "idle", [None], d)
    if os.path.exists(g.serial):
        os.remove(g.serial)
    xml = g.xml().replace("<domain type='qemu'>", "<domain type='kvm'>")
    path = os.path.join(d, "probe.xml")
    with open(path, "w") as f:
        f.write(xml)
    try:
        virsh("create", path)
        g.started = time.monotonic()
        wait_ready([g], timeout=45)
        ACCEL = "kvm"
        log(f"accel probe: KVM guest booted in {g.ready - g.started:.1f} s, using KVM")
    except Exception as e:
        log(f"accel probe: KVM guest did not boot ({str(e)[:120]}), using TCG")
    finally:
        virsh("destroy", g.name, check=False)


def cleanup_stale():
    for d in list_lab_domains():
        log(f"removing leftover guest {d}")
        remove_domain(d)


# --------------------------------------------------------------------------- faults
STATE = os.environ.get("KVL_STATE", "/run/kvmsched-lab")
EVENT_ACTIONS = ("kill-libvirtd", "start-libvirtd", "destroy", "start-guest", "pin-all", "vcpupin")


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def lab_libvirtd_pid():
    """PID of the libvirtd the lab started (its PID file names a live libvirtd), else None."""
    try:
        with open(os.path.join(STATE, "libvirtd.pid")) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return pid if proc_comm(pid) == "libvirtd" else None


def libvirt_answers():
    try:
        return subprocess.run(["virsh", "-q", "-c", URI, "nodeinfo"], capture_output=True,
                              timeout=5).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def start_libvirtd(timeout=60):
    """Start libvirtd the way lab/lib/setup.sh does (setsid, --pid-file in the state dir, so
    teardown finds it), then wait until it answers. Returns the new PID."""
    pidf = os.path.join(STATE, "libvirtd.pid")
    outf = os.path.join(STATE, "libvirtd.out")
    subprocess.run(["bash", "-c", 'setsid libvirtd --pid-file "$1" >>"$2" 2>&1 </dev/null &', "_", pidf, outf],
                   check=True)
    deadline = time.monotonic() + timeout
    pid = None
    while time.monotonic() < deadline:
        pid = pid or lab_libvirtd_pid()
        if pid and libvirt_answers():
            return pid
        time.sleep(0.1)
    raise RuntimeError(f"libvirtd did not come back within {timeout} s (see {outf})")


def kvmsched_clients(kpid):
    """libvirtd's own view (virt-admin) of kvmsched's connections: [(id, readonly)]."""
    try:
        out = subprocess.run(["virt-admin", "srv-clients-list", "libvirtd"], capture_output=True,
                             text=True, timeout=5).stdout
    except Exception:
        return None
    res = []
    for line in out.splitlines()[2:]:
        if not line.split():
            continue
        cid = line.split()[0]
        info = subprocess.run(["virt-admin", "client-info", "libvirtd", cid], capture_output=True,
                              text=True, timeout=5).stdout
        kv = dict((a.strip(), b.strip()) for a, b in (l.split(":", 1) for l in info.splitlines() if ":" in l))
        if kv.get("unix_process_id") == str(kpid):
            res.append((cid, kv.get("readonly")))
    return res


PROM_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?$")
PROM_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')


def prom_validate(text):
    """Prometheus text exposition 0.0.4: every sample 'name{labels} value [ts]' with a float value,
    every family with # HELP and # TYPE before its samples. Returns (errors, {sample name: [values]})."""
    errs, helps, types, seen, samples = [], set(), {}, set(), {}
    if not text.endswith("\n"):
        errs.append("body does not end with a newline")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "HELP":
                if parts[2] in seen:
                    errs.append(f"line {n}: HELP for {parts[2]} after its samples")
                helps.add(parts[2])
            elif len(parts) >= 4 and parts[1] == "TYPE":
                if parts[3] not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    errs.append(f"line {n}: bad TYPE {parts[3]!r}")
                if parts[2] in seen:
                    errs.append(f"line {n}: TYPE for {parts[2]} after its samples")
                types[parts[2]] = parts[3]
            continue
        m = PROM_SAMPLE.match(line)
        if not m:
            errs.append(f"line {n}: not 'name{{labels}} value': {line[:80]!r}")
            continue
        name, labels, val = m.group(1), m.group(2), m.group(3)
        if labels:
            pos, lab = 0, labels
            while pos < len(lab):
                lm = PROM_LABEL.match(lab, pos)
                if not lm or lm.end() == pos:
                    errs.append(f"line {n}: bad labels {{{labels}}}")
                    break
                pos = lm.end()
        try:
            fv = float(val)
        except ValueError:
            errs.append(f"line {n}: value {val!r} is not a float")
            continue
        fam = name
        if fam not in types:
            for suf in ("_bucket", "_sum", "_count", "_total", "_created"):
                if name.endswith(suf) and name[:-len(suf)] in types:
                    fam = name[:-len(suf)]
                    break
        if fam not in types or fam not in helps:
            errs.append(f"line {n}: sample {name} without # HELP and # TYPE before it")
        seen.add(fam)
        samples.setdefault(name, []).append(fv)
    return errs, samples


class Watcher(threading.Thread):
    """While kvmsched runs: libvirtd's view of its connection (virt-admin, 1 s) and, with
    --metrics, a scrape of http://ADDR/metrics every few seconds (python urllib)."""

    def __init__(self, run, kpid, metrics_addr, scrape_every=3.0):
        super().__init__(daemon=True)
        self.run_, self.kpid, self.addr, self.every = run, kpid, metrics_addr, scrape_every
        self.stop_ev = threading.Event()
        self.clients = []   # (t, [(id, readonly)]) ; None = virt-admin failed (libvirtd down)
        self.scrapes = []   # (t, ok, errors, pins_total or None, n_samples)
        self.connected = []  # (t, kvmsched_connected value) per successful scrape

    def scrape(self):
        import urllib.request
        t = self.run_.now()
        try:
            with urllib.request.urlopen(f"http://{self.addr}/metrics", timeout=3) as r:
                body = r.read().decode("utf-8", "replace")
                ctype = r.headers.get("Content-Type", "")
        except Exception as e:
            self.scrapes.append((t, False, [f"scrape failed: {e}"], None, 0))
            return
        errs, samples = prom_validate(body)
        if "text/plain" not in ctype:
            errs.append(f"Content-Type {ctype!r}")
        pins = sum(samples["kvmsched_pins_total"]) if "kvmsched_pins_total" in samples else None
        self.scrapes.append((t, not errs, errs, pins, sum(len(v) for v in samples.values())))
        self.connected.append((t, samples.get("kvmsched_connected", [None])[0]))
        if not os.path.exists(os.path.join(self.run_.outdir, "metrics-first.txt")):
            with open(os.path.join(self.run_.outdir, "metrics-first.txt"), "w") as f:
                f.write(body)
        with open(os.path.join(self.run_.outdir, "metrics-last.txt"), "w") as f:
            f.write(body)

    def run(self):
        next_scrape = time.monotonic() + 1.5
        while not self.stop_ev.is_set():
            t = self.run_.now()
            self.clients.append((t, kvmsched_clients(self.kpid)))
            if self.addr and time.monotonic() >= next_scrape:
                self.scrape()
                next_scrape += self.every
            self.stop_ev.wait(1.0)

    def stop(self):
        self.stop_ev.set()
        self.join(timeout=15)


class Run:
    """Guests + sampler + optional kvmsched process, torn down on any exit."""

    def __init__(self, name, guests, outdir):
        self.name, self.guests, self.outdir = name, guests, outdir
        self.t0 = time.monotonic()
        self.sampler = None
        self.kproc = None
        self.klog = None
        self.k_exit = None
        self.marks = []
        self.watcher = None
        self.ev_log = []            # (t, action, detail)
        self.libvirtd_down = False  # killed by an event and not (yet) restarted
        self.all_guests = list(guests)

    def __enter__(self):
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGHUP, _on_signal)
        try:
            cleanup_stale()
            self.t0 = time.monotonic()
            start_guests(self.guests, self.outdir)
            self.sampler = Sampler(self.guests, self.t0)
            self.sampler.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def now(self):
        return time.monotonic() - self.t0

    def mark(self, label):
        self.marks.append((round(self.now(), 2), label))

    def start_kvmsched(self, sub, interval, args, gopts=(), metrics=None, watch=False):
        exe = kvmsched_path()
        if sub == "run":  # both loops; the scenario's interval for each
            cmd = [exe, "-c", URI, *gopts, sub, "--vcpu-interval", str(interval),
                   "--memory-interval", str(interval)] + args
        else:
            cmd = [exe, "-c", URI, *gopts, sub, str(interval)] + args
        self.klog = open(os.path.join(self.outdir, "kvmsched.log"), "w")
        self.klog.write("# " + " ".join(cmd) + "\n")
        self.klog.flush()
        self.kproc = subprocess.Popen(cmd, stdout=self.klog, stderr=subprocess.STDOUT, cwd=REPO,
                                      stdin=subprocess.DEVNULL)
        self.mark("kvmsched start")
        log(f"kvmsched pid {self.kproc.pid}: {' '.join(cmd)}")
        self.kcmd = cmd
        if watch or metrics:
            self.watcher = Watcher(self, self.kproc.pid, metrics)
            self.watcher.start()

    # ---- [events]
    def event(self, a, sc, npcpu, short):
        act = a[0]
        t = self.now()
        detail = ""
        if act == "kill-libvirtd":
            pid = lab_libvirtd_pid()
            if pid is None:
                raise RuntimeError("kill-libvirtd: no lab-started libvirtd")
            os.kill(pid, signal.SIGTERM)
            self.libvirtd_down = True
            self.mark("libvirtd SIGTERM")
            end = time.monotonic() + 15
            while proc_comm(pid) == "libvirtd" and time.monotonic() < end:
                time.sleep(0.05)
            how = "exited"
            if proc_comm(pid) == "libvirtd":
                os.kill(pid, signal.SIGKILL)
                how = "did not exit within 15 s of SIGTERM: SIGKILL"
            detail = f"pid {pid} {how} after {self.now() - t:.2f} s"
            self.killed_pid = pid
        elif act == "start-libvirtd":
            pid = start_libvirtd()
            self.libvirtd_down = False
            self.mark("libvirtd back")
            detail = f"new pid {pid}, answering after {self.now() - t:.2f} s"
            self.new_libvirtd_pid = pid
        elif act == "destroy":
            virsh("destroy", a[1])
            self.mark(f"destroy {a[1]}")
            detail = a[1]
        elif act == "start-guest":
            i = int(a[1][len(PREFIX):])
            g = sc.guest(i, i, self.outdir, npcpu, short)
            start_guests([g], self.outdir)
            self.all_guests.append(g)
            self.sampler.guests.append(g)
            self.mark(f"start {g.name}")
            detail = f"{g.name} wl={g.workload} pins={g.pins}"
        elif act == "pin-all":
            # one virsh invocation ('cmd; cmd; ...') so the re-seed is near-atomic for kvmsched
            running = virsh("list", "--name").split()
            last = final_affinity(self.sampler)
            cmds, moved = [], []
            for g in self.all_guests:
                if g.name in running:
                    for i in range(g.vcpus):
                        cmds.append(f"vcpupin {g.name} {i} {a[1]} --live")
                        if last.get((g.name, i)) != a[1].replace(",", "+"):
                            moved.append(f"{g.name}/{i} (was {last.get((g.name, i))})")
            virsh("; ".join(cmds))
            self.mark(f"pin-all {a[1]}")
            detail = f"moved to {a[1]}: {', '.join(moved) or 'none (all there)'}"
        elif act == "vcpupin":
            virsh("vcpupin", a[1], a[2], a[3], "--live")
            self.mark(f"vcpupin {a[1]}")
            detail = " ".join(a[1:])
        self.ev_log.append((t, act, detail, self.now()))
        log(f"event at t={t:.1f}: {' '.join(a)} — {detail}")

    def check_ready(self):
        for g in self.all_guests:
            if g.ready is None and g.started and os.path.exists(g.serial):
                with open(g.serial, errors="replace") as f:
                    if "kvl: ready" in f.read():
                        g.ready = time.monotonic()
                        if g not in self.guests:
                            self.mark(f"{g.name} ready")
                            log(f"{g.name} ready ({g.ready - g.started:.1f} s after start)")

    def run_events(self, events, k_t, after, sc, npcpu, short):
        """Events at their time after kvmsched start (sequential: a blocking event such as
        start-libvirtd delays the ones after it), then run until k_t + after."""
        for at, a in events:
            self.sleep(k_t + at - self.now())
            self.event(a, sc, npcpu, short)
        self.sleep(k_t + after - self.now())

    def stop_kvmsched(self):
        if self.kproc is None:
            return
        if self.kproc.poll() is None:
            os.kill(self.kproc.pid, signal.SIGTERM)
            try:
                self.kproc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.kproc.pid, signal.SIGKILL)
                self.kproc.wait()
            log(f"kvmsched pid {self.kproc.pid} stopped (SIGTERM), exit {self.kproc.returncode}")
        else:
            self.k_exit = self.kproc.returncode
            log(f"kvmsched exited early with code {self.k_exit}")
        self.klog.close()

    def sleep(self, secs):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            self.check_ready()
            if self.kproc is not None and self.kproc.poll() is not None and self.k_exit is None:
                self.k_exit = self.kproc.returncode
                log(f"kvmsched exited early with code {self.k_exit} (see kvmsched.log)")
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))

    def __exit__(self, et, ev, tb):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            self.stop_kvmsched()
        except Exception as e:
            log(f"stopping kvmsched: {e}")
        if self.watcher:
            self.watcher.stop()
        if self.libvirtd_down:  # killed by an event, not restarted (failure/interrupt): guests still run
            try:
                log(f"restarting libvirtd for teardown (pid {start_libvirtd()})")
                self.libvirtd_down = False
            except Exception as e:
                log(f"could not restart libvirtd: {e}; run lab/lab setup && lab/lab teardown")
        if self.sampler:
            self.sampler.stop()
            self.sampler.write_csv(self.outdir)
        for g in self.all_guests:
            remove_domain(g.name)
        log(f"guests removed: {', '.join(g.name for g in self.all_guests)}")
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return False


# --------------------------------------------------------------------------- criteria
class Verdict:
    def __init__(self):
        self.rows = []

    def add(self, name, ok, figure, threshold):
        self.rows.append((name, bool(ok), figure, threshold))

    @property
    def ok(self):
        return all(r[1] for r in self.rows)

    def md(self):
        out = ["| criterion | result | measured | threshold |", "|---|---|---|---|"]
        for n, ok, fig, th in self.rows:
            out.append(f"| {n} | {'PASS' if ok else 'FAIL'} | {fig} | {th} |")
        return "\n".join(out)


def eval_cpu(sc, s, guests, k_t, end_t, interval, excused=()):
    c, v = sc.c, Verdict()
    ser = pcpu_series(s)
    judge_sd = c.get("stddev_max", "5").strip() != "off"  # off: balance not expected (dry run)
    thr = float(c.get("stddev_max", 5)) if judge_sd else 5.0
    settle_n = c.get("settle_within_intervals")
    settle_deadline = k_t + (float(settle_n) if settle_n else 3) * interval
    # settle time: first moment after kvmsched start where the 3-sample rolling mean loads are balanced
    ts = [t for t in ser if t >= k_t]
    settle_t = None
    for j in range(len(ts)):
        win = [ser[t] for t in ts[max(0, j - 2):j + 1]]
        if len(win) < 3:
            continue
        m = [mean([w[p] for w in win]) for p in range(len(win[0]))]
        if pstdev(m) <= thr:
            settle_t = ts[j]
            break
    steady_from = settle_deadline + 2
    if "steady_window_s" in c:  # events disturb the balance mid-run: judge the last N s
        steady_from = max(steady_from, end_t - float(c["steady_window_s"]))
    means, sds, n = window_loads(ser, steady_from, end_t)
    info = {"settle_t": settle_t, "steady_from": steady_from, "steady_means": means,
            "steady_sample_sd": sds}
    if settle_n:
        slack = 2.0  # 3-sample smoothing at 1 s
        dl = settle_deadline + slack
        v.add(f"balanced (std-dev ≤ {thr:g}) within {settle_n} intervals of kvmsched start",
              settle_t is not None and settle_t <= dl,
              "never" if settle_t is None else f"after {settle_t - k_t:.1f} s",
              f"≤ {float(settle_n) * interval:g} s (+{slack:g} s smoothing)")
    if means is None:
        v.add("steady-state window measured", False, "no samples", f"from t={steady_from:.0f}")
    elif not judge_sd:
        v.rows.append((f"(info) std-dev of mean pCPU loads (t ≥ {steady_from - k_t:.0f} s after start)", True,
                       f"{pstdev(means):.2f} pp (loads {', '.join(fmt(x) for x in means)})",
                       "informational (stddev_max = off)"))
    else:
        sd = pstdev(means)
        v.add(f"steady std-dev of mean pCPU loads (t ≥ {steady_from - k_t:.0f} s after start)",
              sd <= thr, f"{sd:.2f} pp (loads {', '.join(fmt(x) for x in means)}; per-sample "
              f"median {fmt(statistics.median(sds), 2)}, p90 {fmt(percentile(sds, 90), 2)}; {n} samples)",
              f"≤ {thr:g}")
    st_t = sorted(t for t in ser if t >= k_t - 1)
    gaps = [(b - a, a) for a, b in zip(st_t, st_t[1:])] + [(end_t - st_t[-1], st_t[-1])] if st_t else []
    # a gap overlapping a window where the lab itself took libvirtd away is expected
    gaps = [(g, a) for g, a in gaps if not any(a <= w1 and a + g >= w0 for w0, w1 in excused)]
    worst_gap = max(gaps, default=(0.0, k_t))
    max_gap = float(c.get("max_sample_gap_s", 5))
    v.add("measurement continuous (libvirt answered the 1 s sampler)"
          + (" outside the libvirtd outage" if excused else ""), worst_gap[0] <= max_gap,
          f"longest gap {worst_gap[0]:.1f} s at t={worst_gap[1]:.0f}"
          + (" — libvirt/QEMU monitor stalled; under TCG see lab/README.md 'Known limits'"
             if worst_gap[0] > max_gap else ""), f"≤ {max_gap:g} s")
    pcs = pin_changes(s, k_t)
    info["pin_changes_total"] = (sum(n for n, _ in pcs.values()), pin_detail(pcs))
    if "pin_changes_max" in c:
        tot = sum(n for n, _ in pcs.values())
        v.add("pin changes after kvmsched start", tot <= int(c["pin_changes_max"]),
              f"{tot} ({pin_detail(pcs)})", f"≤ {c['pin_changes_max']}")
    if "pin_changes_after_settle_max" in c:
        # "No re-pinning once balanced": a pin change after the first balance counts as churn
        # unless the lab itself measured an imbalance just before it: std-dev of the mean loads
        # over the 2 intervals before it (kvmsched's confirmation) above the threshold. Each
        # loop reacts to what it measured; the loads move without pin changes too (host
        # activity, guest threads), and following them is not churn.
        ref = settle_t if settle_t is not None else end_t
        win = 2 * interval + 1
        churn, answered = {}, []
        for k, (_, ts_) in pcs.items():
            for t in (t for t in ts_ if t > ref):
                m, _sds, _n = window_loads(ser, t - win, t - 0.5)
                sd_before = pstdev(m) if m else 0.0
                if sd_before > thr:
                    answered.append(f"{k[0]}/vcpu{k[1]} at t={t:.0f} (std-dev {sd_before:.1f} before)")
                else:
                    churn.setdefault(k, (0, []))
                    churn[k] = (churn[k][0] + 1, churn[k][1] + [t])
        tot = sum(n for n, _ in churn.values())
        v.add("pin changes after balanced while the measured loads were balanced (churn)",
              settle_t is not None and tot <= int(c["pin_changes_after_settle_max"]),
              f"{tot} ({pin_detail(churn)})" if settle_t is not None else "never balanced",
              f"≤ {c['pin_changes_after_settle_max']}")
        v.rows.append(("(info) pin changes after balanced that answered a measured imbalance "
                       f"(std-dev > {thr:g} over the {win:g} s before)", True,
                       f"{len(answered)}" + (": " + "; ".join(answered[:4]) if answered else ""),
                       "informational"))
    fin = final_affinity(s)
    if c.get("hard_pinned", "no") == "yes":
        loose = [f"{g}/{i}={a}" for (g, i), a in sorted(fin.items()) if "+" in a or a == "-"]
        v.add("every vCPU hard-pinned (affinity = one pCPU) at end", not loose,
              "all" if not loose else "not: " + ", ".join(loose), "all vCPUs")
    if c.get("heavy_light_per_pcpu", "no") == "yes":
        kinds = {g.name: g.kind for g in guests}
        per = {}
        for (g, _i), a in fin.items():
            if "+" not in a and a != "-":
                per.setdefault(int(a), []).append(kinds[g])
        ok = True
        for kind in ("heavy", "light"):
            tot = sum(1 for g in guests for _ in range(g.vcpus) if g.kind == kind)
            lo, hi = tot // s.npcpu, -(-tot // s.npcpu)
            cnt = [per.get(p, []).count(kind) for p in range(s.npcpu)]
            ok = ok and all(lo <= x <= hi for x in cnt)
        desc = "; ".join(f"pCPU{p}: {'+'.join(sorted(per.get(p, []))) or '-'}" for p in range(s.npcpu))
        v.add("heavy and light vCPUs spread evenly over pCPUs", ok, desc, "one heavy + one light per pCPU")
    return v, info


def pin_detail(pcs):
    parts = [f"{g}/vcpu{i}: {n} at t={','.join(f'{t:.0f}' for t in ts)}"
             for (g, i), (n, ts) in sorted(pcs.items()) if n]
    return "; ".join(parts) if parts else "none"


def eval_reserve(sc, s, guests, k_t, hf, reserve, v):
    """With a reserve that bites: while the host's free+buffers+cached (the figure kvmsched uses)
    is below the reserve, kvmsched may grow a guest only with memory it takes back from donors in
    the same period (its guarantee: host free - grants + releases >= reserve). So the sum of all
    guests' balloon sizes must not rise. A grant and the release that funds it can land in
    neighbouring 2 s samples (inflating is slower than deflating), so a rise is judged over the
    window up to the next sample. Guests touching memory they already have also lowers host free,
    so growth of rss alone is reported, not judged."""
    tol = float(sc.c.get("reserve_tolerance_mib", 128))
    hfree = {r["t"]: r["host_free_buf_cache_mib"] for r in s.host_mem}
    tot = {}
    for r in s.mem_rows:
        tot.setdefault(r["t"], {})[r["guest"]] = r["actual_mib"]
    ts = [t for t in sorted(tot) if len(tot[t]) == len(guests)]
    funded = []
    bad = []
    total = {t: sum(tot[t].values()) for t in ts}
    for i in range(len(ts) - 1):
        t0, t1 = ts[i], ts[i + 1]
        if t1 < k_t + 3 or hfree.get(t0, 1e12) >= reserve - tol:
            continue
        grow = {g: tot[t1][g] - tot[t0][g] for g in tot[t0] if tot[t1][g] - tot[t0][g] > 8}
        if not grow:
            continue
        # The funding release may land one sample before or after the grant.
        spans = [(ts[max(i - 1, 0)], t1), (t0, t1), (t0, ts[min(i + 2, len(ts) - 1)])]
        net = min((total[b] - total[a], a, b) for a, b in spans)
        what = ", ".join(f"{g} +{d:.0f}" for g, d in sorted(grow.items()))
        line = f"t={t1:.0f}: {what} MiB, all guests net {net[0]:+.0f} over t={net[1]:.0f}..{net[2]:.0f}, " \
               f"host free {hfree[t0]:.0f}"
        (bad if net[0] > 8 else funded).append(line)
    v.add(f"no net growth of guests while host free+buffers+cached < reserve {reserve} MiB (-{tol:g})",
          not bad, "; ".join(bad[:4]) + (f" … ({len(bad)})" if len(bad) > 4 else "") if bad else "none",
          "Σ actual not up by > 8 MiB")
    v.rows.append(("(info) grants below reserve funded by donors' releases", True,
                   f"{len(funded)}" + (": " + "; ".join(funded[:3]) + (" …" if len(funded) > 3 else "")
                                       if funded else ""), "informational"))
    by_t = {}
    for r in s.mem_rows:
        if r["rss_mib"] != "":
            by_t.setdefault(r["t"], {})[r["guest"]] = r["rss_mib"]
    full = [(t, sum(d.values())) for t, d in sorted(by_t.items()) if len(d) == len(guests) and t >= k_t]
    hmin = min((r["host_free_buf_cache_mib"] for r in s.host_mem if r["t"] >= k_t), default=float("nan"))
    if full:
        v.rows.append(("(info) guests' host memory and host free vs reserve", True,
                       f"Σ rss {full[0][1]:.0f} → peak {max(x for _, x in full):.0f} MiB (headroom at start "
                       f"{hf - reserve:.0f}); host free+buffers+cached min {hmin:.0f} MiB", "informational"))


def eval_mem(sc, s, guests, k_t, end_t):
    c, v = sc.c, Verdict()
    by_g = {}
    for r in s.mem_rows:
        by_g.setdefault(r["guest"], []).append(r)
    info = {}
    for g in guests:
        rows = by_g.get(g.name, [])
        act = [(r["t"], r["actual_mib"]) for r in rows]
        after = [a for t, a in act if t >= k_t]
        at_start = next((a for t, a in act if t >= k_t), float("nan"))
        drops = [(a0 - a1, t1) for (t0, a0), (t1, a1) in zip(act, act[1:]) if t1 >= k_t]
        maxdrop = max(drops, default=(0.0, None))
        unused_after = [r["unused_mib"] for r in rows if r["t"] >= k_t and r["unused_mib"] != ""]
        info[g.name] = {"start": at_start, "peak": max(after, default=float("nan")),
                        "end": after[-1] if after else float("nan"), "maxdrop": maxdrop,
                        "min_unused": min(unused_after, default=float("nan")),
                        "end_unused": unused_after[-1] if unused_after else float("nan")}
    within = float(c.get("consumer_reach_max_within_mib", 100))
    for g in guests:
        i = info[g.name]
        if "consumer_reach_max_within_mib" not in c and "early_reach_mib" not in c:
            break
        if g.kind == "consumer" and g.mem_upto() == "max":
            if "consumer_reach_max_within_mib" not in c:
                continue
            v.add(f"{g.name} (consumer to max) reaches within {within:g} MiB of max {g.maxmem}",
                  i["peak"] >= g.maxmem - within, f"peak actual {fmt(i['peak'])} MiB",
                  f"≥ {g.maxmem - within:g}")
        elif g.kind == "consumer" and "early_reach_mib" in c:
            need = float(c["early_reach_mib"])
            v.add(f"{g.name} (consumer to {g.mem_upto()} MiB) gets what it asks", i["peak"] >= need,
                  f"peak actual {fmt(i['peak'])} MiB", f"≥ {need:g}")
    if "released_fraction_min" in c:
        frac = float(c["released_fraction_min"])
        for g in guests:
            if g.kind != "consumer":
                continue
            i = info[g.name]
            gained = i["peak"] - i["start"]
            back = i["peak"] - i["end"]
            ok = back >= frac * gained if gained >= 64 else True  # nothing granted: nothing to give back
            v.add(f"{g.name} memory given back after free", ok,
                  f"gave back {fmt(back)} MiB (peak {fmt(i['peak'])} → end {fmt(i['end'])}; "
                  f"gained {fmt(gained)} from {fmt(i['start'])})",
                  f"≥ {frac:.0%} of gained")
    if "max_drop_mib" in c:
        th = float(c["max_drop_mib"])
        worst = max(((i["maxdrop"][0], n, i["maxdrop"][1]) for n, i in info.items()), default=(0, "", None))
        v.add("gradual: largest drop of actual between 2 s samples", worst[0] <= th,
              f"{fmt(worst[0])} MiB ({worst[1]} at t={fmt(worst[2], 0)})", f"≤ {th:g} MiB")
    if "idle_unused_min_mib" in c:
        th = float(c["idle_unused_min_mib"])
        for g in guests:
            if g.kind == "idle":
                mu = info[g.name]["min_unused"]
                v.add(f"{g.name} (idle) keeps unused memory", not math.isnan(mu) and mu >= th,
                      f"min unused {fmt(mu)} MiB", f"≥ {th:g} MiB")
    ooms = oom_kills(guests)
    v.add("guest OOM kills (serial logs)", sum(ooms.values()) <= int(c.get("oom_kills_max", 0)),
          ", ".join(f"{k}: {n}" for k, n in ooms.items()), f"≤ {c.get('oom_kills_max', 0)}")
    th = float(c.get("host_available_min_mib", 200))
    hm = min((r["host_memavailable_mib"] for r in s.host_mem), default=float("nan"))
    v.add("host MemAvailable never below reserve", hm >= th, f"min {fmt(hm, 0)} MiB", f"≥ {th:g} MiB")
    return v, info


def fault_windows(run):
    """[(killed_t, back_t + 3)]: where the lab itself took libvirtd away."""
    res, down = [], None
    for t, act, _d, t_end in run.ev_log:
        if act == "kill-libvirtd":
            down = t
        elif act == "start-libvirtd" and down is not None:
            res.append((down, t_end + 3))
            down = None
    if down is not None:
        res.append((down, 1e9))
    return res


def guest_list(spec, guests):
    spec = spec.strip()
    return [g.name for g in guests] if spec == "all" else [x.strip() for x in spec.split(",") if x.strip()]


def eval_faults(sc, s, run, guests, k_t, end_t, interval, v):
    """Criteria for [events], dry-run, metrics, no-balloon guests. Returns report notes."""
    c, notes = sc.c, []
    ser = pcpu_series(s)
    thr = float(c.get("stddev_max", 5)) if c.get("stddev_max", "5").strip() != "off" else 5.0
    hist = affinity_history(s)
    w = run.watcher
    ev = run.ev_log
    # ---- libvirtd killed and restarted
    kill = next((e for e in ev if e[1] == "kill-libvirtd"), None)
    back = next((e for e in ev if e[1] == "start-libvirtd"), None)
    if kill:
        v.add("libvirtd killed (SIGTERM, by the lab's PID file) and restarted", back is not None,
              f"{kill[2]}; {back[2] if back else 'not restarted'}", "killed, back")
    if kill and back:
        back_t = back[3]
        n = float(c.get("reconnect_within_intervals", 2))
        rc = None
        if w:
            rc = next((t for t, cl in w.clients if t >= back_t and cl), None)
        v.add(f"kvmsched reconnected within {n:g} intervals of libvirtd back (virt-admin: a client "
              f"with kvmsched's PID)", rc is not None and rc - back_t <= n * interval + 1,
              "never seen" if rc is None else f"connection seen {rc - back_t:.1f} s after libvirtd answered "
              f"(virt-admin polled every ~1 s)", f"≤ {n * interval:g} s (+1 s polling)")
        seed = next((e for e in ev if e[1] == "pin-all" and e[0] >= back[0]), None)
        if seed and "rebalance_within_intervals" in c:
            target = next(a for _t, a in sc.events() if a[0] == "pin-all")[1].replace(",", "+")
            seed_end = seed[3]
            firsts = []
            for key, h in hist.items():
                for (t0, a0), (t1, a1) in zip(h, h[1:]):
                    # kvmsched's, not the re-seed's: after the kill, and before the re-seed began
                    # or to another pCPU than the re-seed's
                    if t1 > kill[0] and a1 != a0 and (t1 < seed[0] or a1 != target):
                        firsts.append((t1, f"{key[0]}/vcpu{key[1]} {a0}→{a1}"))
                        break
            first = min(firsts, default=None)
            ts = [t for t in ser if t > seed_end]
            bal = None
            for j in range(2, len(ts)):
                m = [mean([ser[t][p] for t in ts[j - 2:j + 1]]) for p in range(s.npcpu)]
                if pstdev(m) <= thr:
                    bal = ts[j]
                    break
            n2 = float(c["rebalance_within_intervals"])
            v.add(f"re-seeded imbalance (all on pCPU{target}) rebalanced within {n2:g} intervals of "
                  f"libvirtd back", bal is not None and bal - back_t <= n2 * interval + 2,
                  "never" if bal is None else f"balanced {bal - back_t:.1f} s after libvirtd back "
                  f"({bal - seed_end:.1f} s after the re-seed)", f"≤ {n2 * interval:g} s (+2 s smoothing)")
            if first:
                notes.append(f"reconnect time (first pin change by kvmsched after the outage, measured): "
                             f"{first[0] - back[0]:.1f} s after libvirtd was launched, {first[0] - back_t:+.1f} s "
                             f"after virsh got an answer ({first[1]} at t={first[0]:.1f}; libvirtd launched "
                             f"t={back[0]:.1f}, answering t={back_t:.1f}, re-seed t={seed[0]:.1f}–{seed_end:.1f})")
            else:
                notes.append("reconnect time: no pin change by kvmsched after the re-seed")
    # ---- guests started mid-run
    if "adopt_within_intervals" in c:
        n = float(c["adopt_within_intervals"])
        for t, act, detail, t_end in ev:
            if act != "start-guest":
                continue
            g = next(x for x in guests if x.name == detail.split()[0])
            ready_t = g.ready - run.t0 if g.ready else None
            start_t = g.started - run.t0
            pinned_t = None
            byt = {}
            for r in s.vcpu_rows:
                if r["guest"] == g.name:
                    byt.setdefault(r["t"], {})[r["vcpu"]] = r["affinity"]
            for tt, d in sorted(byt.items()):
                if len(d) == g.vcpus and all("+" not in a and a != "-" for a in d.values()):
                    pinned_t = tt
                    break
            if ready_t is None:
                v.add(f"{g.name} (started mid-run) hard-pinned within {n:g} intervals of ready", False,
                      "guest never ready", "ready")
                continue
            fig = ("never hard-pinned" if pinned_t is None else
                   f"hard-pinned at t={pinned_t:.1f}: {(pinned_t - ready_t) / interval:+.2f} intervals "
                   f"({pinned_t - ready_t:+.1f} s) after ready, {(pinned_t - start_t) / interval:.2f} intervals "
                   f"({pinned_t - start_t:.1f} s) after virsh start (ready {ready_t - start_t:.1f} s after start)")
            v.add(f"{g.name} (started mid-run) hard-pinned within {n:g} intervals of ready",
                  pinned_t is not None and pinned_t <= ready_t + n * interval + 1, fig,
                  f"≤ {n * interval:g} s after ready (+1 s sampling)")
            if pinned_t is not None:
                notes.append(f"intervals to adopt {g.name}: {(pinned_t - ready_t) / interval:+.2f} after ready, "
                             f"{(pinned_t - start_t) / interval:.2f} after virsh start")
    # ---- memory: unchanged / shrunk / no change at all
    act = {}
    for r in s.mem_rows:
        act.setdefault(r["guest"], []).append((r["t"], r["actual_mib"]))
    if "actual_unchanged" in c:
        for name in guest_list(c["actual_unchanged"], guests):
            rows = [a for t, a in act.get(name, []) if t >= k_t - 2.5]
            dev = max((abs(a - rows[0]) for a in rows), default=None)
            v.add(f"{name} balloon actual never changes", rows and dev <= 1,
                  f"{fmt(rows[0] if rows else None)} MiB, max deviation {fmt(dev)} MiB over {len(rows)} samples",
                  "± 1 MiB")
    if "shrunk_min_mib" in c:
        for part in c["shrunk_min_mib"].split(","):
            name, mib = part.split(":")
            rows = [a for t, a in act.get(name.strip(), []) if t >= k_t - 2.5]
            d = rows[0] - rows[-1] if rows else None
            v.add(f"{name.strip()} shrunk by kvmsched", d is not None and d >= float(mib),
                  f"{fmt(rows[0] if rows else None)} → {fmt(rows[-1] if rows else None)} MiB "
                  f"(−{fmt(d)})", f"≥ {mib} MiB")
    if "actual_changes_max" in c:
        ch = []
        for name, rows in sorted(act.items()):
            for (t0, a0), (t1, a1) in zip(rows, rows[1:]):
                if t1 >= k_t and abs(a1 - a0) > 1:
                    ch.append(f"{name} {a0:.0f}→{a1:.0f} at t={t1:.0f}")
        nsamp = sum(1 for rows in act.values() for t, _ in rows if t >= k_t)
        v.add("balloon actual changes after kvmsched start (all guests)", len(ch) <= int(c["actual_changes_max"]),
              f"{len(ch)} ({'; '.join(ch[:4]) or 'none'}; {nsamp} samples)", f"≤ {c['actual_changes_max']}")
    # ---- setup check for balloon = none guests
    nob = [g for g in guests if g.balloon == "none"]
    if nob:
        has_unused = {g.name: any(r["guest"] == g.name and r["unused_mib"] != "" for r in s.mem_rows)
                      for g in guests}
        ok = all(not has_unused[g.name] for g in nob) and all(has_unused[g.name] for g in guests
                                                               if g.balloon != "none")
        v.add("setup: no balloon stats (unused) from the no-driver guest, stats from the others", ok,
              ", ".join(f"{k}: {'unused reported' if x else 'no unused'}" for k, x in has_unused.items()),
              "as configured")
    # ---- read-only connection (libvirtd's own view)
    if c.get("readonly_connection", "no") == "yes":
        seen = [cl for _t, cl in (w.clients if w else []) if cl]
        ro = sorted({r for cl in seen for _i, r in cl})
        v.add("kvmsched's libvirt connection is read-only (virt-admin client-info)",
              seen and ro == ["yes"], f"readonly={','.join(ro) or 'n/a'} in {len(seen)} polls", "readonly: yes")
    # ---- metrics
    if w and w.addr:
        sc_ = w.scrapes
        good = [x for x in sc_ if x[1]]
        bad = [x for x in sc_ if not x[1]]
        v.add(f"metrics http://{w.addr}/metrics parses as Prometheus text on every scrape",
              len(sc_) >= 3 and not bad,
              f"{len(good)}/{len(sc_)} scrapes valid, {good[-1][4] if good else 0} samples"
              + (f"; t={bad[0][0]:.0f}: {'; '.join(bad[0][2][:3])}" if bad else ""), "≥ 3 scrapes, all valid")
        pins = [(t, p) for t, ok, _e, p, _n in sc_ if p is not None]
        v.add("metrics: kvmsched_pins_total grows", len(pins) >= 2 and pins[-1][1] > pins[0][1],
              f"{fmt(pins[0][1], 0)} at t={pins[0][0]:.0f} → {fmt(pins[-1][1], 0)} at t={pins[-1][0]:.0f}"
              if pins else "no kvmsched_pins_total sample", "last > first")
        if kill and back:
            out = [x for x in sc_ if kill[0] <= x[0] <= back[3]]
            conn = [f"{val:g} at t={t:.0f}" for t, val in w.connected if val is not None and kill[0] - 4 <= t <= back[3] + 8]
            notes.append(f"metrics scrapes while libvirtd was down (t={kill[0]:.0f}–{back[3]:.0f}): {len(out)}, "
                         f"{sum(1 for x in out if x[1])} answered"
                         + "".join(f" ({'; '.join(x[2][:1])} at t={x[0]:.0f})" for x in out if not x[1])
                         + f"; kvmsched_connected around the outage: {', '.join(conn) or 'no value'}")
    # ---- what a dry run says it would do (kvmsched's own output: information only)
    if sc.k.get("dry_run", "no").strip() == "yes":
        try:
            with open(os.path.join(run.outdir, "kvmsched.log"), errors="replace") as f:
                lines = [l.rstrip() for l in f if not l.startswith("#")]
        except OSError:
            lines = []
        would = [l for l in lines if re.search(r"would|dry", l, re.I)]
        v.rows.append(("(info) kvmsched output says what it would do", True,
                       f"{len(would)} of {len(lines)} lines mention would/dry-run"
                       + (f"; e.g. `{would[min(1, len(would) - 1)][:160]}`" if would else ""),
                       "informational (kvmsched's own log)"))
    return notes


# --------------------------------------------------------------------------- commands
def run_scenario(name, short=False, quiet_pending=False):
    sc = Scenario(name)
    outdir = prepare_outdir(name)
    sub = sc.k.get("subcommand")
    interval = sc.k.getfloat("interval")
    args = sc.k.get("args", "").split()
    report = os.path.join(outdir, "report.md")
    pend = kvmsched_pending(sub)
    if pend:
        with open(report, "w") as f:
            f.write(f"# {name}: PENDING\n\n{sc.description}\n\n{pend}\n")
        log(f"{name}: PENDING — {pend}")
        return {"name": name, "status": "PENDING", "report": report, "plots": [], "why": pend}
    check_env()
    events = sc.events()
    if any(a[0] == "kill-libvirtd" for _, a in events) and lab_libvirtd_pid() is None:
        why = (f"libvirtd was not started by the lab (no live libvirtd in {STATE}/libvirtd.pid): "
               "the lab does not kill a daemon it does not own")
        with open(report, "w") as f:
            f.write(f"# {name}: SKIPPED\n\n{sc.description}\n\n{why}\n")
        log(f"{name}: SKIPPED — {why}")
        return {"name": name, "status": "SKIPPED", "report": report, "plots": [], "why": why}
    gopts = []
    if sc.k.get("dry_run", "no").strip() == "yes":
        gopts.append("--dry-run")
    metrics = sc.k.get("metrics", "").strip() or None
    if metrics:
        gopts += ["--metrics", metrics]
    before, after = sc.timing(short)
    npcpu = host_pcpus()
    guests = sc.guests(outdir, npcpu, short)
    t_start = time.time()
    log(f"{name}{' (short)' if short else ''}: {sc.description}")
    with Run(name, guests, outdir) as run:
        wait_ready(guests)
        boot = max(g.ready - g.started for g in guests)
        log(f"all {len(guests)} guests ready; slowest boot {boot:.1f} s")
        run.mark("guests ready")
        run.sleep(before)
        # {host_free_mib} / {host_free_mib-N}: host free+buffers+cached now (minus N), e.g. to set a
        # --host-reserve high enough to bite on a big host
        hf = host_free_mib()
        reserve = None
        for j, a in enumerate(args):
            m = re.fullmatch(r"\{host_free_mib(?:-(\d+))?\}", a)
            if m:
                args[j] = str(int(hf - int(m.group(1) or 0)))
                reserve = int(args[j])
        run.start_kvmsched(sub, interval if interval != int(interval) else int(interval), args,
                           gopts, metrics, watch=(sub == "run"))
        k_t = run.now()
        run.run_events(events, k_t, after, sc, npcpu, short)
        end_t = run.now()
        k_exit = run.k_exit
    s = run.sampler
    guests = run.all_guests
    excused = fault_windows(run)
    if sc.kind == "cpu":
        v, info = eval_cpu(sc, s, guests, k_t, end_t, interval, excused)
    else:
        v, info = eval_mem(sc, s, guests, k_t, end_t)
        if reserve is not None:
            eval_reserve(sc, s, guests, k_t, hf, reserve, v)
    fault_notes = eval_faults(sc, s, run, guests, k_t, end_t, interval, v)
    if k_exit is not None:
        v.add("kvmsched keeps running until stopped", False, f"exited with {k_exit}", "runs until SIGTERM")
    if s.errors:
        log(f"sampler missed {s.errors} samples")
    title = f"{name}{' (short)' if short else ''}"
    plots = []
    if sc.kind == "cpu":
        plots.append(plot_cpu(s, outdir, run.marks, f"{title}: pCPU load (GT metric), 1 s samples"))
        plots.append(plot_vcpu(s, outdir, run.marks, f"{title}: CPU usage per guest"))
        table = cpu_table(s, guests, (k_t - before + 2, k_t), (max(k_t, end_t - min(20, after / 2)), end_t))
        if sub == "run":  # the memory loop runs too
            plots.append(plot_mem(s, outdir, run.marks, f"{title}: guest actual (solid) / unused (dashed)"))
    else:
        plots.append(plot_mem(s, outdir, run.marks, f"{title}: guest actual (solid) / unused (dashed)"))
        table = mem_table(s, guests, info, k_t)
    status = "PASS" if v.ok else "FAIL"
    dur = time.time() - t_start
    with open(report, "w") as f:
        f.write(f"# {name}{' (short)' if short else ''}: {status}\n\n{sc.description}\n\n")
        f.write(f"- kvmsched: `{' '.join(run.kcmd)}` "
                f"started at t={k_t:.1f} s, stopped at t={end_t:.1f} s\n")
        f.write(f"- guests: {len(guests)}, slowest boot to workload {boot:.1f} s; "
                f"accel {ACCEL}; run took {dur:.0f} s; sampler gaps {s.errors}\n")
        if sc.kind == "cpu":
            f.write(f"- pin changes after kvmsched start (measured): {info['pin_changes_total'][0]} "
                    f"({info['pin_changes_total'][1]})\n")
        if run.ev_log:
            f.write("- events (t = s since guests started; kvmsched started at "
                    f"t={k_t:.1f}):\n")
            for t, act, detail, t_end in run.ev_log:
                f.write(f"  - t={t:.1f} (kvmsched +{t - k_t:.1f} s) `{act}`: {detail}\n")
        for n_ in fault_notes:
            f.write(f"- {n_}\n")
        f.write("\n")
        f.write("## Criteria\n\n" + v.md() + "\n\n## Before / after\n\n" + table + "\n\n## Plots\n\n")
        f.write("\n".join(f"- ![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots) + "\n\n")
        f.write("Samples: vcpu.csv, pcpu.csv (1 s), mem.csv, host_mem.csv (2 s); kvmsched output: "
                "kvmsched.log; guest consoles: serial-*.log\n")
    notes = list(fault_notes)
    if sc.kind == "cpu":
        notes.append(f"pin changes after kvmsched start: {info['pin_changes_total'][0]} "
                     f"({info['pin_changes_total'][1]})")
    return outcome(name, status, dur, boot, v, table, report, plots, notes)


def outcome(name, status, dur, boot, v, table, report, plots, notes=()):
    """Prints one run's verdict (notes, criteria, figures, where the report and plots are) and
    returns it for the summary, failed criteria included."""
    print(f"\n== {name}: {status} ({dur:.0f} s, slowest boot {boot:.1f} s)")
    for n_ in notes:
        print(f"   {n_}")
    for n, ok, fig, th in v.rows:
        print(f"   [{'PASS' if ok else 'FAIL'}] {n}: {fig} (need {th})")
    print(table)
    print(f"   report: {report}")
    for p in plots:
        print(f"   plot:   {p}")
    return {"name": name, "status": status, "report": report, "plots": plots, "boot": boot,
            "duration": dur, "table": table,
            "fails": [f"{n}: {fig} (need {th})" for n, ok, fig, th in v.rows if not ok]}


def cpu_table(s, guests, bw, aw):
    ser = pcpu_series(s)
    bm, bsd, _ = window_loads(ser, *bw)
    am, asd, _ = window_loads(ser, *aw)
    bu, au = guest_usage(s, *bw), guest_usage(s, *aw)
    hist = affinity_history(s)

    def aff_at(g, t):
        out = []
        for i in range(g.vcpus):
            h = [a for tt, a in hist.get((g.name, i), []) if tt <= t]
            out.append(h[-1] if h else "?")
        return ",".join(out) if len(set(out)) > 1 else out[0]
    lines = [f"| (mean over window) | before t={bw[0]:.0f}–{bw[1]:.0f} s | after t={aw[0]:.0f}–{aw[1]:.0f} s |",
             "|---|---|---|"]
    for c in range(s.npcpu):
        lines.append(f"| pCPU{c} load % | {fmt(bm[c] if bm else None)} | {fmt(am[c] if am else None)} |")
    lines.append(f"| std-dev of mean loads (pp) | {fmt(pstdev(bm) if bm else None, 2)} | "
                 f"{fmt(pstdev(am) if am else None, 2)} |")
    lines.append(f"| median per-sample std-dev | {fmt(statistics.median(bsd) if bsd else None, 2)} | "
                 f"{fmt(statistics.median(asd) if asd else None, 2)} |")
    for g in guests:
        lines.append(f"| {g.name} ({g.kind}) usage % / affinity | {fmt(bu.get(g.name))} / {aff_at(g, bw[1])} | "
                     f"{fmt(au.get(g.name))} / {aff_at(g, aw[1])} |")
    return "\n".join(lines)


def mem_table(s, guests, info, k_t):
    lines = ["| guest | kind | actual at kvmsched start | peak actual | end actual | min unused after start | "
             "end unused | largest drop/2 s |", "|---|---|---|---|---|---|---|---|"]
    for g in guests:
        i = info[g.name]
        lines.append(f"| {g.name} | {g.kind} | {fmt(i['start'])} | {fmt(i['peak'])} | {fmt(i['end'])} | "
                     f"{fmt(i['min_unused'])} | {fmt(i['end_unused'])} | {fmt(i['maxdrop'][0])} |")
    hm = [r["host_memavailable_mib"] for r in s.host_mem]
    lines.append(f"\nhost MemAvailable: min {fmt(min(hm, default=None), 0)} MiB, "
                 f"at start {fmt(hm[0] if hm else None, 0)} MiB (all MiB)")
    return "\n".join(lines)


def selftest():
    """Prove the measurement with manual moves, no kvmsched."""
    check_env()
    outdir = prepare_outdir("selftest")
    npcpu = host_pcpus()
    if npcpu < 2:
        raise SystemExit("selftest needs ≥ 2 host CPUs")
    guests = [Guest(f"{PREFIX}{i}", 1, 256, 512, "cpu", ["0"], outdir) for i in range(1, 5)]
    v = Verdict()
    t_start = time.time()
    log("selftest: 4 guests x 1 busy vCPU, all pinned to pCPU0")
    with Run("selftest", guests, outdir) as run:
        wait_ready(guests)
        boot = max(g.ready - g.started for g in guests)
        log(f"guests ready; slowest boot {boot:.1f} s")
        run.mark("ready")
        run.sleep(6)
        a0 = run.now()
        run.sleep(12)
        a1 = run.now()
        for g in guests[2:]:
            virsh("vcpupin", g.name, "0", "1", "--live")
        log(f"moved {guests[2].name}, {guests[3].name} to pCPU1 with virsh vcpupin --live")
        run.mark("vcpupin x2")
        move_t = run.now()
        run.sleep(4)
        b0 = run.now()
        run.sleep(12)
        b1 = run.now()
        # memory: wait for balloon stats, then setmem --live
        g = guests[0]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                r["guest"] == g.name and r["unused_mib"] != "" for r in run.sampler.mem_rows):
            time.sleep(1)
        target = 192
        virsh("setmem", g.name, f"{target}M", "--live")
        run.mark(f"setmem {target}M")
        set_t = run.now()
        log(f"virsh setmem {g.name} {target}M --live")
        run.sleep(12)
    s = run.sampler
    pcs2 = [0, 1]
    ser = pcpu_series(s, pcs2)
    am, asd, an = window_loads(ser, a0, a1)
    bm, bsd, bn = window_loads(ser, b0, b1)
    au, bu = guest_usage(s, a0, a1), guest_usage(s, b0, b1)
    hb = {}
    for r in s.pcpu_rows:
        if r["host_busy_pct"] != "":
            hb.setdefault((r["pcpu"], "a" if a0 <= r["t"] <= a1 else "b" if b0 <= r["t"] <= b1 else ""),
                          []).append(r["host_busy_pct"])
    for gg in guests:
        u = au.get(gg.name, float("nan"))
        v.add(f"all on pCPU0: {gg.name} usage ≈ 25 %", abs(u - 25) <= 8, f"{fmt(u)} %", "25 ± 8")
    v.add("all on pCPU0: pCPU0 load ≈ 100", am and am[0] >= 85, f"{fmt(am[0] if am else None)} %", "≥ 85")
    v.add("all on pCPU0: pCPU1 load ≈ 0", am and am[1] <= 5, f"{fmt(am[1] if am else None)} %", "≤ 5")
    v.add("all on pCPU0: std-dev ≈ 50", am and pstdev(am) >= 40, f"{fmt(pstdev(am) if am else None, 2)} pp", "≥ 40")
    for gg in guests:
        u = bu.get(gg.name, float("nan"))
        v.add(f"after 2 moves: {gg.name} usage ≈ 50 %", abs(u - 50) <= 12, f"{fmt(u)} %", "50 ± 12")
    v.add("after 2 moves: std-dev near 0", bm and pstdev(bm) <= 8,
          f"{fmt(pstdev(bm) if bm else None, 2)} pp (loads {', '.join(fmt(x) for x in bm or [])}; "
          f"per-sample median {fmt(statistics.median(bsd) if bsd else None, 2)})", "≤ 8")
    for c in pcs2:
        hbv = mean(hb.get((c, "b"), []))
        v.add(f"after 2 moves: host /proc/stat cpu{c} busy", hbv >= 80, f"{fmt(hbv)} %", "≥ 80")
    pcs = pin_changes(s, move_t - 1.5)
    want = {(gg.name, 0): (1 if gg in guests[2:] else 0) for gg in guests}
    got = {k: pcs.get(k, (0, []))[0] for k in want}
    v.add("pin changes counted from affinity samples", got == want,
          ", ".join(f"{k[0]}: {n}" for k, n in sorted(got.items())), "1 for each moved vCPU, 0 otherwise")
    mrows = [r for r in s.mem_rows if r["guest"] == guests[0].name]
    before_set = [r["actual_mib"] for r in mrows if r["t"] < set_t]
    after_set = [r for r in mrows if r["t"] >= set_t]
    hit = next((r["t"] - set_t for r in after_set if abs(r["actual_mib"] - target) <= 4), None)
    v.add(f"setmem --live {target}M shows in measured actual", hit is not None and hit <= 10,
          f"{fmt(before_set[-1] if before_set else None)} → {fmt(after_set[-1]['actual_mib'] if after_set else None)}"
          f" MiB, within {fmt(hit)} s" if hit is not None else "not seen", f"{target} ± 4 MiB within 10 s")
    has_unused = {gg.name: any(r["guest"] == gg.name and r["unused_mib"] != "" for r in s.mem_rows)
                  for gg in guests}
    v.add("balloon stats (unused/available) measured for every guest", all(has_unused.values()),
          ", ".join(f"{k}: {'yes' if x else 'no'}" for k, x in has_unused.items()), "all")
    plots = [plot_cpu(s, outdir, run.marks, "selftest: pCPU load, manual vcpupin (no kvmsched)"),
             plot_vcpu(s, outdir, run.marks, "selftest: CPU usage per guest"),
             plot_mem(s, outdir, run.marks, "selftest: guest memory, manual setmem")]
    status = "PASS" if v.ok else "FAIL"
    dur = time.time() - t_start
    table = "\n".join([
        "| (mean) | all on pCPU0 | after moving 2 to pCPU1 |", "|---|---|---|",
        *[f"| pCPU{c} load % | {fmt(am[c] if am else None)} | {fmt(bm[c] if bm else None)} |" for c in pcs2],
        *[f"| host cpu{c} busy % | {fmt(mean(hb.get((c, 'a'), [])))} | {fmt(mean(hb.get((c, 'b'), [])))} |"
          for c in pcs2],
        f"| std-dev (pp) | {fmt(pstdev(am) if am else None, 2)} | {fmt(pstdev(bm) if bm else None, 2)} |",
        *[f"| {gg.name} usage % | {fmt(au.get(gg.name))} | {fmt(bu.get(gg.name))} |" for gg in guests]])
    with open(os.path.join(outdir, "report.md"), "w") as f:
        f.write(f"# selftest: {status}\n\nMeasurement proof without kvmsched: 4 guests × 1 busy vCPU "
                f"pinned to pCPU0, then 2 moved by `virsh vcpupin --live`, then `virsh setmem --live`.\n\n"
                f"- slowest boot to workload {boot:.1f} s; run took {dur:.0f} s; accel {ACCEL}; "
                f"sampler gaps {s.errors}\n\n## Criteria\n\n{v.md()}\n\n## Figures\n\n{table}\n\n## Plots\n\n")
        f.write("\n".join(f"- ![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots) + "\n")
    return outcome("selftest", status, dur, boot, v, table, os.path.join(outdir, "report.md"), plots)


def scenario_names():
    return sorted(f[:-4] for f in os.listdir(SCEN_DIR) if f.endswith(".ini"))


def summary(results):
    print("\n== lab summary")
    for r in results:
        extra = f" ({r['duration']:.0f} s)" if "duration" in r else f" — {r.get('why', '')}"
        print(f"   {r['status']:8s} {r['name']}{extra}")
        for f in r.get("fails", []):
            print(f"            failed: {f}")
        print(f"            report: {r['report']}")
        for p in r.get("plots", []):
            print(f"            plot:   {p}")
    return 1 if any(r["status"] == "FAIL" for r in results) else 0


def take_lock():
    """One lab run at a time per machine: a second run would tear down the first one's guests."""
    import fcntl
    d = os.environ.get("KVL_STATE", "/run/kvmsched-lab")
    os.makedirs(d, exist_ok=True)
    f = open(os.path.join(d, "run.lock"), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        raise SystemExit(f"lab: another lab run holds {f.name} ({f.read().strip()}); wait for it")
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}\n")
    f.flush()
    return f


def main(argv):
    if not argv:
        raise SystemExit("usage: labrun.py run NAME [--short] | selftest | demo | all | list")
    cmd, rest = argv[0], argv[1:]
    short = "--short" in rest
    rest = [a for a in rest if a != "--short"]
    _lock = take_lock() if cmd in ("run", "selftest", "demo", "all") else None  # noqa: F841
    try:
        if cmd == "list":
            for n in scenario_names():
                print(n, "-", Scenario(n).description)
            return 0
        if cmd == "run":
            r = run_scenario(rest[0], short)
            return 1 if r["status"] == "FAIL" else 0
        if cmd == "selftest":
            return 0 if selftest()["status"] == "PASS" else 1
        if cmd == "demo":
            res = [run_scenario("cpu-all-on-one", True), run_scenario("mem-one-consumer", True)]
            if any(r["status"] == "PENDING" for r in res):
                log("kvmsched parts are PENDING; running the self-test so the measurement is shown")
                res.append(selftest())
            for r in res:
                if r.get("table"):
                    print(f"\n-- {r['name']} before/after\n{r['table']}")
            return summary(res)
        if cmd == "all":
            res = [selftest()]
            for n in scenario_names():
                res.append(run_scenario(n, short))
            return summary(res)
    except Interrupted as e:
        log(f"interrupted ({e}); guests torn down")
        return 130
    raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
