"""The lab's commands: run NAME [--short] | selftest | demo | all | list (lab/lab calls them)."""
import os
import re
import subprocess
import time

from . import config
from .common import Interrupted, log
from .criteria import eval_cpu, eval_faults, eval_mem, eval_reserve
from .guests import Guest, probe_kvm, wait_ready
from .host import mem_available_mib
from .libvirtd import lab_libvirtd_pid
from .plots import plot_cpu, plot_mem, plot_vcpu
from .report import cpu_table, mem_table, outcome, summary, write_scenario_report
from .run import Run
from .scenario import Scenario, scenario_names
from .virsh import host_pcpus, virsh

USAGE = "usage: python3 -m kvmlab run NAME [--short] | selftest | demo | all | list"


def kvmsched_pending(subcommand):
    """Why the kvmsched part is PENDING (binary missing, subcommand not there), or None."""
    exe = config.kvmsched_path()
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return f"kvmsched binary {exe} missing"
    try:
        r = subprocess.run([exe, subcommand, "--help"], capture_output=True, text=True, timeout=20)
    except Exception as e:
        return f"'{exe} {subcommand} --help' failed: {e}"
    if r.returncode != 0:
        return f"'{exe} {subcommand} --help' exits {r.returncode} (subcommand not implemented yet)"
    return None


def prepare_outdir(name):
    d = os.path.join(config.OUTROOT, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        path = os.path.join(d, f)
        if os.path.isfile(path):
            os.remove(path)
    return d


def check_env():
    try:
        virsh("version")
    except Exception as e:
        raise SystemExit(f"lab: libvirt not reachable on {config.URI} ({e}); run lab/lab setup")
    for f in ("vmlinuz", "initramfs.gz"):
        if not os.path.exists(os.path.join(config.CACHE, f)):
            raise SystemExit(f"lab: {config.CACHE}/{f} missing; run lab/lab image")
    probe_kvm()


def _not_run(name, status, scenario, report, why):
    with open(report, "w") as f:
        f.write(f"# {name}: {status}\n\n{scenario.description}\n\n{why}\n")
    log(f"{name}: {status} — {why}")
    return {"name": name, "status": status, "report": report, "plots": [], "why": why}


def resolve_args(args, host_free):
    """{host_free_mib} / {host_free_mib-N} -> host MemAvailable now (minus N), kvmsched's figure, e.g. to
    set a --host-reserve high enough to bite on a big host. Returns (args, reserve or None)."""
    out, reserve = [], None
    for a in args:
        m = re.fullmatch(r"\{host_free_mib(?:-(\d+))?\}", a)
        if m:
            reserve = int(host_free - int(m.group(1) or 0))
            a = str(reserve)
        out.append(a)
    return out, reserve


def run_scenario(name, short=False):
    scenario = Scenario(name)
    outdir = prepare_outdir(name)
    interval = scenario.interval
    report = os.path.join(outdir, "report.md")
    pending = kvmsched_pending(scenario.subcommand)
    if pending:
        return _not_run(name, "PENDING", scenario, report, pending)
    check_env()
    if any(e.action == "kill-libvirtd" for e in scenario.events) and lab_libvirtd_pid() is None:
        return _not_run(name, "SKIPPED", scenario, report,
                        f"libvirtd was not started by the lab (no live libvirtd in {config.STATE}/"
                        "libvirtd.pid): the lab does not kill a daemon it does not own")
    global_opts = ["--dry-run"] if scenario.dry_run else []
    if scenario.metrics:
        global_opts += ["--metrics", scenario.metrics]
    before, after = scenario.timing(short)
    npcpu = host_pcpus()
    guests = [Guest(spec, outdir) for spec in scenario.guest_specs(npcpu, short)]
    t_start = time.time()
    title = f"{name}{' (short)' if short else ''}"
    log(f"{title}: {scenario.description}")
    with Run(name, guests, outdir) as run:
        wait_ready(guests)
        boot = max(g.ready - g.started for g in guests)
        log(f"all {len(guests)} guests ready; slowest boot {boot:.1f} s")
        run.mark("guests ready")
        run.sleep(before)
        host_free = mem_available_mib()
        args, reserve = resolve_args(scenario.args, host_free)
        run.start_kvmsched(scenario.subcommand, interval if interval != int(interval) else int(interval),
                           args, global_opts, scenario.metrics, watch=(scenario.subcommand == "run"))
        kvmsched_t = run.now()
        run.run_events(scenario.events, kvmsched_t, after, scenario, npcpu, short)
        end_t = run.now()
        kvmsched_exit = run.kvmsched_exit
    samples = run.samples
    record = run.record()
    guests = run.all_guests
    if scenario.kind == "cpu":
        verdict, info = eval_cpu(scenario.criteria, samples, record, guests, kvmsched_t, end_t, interval)
    else:
        verdict, info = eval_mem(scenario.criteria, samples, record, guests, kvmsched_t, end_t)
        if reserve is not None:
            eval_reserve(scenario.criteria, samples, guests, kvmsched_t, host_free, reserve, verdict)
    fault_notes = eval_faults(scenario, samples, record, guests, kvmsched_t, end_t, interval, verdict)
    if kvmsched_exit is not None:
        verdict.add("kvmsched keeps running until stopped", False, f"exited with {kvmsched_exit}",
                    "runs until SIGTERM")
    if samples.errors:
        log(f"sampler missed {samples.errors} samples")
    plots = []
    memory_title = f"{title}: guest actual (solid) / unused (dashed)"
    if scenario.kind == "cpu":
        plots.append(plot_cpu(samples, outdir, record.marks, f"{title}: pCPU load (GT metric), 1 s samples"))
        plots.append(plot_vcpu(samples, outdir, record.marks, f"{title}: CPU usage per guest"))
        table = cpu_table(samples, guests, (kvmsched_t - before + 2, kvmsched_t),
                          (max(kvmsched_t, end_t - min(20, after / 2)), end_t))
        if scenario.subcommand == "run":  # the memory loop runs too
            plots.append(plot_mem(samples, outdir, record.marks, memory_title))
    else:
        plots.append(plot_mem(samples, outdir, record.marks, memory_title))
        table = mem_table(samples, guests, info)
    status = "PASS" if verdict.ok else "FAIL"
    duration = time.time() - t_start
    write_scenario_report(report, title, status, scenario, record, kvmsched_t, end_t, guests, boot,
                          duration, samples, info, fault_notes, verdict, table, plots)
    notes = list(fault_notes)
    if scenario.kind == "cpu":
        notes.append(f"pin changes after kvmsched start: {info['pin_changes_total'][0]} "
                     f"({info['pin_changes_total'][1]})")
    return outcome(name, status, duration, boot, verdict, table, report, plots, notes)


def take_lock():
    """One lab run at a time per machine: a second run would tear down the first one's guests."""
    import fcntl
    os.makedirs(config.STATE, exist_ok=True)
    f = open(os.path.join(config.STATE, "run.lock"), "a+")
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
    from .selftest import selftest
    if not argv:
        raise SystemExit(USAGE)
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
            if not rest:
                raise SystemExit(USAGE)
            return 1 if run_scenario(rest[0], short)["status"] == "FAIL" else 0
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
    raise SystemExit(f"lab: unknown command {cmd}\n{USAGE}")
