"""While kvmsched runs: libvirtd's view of its connection (virt-admin, 1 s) and, with
--metrics, a scrape of http://ADDR/metrics every few seconds (python urllib)."""
import os
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import List, Optional

from . import prometheus
from .libvirtd import kvmsched_clients


@dataclass
class Scrape:
    t: float
    ok: bool
    errors: List[str] = field(default_factory=list)
    pins_total: Optional[float] = None   # sum of kvmsched_pins_total samples
    sample_count: int = 0


class Watcher(threading.Thread):
    def __init__(self, now, outdir, kvmsched_pid, metrics_addr, scrape_every=3.0):
        super().__init__(daemon=True)
        self.now, self.outdir = now, outdir
        self.kvmsched_pid, self.addr, self.every = kvmsched_pid, metrics_addr, scrape_every
        self.stop_event = threading.Event()
        self.clients = []    # (t, [(id, readonly)]) ; None = virt-admin failed (libvirtd down)
        self.scrapes = []    # [Scrape]
        self.connected = []  # (t, kvmsched_connected value) per successful scrape

    def scrape(self):
        t = self.now()
        try:
            with urllib.request.urlopen(f"http://{self.addr}/metrics", timeout=3) as r:
                body = r.read().decode("utf-8", "replace")
                content_type = r.headers.get("Content-Type", "")
        except Exception as e:
            # A scrape that raced the end of the run (the thread was held up,
            # e.g. in virt-admin during a libvirt stall, while kvmsched was
            # being stopped) says nothing about kvmsched's endpoint.
            if not self.stop_event.is_set():
                self.scrapes.append(Scrape(t, False, [f"scrape failed: {e}"]))
            return
        errors, samples = prometheus.validate(body)
        if "text/plain" not in content_type:
            errors.append(f"Content-Type {content_type!r}")
        pins = sum(samples["kvmsched_pins_total"]) if "kvmsched_pins_total" in samples else None
        self.scrapes.append(Scrape(t, not errors, errors, pins, sum(len(v) for v in samples.values())))
        self.connected.append((t, samples.get("kvmsched_connected", [None])[0]))
        first = os.path.join(self.outdir, "metrics-first.txt")
        if not os.path.exists(first):
            with open(first, "w") as f:
                f.write(body)
        with open(os.path.join(self.outdir, "metrics-last.txt"), "w") as f:
            f.write(body)

    def run(self):
        next_scrape = time.monotonic() + 1.5
        while not self.stop_event.is_set():
            self.clients.append((self.now(), kvmsched_clients(self.kvmsched_pid)))
            if self.stop_event.is_set():
                break
            if self.addr and time.monotonic() >= next_scrape:
                self.scrape()
                next_scrape += self.every
            self.stop_event.wait(1.0)

    def stop(self):
        self.stop_event.set()
        self.join(timeout=15)
