"""Verdicts from recorded data only (Samples, the RunRecord, the guests' serial logs): never
from kvmsched's own output, except where a row says it is information."""
import math
import os
import re

from .common import fmt, median, percentile, pstdev
from .guests import oom_kills
from .samples import (affinity_at, affinity_history, balanced_at, first_hard_pinned, hard_pinned,
                      pcpu_series, pin_changes, read_affinities, window_loads)


class Verdict:
    """Rows of (criterion, passed, measured figure, threshold); informational rows always pass."""

    def __init__(self):
        self.rows = []

    def add(self, name, ok, figure, threshold):
        self.rows.append((name, bool(ok), figure, threshold))

    def info(self, name, figure, note="informational"):
        self.rows.append((name, True, figure, note))

    @property
    def ok(self):
        return all(r[1] for r in self.rows)

    def failed(self):
        return [r for r in self.rows if not r[1]]

    def md(self):
        out = ["| criterion | result | measured | threshold |", "|---|---|---|---|"]
        for name, ok, figure, threshold in self.rows:
            out.append(f"| {name} | {'PASS' if ok else 'FAIL'} | {figure} | {threshold} |")
        return "\n".join(out)


def stddev_threshold(crit):
    """(judged, threshold): stddev_max = off means balance is reported, not judged (dry run)."""
    judged = crit.get("stddev_max", "5").strip() != "off"
    return judged, float(crit.get("stddev_max", 5)) if judged else 5.0


def pin_detail(changes):
    parts = [f"{g}/vcpu{i}: {n} at t={','.join(f'{t:.0f}' for t in times)}"
             for (g, i), (n, times) in sorted(changes.items()) if n]
    return "; ".join(parts) if parts else "none"


