//! A minimal JSON writer for `--log-format json`: one object per line.
//!
//! ```
//! use kvmsched::json::JsonObject;
//! let line = JsonObject::new()
//!     .str("action", "pin")
//!     .uint("vcpu", 3)
//!     .opt_num("load", None)
//!     .finish();
//! assert_eq!(line, r#"{"action":"pin","vcpu":3,"load":null}"#);
//! ```
//!
//! Strings are escaped per RFC 8259 (`"`, `\`, and every control
//! character), so the output is always one line. [`printable`] is the same
//! rule without the quote, for names in human logs, `status` and `--trace`.
//! Non-finite floats are written as `null`. Keys are written in call order; the builder does not
//! check for duplicates.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Escapes `s` for use inside a JSON string literal (without the quotes):
/// `"` → `\"`, and everything [`printable`] escapes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_escaped(&mut out, s);
    out
}

/// `s` as a complete JSON string literal, quotes included.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_quoted(&mut out, s);
    out
}

/// `s` safe to print on one line of a log or a terminal: `\` → `\\`,
/// `\n`, `\r`, `\t`, `\b`, `\f` by their short forms, every other control
/// character (U+0000–U+001F, U+007F–U+009F: ESC, CSI, DEL, ...) as
/// `\u00XX`; everything else is kept. This is the JSON rule without the
/// quote, so a name reads the same in human and JSON logs. Borrows when
/// there is nothing to escape.
///
/// ```
/// use kvmsched::json::printable;
/// assert_eq!(printable("web-1"), "web-1");
/// assert_eq!(printable("a\rb\u{1b}[31m\\"), r"a\rb\u001b[31m\\");
/// ```
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        push_char(&mut out, c);
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control()
}

/// Appends `c`, escaped by the rule of [`printable`].
fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        c if c.is_control() => {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => out.push(c),
    }
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            c => push_char(out, c),
        }
    }
}

fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// A JSON number for `v`, or `null` when it is NaN or infinite.
pub fn number(v: f64) -> String {
    if v.is_finite() {
        // Rust's shortest round-trip form: digits, optional `-` and `.`,
        // never an exponent, never `inf`/`NaN` — valid JSON.
        format!("{v}")
    } else {
        "null".to_string()
    }
}

/// Builds one JSON object on one line.
#[derive(Debug, Clone)]
pub struct JsonObject {
    buf: String,
}

impl Default for JsonObject {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonObject {
    /// An empty object.
    pub fn new() -> Self {
        JsonObject {
            buf: String::from("{"),
        }
    }

    fn key(&mut self, k: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        push_quoted(&mut self.buf, k);
        self.buf.push(':');
    }

    /// Adds a string member.
    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_quoted(&mut self.buf, v);
        self
    }

