//! A strict JSON parser (RFC 8259) for request bodies, keeping what protojson needs and a generic
//! parser throws away:
//!
//! - numbers are kept as written (`2.0`, `1e2`, `18446744073709551615`): protojson decides
//!   whether a number is an integer from its decimal text, not from a rounded double;
//! - objects keep every member in order, repeated keys included, so the schema walk can reject
//!   a repeated key (or a field given under both its names) with the field's path;
//! - errors are written for people: what was expected, what was found, and where (line and
//!   column, counted in characters).
//!
//! Nesting is limited to [`MAX_DEPTH`] levels, so neither parsing nor walking the tree can
//! exhaust the stack, whatever the body.

use std::fmt;

/// The deepest nesting of arrays and objects accepted (serde_json's limit, which this replaces).
pub const MAX_DEPTH: usize = 128;

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number, as written (it matches RFC 8259's grammar).
    Number(String),
    /// A string, unescaped.
    String(String),
    /// An array.
    Array(Vec<Json>),
    /// An object's members in order, repeated keys included.
    Object(Vec<(String, Json)>),
}

/// Why a body is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyntaxKind {
    /// Not JSON: the text says what was expected and what was found.
    Invalid,
    /// Valid JSON nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// A syntax error: what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Invalid JSON, or too deep.
    pub kind: SyntaxKind,
    /// What is wrong, in plain words ("expected `:` after an object key, found `,`").
    pub what: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, column {}",
            self.what, self.line, self.column
        )
    }
}