def eval_cpu(crit, samples, record, guests, kvmsched_t, end_t, interval):
    """CPU criteria over the recorded samples and the run's record."""
    verdict = Verdict()
    excused = record.libvirtd_outages()  # where the lab itself took libvirtd away
    series = pcpu_series(samples)
    judge_sd, threshold = stddev_threshold(crit)
    settle_n = crit.get("settle_within_intervals")
    settle_deadline = kvmsched_t + (float(settle_n) if settle_n else 3) * interval
    # settle time: first moment after kvmsched start where the 3-sample rolling mean loads are balanced
    settle_t = balanced_at(series, [t for t in series if t >= kvmsched_t], threshold)
    steady_from = settle_deadline + 2
    if "steady_window_s" in crit:  # events disturb the balance mid-run: judge the last N s
        steady_from = max(steady_from, end_t - float(crit["steady_window_s"]))
    means, sample_sds, n = window_loads(series, steady_from, end_t)
    info = {"settle_t": settle_t, "steady_from": steady_from, "steady_means": means,
            "steady_sample_sd": sample_sds}
    if settle_n:
        slack = 2.0  # 3-sample smoothing at 1 s
        verdict.add(f"balanced (std-dev ≤ {threshold:g}) within {settle_n} intervals of kvmsched start",
                    settle_t is not None and settle_t <= settle_deadline + slack,
                    "never" if settle_t is None else f"after {settle_t - kvmsched_t:.1f} s",
                    f"≤ {float(settle_n) * interval:g} s (+{slack:g} s smoothing)")
    since = steady_from - kvmsched_t
    if means is None:
        verdict.add("steady-state window measured", False, "no samples", f"from t={steady_from:.0f}")
    elif not judge_sd:
        verdict.info(f"(info) std-dev of mean pCPU loads (t ≥ {since:.0f} s after start)",
                     f"{pstdev(means):.2f} pp (loads {', '.join(fmt(x) for x in means)})",
                     "informational (stddev_max = off)")
    else:
        sd = pstdev(means)
        verdict.add(f"steady std-dev of mean pCPU loads (t ≥ {since:.0f} s after start)",
                    sd <= threshold, f"{sd:.2f} pp (loads {', '.join(fmt(x) for x in means)}; per-sample "
                    f"median {fmt(median(sample_sds), 2)}, p90 {fmt(percentile(sample_sds, 90), 2)}; "
                    f"{n} samples)", f"≤ {threshold:g}")
    sample_times = sorted(t for t in series if t >= kvmsched_t - 1)
    gaps = ([(b - a, a) for a, b in zip(sample_times, sample_times[1:])]
            + [(end_t - sample_times[-1], sample_times[-1])]) if sample_times else []
    # a gap overlapping a window where the lab itself took libvirtd away is expected
    gaps = [(g, a) for g, a in gaps if not any(a <= w1 and a + g >= w0 for w0, w1 in excused)]
    worst_gap = max(gaps, default=(0.0, kvmsched_t))
    max_gap = float(crit.get("max_sample_gap_s", 5))
    verdict.add("measurement continuous (libvirt answered the 1 s sampler)"
                + (" outside the libvirtd outage" if excused else ""), worst_gap[0] <= max_gap,
                f"longest gap {worst_gap[0]:.1f} s at t={worst_gap[1]:.0f}"
                + (" — libvirt/QEMU monitor stalled; under TCG see lab/README.md 'Known limits'"
                   if worst_gap[0] > max_gap else ""), f"≤ {max_gap:g} s")
    changes = pin_changes(samples, kvmsched_t)
    info["pin_changes_total"] = (sum(n for n, _ in changes.values()), pin_detail(changes))
    if "pin_changes_max" in crit:
        total = sum(n for n, _ in changes.values())
        verdict.add("pin changes after kvmsched start", total <= int(crit["pin_changes_max"]),
                    f"{total} ({pin_detail(changes)})", f"≤ {crit['pin_changes_max']}")
    if "pin_changes_after_settle_max" in crit:
        _churn(crit, verdict, series, changes, settle_t, end_t, interval, threshold)
    # "at end": the guests that exist at the end (a destroyed guest is not judged), as the last
    # sample before the end saw them; a vCPU of a live guest missing there is not pinned
    alive = record.guests_at(end_t)
    final = affinity_at(samples, end_t, alive)
    for g in guests:
        for i in range(g.vcpus if g.name in alive else 0):
            final.setdefault((g.name, i), "no sample")
    if crit.get("hard_pinned", "no") == "yes":
        loose = [f"{g}/{i}={a}" for (g, i), a in sorted(final.items()) if not hard_pinned(a)]
        verdict.add("every vCPU hard-pinned (affinity = one pCPU) at end", not loose,
                    f"all {len(final)} of {', '.join(sorted(alive))}" if not loose else "not: " + ", ".join(loose),
                    "all vCPUs of the guests running at the end")
    if crit.get("heavy_light_per_pcpu", "no") == "yes":
        _heavy_light(verdict, samples, [g for g in guests if g.name in alive], final)
    return verdict, info


def _churn(crit, verdict, series, changes, settle_t, end_t, interval, threshold):
    """"No re-pinning once balanced": a pin change after the first balance counts as churn
    unless the lab itself measured an imbalance just before it: std-dev of the mean loads over
    the 2 intervals before it (kvmsched's confirmation) above the threshold. Each loop reacts to
    what it measured; the loads move without pin changes too (host activity, guest threads),
    and following them is not churn."""
    ref = settle_t if settle_t is not None else end_t
    window = 2 * interval + 1
    churn, answered = {}, []
    for key, (_n, times) in changes.items():
        for t in (t for t in times if t > ref):
            means, _sds, _n = window_loads(series, t - window, t - 0.5)
            sd_before = pstdev(means) if means else 0.0
            if sd_before > threshold:
                answered.append(f"{key[0]}/vcpu{key[1]} at t={t:.0f} (std-dev {sd_before:.1f} before)")
            else:
                count, at = churn.get(key, (0, []))
                churn[key] = (count + 1, at + [t])
    total = sum(n for n, _ in churn.values())
    limit = crit["pin_changes_after_settle_max"]
    verdict.add("pin changes after balanced while the measured loads were balanced (churn)",
                settle_t is not None and total <= int(limit),
                f"{total} ({pin_detail(churn)})" if settle_t is not None else "never balanced",
                f"≤ {limit}")
    verdict.info("(info) pin changes after balanced that answered a measured imbalance "
                 f"(std-dev > {threshold:g} over the {window:g} s before)",
                 f"{len(answered)}" + (": " + "; ".join(answered[:4]) if answered else ""))