    /// Adds a string member, or `null` for `None`.
    pub fn opt_str(self, k: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) => self.str(k, v),
            None => self.null(k),
        }
    }

    /// Adds a number member; NaN and infinities become `null`.
    pub fn num(mut self, k: &str, v: f64) -> Self {
        self.key(k);
        self.buf.push_str(&number(v));
        self
    }

    /// Adds a number member, or `null` for `None` (or a non-finite value).
    pub fn opt_num(self, k: &str, v: Option<f64>) -> Self {
        match v {
            Some(v) => self.num(k, v),
            None => self.null(k),
        }
    }

    /// Adds a signed integer member.
    pub fn int(mut self, k: &str, v: i64) -> Self {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    /// Adds an unsigned integer member.
    pub fn uint(mut self, k: &str, v: u64) -> Self {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    /// Adds an unsigned integer member, or `null` for `None`.
    pub fn opt_uint(self, k: &str, v: Option<u64>) -> Self {
        match v {
            Some(v) => self.uint(k, v),
            None => self.null(k),
        }
    }

    /// Adds a boolean member.
    pub fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }

    /// Adds a `null` member.
    pub fn null(mut self, k: &str) -> Self {
        self.key(k);
        self.buf.push_str("null");
        self
    }

    /// Adds a member whose value is already valid JSON (for example another
    /// [`JsonObject::finish`] or [`JsonArray::finish`]); written verbatim.
    pub fn raw(mut self, k: &str, json: &str) -> Self {
        self.key(k);
        self.buf.push_str(json);
        self
    }

    /// The object text, `{...}`, on one line (if `raw` values were).
    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

/// Builds one JSON array on one line.
#[derive(Debug, Clone)]
pub struct JsonArray {
    buf: String,
}

impl Default for JsonArray {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonArray {
    /// An empty array.
    pub fn new() -> Self {
        JsonArray {
            buf: String::from("["),
        }
    }

    fn sep(&mut self) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
    }

    /// Appends a string.
    pub fn str(mut self, v: &str) -> Self {
        self.sep();
        push_quoted(&mut self.buf, v);
        self
    }

    /// Appends a number (`null` if not finite).
    pub fn num(mut self, v: f64) -> Self {
        self.sep();
        self.buf.push_str(&number(v));
        self
    }

    /// Appends an unsigned integer.
    pub fn uint(mut self, v: u64) -> Self {
        self.sep();
        let _ = write!(self.buf, "{v}");
        self
    }

    /// Appends already-valid JSON verbatim.
    pub fn raw(mut self, json: &str) -> Self {
        self.sep();
        self.buf.push_str(json);
        self
    }

    /// The array text, `[...]`.
    pub fn finish(mut self) -> String {
        self.buf.push(']');
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A parsed JSON value (numbers kept as text to compare exactly).
    #[derive(Debug, Clone, PartialEq)]
    enum V {
        Null,
        Bool(bool),
        Num(String),
        Str(String),
        Arr(Vec<V>),
        Obj(Vec<(String, V)>),
    }

    /// A small strict RFC 8259 parser, for checking the writer's output.
    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }

    fn parse(text: &str) -> Result<V, String> {
        let mut p = P {
            s: text.as_bytes(),
            i: 0,
        };
        p.ws();
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at {}", p.i));
        }
        Ok(v)
    }

    impl P<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.i += 1;
            }
        }
        fn eat(&mut self, b: u8) -> Result<(), String> {
            if self.peek() == Some(b) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at {}", b as char, self.i))
            }
        }
        fn lit(&mut self, word: &str, v: V) -> Result<V, String> {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                Ok(v)
            } else {
                Err(format!("bad literal at {}", self.i))
            }
        }
        fn value(&mut self, depth: usize) -> Result<V, String> {
            if depth > 64 {
                return Err("too deep".into());
            }
            match self.peek() {
                Some(b'{') => {
                    self.i += 1;
                    let mut members = Vec::new();
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        return Ok(V::Obj(members));
                    }
                    loop {
                        self.ws();
                        let k = self.string()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                        members.push((k, self.value(depth + 1)?));
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                return Ok(V::Obj(members));
                            }
                            _ => return Err(format!("bad object at {}", self.i)),
                        }
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        return Ok(V::Arr(items));
                    }
                    loop {
                        self.ws();
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(V::Arr(items));
                            }
                            _ => return Err(format!("bad array at {}", self.i)),
                        }
                    }
                }
                Some(b'"') => Ok(V::Str(self.string()?)),
                Some(b't') => self.lit("true", V::Bool(true)),
                Some(b'f') => self.lit("false", V::Bool(false)),
                Some(b'n') => self.lit("null", V::Null),
                Some(b'-' | b'0'..=b'9') => self.number(),
                _ => Err(format!("unexpected input at {}", self.i)),
            }
        }
        fn digits(&mut self) -> usize {
            let start = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            self.i - start
        }
        fn number(&mut self) -> Result<V, String> {
            let start = self.i;
            if self.peek() == Some(b'-') {
                self.i += 1;
            }
            let first = self.peek();
            let n = self.digits();
            if n == 0 || (first == Some(b'0') && n > 1) {
                return Err(format!("bad integer part at {start}"));
            }
            if self.peek() == Some(b'.') {
                self.i += 1;
                if self.digits() == 0 {
                    return Err(format!("bad fraction at {start}"));
                }
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.i += 1;
                if matches!(self.peek(), Some(b'+' | b'-')) {
                    self.i += 1;
                }
                if self.digits() == 0 {
                    return Err(format!("bad exponent at {start}"));
                }
            }
            let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
            Ok(V::Num(text.to_string()))
        }
        fn hex4(&mut self) -> Result<u32, String> {
            let h = self.s.get(self.i..self.i + 4).ok_or("short \\u")?;
            let h = std::str::from_utf8(h).map_err(|e| e.to_string())?;
            let v = u32::from_str_radix(h, 16).map_err(|e| e.to_string())?;
            self.i += 4;
            Ok(v)
        }
        fn string(&mut self) -> Result<String, String> {
            self.eat(b'"')?;
            let mut out: Vec<u8> = Vec::new();
            loop {
                let b = self.peek().ok_or("unterminated string")?;
                self.i += 1;
                match b {
                    b'"' => return String::from_utf8(out).map_err(|e| e.to_string()),
                    b'\\' => {
                        let e = self.peek().ok_or("unterminated escape")?;
                        self.i += 1;
                        let c = match e {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'/' => '/',
                            b'b' => '\u{8}',
                            b'f' => '\u{c}',
                            b'n' => '\n',
                            b'r' => '\r',
                            b't' => '\t',
                            b'u' => {
                                let hi = self.hex4()?;
                                let cp = if (0xd800..0xdc00).contains(&hi) {
                                    self.eat(b'\\')?;
                                    self.eat(b'u')?;
                                    let lo = self.hex4()?;
                                    0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00)
                                } else {
                                    hi
                                };
                                char::from_u32(cp).ok_or("bad code point")?
                            }
                            _ => return Err(format!("bad escape at {}", self.i)),
                        };
                        let mut tmp = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                    }
                    0x00..=0x1f => return Err(format!("raw control byte at {}", self.i)),
                    _ => out.push(b),
                }
            }
        }
    }

    #[test]
    fn escape_table() {
        let table = [
            ("plain", "plain"),
            ("a\"b", "a\\\"b"),
            ("back\\slash", "back\\\\slash"),
            ("l1\nl2", "l1\\nl2"),
            ("\t\r\u{8}\u{c}", "\\t\\r\\b\\f"),
            ("\u{0}\u{1}\u{1f}\u{7f}", "\\u0000\\u0001\\u001f\\u007f"),
            (
                "\u{1b}[2J\u{9b}\u{9f}\u{a0}",
                "\\u001b[2J\\u009b\\u009f\u{a0}",
            ),
            ("é→😀", "é→😀"),
            ("/", "/"),
        ];
        for (input, want) in table {
            assert_eq!(escape(input), want, "escape({input:?})");
        }
        assert_eq!(quote("a\""), "\"a\\\"\"");
    }

    #[test]
    fn builder_output() {
        let line = JsonObject::new()
            .str("s", "v")
            .num("n", 1.5)
            .int("i", -3)
            .uint("u", 7)
            .bool("t", true)
            .bool("f", false)
            .opt_num("none", None)
            .opt_num("some", Some(0.25))
            .opt_str("os", None)
            .opt_uint("ou", Some(u64::MAX))
            .raw(
                "r",
                &JsonArray::new().uint(1).str("x").num(f64::NAN).finish(),
            )
            .finish();
        assert_eq!(
            line,
            r#"{"s":"v","n":1.5,"i":-3,"u":7,"t":true,"f":false,"none":null,"some":0.25,"os":null,"ou":18446744073709551615,"r":[1,"x",null]}"#
        );
        assert!(parse(&line).is_ok());
        assert_eq!(JsonObject::new().finish(), "{}");
        assert_eq!(JsonArray::new().finish(), "[]");
    }

    #[test]
    fn non_finite_numbers_are_null() {
        let line = JsonObject::new()
            .num("a", f64::NAN)
            .num("b", f64::INFINITY)
            .opt_num("c", Some(f64::NEG_INFINITY))
            .finish();
        assert_eq!(line, r#"{"a":null,"b":null,"c":null}"#);
    }

    #[test]
    fn extreme_numbers_are_valid_json() {
        for v in [
            0.0,
            -0.0,
            1e300,
            -1e-300,
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            123.456,
        ] {
            let line = JsonObject::new().num("v", v).finish();
            match parse(&line) {
                Ok(V::Obj(m)) => match &m[0].1 {
                    V::Num(t) => assert_eq!(t.parse::<f64>().ok(), Some(v), "{line}"),
                    other => panic!("{other:?}"),
                },
                other => panic!("{line}: {other:?}"),
            }
        }
        let line = JsonObject::new().int("min", i64::MIN).finish();
        assert_eq!(line, r#"{"min":-9223372036854775808}"#);
    }

    #[test]
    fn checker_rejects_invalid() {
        for bad in ["{", "{\"a\":}", "\"\n\"", "01", "1.", "[1,]", "nul", "{} x"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn strings_round_trip(k in any::<String>(), v in any::<String>()) {
            let line = JsonObject::new().str(&k, &v).finish();
            prop_assert!(!line.contains('\n'));
            prop_assert_eq!(parse(&line), Ok(V::Obj(vec![(k, V::Str(v))])));
        }

        #[test]
        fn numbers_round_trip(v in any::<f64>(), i in any::<i64>(), u in any::<u64>()) {
            let line = JsonObject::new().num("v", v).int("i", i).uint("u", u).finish();
            let want_v = if v.is_finite() { V::Num(format!("{v}")) } else { V::Null };
            prop_assert_eq!(
                parse(&line),
                Ok(V::Obj(vec![
                    ("v".to_string(), want_v),
                    ("i".to_string(), V::Num(i.to_string())),
                    ("u".to_string(), V::Num(u.to_string())),
                ]))
            );
            if v.is_finite() {
                prop_assert_eq!(number(v).parse::<f64>().ok(), Some(v));
            }
        }

        #[test]
        fn nested_is_valid(names in prop::collection::vec(any::<String>(), 0..5)) {
            let mut arr = JsonArray::new();
            for n in &names {
                arr = arr.raw(&JsonObject::new().str("name", n).bool("ok", true).finish());
            }
            let line = JsonObject::new().raw("items", &arr.finish()).finish();
            prop_assert!(parse(&line).is_ok(), "{}", line);
        }
    }
}
