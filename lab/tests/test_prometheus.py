"""The Prometheus text checker and its CLI (python3 -m kvmlab.prometheus [--samples] FILE)."""
import os
import subprocess
import sys
import tempfile
import unittest

from kvmlab.prometheus import validate

LAB = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HEAD = "# HELP kvmsched_x h\n# TYPE kvmsched_x gauge\n"
COUNTER = "# HELP kvmsched_c_total h\n# TYPE kvmsched_c_total counter\n"

VALID = (HEAD + 'kvmsched_x 1\nkvmsched_x{a="q\\"\\\\\\n",b=""} -0.5\n'
         "# HELP kvmsched_n_total a \\\\ b\\n\n# TYPE kvmsched_n_total counter\n"
         "kvmsched_n_total +Inf\n# HELP kvmsched_e h\n# TYPE kvmsched_e gauge\n")

# (rule, text, part of the error it must give)
INVALID = [
    ("non-empty", "", "empty exposition"),
    ("final newline", HEAD + "kvmsched_x 1", "no final newline"),
    ("sample needs a family", "kvmsched_x 1\n", "sample outside a family"),
    ("HELP then TYPE", "# HELP kvmsched_x h\nkvmsched_x 1\n", "not followed by its TYPE"),
    ("TYPE without HELP", "# TYPE kvmsched_x gauge\nkvmsched_x 1\n", "comment or blank line"),
    ("TYPE names the HELP's family", "# HELP kvmsched_x h\n# TYPE kvmsched_y gauge\n",
     "TYPE of kvmsched_y after HELP of kvmsched_x"),
    ("TYPE has a type", "# HELP kvmsched_x h\n# TYPE kvmsched_x\n", "TYPE without a type"),
    ("counter or gauge only", "# HELP kvmsched_x h\n# TYPE kvmsched_x untyped\n", "want counter"),
    ("no histograms", "# HELP kvmsched_x h\n# TYPE kvmsched_x histogram\n", "want counter"),
    ("counters end _total", "# HELP kvmsched_x h\n# TYPE kvmsched_x counter\n", "ends _total"),
    ("only counters end _total", "# HELP kvmsched_x_total h\n# TYPE kvmsched_x_total gauge\n",
     "ends _total"),
    ("HELP has text", "# HELP kvmsched_x\n# TYPE kvmsched_x gauge\n", "HELP without text"),
    ("HELP text not blank", "# HELP kvmsched_x  \n# TYPE kvmsched_x gauge\n", "empty HELP"),
    ("HELP escapes", "# HELP kvmsched_x a\\tb\n# TYPE kvmsched_x gauge\n", "bad escape in HELP"),
    ("HELP trailing backslash", "# HELP kvmsched_x a\\\n# TYPE kvmsched_x gauge\n",
     "bad escape in HELP"),
    ("kvmsched_ prefix", "# HELP other_x h\n# TYPE other_x gauge\n", "bad metric name"),
    ("metric name characters", "# HELP kvmsched-x h\n# TYPE kvmsched-x gauge\n",
     "bad metric name"),
    ("HELP at the end needs TYPE", "# HELP kvmsched_x h\n", "without TYPE at the end"),
    ("one block per family", HEAD + HEAD, "family kvmsched_x repeated"),
    ("no other comments", HEAD + "# a comment\n", "comment or blank line"),
    ("no blank lines", HEAD + "\nkvmsched_x 1\n", "comment or blank line"),
    ("no carriage return", HEAD + "kvmsched_x 1\r\n", "carriage return"),
    ("sample name is the family", HEAD + "kvmsched_y 1\n", "sample of kvmsched_y in family"),
    ("no histogram suffixes", HEAD + "kvmsched_x_count 1\n", "sample of kvmsched_x_count"),
    ("sample metric name", HEAD + "kvmsched-x 1\n", "bad metric name"),
    ("value is a number", HEAD + "kvmsched_x one\n", "bad value"),
    ("no Python inf", HEAD + "kvmsched_x inf\n", "bad value"),
    ("no Python nan", HEAD + "kvmsched_x nan\n", "bad value"),
    ("no Python Infinity", HEAD + "kvmsched_x Infinity\n", "bad value"),
    ("no underscores in numbers", HEAD + "kvmsched_x 1_0\n", "bad value"),
    ("no leading +", HEAD + "kvmsched_x +1\n", "bad value"),
    ("no bare fraction", HEAD + "kvmsched_x .5\n", "bad value"),
    ("no trailing dot", HEAD + "kvmsched_x 1.\n", "bad value"),
    ("no empty exponent", HEAD + "kvmsched_x 1e\n", "bad value"),
    ("no hex", HEAD + "kvmsched_x 0x10\n", "bad value"),
    ("no timestamp", HEAD + "kvmsched_x 1 1700000000\n", "bad value"),
    ("one space", HEAD + "kvmsched_x  1\n", "bad value"),
    ("no tab", HEAD + "kvmsched_x\t1\n", "no value"),
    ("a value", HEAD + "kvmsched_x\n", "no value"),
    ("space before the value", HEAD + 'kvmsched_x{a="1"}1\n', "no space before the value"),
    ("no duplicate series", HEAD + "kvmsched_x 1\nkvmsched_x 2\n", "duplicate series"),
    ("label order does not make a new series",
     HEAD + 'kvmsched_x{a="1",b="2"} 1\nkvmsched_x{b="2",a="1"} 1\n', "duplicate series"),
    ("terminated label value", HEAD + 'kvmsched_x{a="b} 1\n', "unterminated label value"),
    ("quoted label value", HEAD + "kvmsched_x{a=b} 1\n", "unquoted label value"),
    ("label has =", HEAD + "kvmsched_x{a} 1\n", "label without '='"),
    ("label value escapes", HEAD + 'kvmsched_x{a="\\t"} 1\n', "bad escape"),
    ("unique label names", HEAD + 'kvmsched_x{a="1",a="2"} 1\n', "label a repeated"),
    ("no __ label names", HEAD + 'kvmsched_x{__a="1"} 1\n', "bad label name"),
    ("label name starts with a letter", HEAD + 'kvmsched_x{1a="1"} 1\n', "bad label name"),
    ("no colon in label names", HEAD + 'kvmsched_x{a:b="1"} 1\n', "bad label name"),
    ("no space in labels", HEAD + 'kvmsched_x{a="1", b="2"} 1\n', "bad label name"),
    ("comma between labels", HEAD + 'kvmsched_x{a="1"b="2"} 1\n', "expected ','"),
    ("counter not negative", COUNTER + "kvmsched_c_total -1\n", "counter below 0 or NaN"),
    ("counter not NaN", COUNTER + "kvmsched_c_total NaN\n", "counter below 0 or NaN"),
    ("counter not -Inf", COUNTER + "kvmsched_c_total -Inf\n", "counter below 0 or NaN"),
    ("samples follow their own family", HEAD + "kvmsched_x 1\n" + COUNTER + "kvmsched_x 2\n",
     "sample of kvmsched_x in family kvmsched_c_total"),
]