def _heavy_light(verdict, samples, guests, final):
    kinds = {g.name: g.kind for g in guests}
    per_pcpu = {}
    for (g, _i), a in final.items():
        if hard_pinned(a):
            per_pcpu.setdefault(int(a), []).append(kinds[g])
    ok = True
    npcpu = samples.npcpu
    for kind in ("heavy", "light"):
        total = sum(1 for g in guests for _ in range(g.vcpus) if g.kind == kind)
        lo, hi = total // npcpu, -(-total // npcpu)
        counts = [per_pcpu.get(p, []).count(kind) for p in range(npcpu)]
        ok = ok and all(lo <= x <= hi for x in counts)
    desc = "; ".join(f"pCPU{p}: {'+'.join(sorted(per_pcpu.get(p, []))) or '-'}" for p in range(npcpu))
    verdict.add("heavy and light vCPUs spread evenly over pCPUs", ok, desc, "one heavy + one light per pCPU")


def eval_reserve(crit, samples, guests, kvmsched_t, host_free_at_start, reserve, verdict):
    """With a reserve that bites: while the host's MemAvailable (the figure kvmsched uses with
    libvirtd on this host) is below the reserve, kvmsched may grow a guest only with memory it takes back from donors in
    the same period (its guarantee: host free - grants + releases >= reserve). So the sum of all
    guests' balloon sizes must not rise. A grant and the release that funds it can land in
    neighbouring 2 s samples (inflating is slower than deflating), so a rise is judged over the
    window up to the next sample. Guests touching memory they already have also lowers host free,
    so growth of rss alone is reported, not judged."""
    tolerance = float(crit.get("reserve_tolerance_mib", 128))
    host_free = {r["t"]: r["host_memavailable_mib"] for r in samples.host_mem}
    actual = {}
    for r in samples.mem_rows:
        actual.setdefault(r["t"], {})[r["guest"]] = r["actual_mib"]
    times = [t for t in sorted(actual) if len(actual[t]) == len(guests)]
    funded, bad = [], []
    total = {t: sum(actual[t].values()) for t in times}
    for i in range(len(times) - 1):
        t0, t1 = times[i], times[i + 1]
        if t1 < kvmsched_t + 3 or host_free.get(t0, 1e12) >= reserve - tolerance:
            continue
        grow = {g: actual[t1][g] - actual[t0][g] for g in actual[t0] if actual[t1][g] - actual[t0][g] > 8}
        if not grow:
            continue
        # The funding release may land one sample before or after the grant.
        spans = [(times[max(i - 1, 0)], t1), (t0, t1), (t0, times[min(i + 2, len(times) - 1)])]
        net = min((total[b] - total[a], a, b) for a, b in spans)
        what = ", ".join(f"{g} +{d:.0f}" for g, d in sorted(grow.items()))
        line = (f"t={t1:.0f}: {what} MiB, all guests net {net[0]:+.0f} over t={net[1]:.0f}..{net[2]:.0f}, "
                f"host free {host_free[t0]:.0f}")
        (bad if net[0] > 8 else funded).append(line)
    verdict.add(f"no net growth of guests while host MemAvailable < reserve {reserve} MiB "
                f"(-{tolerance:g})", not bad,
                "; ".join(bad[:4]) + (f" … ({len(bad)})" if len(bad) > 4 else "") if bad else "none",
                "Σ actual not up by > 8 MiB")
    verdict.info("(info) grants below reserve funded by donors' releases",
                 f"{len(funded)}" + (": " + "; ".join(funded[:3]) + (" …" if len(funded) > 3 else "")
                                     if funded else ""))
    rss = {}
    for r in samples.mem_rows:
        if r["rss_mib"] != "":
            rss.setdefault(r["t"], {})[r["guest"]] = r["rss_mib"]
    full = [(t, sum(d.values())) for t, d in sorted(rss.items()) if len(d) == len(guests) and t >= kvmsched_t]
    host_min = min((r["host_memavailable_mib"] for r in samples.host_mem if r["t"] >= kvmsched_t),
                   default=float("nan"))
    if full:
        verdict.info("(info) guests' host memory and host free vs reserve",
                     f"Σ rss {full[0][1]:.0f} → peak {max(x for _, x in full):.0f} MiB (headroom at start "
                     f"{host_free_at_start - reserve:.0f}); host MemAvailable min {host_min:.0f} MiB")


