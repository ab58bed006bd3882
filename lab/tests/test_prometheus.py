"""The Prometheus text checker and its CLI (python3 -m kvmlab.prometheus FILE)."""
import os
import subprocess
import sys
import tempfile
import unittest

from kvmlab.prometheus import validate

LAB = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

VALID = """# HELP kvmsched_pins_total vCPU pins applied.
# TYPE kvmsched_pins_total counter
kvmsched_pins_total 7
# HELP kvmsched_connected 1 while connected.
# TYPE kvmsched_connected gauge
kvmsched_connected 1
# HELP kvmsched_interval_seconds Interval duration.
# TYPE kvmsched_interval_seconds histogram
kvmsched_interval_seconds_bucket{loop="vcpu",le="0.1"} 3
kvmsched_interval_seconds_bucket{loop="vcpu",le="+Inf"} 4
kvmsched_interval_seconds_sum{loop="vcpu"} 0.25
kvmsched_interval_seconds_count{loop="vcpu"} 4 1700000000000
# HELP kvmsched_guest_actual_bytes Balloon size.
# TYPE kvmsched_guest_actual_bytes gauge
kvmsched_guest_actual_bytes{domain="kvl-\\"1\\"\\n"} 5.36870912e+08
"""


class ValidateTest(unittest.TestCase):
    def test_valid_text(self):
        errors, samples = validate(VALID)
        self.assertEqual(errors, [])
        self.assertEqual(samples["kvmsched_pins_total"], [7.0])
        self.assertEqual(len(samples["kvmsched_interval_seconds_bucket"]), 2)

    def assert_invalid(self, text, needle):
        errors, _ = validate(text)
        self.assertTrue(any(needle in e for e in errors), f"{needle!r} not in {errors}")

    def test_invalid_texts_fail(self):
        self.assert_invalid("kvmsched_up 1\n", "without # HELP and # TYPE")
        self.assert_invalid("# TYPE a gauge\na 1\n", "without # HELP and # TYPE")
        self.assert_invalid("# HELP a x\n# TYPE a gauge\na one\n", "is not a float")
        self.assert_invalid("# HELP a x\n# TYPE a gauge\na{b=c} 1\n", "bad labels")
        self.assert_invalid("# HELP a x\n# TYPE a gauge\na{b=\"c\"} 1", "newline")
        self.assert_invalid("# HELP a x\n# TYPE a meter\na 1\n", "bad TYPE")
        self.assert_invalid("# HELP a x\n# TYPE a gauge\na 1\n# HELP a late\n", "HELP for a after its samples")
        self.assert_invalid("# HELP a x\n# TYPE a gauge\na 1 2 3\n", "not 'name{labels} value'")


class CliTest(unittest.TestCase):
    def run_cli(self, text):
        fd, path = tempfile.mkstemp(suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        env = dict(os.environ, PYTHONPATH=LAB)
        return subprocess.run([sys.executable, "-m", "kvmlab.prometheus", path], capture_output=True,
                              text=True, env=env)

    def test_cli_exit_codes(self):
        ok = self.run_cli(VALID)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.assertIn("valid Prometheus text", ok.stdout)
        bad = self.run_cli("kvmsched_up x\n")
        self.assertEqual(bad.returncode, 1)
        self.assertIn("is not a float", bad.stdout)
        missing = subprocess.run([sys.executable, "-m", "kvmlab.prometheus", "/nonexistent/metrics.txt"],
                                 capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=LAB))
        self.assertEqual(missing.returncode, 2)
        self.assertIn("cannot read", missing.stderr)


if __name__ == "__main__":
    unittest.main()
