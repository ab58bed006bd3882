"""libvirt through virsh: one-shot calls, a long-lived interactive shell, output parsers."""
import os
import re
import subprocess

from . import config


def virsh(*args, check=True, timeout=60):
    """One `virsh -q -c $KVL_URI ARGS`; its stdout. check: a non-zero exit raises."""
    r = subprocess.run(["virsh", "-q", "-c", config.URI, *args], capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


class VirshShell:
    """One long-lived interactive virsh: ~1 ms per command, so sample timestamps are tight."""

    def __init__(self):
        self.proc = None

    def _start(self):
        # (not -q: quiet mode also silences 'echo', which frames each answer)
        self.proc = subprocess.Popen(["virsh", "-c", config.URI], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     bufsize=1)
        self.proc.stdin.write("echo @@END\n")
        self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line or line.strip() == "@@END":
                break

    def run(self, cmd):
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.proc.stdin.write(cmd + "\necho @@END\n")
        self.proc.stdin.flush()
        out = []
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc = None
                raise RuntimeError("virsh shell ended")
            if line.strip() == "@@END":
                break
            if line.startswith("virsh # "):
                continue
            out.append(line)
        return "".join(out)

    def close(self):
        """Ends the shell; the next run() starts a fresh one (and a fresh connection)."""
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except Exception:
                self.proc.kill()
        self.proc = None


def host_pcpus():
    for line in virsh("nodeinfo").splitlines():
        if line.startswith("CPU(s):"):
            return int(line.split(":")[1])
    return os.cpu_count()


def parse_domstats(text):
    """`virsh domstats` output -> {domain: {key: value}}."""
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
    """`virsh vcpuinfo` output -> [{vcpu, cpu (-1 if unknown), affinity (tuple of pCPUs)}]."""
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


def list_lab_domains():
    out = virsh("list", "--all", "--name", check=False)
    return [d.strip() for d in out.splitlines() if d.strip().startswith(config.PREFIX)]


def remove_domain(name):
    virsh("destroy", name, check=False)
    virsh("undefine", name, check=False)