def memory_figures(samples, record, guests, kvmsched_t):
    """{guest: start/peak/end actual, largest drop (MiB, t), min/end unused} after kvmsched start.
    A restart (new QEMU process at the XML's currentMemory) is not a drop."""
    by_guest = {}
    for r in samples.mem_rows:
        by_guest.setdefault(r["guest"], []).append(r)
    info = {}
    for g in guests:
        rows = by_guest.get(g.name, [])
        actual = [(r["t"], r["actual_mib"]) for r in rows]
        after = [a for t, a in actual if t >= kvmsched_t]
        at_start = next((a for t, a in actual if t >= kvmsched_t), float("nan"))
        # after a restart QEMU reports the maximum until the guest's driver, loaded before it is
        # ready, takes the balloon to the XML's currentMemory: that fall is the boot's, not kvmsched's
        booting = []
        ready_t = record.since_start(g.ready)
        for r in record.events:
            if r.action == "restart" and r.event.guest == g.name:
                settled = float("inf")
                if ready_t is not None and ready_t > r.t:
                    settled = next((t for t, a in actual if t >= ready_t and a <= g.mem + 1), settled)
                booting.append((r.t, settled))
        drops = [(a0 - a1, t1) for (t0, a0), (t1, a1) in zip(actual, actual[1:])
                 if t1 >= kvmsched_t and not any(start <= t1 <= end for start, end in booting)]
        unused_after = [r["unused_mib"] for r in rows if r["t"] >= kvmsched_t and r["unused_mib"] != ""]
        info[g.name] = {"start": at_start, "peak": max(after, default=float("nan")),
                        "end": after[-1] if after else float("nan"),
                        "maxdrop": max(drops, default=(0.0, None)),
                        "min_unused": min(unused_after, default=float("nan")),
                        "end_unused": unused_after[-1] if unused_after else float("nan")}
    return info


def eval_mem(crit, samples, record, guests, kvmsched_t, end_t):
    verdict = Verdict()
    info = memory_figures(samples, record, guests, kvmsched_t)
    within = float(crit.get("consumer_reach_max_within_mib", 100))
    for g in guests:
        fig = info[g.name]
        if "consumer_reach_max_within_mib" not in crit and "early_reach_mib" not in crit:
            break
        if g.kind == "consumer" and g.mem_upto() == "max":
            if "consumer_reach_max_within_mib" not in crit:
                continue
            verdict.add(f"{g.name} (consumer to max) reaches within {within:g} MiB of max {g.maxmem}",
                        fig["peak"] >= g.maxmem - within, f"peak actual {fmt(fig['peak'])} MiB",
                        f"≥ {g.maxmem - within:g}")
        elif g.kind == "consumer" and "early_reach_mib" in crit:
            need = float(crit["early_reach_mib"])
            verdict.add(f"{g.name} (consumer to {g.mem_upto()} MiB) gets what it asks", fig["peak"] >= need,
                        f"peak actual {fmt(fig['peak'])} MiB", f"≥ {need:g}")
    if "released_fraction_min" in crit:
        fraction = float(crit["released_fraction_min"])
        for g in guests:
            if g.kind != "consumer":
                continue
            fig = info[g.name]
            gained = fig["peak"] - fig["start"]
            back = fig["peak"] - fig["end"]
            ok = back >= fraction * gained if gained >= 64 else True  # nothing granted: nothing to give back
            verdict.add(f"{g.name} memory given back after free", ok,
                        f"gave back {fmt(back)} MiB (peak {fmt(fig['peak'])} → end {fmt(fig['end'])}; "
                        f"gained {fmt(gained)} from {fmt(fig['start'])})", f"≥ {fraction:.0%} of gained")
    if "max_drop_mib" in crit:
        limit = float(crit["max_drop_mib"])
        worst = max(((fig["maxdrop"][0], name, fig["maxdrop"][1]) for name, fig in info.items()),
                    default=(0, "", None))
        verdict.add("gradual: largest drop of actual between 2 s samples", worst[0] <= limit,
                    f"{fmt(worst[0])} MiB ({worst[1]} at t={fmt(worst[2], 0)})", f"≤ {limit:g} MiB")
    if "idle_unused_min_mib" in crit:
        limit = float(crit["idle_unused_min_mib"])
        for g in guests:
            if g.kind == "idle":
                lowest = info[g.name]["min_unused"]
                verdict.add(f"{g.name} (idle) keeps unused memory", not math.isnan(lowest) and lowest >= limit,
                            f"min unused {fmt(lowest)} MiB", f"≥ {limit:g} MiB")
    ooms = oom_kills(guests)
    verdict.add("guest OOM kills (serial logs)", sum(ooms.values()) <= int(crit.get("oom_kills_max", 0)),
                ", ".join(f"{k}: {n}" for k, n in ooms.items()), f"≤ {crit.get('oom_kills_max', 0)}")
    limit = float(crit.get("host_available_min_mib", 200))
    host_min = min((r["host_memavailable_mib"] for r in samples.host_mem), default=float("nan"))
    verdict.add("host MemAvailable never below reserve", host_min >= limit, f"min {fmt(host_min, 0)} MiB",
                f"≥ {limit:g} MiB")
    return verdict, info


