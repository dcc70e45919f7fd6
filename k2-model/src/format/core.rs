//! The machinery every format's incremental parser shares: a buffer of undecided text with
//! its absolute offset, marker search that never rescans, and a streaming JSON scanner.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::error::{snippet, FormatError};
use super::ParseEvent;
use crate::chat::ToolCall;

/// Undecided text plus what has been decided so far.
pub(crate) struct Core {
    /// Text received; `data[head..]` is not yet turned into events. Consuming moves `head`
    /// and the consumed front is dropped when more text arrives, so consuming never moves
    /// the rest of the buffer.
    data: String,
    head: usize,
    /// Absolute byte offset of `buf()[0]` in the whole output.
    pub base: usize,
    pub events: Vec<ParseEvent>,
    /// Whether to keep events (a whole-text parse only wants `content` and `calls`).
    pub record_events: bool,
    /// Content and calls decided so far (kept for truncation reports).
    pub content: String,
    pub calls: Vec<ToolCall>,
    pub known: Option<Arc<HashSet<String>>>,
}

impl Core {
    pub fn new(known: Option<Arc<HashSet<String>>>) -> Self {
        Core {
            data: String::new(),
            head: 0,
            base: 0,
            events: Vec::new(),
            record_events: true,
            content: String::new(),
            calls: Vec::new(),
            known,
        }
    }

    /// The undecided text.
    pub fn buf(&self) -> &str {
        &self.data[self.head..]
    }

    /// Appends received text.
    pub fn push(&mut self, text: &str) {
        if self.head > 0 {
            self.data.drain(..self.head);
            self.head = 0;
        }
        self.data.push_str(text);
    }

    /// Drops the first `n` bytes of the undecided text.
    pub fn consume(&mut self, n: usize) {
        self.head += n;
        self.base += n;
    }

    /// Emits `buf()[..n]` as content and consumes it.
    pub fn emit_content(&mut self, n: usize) {
        if n > 0 {
            let text = &self.data[self.head..self.head + n];
            self.content.push_str(text);
            if self.record_events {
                self.events.push(ParseEvent::Content(text.to_string()));
            }
            self.consume(n);
        }
    }

    /// Checks the name and emits a call.
    pub fn emit_call(
        &mut self,
        id: Option<String>,
        name: &str,
        arguments: Value,
        offset: usize,
    ) -> Result<(), FormatError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(FormatError::EmptyName { offset });
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || "<>\"'{}[]".contains(c))
        {
            return Err(FormatError::Unexpected {
                offset,
                expected: "a function name",
                found: snippet(name),
            });
        }
        if let Some(known) = &self.known {
            if !known.contains(name) {
                return Err(FormatError::UnknownFunction {
                    offset,
                    name: name.to_string(),
                });
            }
        }
        let call = ToolCall {
            id: id.unwrap_or_else(|| format!("call_{}", self.calls.len())),
            name: name.to_string(),
            arguments,
        };
        if self.record_events {
            self.events.push(ParseEvent::ToolCall(call.clone()));
        }
        self.calls.push(call);
        Ok(())
    }

    /// Emits as content everything except a suffix that could start one of `markers`.
    pub fn emit_content_except_partial(&mut self, markers: &[&str]) {
        let keep = partial_suffix(self.buf(), markers);
        self.emit_content(self.buf().len() - keep);
    }

    pub fn truncated(&self, offset: usize, expected: &'static str) -> FormatError {
        FormatError::Truncated {
            offset,
            expected,
            content: self.content.trim().to_string(),
            calls: self.calls.clone(),
        }
    }

    pub fn unexpected(&self, at: usize, expected: &'static str) -> FormatError {
        FormatError::Unexpected {
            offset: self.base + at,
            expected,
            found: snippet(&self.buf()[at..]),
        }
    }
}

/// Length of the longest suffix of `s` that is a proper prefix of one of `markers`.
pub(crate) fn partial_suffix(s: &str, markers: &[&str]) -> usize {
    markers
        .iter()
        .filter_map(|m| {
            (1..m.len().min(s.len() + 1))
                .rev()
                .find(|&k| s.is_char_boundary(s.len() - k) && s.ends_with(&m[..k]))
        })
        .max()
        .unwrap_or(0)
}

