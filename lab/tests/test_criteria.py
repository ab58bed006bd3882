"""Criteria on small constructed runs (CSV files loaded as a run's output would be): each
criterion passes on the good run and fails on a run built to break it."""
import unittest

from kvmlab.criteria import eval_cpu, eval_mem

from tests.fixtures import guest, host_mem_csv, load, mem_csv, pcpu_csv, record, vcpu_csv

KVMSCHED_T = 10.0
END_T = 40.0
INTERVAL = 4.0
CPU_CRITERIA = {"stddev_max": "5", "settle_within_intervals": "3", "pin_changes_after_settle_max": "0",
                "hard_pinned": "yes"}


def cpu_run(swap_at=None, imbalance_before_swap=False, never_balanced=False, loose_at_end=False):
    """4 guests x 1 vCPU all on pCPU0 until kvmsched moves kvl-3 and kvl-4 to pCPU1 at t=14."""
    vcpu_rows, loads = [], {}
    for t in range(1, int(END_T) + 1):
        moved = t >= 14 and not never_balanced
        swapped = swap_at is not None and t >= swap_at
        for i in range(1, 5):
            on = "1" if moved and i >= 3 else "0"
            if swapped and i in (1, 3):
                on = "1" if on == "0" else "0"
            if loose_at_end and i == 2 and t == END_T:
                on = "0+1"
            vcpu_rows.append((float(t), f"kvl-{i}", 0, on))
        loads[float(t)] = [50.0, 50.0] if moved else [100.0, 0.0]
        if imbalance_before_swap and swap_at - 2 * INTERVAL - 1 <= t < swap_at:
            loads[float(t)] = [75.0, 25.0]
    samples, outdir = load({"vcpu.csv": vcpu_csv(vcpu_rows), "pcpu.csv": pcpu_csv(loads)})
    guests = [guest(i, outdir, started=0.0, ready=1.0) for i in range(1, 5)]
    return samples, guests, record(outdir, initial=[g.name for g in guests])


def rows_by_name(verdict):
    return {name: (ok, figure) for name, ok, figure, _threshold in verdict.rows}


def find(verdict, prefix):
    hits = [(ok, figure) for name, (ok, figure) in rows_by_name(verdict).items() if name.startswith(prefix)]
    assert len(hits) == 1, (prefix, list(rows_by_name(verdict)))
    return hits[0]


class CpuCriteriaTest(unittest.TestCase):
    def evaluate(self, samples, guests, rec, criteria=CPU_CRITERIA):
        return eval_cpu(criteria, samples, rec, guests, KVMSCHED_T, END_T, INTERVAL)

    def test_balanced_run_passes(self):
        verdict, info = self.evaluate(*cpu_run())
        self.assertTrue(verdict.ok, verdict.md())
        self.assertEqual(info["settle_t"], 16.0)  # 3-sample rolling mean: 14, 15, 16
        self.assertEqual(info["pin_changes_total"][0], 2)

    def test_never_balanced_fails(self):
        verdict, _ = self.evaluate(*cpu_run(never_balanced=True))
        self.assertFalse(find(verdict, "balanced (std-dev")[0])
        self.assertFalse(find(verdict, "steady std-dev")[0])
        self.assertFalse(verdict.ok)

    def test_swap_at_balanced_loads_is_churn(self):
        verdict, _ = self.evaluate(*cpu_run(swap_at=30))
        ok, figure = find(verdict, "pin changes after balanced while")
        self.assertFalse(ok)
        self.assertIn("2 (kvl-1/vcpu0: 1 at t=30; kvl-3/vcpu0: 1 at t=30)", figure)

    def test_swap_answering_a_measured_imbalance_is_not_churn(self):
        verdict, _ = self.evaluate(*cpu_run(swap_at=30, imbalance_before_swap=True))
        self.assertTrue(find(verdict, "pin changes after balanced while")[0], verdict.md())
        self.assertTrue(find(verdict, "(info) pin changes after balanced that answered")[1].startswith("2:"))

    def test_soft_affinity_at_end_fails_hard_pinned(self):
        verdict, _ = self.evaluate(*cpu_run(loose_at_end=True))
        ok, figure = find(verdict, "every vCPU hard-pinned")
        self.assertFalse(ok)
        self.assertIn("kvl-2/0=0+1", figure)

    def test_gap_in_sampling_fails_continuity(self):
        samples, guests, rec = cpu_run()
        samples.pcpu_rows = [r for r in samples.pcpu_rows if not 20 <= r["t"] <= 27]
        verdict, _ = self.evaluate(samples, guests, rec)
        ok, figure = find(verdict, "measurement continuous")
        self.assertFalse(ok)
        self.assertIn("longest gap 9.0 s at t=19", figure)


