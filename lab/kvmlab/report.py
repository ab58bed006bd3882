"""Tables, report.md and the printed verdicts and summary."""
import os

from . import config
from .common import fmt, median, pstdev
from .samples import affinity_history, guest_usage, pcpu_series, window_loads


def cpu_table(samples, guests, before_window, after_window):
    series = pcpu_series(samples)
    bm, bsd, _ = window_loads(series, *before_window)
    am, asd, _ = window_loads(series, *after_window)
    bu, au = guest_usage(samples, *before_window), guest_usage(samples, *after_window)
    hist = affinity_history(samples)

    def shown_affinity(g, t):
        out = []
        for i in range(g.vcpus):
            h = [a for tt, a in hist.get((g.name, i), []) if tt <= t]
            out.append(h[-1] if h else "?")
        return ",".join(out) if len(set(out)) > 1 else out[0]
    bw, aw = before_window, after_window
    lines = [f"| (mean over window) | before t={bw[0]:.0f}–{bw[1]:.0f} s | after t={aw[0]:.0f}–{aw[1]:.0f} s |",
             "|---|---|---|"]
    for c in range(samples.npcpu):
        lines.append(f"| pCPU{c} load % | {fmt(bm[c] if bm else None)} | {fmt(am[c] if am else None)} |")
    lines.append(f"| std-dev of mean loads (pp) | {fmt(pstdev(bm) if bm else None, 2)} | "
                 f"{fmt(pstdev(am) if am else None, 2)} |")
    lines.append(f"| median per-sample std-dev | {fmt(median(bsd), 2)} | {fmt(median(asd), 2)} |")
    for g in guests:
        lines.append(f"| {g.name} ({g.kind}) usage % / affinity | {fmt(bu.get(g.name))} / {shown_affinity(g, bw[1])} | "
                     f"{fmt(au.get(g.name))} / {shown_affinity(g, aw[1])} |")
    return "\n".join(lines)


def mem_table(samples, guests, info):
    lines = ["| guest | kind | actual at kvmsched start | peak actual | end actual | min unused after start | "
             "end unused | largest drop/2 s |", "|---|---|---|---|---|---|---|---|"]
    for g in guests:
        i = info[g.name]
        lines.append(f"| {g.name} | {g.kind} | {fmt(i['start'])} | {fmt(i['peak'])} | {fmt(i['end'])} | "
                     f"{fmt(i['min_unused'])} | {fmt(i['end_unused'])} | {fmt(i['maxdrop'][0])} |")
    host = [r["host_memavailable_mib"] for r in samples.host_mem]
    lines.append(f"\nhost MemAvailable: min {fmt(min(host, default=None), 0)} MiB, "
                 f"at start {fmt(host[0] if host else None, 0)} MiB (all MiB)")
    return "\n".join(lines)


def plot_list(plots):
    return "\n".join(f"- ![{os.path.basename(p)}]({os.path.basename(p)})" for p in plots)


def write_scenario_report(path, title, status, scenario, record, kvmsched_t, end_t, guests, boot,
                          duration, samples, info, notes, verdict, table, plots):
    with open(path, "w") as f:
        f.write(f"# {title}: {status}\n\n{scenario.description}\n\n")
        f.write(f"- kvmsched: `{' '.join(record.kvmsched_cmd)}` "
                f"started at t={kvmsched_t:.1f} s, stopped at t={end_t:.1f} s\n")
        f.write(f"- guests: {len(guests)}, slowest boot to workload {boot:.1f} s; "
                f"accel {config.accel}; run took {duration:.0f} s; sampler gaps {samples.errors}\n")
        if scenario.kind == "cpu":
            f.write(f"- pin changes after kvmsched start (measured): {info['pin_changes_total'][0]} "
                    f"({info['pin_changes_total'][1]})\n")
        if record.events:
            f.write(f"- events (t = s since guests started; kvmsched started at t={kvmsched_t:.1f}):\n")
            for rec in record.events:
                f.write(f"  - t={rec.t:.1f} (kvmsched +{rec.t - kvmsched_t:.1f} s) `{rec.action}`: {rec.detail}\n")
        for note in notes:
            f.write(f"- {note}\n")
        f.write("\n")
        f.write("## Criteria\n\n" + verdict.md() + "\n\n## Before / after\n\n" + table + "\n\n## Plots\n\n")
        f.write(plot_list(plots) + "\n\n")
        f.write("Samples: vcpu.csv, pcpu.csv (1 s), mem.csv, host_mem.csv (2 s); kvmsched output: "
                "kvmsched.log; guest consoles: serial-*.log\n")


def outcome(name, status, duration, boot, verdict, table, report, plots, notes=()):
    """Prints one run's verdict (notes, criteria, figures, where the report and plots are) and
    returns it for the summary, failed criteria included."""
    print(f"\n== {name}: {status} ({duration:.0f} s, slowest boot {boot:.1f} s)")
    for note in notes:
        print(f"   {note}")
    for criterion, ok, figure, threshold in verdict.rows:
        print(f"   [{'PASS' if ok else 'FAIL'}] {criterion}: {figure} (need {threshold})")
    print(table)
    print(f"   report: {report}")
    for p in plots:
        print(f"   plot:   {p}")
    return {"name": name, "status": status, "report": report, "plots": plots, "boot": boot,
            "duration": duration, "table": table,
            "fails": [f"{n}: {fig} (need {th})" for n, _ok, fig, th in verdict.failed()]}


def summary(results):
    """Prints the summary of several runs; 1 if any FAILed."""
    print("\n== lab summary")
    for r in results:
        extra = f" ({r['duration']:.0f} s)" if "duration" in r else f" — {r.get('why', '')}"
        print(f"   {r['status']:8s} {r['name']}{extra}")
        for failure in r.get("fails", []):
            print(f"            failed: {failure}")
        print(f"            report: {r['report']}")
        for p in r.get("plots", []):
            print(f"            plot:   {p}")
    return 1 if any(r["status"] == "FAIL" for r in results) else 0
