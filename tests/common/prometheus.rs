//! Runs the project's one Prometheus-text checker, the lab's
//! `python3 -m kvmlab.prometheus --samples -`, on a text. Shared by the
//! integration tests (`tests/common`) and the unit tests (`src/metrics`
//! includes this file).

use std::io::Write;
use std::process::{Command, Stdio};

/// One sample line, its label values unescaped.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// Checks `text` with the lab's checker; returns its samples, or the
/// checker's error (the first violation with its line number).
pub fn check(text: &str) -> Result<Vec<Sample>, String> {
    let lab = concat!(env!("CARGO_MANIFEST_DIR"), "/lab");
    let mut child = Command::new("python3")
        .args(["-m", "kvmlab.prometheus", "--samples", "-"])
        .env("PYTHONPATH", lab)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3 -m kvmlab.prometheus");
    let mut stdin = child.stdin.take().expect("checker stdin");
    let input = text.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("checker output");
    writer
        .join()
        .expect("writer")
        .expect("write to the checker");
    let stdout = String::from_utf8(out.stdout).expect("checker stdout is UTF-8");
    match out.status.code() {
        Some(0) => Ok(stdout.lines().map(parse_line).collect()),
        Some(1) => Err(stdout.trim_end().to_string()),
        _ => panic!(
            "checker failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// The value of the sample named `name` that has no labels (`label:
/// None`) or carries the label `(key, value)`.
pub fn find(samples: &[Sample], name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && match label {
                    None => s.labels.is_empty(),
                    Some((k, v)) => s.labels.iter().any(|(a, b)| a == k && b == v),
                }
        })
        .map(|s| s.value)
}

/// `NAME TAB VALUE (TAB LABEL TAB LABEL-VALUE)*`, label values with `\\`,
/// `\t` and `\n` escaped.
fn parse_line(line: &str) -> Sample {
    let mut fields = line.split('\t');
    let name = fields.next().expect("a name").to_string();
    let token = fields.next().expect("a value");
    let value = match token {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|e| panic!("value {v:?}: {e}")),
    };
    let rest: Vec<&str> = fields.collect();
    assert!(rest.len() % 2 == 0, "label without value in {line:?}");
    let labels = rest
        .chunks(2)
        .map(|kv| (kv[0].to_string(), unescape(kv[1])))
        .collect();
    Sample {
        name,
        labels,
        value,
    }
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut cs = s.chars();
    while let Some(c) = cs.next() {
        if c == '\\' {
            match cs.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                other => panic!("escape {other:?} in {s:?}"),
            }
        } else {
            out.push(c);
        }
    }
    out
}
