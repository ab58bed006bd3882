"""A scenario file (lab/scenarios/NAME.ini) as typed data: guests, timing, kvmsched, events,
criteria. Parsing errors are one clear line (SystemExit)."""
import configparser
import os
import re
from dataclasses import dataclass
from typing import Optional, Tuple

from . import config


@dataclass(frozen=True)
class Event:
    """One timed action of [events]: `at SECONDS = ACTION ARGS` (seconds after kvmsched start)."""
    at: float
    action: str
    guest: Optional[str] = None    # destroy, start-guest, restart, vcpupin
    vcpu: Optional[int] = None     # vcpupin
    cpuset: Optional[str] = None   # pin-all, vcpupin

    def __str__(self):
        parts = [self.action, self.guest, None if self.vcpu is None else str(self.vcpu), self.cpuset]
        return " ".join(p for p in parts if p is not None)


# action -> the Event fields its arguments fill, in order
EVENT_ARGS = {
    "kill-libvirtd": (),
    "start-libvirtd": (),
    "destroy": ("guest",),
    "start-guest": ("guest",),
    "restart": ("guest",),
    "pin-all": ("cpuset",),
    "vcpupin": ("guest", "vcpu", "cpuset"),
}


def parse_event(at, text, where):
    """'ACTION ARGS' at `at` s -> Event; a wrong action or argument count is a SystemExit."""
    words = text.split()
    action, args = words[0], words[1:]
    if action not in EVENT_ARGS:
        raise SystemExit(f"lab: {where}: unknown event action '{action}' "
                         f"(known: {', '.join(EVENT_ARGS)})")
    fields = EVENT_ARGS[action]
    if len(args) != len(fields):
        raise SystemExit(f"lab: {where}: event '{text.strip()}' takes "
                         f"{' '.join(f.upper() for f in fields) or 'no arguments'}")
    values = dict(zip(fields, args))
    if "vcpu" in values:
        if not values["vcpu"].isdigit():
            raise SystemExit(f"lab: {where}: event '{text.strip()}': vCPU '{values['vcpu']}' is not a number")
        values["vcpu"] = int(values["vcpu"])
    if "guest" in values and not values["guest"].startswith(config.PREFIX):
        raise SystemExit(f"lab: {where}: event '{text.strip()}': guest must be {config.PREFIX}N")
    return Event(at=at, action=action, **values)


@dataclass(frozen=True)
class GuestSpec:
    """Guest kvl-INDEX as [guests] defines it (per-guest and short_ keys resolved)."""
    index: int
    vcpus: int
    memory_mib: int
    max_memory_mib: int
    workload: str
    pins: Tuple[Optional[str], ...]   # per vCPU: a libvirt cpuset, or None (unpinned)
    balloon: str                      # virtio | none (no driver in the guest)
    stats_period: Optional[int]       # <stats period> in the XML; None: no period in the XML

    @property
    def name(self):
        return f"{config.PREFIX}{self.index}"


def pin_spec(spec, index, vcpus, npcpu):
    """none | all:<cpus> | spread (guest i -> pCPU (i-1) mod P) | <cpus> (every vCPU of this guest)
    | a;b;c (per vCPU). <cpus> is a libvirt cpuset ('0', '0-1', '0,1')."""
    spec = spec.strip()
    if spec == "none":
        return (None,) * vcpus
    if spec == "spread":
        return (str((index - 1) % npcpu),) * vcpus
    if spec.startswith("all:"):
        return (spec[4:],) * vcpus
    if ";" in spec:
        parts = spec.split(";")
        return tuple(parts[v % len(parts)] for v in range(vcpus))
    return (spec,) * vcpus


