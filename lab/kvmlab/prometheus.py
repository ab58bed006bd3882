"""The one checker of kvmsched's Prometheus text (format 0.0.4), shared by the lab and by the
project's Rust tests (which run this CLI through tests/common/prometheus.rs).

    python3 -m kvmlab.prometheus [--samples] FILE     (FILE '-' = stdin; lab/ on PYTHONPATH)

prints the error and exits 1 when the text is invalid, 0 and a one-line summary when it is
valid, 2 when FILE cannot be read. With --samples a valid text prints one line per sample
instead of the summary: NAME TAB VALUE, then TAB LABEL TAB LABEL-VALUE per label, with
backslash, tab and newline in label values written as \\\\, \\t and \\n; VALUE as written.

What the checker accepts, and nothing more:
- the text is non-empty, ends with a newline and has no carriage return, blank lines or
  comments other than HELP and TYPE;
- each family starts with '# HELP NAME TEXT' and, on the very next line,
  '# TYPE NAME counter|gauge'; a family appears once, and its samples follow its TYPE line
  before the next family starts;
- metric names match [a-zA-Z_:][a-zA-Z0-9_:]* and start kvmsched_; a counter's name ends
  _total, a gauge's does not; a sample's name is its family's name (no histograms or
  summaries);
- HELP text is not blank and escapes only \\\\ and \\n;
- label names match [a-zA-Z_][a-zA-Z0-9_]*, do not start __, and are not repeated in one
  sample; label values are quoted and escape only \\\\, \\" and \\n;
- one space, then the value: NaN, +Inf, -Inf or a decimal number
  (-?DIGITS[.DIGITS][(e|E)[+-]DIGITS]), and no timestamp; a counter's value is a number >= 0
  or +Inf;
- no two samples have the same name and label set.
"""
import re
import sys

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")
SPECIAL = {"NaN": float("nan"), "+Inf": float("inf"), "-Inf": float("-inf")}
PREFIX = "kvmsched_"


class Invalid(Exception):
    pass


def metric_name(name):
    return bool(METRIC_NAME.match(name)) and name.startswith(PREFIX)


def check_help(text):
    if not text.strip():
        raise Invalid("empty HELP text")
    i = 0
    while i < len(text):
        if text[i] == "\\":
            if text[i + 1:i + 2] not in ("\\", "n"):
                raise Invalid("bad escape in HELP")
            i += 1
        i += 1


def parse_value(token):
    if token in SPECIAL:
        return SPECIAL[token]
    if not NUMBER.match(token):
        raise Invalid(f"bad value {token!r}")
    return float(token)


def parse_labels(s):
    """Parses '{a="x",b="y"}' at the start of s, unescaping values; returns the labels (in the
    order written) and the rest of s."""
    assert s.startswith("{")
    rest, labels = s[1:], []
    while True:
        if rest.startswith("}"):
            return labels, rest[1:]
        eq = rest.find("=")
        if eq < 0:
            raise Invalid("label without '='")
        name = rest[:eq]
        if not LABEL_NAME.match(name) or name.startswith("__"):
            raise Invalid(f"bad label name {name!r}")
        if any(n == name for n, _ in labels):
            raise Invalid(f"label {name} repeated")
        rest = rest[eq + 1:]
        if not rest.startswith('"'):
            raise Invalid("unquoted label value")
        value, i = [], 1
        while True:
            if i >= len(rest):
                raise Invalid("unterminated label value")
            c = rest[i]
            if c == '"':
                break
            if c == "\\":
                e = rest[i + 1:i + 2]
                if e not in ("\\", '"', "n"):
                    raise Invalid(f"bad escape \\{e} in label value")
                value.append("\n" if e == "n" else e)
                i += 2
                continue
            value.append(c)
            i += 1
        labels.append((name, "".join(value)))
        rest = rest[i + 1:]
        if rest.startswith(","):
            rest = rest[1:]
        elif not rest.startswith("}"):
            raise Invalid(f"expected ',' or '}}' at {rest[:40]!r}")