/// Finds `marker` in `buf` starting at `*from`; when absent, advances `*from` past what can
/// no longer begin a match, so repeated calls on a growing buffer stay linear.
pub(crate) fn find_from(buf: &str, from: &mut usize, marker: &str) -> Option<usize> {
    let start = (*from).min(buf.len());
    let start = (0..=start)
        .rev()
        .find(|&i| buf.is_char_boundary(i))
        .unwrap_or(0);
    match find(&buf[start..], marker) {
        Some(p) => Some(start + p),
        None => {
            *from = buf.len().saturating_sub(marker.len().saturating_sub(1));
            None
        }
    }
}

/// `hay.find(needle)`, faster for what the parsers look for: short markers whose first byte
/// is rare in prose (`<`, `[`), in buffers of a few KB. Building a general substring
/// searcher for each such search costs more than the search itself.
pub(crate) fn find(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let first = *n.first()?;
    memchr::memchr_iter(first, h).find(|&i| h[i..].starts_with(n))
}

/// Index of the first non-whitespace byte at or after `from`.
pub(crate) fn skip_ws(buf: &str, from: usize) -> usize {
    from + buf[from..].len() - buf[from..].trim_start().len()
}

/// Parses call arguments: JSON objects as they are, a JSON string holding an object
/// unwrapped, empty text as `{}`.
pub(crate) fn parse_arguments(text: &str, name: &str, offset: usize) -> Result<Value, FormatError> {
    let bad = |reason: String| FormatError::BadArguments {
        offset,
        name: name.to_string(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let value: Value = serde_json::from_str(trimmed).map_err(|e| bad(e.to_string()))?;
    let value = match value {
        Value::String(s) => serde_json::from_str(&s).map_err(|e| bad(e.to_string()))?,
        v => v,
    };
    if value.is_object() {
        Ok(value)
    } else {
        Err(bad(format!("expected a JSON object, got {}", kind(&value))))
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Finds where a JSON object or array that starts at the beginning of the scanned text ends,
/// fed incrementally (each byte is looked at once).
#[derive(Default)]
pub(crate) struct JsonScanner {
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Bytes already scanned.
    pub pos: usize,
    /// Where the value ended, once it has.
    end: Option<usize>,
}

impl JsonScanner {
    /// Scans `text[self.pos..]`; returns the end (exclusive) of the value once it closes (and
    /// the same end on every later call).
    pub fn advance(&mut self, text: &str) -> Option<usize> {
        if self.end.is_some() {
            return self.end;
        }
        let bytes = text.as_bytes();
        while self.pos < bytes.len() {
            let b = bytes[self.pos];
            self.pos += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.end = Some(self.pos);
                        return self.end;
                    }
                }
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_suffixes() {
        assert_eq!(partial_suffix("abc<tool", &["<tool_call>"]), 5);
        assert_eq!(partial_suffix("abc", &["<tool_call>"]), 0);
        assert_eq!(partial_suffix("<", &["<a>", "<b>"]), 1);
        assert_eq!(partial_suffix("é<", &["<a>"]), 1);
    }

    #[test]
    fn json_scanner_handles_strings_and_nesting_across_pieces() {
        let mut s = JsonScanner::default();
        let mut text = String::from(r#"{"a": "}\"]", "b": [1, {"#);
        assert_eq!(s.advance(&text), None);
        text.push_str(r#""c": 2}]} trailing"#);
        let end = s.advance(&text).unwrap();
        assert_eq!(&text[end..], " trailing");
    }

    #[test]
    fn arguments_accept_objects_strings_of_objects_and_nothing() {
        assert_eq!(parse_arguments(r#"{"x":1}"#, "f", 0).unwrap()["x"], 1);
        assert_eq!(parse_arguments(r#""{\"x\":1}""#, "f", 0).unwrap()["x"], 1);
        assert!(parse_arguments("  ", "f", 0).unwrap().is_object());
        assert!(matches!(
            parse_arguments("[1]", "f", 3),
            Err(FormatError::BadArguments { offset: 3, .. })
        ));
        assert!(parse_arguments("{bad", "f", 0).is_err());
    }
}
