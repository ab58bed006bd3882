"""Lab guests: the domain XML, define + start, readiness from the serial console, OOM counts,
and the KVM probe (KVL_ACCEL=auto)."""
import os
import re
import time

from . import config
from .common import log
from .scenario import GuestSpec
from .virsh import virsh

READY_LINE = "kvl: ready"


class Guest:
    """A guest of one run: its spec, serial log, and when it was started / ready
    (time.monotonic(); the last start and the readiness after it)."""

    def __init__(self, spec, outdir):
        self.spec = spec
        self.name = spec.name
        self.vcpus, self.mem, self.maxmem = spec.vcpus, spec.memory_mib, spec.max_memory_mib
        self.workload, self.pins = spec.workload, list(spec.pins)
        # balloon = none: the balloon device is there, but the guest kernel refuses to load
        # virtio_balloon (module_blacklist=), so no driver, no stats, and the balloon cannot move
        self.balloon = spec.balloon
        self.stats_period = spec.stats_period
        self.serial = os.path.join(outdir, f"serial-{self.name}.log")
        self.previous_serials = []  # serial logs of earlier boots (restart events)
        self.started = None
        self.ready = None

    @property
    def kind(self):
        """consumer (mem phase) | light (duty) | heavy (cpu) | idle."""
        phases = [t.split(":")[0] for t in self.workload.split(",")]
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
        domain_type = "kvm" if config.accel == "kvm" else "qemu"
        cmdline = f"console=ttyS0 quiet panic=-1 wl={self.workload}"
        if self.balloon == "none":
            cmdline += " module_blacklist=virtio_balloon"
        balloon = ("<memballoon model='virtio'/>" if self.stats_period is None else
                   f"<memballoon model='virtio'><stats period='{self.stats_period}'/></memballoon>")
        return f"""<domain type='{domain_type}'>
  <name>{self.name}</name>
  <memory unit='MiB'>{self.maxmem}</memory>
  <currentMemory unit='MiB'>{self.mem}</currentMemory>
  <vcpu placement='static'>{self.vcpus}</vcpu>
  {cputune}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{config.CACHE}/vmlinuz</kernel>
    <initrd>{config.CACHE}/initramfs.gz</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff><on_reboot>destroy</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <serial type='file'><source path='{self.serial}'/><target port='0'/></serial>
    {balloon}
  </devices>
</domain>
"""

    def is_ready(self):
        """The serial log (of the current boot) says READY_LINE."""
        if not os.path.exists(self.serial):
            return False
        with open(self.serial, errors="replace") as f:
            return READY_LINE in f.read()

    def describe(self):
        return (f"{self.vcpus} vCPU, {self.mem}/{self.maxmem} MiB, pins={self.pins}, wl={self.workload}"
                + (" (no balloon driver)" if self.balloon == "none" else "")
                + (" (no stats period in the XML)" if self.stats_period is None else ""))


def start_guests(guests, outdir):
    """Define (XML kept in outdir) and start every guest."""
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
        log(f"started {g.name}: {g.describe()}")


def restart_guest(guest):
    """destroy + start the same defined domain (same UUID, a new QEMU process); readiness is
    looked for again in a fresh serial log."""
    virsh("destroy", guest.name)
    if os.path.exists(guest.serial):
        kept = guest.serial[:-len(".log")] + f".boot{len(guest.previous_serials) + 1}.log"
        os.replace(guest.serial, kept)
        guest.previous_serials.append(kept)
    guest.ready = None
    virsh("start", guest.name)
    guest.started = time.monotonic()


def wait_ready(guests, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for g in guests:
            if g.ready is None and g.is_ready():
                g.ready = time.monotonic()
        if all(g.ready for g in guests):
            return
        time.sleep(0.5)
    missing = [g.name for g in guests if not g.ready]
    raise RuntimeError(f"guests not ready after {timeout} s: {missing} (see their serial logs)")


def oom_kills(guests):
    """{guest: OOM lines in its serial log}."""
    res = {}
    for g in guests:
        n = 0
        for path in g.previous_serials + [g.serial]:
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    for line in f:
                        if "Out of memory" in line or "oom-kill" in line or "Killed process" in line:
                            n += 1
        res[g.name] = n
    return res


def probe_kvm():
    """KVL_ACCEL=auto: use KVM only if a KVM guest boots to READY_LINE within 45 s."""
    if config.accel != "auto":
        return
    config.accel = "tcg"
    if not os.path.exists("/dev/kvm"):
        log("accel probe: no /dev/kvm, using TCG")
        return
    outdir = os.path.join(config.OUTROOT, "kvm-probe")
    os.makedirs(outdir, exist_ok=True)
    spec = GuestSpec(index=0, vcpus=1, memory_mib=256, max_memory_mib=256, workload="idle",
                     pins=(None,), balloon="virtio", stats_period=2)
    g = Guest(spec, outdir)
    g.name = f"{config.PREFIX}probe"
    g.serial = os.path.join(outdir, f"serial-{g.name}.log")
    if os.path.exists(g.serial):
        os.remove(g.serial)
    xml = g.xml().replace("<domain type='qemu'>", "<domain type='kvm'>")
    path = os.path.join(outdir, "probe.xml")
    with open(path, "w") as f:
        f.write(xml)
    try:
        virsh("create", path)
        g.started = time.monotonic()
        wait_ready([g], timeout=45)
        config.accel = "kvm"
        log(f"accel probe: KVM guest booted in {g.ready - g.started:.1f} s, using KVM")
    except Exception as e:
        log(f"accel probe: KVM guest did not boot ({str(e)[:120]}), using TCG")
    finally:
        virsh("destroy", g.name, check=False)
