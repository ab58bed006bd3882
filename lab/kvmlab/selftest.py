"""The measurement proof with manual moves and no kvmsched (lab/lab selftest)."""
import os
import time

from .cli import check_env, prepare_outdir
from .common import fmt, log, mean, median, pstdev
from .criteria import Verdict
from .guests import Guest, wait_ready
from .plots import plot_cpu, plot_mem, plot_vcpu
from .report import outcome, plot_list
from .run import Run
from .samples import guest_usage, pcpu_series, pin_changes, window_loads
from .scenario import GuestSpec
from . import config
from .virsh import host_pcpus, virsh

SETMEM_TARGET_MIB = 192


def selftest():
    """4 guests x 1 busy vCPU on pCPU0, 2 moved to pCPU1 by virsh vcpupin, then virsh setmem."""
    check_env()
    outdir = prepare_outdir("selftest")
    if host_pcpus() < 2:
        raise SystemExit("selftest needs ≥ 2 host CPUs")
    guests = [Guest(GuestSpec(index=i, vcpus=1, memory_mib=256, max_memory_mib=512, workload="cpu",
                              pins=("0",), balloon="virtio", stats_period=2), outdir)
              for i in range(1, 5)]
    moved = guests[2:]
    verdict = Verdict()
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
        for g in moved:
            virsh("vcpupin", g.name, "0", "1", "--live")
        log(f"moved {moved[0].name}, {moved[1].name} to pCPU1 with virsh vcpupin --live")
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
                r["guest"] == g.name and r["unused_mib"] != "" for r in run.samples.mem_rows):
            time.sleep(1)
        virsh("setmem", g.name, f"{SETMEM_TARGET_MIB}M", "--live")
        run.mark(f"setmem {SETMEM_TARGET_MIB}M")
        set_t = run.now()
        log(f"virsh setmem {g.name} {SETMEM_TARGET_MIB}M --live")
        run.sleep(12)
    samples = run.samples
    record = run.record()
    pcpus = [0, 1]
    series = pcpu_series(samples, pcpus)
    am, _asd, _an = window_loads(series, a0, a1)
    bm, bsd, _bn = window_loads(series, b0, b1)
    au, bu = guest_usage(samples, a0, a1), guest_usage(samples, b0, b1)
    host_busy = {}
    for r in samples.pcpu_rows:
        if r["host_busy_pct"] != "":
            phase = "a" if a0 <= r["t"] <= a1 else "b" if b0 <= r["t"] <= b1 else ""
            host_busy.setdefault((r["pcpu"], phase), []).append(r["host_busy_pct"])
    for gg in guests:
        u = au.get(gg.name, float("nan"))
        verdict.add(f"all on pCPU0: {gg.name} usage ≈ 25 %", abs(u - 25) <= 8, f"{fmt(u)} %", "25 ± 8")
    verdict.add("all on pCPU0: pCPU0 load ≈ 100", am and am[0] >= 85, f"{fmt(am[0] if am else None)} %", "≥ 85")
    verdict.add("all on pCPU0: pCPU1 load ≈ 0", am and am[1] <= 5, f"{fmt(am[1] if am else None)} %", "≤ 5")
    verdict.add("all on pCPU0: std-dev ≈ 50", am and pstdev(am) >= 40, f"{fmt(pstdev(am) if am else None, 2)} pp",
                "≥ 40")
    for gg in guests:
        u = bu.get(gg.name, float("nan"))
        verdict.add(f"after 2 moves: {gg.name} usage ≈ 50 %", abs(u - 50) <= 12, f"{fmt(u)} %", "50 ± 12")
    verdict.add("after 2 moves: std-dev near 0", bm and pstdev(bm) <= 8,
                f"{fmt(pstdev(bm) if bm else None, 2)} pp (loads {', '.join(fmt(x) for x in bm or [])}; "
                f"per-sample median {fmt(median(bsd), 2)})", "≤ 8")
    for c in pcpus:
        busy = mean(host_busy.get((c, "b"), []))
        verdict.add(f"after 2 moves: host /proc/stat cpu{c} busy", busy >= 80, f"{fmt(busy)} %", "≥ 80")
    changes = pin_changes(samples, move_t - 1.5)
    want = {(gg.name, 0): (1 if gg in moved else 0) for gg in guests}
    got = {k: changes.get(k, (0, []))[0] for k in want}
    verdict.add("pin changes counted from affinity samples", got == want,
                ", ".join(f"{k[0]}: {n}" for k, n in sorted(got.items())), "1 for each moved vCPU, 0 otherwise")
    mem_rows = [r for r in samples.mem_rows if r["guest"] == guests[0].name]
    before_set = [r["actual_mib"] for r in mem_rows if r["t"] < set_t]
    after_set = [r for r in mem_rows if r["t"] >= set_t]
    hit = next((r["t"] - set_t for r in after_set if abs(r["actual_mib"] - SETMEM_TARGET_MIB) <= 4), None)
    verdict.add(f"setmem --live {SETMEM_TARGET_MIB}M shows in measured actual", hit is not None and hit <= 10,
                f"{fmt(before_set[-1] if before_set else None)} → "
                f"{fmt(after_set[-1]['actual_mib'] if after_set else None)} MiB, within {fmt(hit)} s"
                if hit is not None else "not seen", f"{SETMEM_TARGET_MIB} ± 4 MiB within 10 s")
    has_unused = {gg.name: any(r["guest"] == gg.name and r["unused_mib"] != "" for r in samples.mem_rows)
                  for gg in guests}
    verdict.add("balloon stats (unused/available) measured for every guest", all(has_unused.values()),
                ", ".join(f"{k}: {'yes' if x else 'no'}" for k, x in has_unused.items()), "all")
    plots = [plot_cpu(samples, outdir, record.marks, "selftest: pCPU load, manual vcpupin (no kvmsched)"),
             plot_vcpu(samples, outdir, record.marks, "selftest: CPU usage per guest"),
             plot_mem(samples, outdir, record.marks, "selftest: guest memory, manual setmem")]
    status = "PASS" if verdict.ok else "FAIL"
    duration = time.time() - t_start
    table = "\n".join([
        "| (mean) | all on pCPU0 | after moving 2 to pCPU1 |", "|---|---|---|",
        *[f"| pCPU{c} load % | {fmt(am[c] if am else None)} | {fmt(bm[c] if bm else None)} |" for c in pcpus],
        *[f"| host cpu{c} busy % | {fmt(mean(host_busy.get((c, 'a'), [])))} | "
          f"{fmt(mean(host_busy.get((c, 'b'), [])))} |" for c in pcpus],
        f"| std-dev (pp) | {fmt(pstdev(am) if am else None, 2)} | {fmt(pstdev(bm) if bm else None, 2)} |",
        *[f"| {gg.name} usage % | {fmt(au.get(gg.name))} | {fmt(bu.get(gg.name))} |" for gg in guests]])
    report = os.path.join(outdir, "report.md")
    with open(report, "w") as f:
        f.write(f"# selftest: {status}\n\nMeasurement proof without kvmsched: 4 guests × 1 busy vCPU "
                f"pinned to pCPU0, then 2 moved by `virsh vcpupin --live`, then `virsh setmem --live`.\n\n"
                f"- slowest boot to workload {boot:.1f} s; run took {duration:.0f} s; accel {config.accel}; "
                f"sampler gaps {samples.errors}\n\n## Criteria\n\n{verdict.md()}\n\n## Figures\n\n{table}\n\n"
                f"## Plots\n\n")
        f.write(plot_list(plots) + "\n")
    return outcome("selftest", status, duration, boot, verdict, table, report, plots)
