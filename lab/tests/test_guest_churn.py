"""Criteria over a guest set that changes mid-run (fault-guest-churn): a criterion judges only
the guests that exist at the time it looks at, and reported durations are never negative."""
import re
import types
import unittest

from kvmlab.criteria import eval_cpu, eval_faults

from tests.fixtures import event, guest, load, pcpu_csv, record, vcpu_csv

KVMSCHED_T, END_T, INTERVAL = 10.0, 60.0, 3.0
DESTROY_T, START_T = 22.0, 25.0
CRITERIA = {"stddev_max": "5", "settle_within_intervals": "3", "adopt_within_intervals": "2",
            "hard_pinned": "yes", "steady_window_s": "12"}
NEGATIVE = re.compile(r"(?<![\w-])[-−]\d")  # a negative figure, not "kvl-4"


def churn_run(kvl4_pinned_at=31.0, kvl4_ready=40.0, kvl3_final="1"):
    """kvl-1..3 busy; kvmsched pins kvl-1 to 0 and kvl-2, kvl-3 to 1 at t=12; kvl-2 destroyed at
    t=22 (its last sample, taken while it went away, has no affinity: '-'); kvl-4 started at
    t=25 and hard-pinned (to 0) at kvl4_pinned_at, ready at kvl4_ready."""
    rows, loads = [], {}
    for t in range(1, int(END_T) + 1):
        t = float(t)
        pinned = t >= 12
        rows.append((t, "kvl-1", 0, "0" if pinned else "0+1"))
        if t < DESTROY_T:
            rows.append((t, "kvl-2", 0, "1" if pinned else "0+1"))
        elif t == DESTROY_T:
            rows.append((t, "kvl-2", 0, "-"))
        rows.append((t, "kvl-3", 0, (kvl3_final if t == END_T else "1") if pinned else "0+1"))
        if t > START_T:
            rows.append((t, "kvl-4", 0, "0" if t >= kvl4_pinned_at else "0+1"))
        loads[t] = [100.0, 100.0]
    samples, outdir = load({"vcpu.csv": vcpu_csv(rows), "pcpu.csv": pcpu_csv(loads)})
    guests = [guest(i, outdir, started=0.0, ready=5.0) for i in (1, 2, 3)]
    guests.append(guest(4, outdir, started=START_T + 0.5, ready=kvl4_ready))
    rec = record(outdir, initial=["kvl-1", "kvl-2", "kvl-3"],
                 events=[event(DESTROY_T, "destroy kvl-2"), event(START_T, "start-guest kvl-4", START_T + 0.5)])
    return samples, guests, rec


def judge(samples, guests, rec):
    verdict, info = eval_cpu(CRITERIA, samples, rec, guests, KVMSCHED_T, END_T, INTERVAL)
    scenario = types.SimpleNamespace(criteria=CRITERIA, dry_run=False)
    notes = eval_faults(scenario, samples, rec, guests, KVMSCHED_T, END_T, INTERVAL, verdict)
    return verdict, info, notes


def row(verdict, prefix):
    hits = [(ok, figure) for name, ok, figure, _th in verdict.rows if name.startswith(prefix)]
    assert len(hits) == 1, (prefix, [r[0] for r in verdict.rows])
    return hits[0]


class GuestChurnTest(unittest.TestCase):
    def test_destroyed_guest_is_not_judged_at_end(self):
        verdict, _info, _notes = judge(*churn_run())
        ok, figure = row(verdict, "every vCPU hard-pinned")
        self.assertTrue(ok, figure)
        self.assertNotIn("kvl-2", figure)

    def test_live_guest_without_affinity_at_end_fails(self):
        verdict, _info, _notes = judge(*churn_run(kvl3_final="-"))
        ok, figure = row(verdict, "every vCPU hard-pinned")
        self.assertFalse(ok)
        self.assertIn("kvl-3/0=-", figure)

    def test_live_guest_soft_pinned_at_end_fails(self):
        verdict, _info, _notes = judge(*churn_run(kvl3_final="0+1"))
        self.assertFalse(row(verdict, "every vCPU hard-pinned")[0])

    def test_unread_affinity_is_not_a_pin_change(self):
        _verdict, info, _notes = judge(*churn_run())
        # kvl-1, kvl-2, kvl-3 pinned once at t=12 (kvl-4 at t=31); kvl-2's '-' while going away is none
        self.assertEqual(info["pin_changes_total"][0], 4, info["pin_changes_total"])

    def test_adopted_before_ready_reports_no_negative_duration(self):
        verdict, _info, notes = judge(*churn_run(kvl4_pinned_at=31.0, kvl4_ready=40.0))
        ok, figure = row(verdict, "kvl-4 (started mid-run) hard-pinned")
        self.assertTrue(ok, figure)
        adopt = [n for n in notes if "adopt" in n]
        self.assertEqual(len(adopt), 1, notes)
        for text in [figure] + adopt:
            self.assertIsNone(NEGATIVE.search(text), text)
        self.assertIn("already hard-pinned when ready", figure)

    def test_adopted_late_fails(self):
        # ready at 40, allowed 2 intervals (6 s) + 1 s sampling: pinned at 50 is too late
        verdict, _info, notes = judge(*churn_run(kvl4_pinned_at=50.0, kvl4_ready=40.0))
        ok, figure = row(verdict, "kvl-4 (started mid-run) hard-pinned")
        self.assertFalse(ok)
        self.assertIn("3.33 intervals (10.0 s) after ready", figure)

    def test_never_ready_fails(self):
        verdict, _info, _notes = judge(*churn_run(kvl4_ready=None))
        self.assertEqual(row(verdict, "kvl-4 (started mid-run) hard-pinned"), (False, "guest never ready"))

    def test_guests_at(self):
        _samples, _guests, rec = churn_run()
        self.assertEqual(rec.guests_at(21.0), {"kvl-1", "kvl-2", "kvl-3"})
        self.assertEqual(rec.guests_at(DESTROY_T), {"kvl-1", "kvl-3"})
        self.assertEqual(rec.guests_at(END_T), {"kvl-1", "kvl-3", "kvl-4"})


if __name__ == "__main__":
    unittest.main()