class Scenario:
    """lab/scenarios/NAME.ini (or any path via from_file)."""

    def __init__(self, name, path=None):
        self.name = name
        self.path = path or os.path.join(config.SCENARIO_DIR, f"{name}.ini")
        if not os.path.exists(self.path):
            raise SystemExit(f"lab: no scenario {self.path} (try: lab/lab list)")
        parser = configparser.ConfigParser(inline_comment_prefixes=("#",), interpolation=None)
        try:
            parser.read(self.path)
            self.kind = parser.get("scenario", "kind")
            self.description = parser.get("scenario", "description", fallback="")
            self.guest_keys = parser["guests"]
            self.kvmsched = parser["kvmsched"]
            self.timing_keys = parser["timing"]
        except (configparser.Error, KeyError) as e:
            raise SystemExit(f"lab: {self.path}: {e}")
        self.criteria = dict(parser["criteria"]) if parser.has_section("criteria") else {}
        self.events = self._events(parser)

    @classmethod
    def from_file(cls, path):
        return cls(os.path.basename(path)[:-4] if path.endswith(".ini") else path, path)

    # ---- [kvmsched]
    @property
    def subcommand(self):
        return self.kvmsched.get("subcommand")

    @property
    def interval(self):
        return self.kvmsched.getfloat("interval")

    @property
    def args(self):
        return self.kvmsched.get("args", "").split()

    @property
    def dry_run(self):
        return self.kvmsched.get("dry_run", "no").strip() == "yes"

    @property
    def metrics(self):
        return self.kvmsched.get("metrics", "").strip() or None

    # ---- [timing]
    def timing(self, short):
        """(before, after) in seconds; short_ keys apply with --short."""
        prefix = "short_" if short else ""
        tm = self.timing_keys
        return (tm.getfloat(prefix + "before", fallback=tm.getfloat("before")),
                tm.getfloat(prefix + "after", fallback=tm.getfloat("after")))

    # ---- [guests]
    def guest_count(self, npcpu):
        count = self.guest_keys.get("count").strip()
        # "2x" = two guests per host pCPU (scales the CPU scenarios to the host)
        return int(count[:-1]) * npcpu if count.endswith("x") else int(count)

    def guest_specs(self, npcpu, short):
        return [self.guest_spec(i, npcpu, short) for i in range(1, self.guest_count(npcpu) + 1)]

    def guest_spec(self, index, npcpu, short):
        """Guest kvl-index from [guests] (also for guests started later by a start-guest event)."""
        parity = "odd" if index % 2 else "even"

        def get(key, fallback=None):
            keys = (f"{key}.{index}", f"{key}.{parity}", key)
            if short:
                keys = tuple("short_" + k for k in keys) + keys
            for k in keys:
                if k in self.guest_keys:
                    return self.guest_keys[k]
            return fallback
        vcpus = int(get("vcpus", "1"))
        period = get("stats_period", "2").strip()
        if period != "none" and not period.isdigit():
            raise SystemExit(f"lab: {self.path}: stats_period '{period}' is not a number or none")
        return GuestSpec(index=index, vcpus=vcpus, memory_mib=int(get("memory_mib", "256")),
                         max_memory_mib=int(get("max_memory_mib", get("memory_mib", "256"))),
                         workload=get("workload", "idle"),
                         pins=pin_spec(get("pin", "none"), index, vcpus, npcpu),
                         balloon=get("balloon", "virtio").strip(),
                         stats_period=None if period == "none" else int(period))

    # ---- [events]
    def _events(self, parser):
        """[events]: 'at S = action args; action args' (S = seconds after kvmsched start)."""
        if not parser.has_section("events"):
            return []
        events = []
        for key, value in parser["events"].items():
            m = re.fullmatch(r"at\s+([0-9.]+)", key.strip())
            if not m:
                raise SystemExit(f"lab: {self.path}: [events] key '{key}' is not 'at <seconds>'")
            for action in value.split(";"):
                if action.strip():
                    events.append(parse_event(float(m.group(1)), action, self.path))
        return sorted(events, key=lambda e: e.at)


def scenario_names():
    return sorted(f[:-4] for f in os.listdir(config.SCENARIO_DIR) if f.endswith(".ini"))
