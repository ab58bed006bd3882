"""Scenario parsing: every shipped scenario parses; events are typed; bad input is one clear line."""
import os
import tempfile
import unittest

from kvmlab.scenario import Event, Scenario, parse_event, pin_spec, scenario_names

BASE = """
[scenario]
kind = memory
description = test

[guests]
count = 3
vcpus = 1
memory_mib = 512
max_memory_mib = 2048
workload = idle
workload.1 = idle:25,mem,upto=max
short_workload.1 = idle:5,mem,upto=max
stats_period.2 = none
pin = none
pin.3 = 1

[timing]
before = 15
after = 45
short_after = 30

[kvmsched]
subcommand = memory
interval = 3
"""


def scenario_from(text):
    fd, path = tempfile.mkstemp(suffix=".ini")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Scenario.from_file(path)


class ScenarioTest(unittest.TestCase):
    def test_every_shipped_scenario_parses(self):
        names = scenario_names()
        self.assertIn("cpu-all-on-one", names)
        for name in names:
            s = Scenario(name)
            self.assertIn(s.kind, ("cpu", "memory"), name)
            self.assertTrue(s.guest_specs(2, False), name)
            for e in s.events:
                self.assertIsInstance(e, Event)

    def test_events_are_typed_and_sorted(self):
        s = Scenario("fault-libvirtd-restart")
        actions = [e.action for e in s.events]
        self.assertEqual(actions, ["kill-libvirtd", "start-libvirtd", "pin-all"])
        pin_all = s.events[2]
        self.assertEqual((pin_all.cpuset, pin_all.guest), ("0", None))
        self.assertEqual(s.events[1].at, s.events[2].at)
        self.assertEqual(parse_event(3, "vcpupin kvl-1 0 1", "x"),
                         Event(at=3, action="vcpupin", guest="kvl-1", vcpu=0, cpuset="1"))
        self.assertEqual(str(parse_event(3, "restart kvl-2", "x")), "restart kvl-2")

    def test_bad_events_are_one_clear_line(self):
        for text, needle in (("explode kvl-1", "unknown event action 'explode'"),
                             ("destroy", "takes GUEST"),
                             ("kill-libvirtd now", "takes no arguments"),
                             ("vcpupin kvl-1 x 1", "is not a number"),
                             ("destroy vm-1", "must be kvl-N")):
            with self.assertRaises(SystemExit) as cm:
                parse_event(1, text, "f.ini")
            self.assertIn(needle, str(cm.exception))
            self.assertNotIn("\n", str(cm.exception))
        with self.assertRaises(SystemExit) as cm:
            scenario_from(BASE + "\n[events]\nsoon = destroy kvl-1\n")
        self.assertIn("is not 'at <seconds>'", str(cm.exception))

    def test_per_guest_and_short_keys(self):
        s = scenario_from(BASE + "\n[events]\nat 20 = restart kvl-2\nat 5 = destroy kvl-3\n")
        self.assertEqual([e.action for e in s.events], ["destroy", "restart"])
        long_specs, short_specs = s.guest_specs(2, False), s.guest_specs(2, True)
        self.assertEqual(long_specs[0].workload, "idle:25,mem,upto=max")
        self.assertEqual(short_specs[0].workload, "idle:5,mem,upto=max")
        self.assertEqual(long_specs[1].workload, "idle")
        self.assertEqual([g.stats_period for g in long_specs], [2, None, 2])
        self.assertEqual(long_specs[2].pins, ("1",))
        self.assertEqual(s.timing(False), (15.0, 45.0))
        self.assertEqual(s.timing(True), (15.0, 30.0))
        with self.assertRaises(SystemExit):
            scenario_from(BASE.replace("stats_period.2 = none", "stats_period.2 = often")).guest_specs(2, False)

    def test_pin_spec(self):
        self.assertEqual(pin_spec("none", 1, 2, 2), (None, None))
        self.assertEqual(pin_spec("spread", 3, 1, 2), ("0",))
        self.assertEqual(pin_spec("all:0-1", 1, 2, 2), ("0-1", "0-1"))
        self.assertEqual(pin_spec("0;1", 1, 3, 2), ("0", "1", "0"))

    def test_missing_scenario(self):
        with self.assertRaises(SystemExit) as cm:
            Scenario("no-such-scenario")
        self.assertIn("no scenario", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