def mem_run(peak=2000.0, drop=200.0, idle_unused=150.0):
    """kvl-1 consumes from 512 towards `peak` and frees in steps of `drop`; kvl-2 idle."""
    rows, actual, t = [], 512.0, 0.0
    times = []
    while t <= 120:
        if 12 <= t < 60:
            actual = min(peak, actual + 100)
        elif t >= 70:
            actual = max(512.0, actual - drop)
        rows.append((t, "kvl-1", actual, 60.0))
        rows.append((t, "kvl-2", 512.0, idle_unused))
        times.append(t)
        t += 2.0
    samples, outdir = load({"mem.csv": mem_csv(rows), "host_mem.csv": host_mem_csv(times)})
    guests = [guest(1, outdir, workload="idle:5,mem,upto=max,free", memory=512, max_memory=2048),
              guest(2, outdir, workload="idle", memory=512, max_memory=2048)]
    return samples, guests


MEM_CRITERIA = {"consumer_reach_max_within_mib": "100", "released_fraction_min": "0.5",
                "max_drop_mib": "256", "idle_unused_min_mib": "90", "oom_kills_max": "0",
                "host_available_min_mib": "200"}


class MemoryCriteriaTest(unittest.TestCase):
    def test_consumer_run_passes(self):
        samples, guests = mem_run()
        verdict, info = eval_mem(MEM_CRITERIA, samples, record(''), guests, 10.0, 120.0)
        self.assertTrue(verdict.ok, verdict.md())
        self.assertEqual(info["kvl-1"]["peak"], 2000.0)

    def test_consumer_short_of_max_fails(self):
        samples, guests = mem_run(peak=1500.0)
        verdict, _ = eval_mem(MEM_CRITERIA, samples, record(''), guests, 10.0, 120.0)
        self.assertFalse(find(verdict, "kvl-1 (consumer to max) reaches")[0])

    def test_sudden_release_fails_gradual(self):
        samples, guests = mem_run(drop=600.0)
        verdict, _ = eval_mem(MEM_CRITERIA, samples, record(''), guests, 10.0, 120.0)
        ok, figure = find(verdict, "gradual:")
        self.assertFalse(ok)
        self.assertIn("600.0 MiB (kvl-1", figure)

    def test_idle_guest_squeezed_fails(self):
        samples, guests = mem_run(idle_unused=40.0)
        verdict, _ = eval_mem(MEM_CRITERIA, samples, record(''), guests, 10.0, 120.0)
        self.assertFalse(find(verdict, "kvl-2 (idle) keeps unused memory")[0])


if __name__ == "__main__":
    unittest.main()


class RecordedRunTest(unittest.TestCase):
    """cpu-all-on-one --short recorded on this machine (2026-12-01, kvmsched vcpu 4, started at
    t=65.3, stopped at t=95.3; balanced by moving kvl-2 and kvl-3 to pCPU1 at t=70)."""
    KVMSCHED_T, END_T = 65.3, 95.3
    CRITERIA = {"stddev_max": "5", "settle_within_intervals": "3", "pin_changes_after_settle_max": "0"}

    def recorded(self):
        import os
        from kvmlab.samples import Samples
        from tests.fixtures import DATA
        outdir = os.path.join(DATA, "cpu-all-on-one-short")
        samples = Samples.load(outdir)
        guests = [guest(i, outdir, started=0.0, ready=1.0) for i in range(1, 5)]
        return samples, guests, record(outdir, initial=[g.name for g in guests])

    def test_recorded_run_passes(self):
        samples, guests, rec = self.recorded()
        verdict, info = eval_cpu(self.CRITERIA, samples, rec, guests, self.KVMSCHED_T, self.END_T, 4.0)
        self.assertTrue(verdict.ok, verdict.md())
        self.assertEqual(info["pin_changes_total"][0], 2)
        self.assertAlmostEqual(info["settle_t"] - self.KVMSCHED_T, 6.5, delta=0.1)

    def test_recorded_run_with_a_swap_at_balanced_loads_fails(self):
        # kvl-1 and kvl-2 exchange pCPUs at t >= 85 while the measured loads were balanced
        samples, guests, rec = self.recorded()
        swap = {"0": "1", "1": "0"}
        for r in samples.vcpu_rows:
            if r["t"] >= 85 and r["guest"] in ("kvl-1", "kvl-2"):
                r["affinity"] = swap[r["affinity"]]
        verdict, _info = eval_cpu(self.CRITERIA, samples, rec, guests, self.KVMSCHED_T, self.END_T, 4.0)
        ok, figure = find(verdict, "pin changes after balanced while")
        self.assertFalse(ok)
        self.assertTrue(figure.startswith("2 (kvl-1/vcpu0: 1 at t=85; kvl-2/vcpu0: 1 at t=85)"), figure)

    def test_recorded_run_with_a_tighter_threshold_fails(self):
        samples, guests, rec = self.recorded()
        criteria = dict(self.CRITERIA, stddev_max="0.5")
        verdict, _info = eval_cpu(criteria, samples, rec, guests, self.KVMSCHED_T, self.END_T, 4.0)
        self.assertFalse(find(verdict, "steady std-dev")[0])