def guest_list(spec, guests):
    spec = spec.strip()
    return [g.name for g in guests] if spec == "all" else [x.strip() for x in spec.split(",") if x.strip()]


def eval_faults(scenario, samples, record, guests, kvmsched_t, end_t, interval, verdict):
    """Criteria for [events], dry-run, metrics, no-balloon guests. Returns report notes."""
    crit, notes = scenario.criteria, []
    watcher = record.watcher
    kill = next((r for r in record.events if r.action == "kill-libvirtd"), None)
    back = next((r for r in record.events if r.action == "start-libvirtd"), None)
    if kill:
        verdict.add("libvirtd killed (SIGTERM, by the lab's PID file) and restarted", back is not None,
                    f"{kill.detail}; {back.detail if back else 'not restarted'}", "killed, back")
    if kill and back:
        notes += _libvirtd_restart(scenario, samples, record, kill, back, interval, verdict)
    if "adopt_within_intervals" in crit:
        notes += _adoption(crit, samples, record, guests, interval, verdict)
    _memory_faults(crit, samples, guests, kvmsched_t, verdict)
    if "grown_after_restart_min_mib" in crit:
        _grown_after_restart(crit, samples, record, guests, kvmsched_t, verdict)
    if crit.get("readonly_connection", "no") == "yes":
        seen = [cl for _t, cl in (watcher.clients if watcher else []) if cl]
        readonly = sorted({r for cl in seen for _i, r in cl})
        verdict.add("kvmsched's libvirt connection is read-only (virt-admin client-info)",
                    seen and readonly == ["yes"], f"readonly={','.join(readonly) or 'n/a'} in {len(seen)} polls",
                    "readonly: yes")
    if watcher and watcher.addr:
        notes += _metrics(watcher, kill, back, verdict)
    if scenario.dry_run:
        _dry_run_output(record, verdict)
    return notes


