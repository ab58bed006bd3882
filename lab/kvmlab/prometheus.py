"""Prometheus text exposition 0.0.4 checker, shared by the lab and the project's tests.

    python3 -m kvmlab.prometheus FILE     (FILE '-' = stdin; run with lab/ on PYTHONPATH)

prints one line per error and exits 1 when the text is invalid, 0 (and a one-line summary)
when it is valid, 2 when FILE cannot be read.
"""
import re
import sys

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?$")
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)')
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
FAMILY_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created")


def validate(text):
    """Every sample 'name{labels} value [ts]' with a float value and well-formed labels, every
    family with # HELP and # TYPE before its samples (histogram/summary/_total suffixes
    resolved), a valid TYPE, a final newline. Returns (errors, {sample name: [values]})."""
    errors, helps, types, seen, samples = [], set(), {}, set(), {}
    if not text.endswith("\n"):
        errors.append("body does not end with a newline")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "HELP":
                if parts[2] in seen:
                    errors.append(f"line {n}: HELP for {parts[2]} after its samples")
                helps.add(parts[2])
            elif len(parts) >= 4 and parts[1] == "TYPE":
                if parts[3] not in TYPES:
                    errors.append(f"line {n}: bad TYPE {parts[3]!r}")
                if parts[2] in seen:
                    errors.append(f"line {n}: TYPE for {parts[2]} after its samples")
                types[parts[2]] = parts[3]
            continue
        m = SAMPLE.match(line)
        if not m:
            errors.append(f"line {n}: not 'name{{labels}} value': {line[:80]!r}")
            continue
        name, labels, value = m.group(1), m.group(2), m.group(3)
        if labels:
            pos = 0
            while pos < len(labels):
                lm = LABEL.match(labels, pos)
                if not lm or lm.end() == pos:
                    errors.append(f"line {n}: bad labels {{{labels}}}")
                    break
                pos = lm.end()
        try:
            number = float(value)
        except ValueError:
            errors.append(f"line {n}: value {value!r} is not a float")
            continue
        family = name
        if family not in types:
            for suffix in FAMILY_SUFFIXES:
                if name.endswith(suffix) and name[:-len(suffix)] in types:
                    family = name[:-len(suffix)]
                    break
        if family not in types or family not in helps:
            errors.append(f"line {n}: sample {name} without # HELP and # TYPE before it")
        seen.add(family)
        samples.setdefault(name, []).append(number)
    return errors, samples


def main(argv):
    if len(argv) != 1:
        print("usage: python3 -m kvmlab.prometheus FILE   (FILE '-' = stdin)", file=sys.stderr)
        return 2
    try:
        if argv[0] == "-":
            text = sys.stdin.read()
        else:
            with open(argv[0], encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        print(f"prometheus: cannot read {argv[0]}: {e}", file=sys.stderr)
        return 2
    errors, samples = validate(text)
    for e in errors:
        print(f"{argv[0]}: {e}")
    if errors:
        return 1
    print(f"{argv[0]}: valid Prometheus text ({sum(len(v) for v in samples.values())} samples, "
          f"{len(samples)} names)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
