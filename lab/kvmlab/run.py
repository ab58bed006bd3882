"""One run: guests + sampler + optional kvmsched process + [events], torn down on every exit
path (also failure, Ctrl-C, SIGTERM). What the criteria need afterwards is a RunRecord."""
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from . import config
from .common import log, on_signal
from .guests import Guest, restart_guest, start_guests
from .libvirtd import lab_libvirtd_pid, proc_comm, start_libvirtd
from .sampler import Sampler
from .samples import final_affinity
from .scenario import Event
from .virsh import list_lab_domains, remove_domain, virsh
from .watcher import Watcher


@dataclass
class EventRecord:
    """An event as it happened: t when it began, done_t when it returned (s since guests started)."""
    t: float
    event: Event
    detail: str
    done_t: float

    @property
    def action(self):
        return self.event.action


@dataclass
class RunRecord:
    """What a run leaves for the criteria and the report (times in s since the guests started;
    the guests' started/ready are time.monotonic(), t0 converts them)."""
    t0: float
    outdir: str
    events: List[EventRecord] = field(default_factory=list)
    marks: List[Tuple[float, str]] = field(default_factory=list)
    watcher: Optional[Watcher] = None
    kvmsched_cmd: List[str] = field(default_factory=list)
    initial_guests: List[str] = field(default_factory=list)  # names, started before kvmsched

    def since_start(self, monotonic_t):
        return None if monotonic_t is None else monotonic_t - self.t0

    def libvirtd_outages(self):
        """[(killed_t, back_t + 3)]: where the lab itself took libvirtd away."""
        res, down = [], None
        for rec in self.events:
            if rec.action == "kill-libvirtd":
                down = rec.t
            elif rec.action == "start-libvirtd" and down is not None:
                res.append((down, rec.done_t + 3))
                down = None
        if down is not None:
            res.append((down, 1e9))
        return res

    def guests_at(self, t):
        """Names of the guests that exist at t: the run's initial guests and those of start-guest
        events at or before t, minus those of destroy events at or before t (a restart keeps
        its guest)."""
        alive = set(self.initial_guests)
        for rec in self.events:
            if rec.t > t:
                break
            if rec.action == "start-guest":
                alive.add(rec.event.guest)
            elif rec.action == "destroy":
                alive.discard(rec.event.guest)
        return alive


def cleanup_stale():
    for name in list_lab_domains():
        log(f"removing leftover guest {name}")
        remove_domain(name)


