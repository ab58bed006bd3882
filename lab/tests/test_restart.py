"""A guest restarted mid-run (destroy + start of the same domain) must be grown again when it
consumes: judged from its measured balloon actual before and after the restart."""
import types
import unittest

from kvmlab.criteria import Verdict, eval_faults, eval_mem

from tests.fixtures import event, guest, load, mem_csv, record

KVMSCHED_T, END_T, INTERVAL, RESTART_T = 10.0, 120.0, 3.0, 50.0
CRITERIA = {"grown_after_restart_min_mib": "kvl-2:256"}


def restart_run(grown_before=True, grown_after=True, stats_after=True):
    """kvl-2 (no stats period in its XML) consumes from 512 MiB; destroyed + started at t=50.
    As recorded by the lab: not running until t=54, then QEMU reports the maximum (2048) until
    the guest's balloon driver loads and takes it to the XML's 512 MiB (t=64), ready at t=65,
    consumes again from t=70. Without a stats period after the restart, `unused` is the
    driver's single report at load (one stale value)."""
    rows = []
    actual = 512.0
    for step in range(0, int(END_T) // 2 + 1):
        t = float(step * 2)
        rows.append((t, "kvl-1", 512.0, 200.0, 300.0))
        if RESTART_T <= t < RESTART_T + 4:
            continue  # not running: not in domstats --list-running
        if RESTART_T + 4 <= t < RESTART_T + 14:
            actual = 2048.0
        elif t == RESTART_T + 14:
            actual = 512.0
        elif 16 <= t < RESTART_T and grown_before:
            actual = min(2048.0, actual + 80)
        elif t >= 70 and grown_after:
            actual = min(2048.0, actual + 80)
        if t < 12 or RESTART_T <= t < RESTART_T + 14:
            unused = ""
        elif t < RESTART_T or stats_after:
            unused = 40.0 + t
        else:
            unused = 1925.1
        rows.append((t, "kvl-2", actual, unused, 100.0 + 4 * t))
    samples, outdir = load({"mem.csv": mem_csv(rows)})
    guests = [guest(1, outdir, workload="idle", memory=512, max_memory=2048, started=0.0, ready=5.0),
              guest(2, outdir, workload="idle:10,mem,upto=max", memory=512, max_memory=2048,
                    started=RESTART_T + 1, ready=RESTART_T + 15, stats_period=None)]
    rec = record(outdir, initial=["kvl-1", "kvl-2"],
                 events=[event(RESTART_T, "restart kvl-2", done_t=RESTART_T + 1)])
    return samples, guests, rec


def judge(samples, guests, rec):
    verdict = Verdict()
    scenario = types.SimpleNamespace(criteria=CRITERIA, dry_run=False)
    notes = eval_faults(scenario, samples, rec, guests, KVMSCHED_T, END_T, INTERVAL, verdict)
    return verdict, notes


def row(verdict, prefix):
    hits = [(ok, figure) for name, ok, figure, _th in verdict.rows if name.startswith(prefix)]
    assert len(hits) == 1, (prefix, [r[0] for r in verdict.rows])
    return hits[0]


def find_ok(verdict, prefix):
    return row(verdict, prefix)[0]


class RestartTest(unittest.TestCase):
    def test_grown_again_after_restart_passes(self):
        verdict, _notes = judge(*restart_run())
        self.assertTrue(verdict.ok, verdict.md())
        ok, figure = row(verdict, "kvl-2 grown again after its restart")
        self.assertIn("largest rise after ready (t=65): 512 → 2048 MiB (+1536, t=66–", figure)
        self.assertNotIn("stale", figure)

    def test_not_grown_after_restart_fails(self):
        # today's kvmsched: the stats period is set once per UUID, so after the restart the
        # guest has no balloon stats and is never grown
        verdict, _notes = judge(*restart_run(grown_after=False, stats_after=False))
        ok, figure = row(verdict, "kvl-2 grown again after its restart")
        self.assertFalse(ok)
        self.assertIn("largest rise after ready (t=65): none", figure)
        self.assertIn("distinct balloon unused values after ready: 1 (stale: no stats period)", figure)
        self.assertTrue(row(verdict, "kvl-2 grown before its restart")[0])

    def test_not_grown_before_restart_fails_the_setup(self):
        verdict, _notes = judge(*restart_run(grown_before=False))
        self.assertFalse(row(verdict, "kvl-2 grown before its restart")[0])

    def test_restart_is_not_a_drop(self):
        samples, guests, rec = restart_run()
        crit = {"max_drop_mib": "256"}
        verdict, info = eval_mem(crit, samples, rec, guests, KVMSCHED_T, END_T)
        self.assertTrue(find_ok(verdict, "gradual:"), verdict.md())
        rec.events = []  # the same samples without the restart event: 2048 -> 512 is a drop
        verdict, info = eval_mem(crit, samples, rec, guests, KVMSCHED_T, END_T)
        self.assertFalse(find_ok(verdict, "gradual:"))
        self.assertEqual(info["kvl-2"]["maxdrop"][0], 2048.0 - 512.0)  # the boot's fall at t=64

    def test_not_ready_again_fails(self):
        samples, guests, rec = restart_run()
        guests[1].ready = 5.0  # the ready of its first boot only
        verdict, _notes = judge(samples, guests, rec)
        self.assertEqual(row(verdict, "kvl-2 grown again after its restart")[1], "not ready again after the restart")

    def test_guest_without_restart_event_fails(self):
        samples, guests, rec = restart_run()
        rec.events = []
        verdict, _notes = judge(samples, guests, rec)
        self.assertEqual(row(verdict, "kvl-2 grown again after its restart"), (False, "no restart event"))


if __name__ == "__main__":
    unittest.main()


class RecordedRestartTest(unittest.TestCase):
    """mem-restart-no-period --short recorded with /work/main's release kvmsched (2026-12-01
    14:07 UTC): kvmsched started at t=24.6, kvl-2 restarted at t=69.6 (virsh start done ~70.0),
    ready again 12.0 s later. That kvmsched sets the stats period once per UUID: kvl-2 is grown
    before the restart and never after."""

    def test_todays_kvmsched_fails_after_the_restart(self):
        import os
        from kvmlab.samples import Samples
        from tests.fixtures import DATA
        outdir = os.path.join(DATA, "mem-restart-no-period-main")
        samples = Samples.load(outdir)
        guests = [guest(1, outdir, workload="idle", memory=512, max_memory=2048, started=0.0, ready=5.0),
                  guest(2, outdir, workload="idle:12,mem,grow=40,upto=max", memory=512, max_memory=2048,
                        started=70.0, ready=82.0, stats_period=None)]
        rec = record(outdir, initial=["kvl-1", "kvl-2"], events=[event(69.6, "restart kvl-2", done_t=70.0)])
        verdict = Verdict()
        scenario = types.SimpleNamespace(criteria=CRITERIA, dry_run=False)
        eval_faults(scenario, samples, rec, guests, 24.6, 154.6, INTERVAL, verdict)
        ok_before, before = row(verdict, "kvl-2 grown before its restart")
        self.assertTrue(ok_before, before)
        ok_after, after = row(verdict, "kvl-2 grown again after its restart")
        self.assertFalse(ok_after)
        self.assertIn("largest rise after ready (t=82): none", after)
        self.assertIn("(stale: no stats period)", after)
        _verdict, info = eval_mem({}, samples, rec, guests, 24.6, 154.6)
        self.assertLess(info["kvl-2"]["maxdrop"][0], 256)  # the restart's fall is not a drop


class RecordedFixedRestartTest(unittest.TestCase):
    """The same scenario recorded at 14:32 UTC after main merged the daemon's per-instance stats
    period (/work/main's release rebuilt at 14:17): kvmsched started at t=17.7, kvl-2 restarted
    at t=62.7, ready again at t=74; grown 512 -> 2048 MiB after it."""

    def test_fixed_kvmsched_passes(self):
        import os
        from kvmlab.samples import Samples
        from tests.fixtures import DATA
        outdir = os.path.join(DATA, "mem-restart-no-period-fixed")
        samples = Samples.load(outdir)
        guests = [guest(1, outdir, workload="idle", memory=512, max_memory=2048, started=0.0, ready=5.0),
                  guest(2, outdir, workload="idle:12,mem,grow=40,upto=max", memory=512, max_memory=2048,
                        started=63.0, ready=74.0, stats_period=None)]
        rec = record(outdir, initial=["kvl-1", "kvl-2"], events=[event(62.7, "restart kvl-2", done_t=63.0)])
        verdict = Verdict()
        scenario = types.SimpleNamespace(criteria=CRITERIA, dry_run=False)
        eval_faults(scenario, samples, rec, guests, 17.7, 147.7, INTERVAL, verdict)
        self.assertTrue(verdict.ok, verdict.md())
        _ok, after = row(verdict, "kvl-2 grown again after its restart")
        self.assertIn("512 → 2048 MiB (+1536", after)
        self.assertNotIn("stale", after)