/// Parses a whole body: one JSON value, optionally surrounded by whitespace.
pub fn parse(input: &[u8]) -> Result<Json, SyntaxError> {
    let text = match std::str::from_utf8(input) {
        Ok(text) => text,
        Err(e) => {
            let valid = &input[..e.valid_up_to()];
            // The valid prefix is UTF-8, so positions can be counted in characters.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let (line, column) = position(prefix, prefix.len());
            return Err(SyntaxError {
                kind: SyntaxKind::Invalid,
                what: "invalid UTF-8 (JSON text must be UTF-8)".into(),
                line,
                column,
            });
        }
    };
    let mut p = Parser {
        text,
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    p.skip_whitespace();
    let value = p.value()?;
    p.skip_whitespace();
    if p.at < p.bytes.len() {
        return Err(p.error(format!(
            "unexpected {} after the end of the JSON value (trailing characters)",
            p.found()
        )));
    }
    Ok(value)
}

/// The 1-based line and column (in characters) of byte offset `at` of `text`.
fn position(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, what: impl Into<String>) -> SyntaxError {
        self.error_at(self.at, SyntaxKind::Invalid, what)
    }

    fn error_at(&self, at: usize, kind: SyntaxKind, what: impl Into<String>) -> SyntaxError {
        let (line, column) = position(self.text, at);
        SyntaxError {
            kind,
            what: what.into(),
            line,
            column,
        }
    }

    /// What is at the current position, for "expected X, found Y".
    fn found(&self) -> String {
        match self.text[self.at..].chars().next() {
            None => "end of input".into(),
            Some('\u{feff}') => "a byte-order mark (U+FEFF)".into(),
            Some(c) if c.is_ascii_graphic() => format!("`{c}`"),
            Some(c) => format!("character U+{:04X}", u32::from(c)),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn value(&mut self) -> Result<Json, SyntaxError> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Json::String),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            None => Err(self.error("unexpected end of input, expected a JSON value")),
            Some(_) => Err(self.error(format!("expected a JSON value, found {}", self.found()))),
        }
    }

    fn literal(&mut self, word: &str, value: Json) -> Result<Json, SyntaxError> {
        if self.bytes[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self
                .error("expected a JSON value (`true`, `false` and `null` are lowercase words)"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Json, SyntaxError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.at += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("invalid number: leading zeros are not allowed"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => {
                return Err(self.error(format!(
                    "invalid number: expected a digit after `-`, found {}",
                    self.found()
                )));
            }
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.error(format!(
                    "invalid number: expected a digit after the decimal point, found {}",
                    self.found()
                )));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.error(format!(
                    "invalid number: expected a digit in the exponent, found {}",
                    self.found()
                )));
            }
        }
        Ok(Json::Number(self.text[start..self.at].to_owned()))
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let hex = self.bytes.get(self.at..self.at + 4);
        match hex.and_then(|h| std::str::from_utf8(h).ok()) {
            Some(h) if h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                self.at += 4;
                Ok(u32::from_str_radix(h, 16).unwrap_or_default())
            }
            _ => Err(self.error("invalid escape: `\\u` must be followed by 4 hexadecimal digits")),
        }
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Result<String, SyntaxError> {
        let open = self.at;
        self.at += 1;
        let mut out = String::new();
        loop {
            let start = self.at;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            // Stops only at ASCII bytes, so `start..at` is whole characters.
            out.push_str(&self.text[start..self.at]);
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let escape = self.at;
                    self.at += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.at += 1;
                            let c = self.unicode_escape(escape)?;
                            out.push(c);
                            continue;
                        }
                        None => {
                            return Err(self.error_at(
                                open,
                                SyntaxKind::Invalid,
                                "unexpected end of input inside the string that starts here",
                            ));
                        }
                        _ => {
                            return Err(self.error(format!(
                                "invalid escape `\\{}` in a string (JSON allows \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)",
                                self.text[self.at..].chars().next().unwrap_or(' ')
                            )));
                        }
                    };
                    self.at += 1;
                    out.push(c);
                }
                Some(b) => {
                    return Err(self.error(format!(
                        "control character U+{b:04X} in a string must be escaped"
                    )));
                }
                None => {
                    return Err(self.error_at(
                        open,
                        SyntaxKind::Invalid,
                        "unexpected end of input inside the string that starts here",
                    ));
                }
            }
        }
    }

    /// The character of a `\uXXXX` escape (and of the low surrogate escape that must follow a
    /// high one); `escape` is where the first backslash is.
    fn unicode_escape(&mut self, escape: usize) -> Result<char, SyntaxError> {
        let unpaired = |p: &Self, code: u32| {
            p.error_at(
                escape,
                SyntaxKind::Invalid,
                format!("invalid escape: \\u{code:04X} is an unpaired UTF-16 surrogate"),
            )
        };
        let high = self.hex4()?;
        if (0xDC00..0xE000).contains(&high) {
            return Err(unpaired(self, high));
        }
        if !(0xD800..0xDC00).contains(&high) {
            return char::from_u32(high).ok_or_else(|| unpaired(self, high));
        }
        if !self.bytes[self.at..].starts_with(b"\\u") {
            return Err(unpaired(self, high));
        }
        self.at += 2;
        let low = self.hex4()?;
        if !(0xDC00..0xE000).contains(&low) {
            return Err(unpaired(self, high));
        }
        let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
        char::from_u32(c).ok_or_else(|| unpaired(self, high))
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_at(
                self.at,
                SyntaxKind::TooDeep,
                format!(
                    "arrays and objects nested more than {MAX_DEPTH} levels deep (the recursion limit)"
                ),
            ));
        }
        self.at += 1;
        self.skip_whitespace();
        Ok(())
    }

    fn array(&mut self) -> Result<Json, SyntaxError> {
        self.enter()?;
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.at += 1;
            self.depth -= 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        return Err(self.error(
                            "expected a JSON value after `,` (no trailing commas in JSON)",
                        ));
                    }
                }
                Some(b']') => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(Json::Array(items));
                }
                _ => {
                    return Err(self.error(format!(
                        "expected `,` or `]` after an array element, found {}",
                        self.found()
                    )));
                }
            }
        }
    }

    fn object(&mut self) -> Result<Json, SyntaxError> {
        self.enter()?;
        let mut members = Vec::new();
        if self.peek() == Some(b'}') {
            self.at += 1;
            self.depth -= 1;
            return Ok(Json::Object(members));
        }
        loop {
            if self.peek() != Some(b'"') {
                let what = if self.peek() == Some(b'}') {
                    "expected a key in double quotes after `,` (no trailing commas in JSON)".into()
                } else {
                    format!("expected a key in double quotes, found {}", self.found())
                };
                return Err(self.error(what));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err(self.error(format!(
                    "expected `:` after the key {}, found {}",
                    super::quote(&key),
                    self.found()
                )));
            }
            self.at += 1;
            self.skip_whitespace();
            let value = self.value()?;
            members.push((key, value));
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.skip_whitespace();
                }
                Some(b'}') => {
                    self.at += 1;
                    self.depth -= 1;
                    return Ok(Json::Object(members));
                }
                _ => {
                    return Err(self.error(format!(
                        "expected `,` or `}}` after an object member, found {}",
                        self.found()
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Json {
        parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &[u8]) -> String {
        parse(s).unwrap_err().to_string()
    }

    #[test]
    fn values_of_every_kind() {
        assert_eq!(ok(" null "), Json::Null);
        assert_eq!(ok("true"), Json::Bool(true));
        assert_eq!(ok("false"), Json::Bool(false));
        for n in [
            "0",
            "-0",
            "2.0",
            "2e0",
            "-3.50E+01",
            "18446744073709551616",
            "1e999",
        ] {
            assert_eq!(ok(n), Json::Number(n.into()), "{n}");
        }
        assert_eq!(
            ok(r#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#),
            Json::String("a\"\\/\u{8}\u{c}\n\r\té😀".into())
        );
        assert_eq!(
            ok(r#"{"a":[1,{"b":null}],"a":"again"}"#),
            Json::Object(vec![
                (
                    "a".into(),
                    Json::Array(vec![
                        Json::Number("1".into()),
                        Json::Object(vec![("b".into(), Json::Null)])
                    ])
                ),
                ("a".into(), Json::String("again".into())),
            ])
        );
        assert_eq!(ok("\"\\u0000\""), Json::String("\0".into()));
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            err(b"{\n  \"a\": 1,\n  \"b\" 2\n}"),
            "expected `:` after the key \"b\", found `2` at line 3, column 7"
        );
        assert_eq!(
            err(b"{\"a\":1} x"),
            "unexpected `x` after the end of the JSON value (trailing characters) at line 1, column 9"
        );
        assert_eq!(
            err(b"{\"a\":"),
            "unexpected end of input, expected a JSON value at line 1, column 6"
        );
        assert_eq!(
            err(b"[1,]"),
            "expected a JSON value after `,` (no trailing commas in JSON) at line 1, column 4"
        );
        assert!(err(b"{\"a\":1,}").contains("no trailing commas"));
        assert!(err(b"{'a':1}").contains("expected a key in double quotes, found `'`"));
        assert!(err(b"[01]").contains("leading zeros"));
        assert!(err(b"[1.]").contains("after the decimal point"));
        assert!(err(b"[1e]").contains("exponent"));
        assert!(err(b"[-]").contains("digit after `-`"));
        assert!(err(b"[+1]").contains("expected a JSON value, found `+`"));
        assert!(err(b"[NaN]").contains("expected a JSON value, found `N`"));
        assert!(err(b"[True]").contains("expected a JSON value"));
        assert!(err(b"[nul]").contains("lowercase"));
        assert!(err(b"\"a\nb\"").contains("control character U+000A"));
        assert!(err(b"\"\\x\"").contains("invalid escape `\\x`"));
        assert!(err(b"\"\\u12\"").contains("4 hexadecimal digits"));
        assert!(err(br#""\ud800x""#).contains("\\uD800 is an unpaired UTF-16 surrogate"));
        assert!(err(br#""\udc00""#).contains("unpaired"));
        assert!(err(br#""\ud800\u0041""#).contains("unpaired"));
        assert!(err(b"\"abc").contains("inside the string that starts here at line 1, column 1"));
        assert!(err("\u{feff}{}".as_bytes()).contains("byte-order mark"));
        assert_eq!(
            err(b"{\"a\":\"\xff\"}"),
            "invalid UTF-8 (JSON text must be UTF-8) at line 1, column 7"
        );
        // Columns count characters, not bytes.
        assert!(err("[\"é\" x]".as_bytes()).ends_with("line 1, column 6"));
    }

    #[test]
    fn nesting_is_limited() {
        let ok_depth = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        parse(ok_depth.as_bytes()).unwrap();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse(deep.as_bytes()).unwrap_err();
        assert_eq!(e.kind, SyntaxKind::TooDeep);
        assert!(e.to_string().contains("recursion limit"), "{e}");
        let objects = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
        assert_eq!(
            parse(objects.as_bytes()).unwrap_err().kind,
            SyntaxKind::TooDeep
        );
    }
}