def _libvirtd_restart(scenario, samples, record, kill, back, interval, verdict):
    crit, notes = scenario.criteria, []
    series = pcpu_series(samples)
    _judged, threshold = stddev_threshold(crit)
    back_t = back.done_t
    n = float(crit.get("reconnect_within_intervals", 2))
    reconnect_t = None
    if record.watcher:
        reconnect_t = next((t for t, cl in record.watcher.clients if t >= back_t and cl), None)
    verdict.add(f"kvmsched reconnected within {n:g} intervals of libvirtd back (virt-admin: a client "
                f"with kvmsched's PID)", reconnect_t is not None and reconnect_t - back_t <= n * interval + 1,
                "never seen" if reconnect_t is None else f"connection seen {reconnect_t - back_t:.1f} s after "
                f"libvirtd answered (virt-admin polled every ~1 s)", f"≤ {n * interval:g} s (+1 s polling)")
    seed = next((r for r in record.events if r.action == "pin-all" and r.t >= back.t), None)
    if not (seed and "rebalance_within_intervals" in crit):
        return notes
    target = seed.event.cpuset.replace(",", "+")
    firsts = []
    for key, hist in affinity_history(samples).items():
        hist = read_affinities(hist)
        for (_t0, a0), (t1, a1) in zip(hist, hist[1:]):
            # kvmsched's, not the re-seed's: after libvirtd was launched again, and before the
            # re-seed began or to another pCPU than the re-seed's
            if t1 >= back.t and a1 != a0 and (t1 < seed.t or a1 != target):
                firsts.append((t1, f"{key[0]}/vcpu{key[1]} {a0}→{a1}"))
                break
    first = min(firsts, default=None)
    balanced_t = balanced_at(series, [t for t in series if t > seed.done_t], threshold)
    n2 = float(crit["rebalance_within_intervals"])
    verdict.add(f"re-seeded imbalance (all on pCPU{target}) rebalanced within {n2:g} intervals of "
                f"libvirtd back", balanced_t is not None and balanced_t - back_t <= n2 * interval + 2,
                "never" if balanced_t is None else f"balanced {balanced_t - back_t:.1f} s after libvirtd back "
                f"({balanced_t - seed.done_t:.1f} s after the re-seed)", f"≤ {n2 * interval:g} s (+2 s smoothing)")
    if first:
        notes.append(f"reconnect time (first pin change by kvmsched after the outage, measured): "
                     f"{first[0] - back.t:.1f} s after libvirtd was launched ({first[1]} at t={first[0]:.1f}; "
                     f"libvirtd launched t={back.t:.1f}, answering t={back_t:.1f}, re-seed "
                     f"t={seed.t:.1f}–{seed.done_t:.1f})")
    else:
        notes.append("reconnect time: no pin change by kvmsched after the re-seed")
    return notes


def _adoption(crit, samples, record, guests, interval, verdict):
    """Guests started mid-run: hard-pinned within N intervals of their 'kvl: ready'. Adoption
    time = the first sample after `virsh start` with every vCPU hard-pinned; a guest adopted
    during its boot counts 0 after ready, so no duration is negative."""
    notes = []
    n = float(crit["adopt_within_intervals"])
    for rec in record.events:
        if rec.action != "start-guest":
            continue
        g = next(x for x in guests if x.name == rec.event.guest)
        ready_t = record.since_start(g.ready)
        start_t = record.since_start(g.started)
        name = f"{g.name} (started mid-run) hard-pinned within {n:g} intervals of ready"
        if ready_t is None:
            verdict.add(name, False, "guest never ready", "ready")
            continue
        pinned_t = first_hard_pinned(samples, g.name, g.vcpus, start_t)
        if pinned_t is None:
            verdict.add(name, False, "never hard-pinned", f"≤ {n * interval:g} s after ready (+1 s sampling)")
            continue
        after_start = pinned_t - start_t          # >= 0: searched from start_t on
        after_ready = max(0.0, pinned_t - ready_t)  # 0: adopted while it booted
        boot = f"ready {ready_t - start_t:.1f} s after start"
        if pinned_t <= ready_t:
            figure = (f"already hard-pinned when ready: at t={pinned_t:.1f}, {after_start / interval:.2f} "
                      f"intervals ({after_start:.1f} s) after virsh start ({boot})")
        else:
            figure = (f"hard-pinned at t={pinned_t:.1f}: {after_ready / interval:.2f} intervals "
                      f"({after_ready:.1f} s) after ready, {after_start / interval:.2f} intervals "
                      f"({after_start:.1f} s) after virsh start ({boot})")
        verdict.add(name, after_ready <= n * interval + 1, figure,
                    f"≤ {n * interval:g} s after ready (+1 s sampling)")
        notes.append(f"intervals to adopt {g.name}: {after_ready / interval:.2f} after ready"
                     + (" (adopted while it booted)" if pinned_t <= ready_t else "")
                     + f", {after_start / interval:.2f} after virsh start")
    return notes