class Run:
    """Guests + sampler + optional kvmsched process, torn down on any exit."""

    def __init__(self, name, guests, outdir):
        self.name, self.guests, self.outdir = name, guests, outdir
        self.t0 = time.monotonic()
        self.sampler = None
        self.kvmsched_proc = None
        self.kvmsched_log = None
        self.kvmsched_exit = None
        self.kvmsched_cmd = []
        self.marks = []
        self.watcher = None
        self.events = []            # [EventRecord]
        self.libvirtd_down = False  # killed by an event and not (yet) restarted
        self.all_guests = list(guests)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, on_signal)
        try:
            cleanup_stale()
            self.t0 = time.monotonic()
            start_guests(self.guests, self.outdir)
            self.sampler = Sampler(self.all_guests, self.t0)
            self.sampler.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    @property
    def samples(self):
        return self.sampler.samples

    def record(self):
        return RunRecord(t0=self.t0, outdir=self.outdir, events=list(self.events),
                         marks=list(self.marks), watcher=self.watcher,
                         kvmsched_cmd=list(self.kvmsched_cmd),
                         initial_guests=[g.name for g in self.guests])

    def now(self):
        return time.monotonic() - self.t0

    def mark(self, label):
        self.marks.append((round(self.now(), 2), label))

    def start_kvmsched(self, subcommand, interval, args, global_opts=(), metrics=None, watch=False):
        exe = config.kvmsched_path()
        if subcommand == "run":  # both loops; the scenario's interval for each
            cmd = [exe, "-c", config.URI, *global_opts, subcommand, "--vcpu-interval", str(interval),
                   "--memory-interval", str(interval)] + args
        else:
            cmd = [exe, "-c", config.URI, *global_opts, subcommand, str(interval)] + args
        self.kvmsched_log = open(os.path.join(self.outdir, "kvmsched.log"), "w")
        self.kvmsched_log.write("# " + " ".join(cmd) + "\n")
        self.kvmsched_log.flush()
        self.kvmsched_proc = subprocess.Popen(cmd, stdout=self.kvmsched_log, stderr=subprocess.STDOUT,
                                              cwd=config.REPO, stdin=subprocess.DEVNULL)
        self.mark("kvmsched start")
        log(f"kvmsched pid {self.kvmsched_proc.pid}: {' '.join(cmd)}")
        self.kvmsched_cmd = cmd
        if watch or metrics:
            self.watcher = Watcher(self.now, self.outdir, self.kvmsched_proc.pid, metrics)
            self.watcher.start()

    # ---- [events]
    def _guest(self, name):
        return next((g for g in self.all_guests if g.name == name), None)

    def event(self, ev, scenario, npcpu, short):
        """Performs one Event (blocking until done) and records it."""
        t = self.now()
        detail = ""
        if ev.action == "kill-libvirtd":
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
        elif ev.action == "start-libvirtd":
            pid = start_libvirtd()
            self.libvirtd_down = False
            self.mark("libvirtd back")
            detail = f"new pid {pid}, answering after {self.now() - t:.2f} s"
        elif ev.action == "destroy":
            virsh("destroy", ev.guest)
            self.mark(f"destroy {ev.guest}")
            detail = ev.guest
        elif ev.action == "restart":
            g = self._guest(ev.guest)
            if g is None:
                raise RuntimeError(f"restart: {ev.guest} is not a guest of this run")
            restart_guest(g)
            self.mark(f"restart {g.name}")
            detail = f"{g.name}: virsh destroy + start (same domain, same UUID)"
        elif ev.action == "start-guest":
            index = int(ev.guest[len(config.PREFIX):])
            g = Guest(scenario.guest_spec(index, npcpu, short), self.outdir)
            start_guests([g], self.outdir)
            self.all_guests.append(g)  # the sampler's list: sampled from now on
            self.mark(f"start {g.name}")
            detail = f"{g.name} wl={g.workload} pins={g.pins}"
        elif ev.action == "pin-all":
            # one virsh invocation ('cmd; cmd; ...') so the re-seed is near-atomic for kvmsched
            running = virsh("list", "--name").split()
            last = final_affinity(self.sampler.samples)
            cmds, moved = [], []
            for g in self.all_guests:
                if g.name in running:
                    for i in range(g.vcpus):
                        cmds.append(f"vcpupin {g.name} {i} {ev.cpuset} --live")
                        if last.get((g.name, i)) != ev.cpuset.replace(",", "+"):
                            moved.append(f"{g.name}/{i} (was {last.get((g.name, i))})")
            virsh("; ".join(cmds))
            self.mark(f"pin-all {ev.cpuset}")
            detail = f"moved to {ev.cpuset}: {', '.join(moved) or 'none (all there)'}"
        elif ev.action == "vcpupin":
            virsh("vcpupin", ev.guest, str(ev.vcpu), ev.cpuset, "--live")
            self.mark(f"vcpupin {ev.guest}")
            detail = f"{ev.guest} {ev.vcpu} {ev.cpuset}"
        self.events.append(EventRecord(t=t, event=ev, detail=detail, done_t=self.now()))
        log(f"event at t={t:.1f}: {ev} — {detail}")

    def check_ready(self):
        """Notes readiness of guests started or restarted after the run began."""
        for g in self.all_guests:
            if g.ready is None and g.started and g.is_ready():
                g.ready = time.monotonic()
                late = g not in self.guests or any(r.action == "restart" and r.event.guest == g.name
                                                   for r in self.events)
                if late:
                    self.mark(f"{g.name} ready")
                    log(f"{g.name} ready ({g.ready - g.started:.1f} s after start)")

    def run_events(self, events, kvmsched_t, after, scenario, npcpu, short):
        """Events at their time after kvmsched start (sequential: a blocking event such as
        start-libvirtd delays the ones after it), then run until kvmsched_t + after."""
        for ev in events:
            self.sleep(kvmsched_t + ev.at - self.now())
            self.event(ev, scenario, npcpu, short)
        self.sleep(kvmsched_t + after - self.now())

    def stop_kvmsched(self):
        if self.kvmsched_proc is None:
            return
        if self.kvmsched_proc.poll() is None:
            os.kill(self.kvmsched_proc.pid, signal.SIGTERM)
            try:
                self.kvmsched_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.kvmsched_proc.pid, signal.SIGKILL)
                self.kvmsched_proc.wait()
            log(f"kvmsched pid {self.kvmsched_proc.pid} stopped (SIGTERM), exit "
                f"{self.kvmsched_proc.returncode}")
        else:
            self.kvmsched_exit = self.kvmsched_proc.returncode
            log(f"kvmsched exited early with code {self.kvmsched_exit}")
        self.kvmsched_log.close()

    def sleep(self, secs):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            self.check_ready()
            proc = self.kvmsched_proc
            if proc is not None and proc.poll() is not None and self.kvmsched_exit is None:
                self.kvmsched_exit = proc.returncode
                log(f"kvmsched exited early with code {self.kvmsched_exit} (see kvmsched.log)")
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))

    def __exit__(self, exc_type, exc, tb):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # The watcher first: its scrapes and virt-admin polls judge kvmsched
        # while it runs, not while it is being stopped.
        if self.watcher:
            self.watcher.stop()
        try:
            self.stop_kvmsched()
        except Exception as e:
            log(f"stopping kvmsched: {e}")
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
