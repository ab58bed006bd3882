"""Logging, the interrupt exception, and the small statistics every module shares."""
import math
import statistics
import time


def log(msg):
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Interrupted(Exception):
    """SIGINT/SIGTERM/SIGHUP during a run: the run tears its guests down and re-raises."""


def on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


def pstdev(xs):
    """Population std-dev; 0 for fewer than two values."""
    return statistics.pstdev(xs) if len(xs) > 1 else 0.0


def mean(xs):
    """Mean of the present values ('' and None skipped); NaN when there are none."""
    xs = [x for x in xs if x is not None and x != ""]
    return sum(xs) / len(xs) if xs else float("nan")


def median(xs):
    return statistics.median(xs) if xs else None


def percentile(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fmt(x, digits=1):
    """A figure for a report: 'n/a' for None/NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}"