def _memory_faults(crit, samples, guests, kvmsched_t, verdict):
    """actual unchanged / shrunk / no change at all; the no-balloon setup check."""
    actual = {}
    for r in samples.mem_rows:
        actual.setdefault(r["guest"], []).append((r["t"], r["actual_mib"]))
    if "actual_unchanged" in crit:
        for name in guest_list(crit["actual_unchanged"], guests):
            rows = [a for t, a in actual.get(name, []) if t >= kvmsched_t - 2.5]
            deviation = max((abs(a - rows[0]) for a in rows), default=None)
            verdict.add(f"{name} balloon actual never changes", rows and deviation <= 1,
                        f"{fmt(rows[0] if rows else None)} MiB, max deviation {fmt(deviation)} MiB over "
                        f"{len(rows)} samples", "± 1 MiB")
    if "shrunk_min_mib" in crit:
        for part in crit["shrunk_min_mib"].split(","):
            name, mib = part.split(":")
            rows = [a for t, a in actual.get(name.strip(), []) if t >= kvmsched_t - 2.5]
            shrunk = rows[0] - rows[-1] if rows else None
            verdict.add(f"{name.strip()} shrunk by kvmsched", shrunk is not None and shrunk >= float(mib),
                        f"{fmt(rows[0] if rows else None)} → {fmt(rows[-1] if rows else None)} MiB "
                        f"(−{fmt(shrunk)})", f"≥ {mib} MiB")
    if "actual_changes_max" in crit:
        changes = []
        for name, rows in sorted(actual.items()):
            for (_t0, a0), (t1, a1) in zip(rows, rows[1:]):
                if t1 >= kvmsched_t and abs(a1 - a0) > 1:
                    changes.append(f"{name} {a0:.0f}→{a1:.0f} at t={t1:.0f}")
        count = sum(1 for rows in actual.values() for t, _ in rows if t >= kvmsched_t)
        verdict.add("balloon actual changes after kvmsched start (all guests)",
                    len(changes) <= int(crit["actual_changes_max"]),
                    f"{len(changes)} ({'; '.join(changes[:4]) or 'none'}; {count} samples)",
                    f"≤ {crit['actual_changes_max']}")
    no_driver = [g for g in guests if g.balloon == "none"]
    if no_driver:
        has_unused = {g.name: any(r["guest"] == g.name and r["unused_mib"] != "" for r in samples.mem_rows)
                      for g in guests}
        ok = (all(not has_unused[g.name] for g in no_driver)
              and all(has_unused[g.name] for g in guests if g.balloon != "none"))
        verdict.add("setup: no balloon stats (unused) from the no-driver guest, stats from the others", ok,
                    ", ".join(f"{k}: {'unused reported' if x else 'no unused'}" for k, x in has_unused.items()),
                    "as configured")


def largest_rise(points):
    """[(t, v)] -> (rise, from_t, from_v, to_t, to_v): the largest v_j - v_i with i <= j."""
    best, low = (0.0, None, None, None, None), None
    for t, v in points:
        if low is None or v < low[1]:
            low = (t, v)
        if v - low[1] > best[0]:
            best = (v - low[1], low[0], low[1], t, v)
    return best


