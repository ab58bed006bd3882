"""kvmsched lab runner: real guests, independent measurement, criteria, report, SVG plots.

Standard library only, Python 3.9 compatible. Measurement reads libvirt (through virsh) and
/proc, never kvmsched's own output. See lab/README.md for the commands and file formats.

Modules, in the direction the data flows:

- ``config``: paths and environment (KVL_URI, KVL_STATE, KVMSCHED, KVL_ACCEL)
- ``common``: logging, the interrupt exception, small statistics and number formatting
- ``virsh``, ``host``, ``libvirtd``: libvirt through virsh, /proc, the lab's libvirtd
- ``scenario``: a typed scenario (.ini) with dataclass events
- ``guests``: guest definitions (domain XML), start, readiness, OOM counts
- ``sampler``: the 1 s sampler thread; ``samples``: the recorded rows (CSV in/out) and the
  series derived from them
- ``prometheus``: the Prometheus text checker (also a CLI); ``watcher``: virt-admin + scrapes
- ``run``: one run (guests, sampler, kvmsched, events), torn down on every exit path
- ``criteria``: verdicts from recorded data only; ``report``: tables, report.md, summaries
- ``plots``: SVG charts; ``cli``: the commands; ``selftest``: the measurement proof
"""