class ValidateTest(unittest.TestCase):
    def test_valid_text(self):
        errors, samples = validate(VALID)
        self.assertEqual(errors, [])
        self.assertEqual(samples["kvmsched_x"], [1.0, -0.5])
        self.assertEqual(samples["kvmsched_n_total"], [float("inf")])
        self.assertNotIn("kvmsched_e", samples)

    def test_valid_values(self):
        for v in ["0", "12", "1.5", "-3", "1e9", "2.5E-3", "1e+3", "NaN", "-Inf", "+Inf"]:
            errors, _ = validate(HEAD + f"kvmsched_x {v}\n")
            self.assertEqual(errors, [], v)
        for v in ["0", "1.5e3", "+Inf"]:
            errors, _ = validate(COUNTER + f"kvmsched_c_total {v}\n")
            self.assertEqual(errors, [], v)

    def test_valid_labels(self):
        text = (HEAD + 'kvmsched_x{a="1"} 1\nkvmsched_x{a="2"} 1\nkvmsched_x{a="1",b="1"} 1\n'
                'kvmsched_x{_b="",c9="\\\\"} 1\nkvmsched_x{} 2\n')
        errors, samples = validate(text)
        self.assertEqual(errors, [])
        self.assertEqual(len(samples["kvmsched_x"]), 5)

    def test_each_broken_rule_fails(self):
        for rule, text, needle in INVALID:
            with self.subTest(rule):
                errors, samples = validate(text)
                self.assertEqual(len(errors), 1, f"{rule}: accepted {text!r}")
                self.assertIn(needle, errors[0], rule)
                self.assertEqual(samples, {})

    def test_errors_name_the_line(self):
        errors, _ = validate(HEAD + "kvmsched_x 1\nkvmsched_x inf\n")
        self.assertTrue(errors[0].startswith("line 4: bad value 'inf'"), errors)


class CliTest(unittest.TestCase):
    def cli(self, *args, stdin=None):
        env = dict(os.environ, PYTHONPATH=LAB)
        return subprocess.run([sys.executable, "-m", "kvmlab.prometheus", *args],
                              capture_output=True, input=stdin, env=env)

    def run_file(self, text, *flags):
        fd, path = tempfile.mkstemp(suffix=".txt")
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
        return self.cli(*flags, path)

    def test_cli_exit_codes(self):
        ok = self.run_file(VALID)
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
        self.assertIn(b"valid Prometheus text (3 samples, 2 names)", ok.stdout)
        bad = self.run_file(HEAD + "kvmsched_x x\n")
        self.assertEqual(bad.returncode, 1)
        self.assertIn(b"line 3: bad value", bad.stdout)
        crlf = self.run_file(HEAD + "kvmsched_x 1\r\n")
        self.assertEqual(crlf.returncode, 1)
        self.assertIn(b"carriage return", crlf.stdout)
        missing = self.cli("/nonexistent/metrics.txt")
        self.assertEqual(missing.returncode, 2)
        self.assertIn(b"cannot read", missing.stderr)
        self.assertEqual(self.cli().returncode, 2)

    def test_samples_from_stdin(self):
        text = HEAD + 'kvmsched_x{a="t\\"ab\\\\\\nz",b="\t"} 1e3\nkvmsched_x -Inf\n'
        out = self.cli("--samples", "-", stdin=text.encode("utf-8"))
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertEqual(out.stdout.decode("utf-8").split("\n"), [
            'kvmsched_x\t1e3\ta\tt"ab\\\\\\nz\tb\t\\t',
            "kvmsched_x\t-Inf",
            "",
        ])
        bad = self.cli("--samples", "-", stdin=b"kvmsched_x 1\n")
        self.assertEqual(bad.returncode, 1)
        self.assertIn(b"sample outside a family", bad.stdout)


if __name__ == "__main__":
    unittest.main()