def parse_sample(line):
    """(name, labels, value, value as written) of one sample line."""
    ends = [i for i in (line.find("{"), line.find(" ")) if i >= 0]
    if not ends:
        raise Invalid("no value")
    name, rest = line[:min(ends)], line[min(ends):]
    if not metric_name(name):
        raise Invalid("bad metric name")
    labels = []
    if rest.startswith("{"):
        labels, rest = parse_labels(rest)
    if not rest.startswith(" "):
        raise Invalid("no space before the value")
    token = rest[1:]
    return name, labels, parse_value(token), token


def check(text):
    """The samples of text as (name, labels, value, value as written) tuples, or Invalid with
    the first violation and its line number."""
    if not text:
        raise Invalid("empty exposition")
    if not text.endswith("\n"):
        raise Invalid("no final newline")
    samples, families, series = [], set(), set()
    current = None    # (family, is counter) whose samples may follow
    help_for = None   # a HELP line's family waiting for its TYPE line
    for n, line in enumerate(text[:-1].split("\n"), 1):
        try:
            if "\r" in line:
                raise Invalid("carriage return")
            if help_for is not None:
                want, help_for = help_for, None
                if not line.startswith("# TYPE "):
                    raise Invalid(f"HELP of {want} not followed by its TYPE")
                name, sep, kind = line[len("# TYPE "):].partition(" ")
                if not sep:
                    raise Invalid("TYPE without a type")
                if name != want:
                    raise Invalid(f"TYPE of {name} after HELP of {want}")
                if kind not in ("counter", "gauge"):
                    raise Invalid(f"type {kind!r} (want counter or gauge)")
                counter = kind == "counter"
                if counter != name.endswith("_total"):
                    raise Invalid("a counter's name, and only a counter's, ends _total")
                current = (name, counter)
            elif line.startswith("# HELP "):
                name, sep, text_ = line[len("# HELP "):].partition(" ")
                if not sep:
                    raise Invalid("HELP without text")
                if not metric_name(name):
                    raise Invalid("bad metric name")
                if name in families:
                    raise Invalid(f"family {name} repeated")
                families.add(name)
                check_help(text_)
                help_for, current = name, None
            elif line.startswith("#") or not line:
                raise Invalid("comment or blank line")
            else:
                if current is None:
                    raise Invalid("sample outside a family")
                family, counter = current
                name, labels, value, token = parse_sample(line)
                if name != family:
                    raise Invalid(f"sample of {name} in family {family}")
                if counter and (value != value or value < 0):
                    raise Invalid("counter below 0 or NaN")
                key = (name, frozenset(labels))
                if key in series:
                    raise Invalid("duplicate series")
                series.add(key)
                samples.append((name, labels, value, token))
        except Invalid as e:
            raise Invalid(f"line {n}: {e}: {line[:120]!r}") from None
    if help_for is not None:
        raise Invalid(f"HELP of {help_for} without TYPE at the end")
    return samples


def validate(text):
    """Checks text against the rules in the module doc. Returns (errors, {sample name:
    [values]}): no errors and every sample when it is valid, else the first violation (with
    its line number) and no samples."""
    try:
        found = check(text)
    except Invalid as e:
        return [str(e)], {}
    samples = {}
    for name, _, value, _ in found:
        samples.setdefault(name, []).append(value)
    return [], samples


def sample_line(name, labels, token):
    def esc(v):
        return v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
    return "\t".join([name, token] + [f"{k}\t{esc(v)}" for k, v in labels])


def main(argv):
    with_samples = argv[:1] == ["--samples"]
    if with_samples:
        argv = argv[1:]
    if len(argv) != 1:
        print("usage: python3 -m kvmlab.prometheus [--samples] FILE   (FILE '-' = stdin)",
              file=sys.stderr)
        return 2
    try:
        if argv[0] == "-":
            text = sys.stdin.buffer.read().decode("utf-8")
        else:
            with open(argv[0], encoding="utf-8", newline="") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print(f"prometheus: cannot read {argv[0]}: {e}", file=sys.stderr)
        return 2
    try:
        found = check(text)
    except Invalid as e:
        print(f"{argv[0]}: {e}")
        return 1
    if with_samples:
        out = sys.stdout.buffer
        for name, labels, _, token in found:
            out.write((sample_line(name, labels, token) + "\n").encode("utf-8"))
        return 0
    print(f"{argv[0]}: valid Prometheus text ({len(found)} samples, "
          f"{len({s[0] for s in found})} names)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