def _grown_after_restart(crit, samples, record, guests, kvmsched_t, verdict):
    """grown_after_restart_min_mib = kvl-N:MiB[,...]: the guest's measured balloon actual rose by
    MiB after kvmsched started and before its (first) restart event (the setup: kvmsched grows
    it at all), and rose by MiB again after the restarted guest was ready. Until its balloon
    driver loads, QEMU reports the maximum as actual, then the driver takes it to the XML's
    currentMemory: so "rose" is the largest rise over the samples after ready. Beside it: how
    much the guest's QEMU rss grew (it consumes) and how many distinct balloon `unused` values
    it reported (one = the driver's single report at load, stale: no stats period)."""
    for part in crit["grown_after_restart_min_mib"].split(","):
        name, mib = (x.strip() for x in part.split(":"))
        need = float(mib)
        after_title = f"{name} grown again after its restart (actual up ≥ {need:g} MiB while it consumes)"
        restart = next((r for r in record.events if r.action == "restart" and r.event.guest == name), None)
        if restart is None:
            verdict.add(after_title, False, "no restart event", "a restart event")
            continue
        rows = [r for r in samples.mem_rows if r["guest"] == name]
        before = [(r["t"], r["actual_mib"]) for r in rows if kvmsched_t <= r["t"] < restart.t]
        rise = largest_rise(before)
        verdict.add(f"{name} grown before its restart (setup: kvmsched grows it at all)", rise[0] >= need,
                    f"{fmt(rise[2], 0)} → {fmt(rise[4], 0)} MiB (+{rise[0]:.0f}) before t={restart.t:.0f}"
                    if before else "no sample", f"≥ +{need:g} MiB")
        g = next((x for x in guests if x.name == name), None)
        ready_t = record.since_start(g.ready) if g else None
        if ready_t is None or ready_t < restart.t:
            verdict.add(after_title, False, "not ready again after the restart", f"≥ +{need:g} MiB")
            continue
        after = [r for r in rows if r["t"] >= ready_t]
        rise = largest_rise([(r["t"], r["actual_mib"]) for r in after])
        rss = [r["rss_mib"] for r in after if r["rss_mib"] != ""]
        unused = {r["unused_mib"] for r in after if r["unused_mib"] != ""}
        figure = (f"largest rise after ready (t={ready_t:.0f}): "
                  + (f"{rise[2]:.0f} → {rise[4]:.0f} MiB (+{rise[0]:.0f}, t={rise[1]:.0f}–{rise[3]:.0f})"
                     if rise[1] is not None else f"none ({len(after)} samples)")
                  + (f"; QEMU rss {rss[0]:.0f} → {max(rss):.0f} MiB" if rss else "")
                  + f"; distinct balloon unused values after ready: {len(unused)}"
                  + (" (stale: no stats period)" if len(unused) <= 1 else ""))
        verdict.add(after_title, rise[0] >= need, figure, f"≥ +{need:g} MiB")


def _metrics(watcher, kill, back, verdict):
    notes = []
    scrapes = watcher.scrapes
    good = [x for x in scrapes if x.ok]
    bad = [x for x in scrapes if not x.ok]
    verdict.add(f"metrics http://{watcher.addr}/metrics parses as Prometheus text on every scrape",
                len(scrapes) >= 3 and not bad,
                f"{len(good)}/{len(scrapes)} scrapes valid, {good[-1].sample_count if good else 0} samples"
                + (f"; t={bad[0].t:.0f}: {'; '.join(bad[0].errors[:3])}" if bad else ""), "≥ 3 scrapes, all valid")
    pins = [(x.t, x.pins_total) for x in scrapes if x.pins_total is not None]
    verdict.add("metrics: kvmsched_pins_total grows", len(pins) >= 2 and pins[-1][1] > pins[0][1],
                f"{fmt(pins[0][1], 0)} at t={pins[0][0]:.0f} → {fmt(pins[-1][1], 0)} at t={pins[-1][0]:.0f}"
                if pins else "no kvmsched_pins_total sample", "last > first")
    if kill and back:
        during = [x for x in scrapes if kill.t <= x.t <= back.done_t]
        connected = [f"{value:g} at t={t:.0f}" for t, value in watcher.connected
                     if value is not None and kill.t - 4 <= t <= back.done_t + 8]
        notes.append(f"metrics scrapes while libvirtd was down (t={kill.t:.0f}–{back.done_t:.0f}): "
                     f"{len(during)}, {sum(1 for x in during if x.ok)} answered"
                     + "".join(f" ({'; '.join(x.errors[:1])} at t={x.t:.0f})" for x in during if not x.ok)
                     + f"; kvmsched_connected around the outage: {', '.join(connected) or 'no value'}")
    return notes


def _dry_run_output(record, verdict):
    """What a dry run says it would do (kvmsched's own output: information only)."""
    try:
        with open(os.path.join(record.outdir, "kvmsched.log"), errors="replace") as f:
            lines = [line.rstrip() for line in f if not line.startswith("#")]
    except OSError:
        lines = []
    would = [line for line in lines if re.search(r"would|dry", line, re.I)]
    verdict.info("(info) kvmsched output says what it would do",
                 f"{len(would)} of {len(lines)} lines mention would/dry-run"
                 + (f"; e.g. `{would[min(1, len(would) - 1)][:160]}`" if would else ""),
                 "informational (kvmsched's own log)")
