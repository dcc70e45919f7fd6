//! Server-sent events, as OpenAI-compatible servers stream them: `data:` lines, a blank line
//! between events, `[DONE]` at the end.

/// One decoded event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sse {
    /// An event's data (its `data:` lines joined by newlines).
    Data(String),
    /// `data: [DONE]`.
    Done,
}

/// Turns bytes, however they are split, into events. Anything that is not SSE (a line that
/// is not a field or a comment, invalid UTF-8, an `error:` line some servers send) is an
/// error with the offending line.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    buf: Vec<u8>,
    data: Vec<String>,
}

impl Decoder {
    /// Feeds a chunk; returns the events it completed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Result<Vec<Sse>, String> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let line = std::str::from_utf8(&line[..line.len() - 1])
                .map_err(|_| "invalid UTF-8 in the event stream".to_string())?;
            self.line(line.strip_suffix('\r').unwrap_or(line), &mut out)?;
        }
        Ok(out)
    }

    /// The stream ended: whatever is left must be a whole event.
    pub(crate) fn finish(&mut self) -> Result<Vec<Sse>, String> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = String::from_utf8(rest)
                .map_err(|_| "invalid UTF-8 in the event stream".to_string())?;
            self.line(line.trim_end_matches('\r'), &mut out)?;
        }
        self.line("", &mut out)?;
        Ok(out)
    }

    fn line(&mut self, line: &str, out: &mut Vec<Sse>) -> Result<(), String> {
        if line.is_empty() {
            if !self.data.is_empty() {
                let data = std::mem::take(&mut self.data).join("\n");
                out.push(match data.trim() {
                    "[DONE]" => Sse::Done,
                    _ => Sse::Data(data),
                });
            }
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "" => Ok(()), // a comment (keep-alive)
            "data" => {
                self.data.push(value.to_string());
                Ok(())
            }
            "event" | "id" | "retry" => Ok(()),
            "error" => Err(format!("the server reported an error: {value}")),
            _ => Err(format!("not an event-stream line: {}", clip(line))),
        }
    }
}

/// At most 200 characters of `s`, for error messages.
pub(crate) fn clip(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &str, split: usize) -> Result<Vec<Sse>, String> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for chunk in input.as_bytes().chunks(split.max(1)) {
            out.extend(d.push(chunk)?);
        }
        out.extend(d.finish()?);
        Ok(out)
    }

    #[test]
    fn events_survive_any_split() {
        let input = ": keep-alive\r\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: line one\ndata: line two\n\ndata:[DONE]\n\n";
        let want = vec![
            Sse::Data("{\"a\":1}".into()),
            Sse::Data("line one\nline two".into()),
            Sse::Done,
        ];
        for split in 1..input.len() {
            assert_eq!(all(input, split).unwrap(), want, "split {split}");
        }
    }

    #[test]
    fn a_last_event_without_its_blank_line_still_counts() {
        assert_eq!(all("data: x", 3).unwrap(), vec![Sse::Data("x".into())]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(all("data: ok\n\n<html>oops</html>\n", 4)
            .unwrap_err()
            .contains("not an event-stream line: <html>"));
        assert!(all("error: {\"message\": \"boom\"}\n\n", 4)
            .unwrap_err()
            .contains("boom"));
        let mut d = Decoder::default();
        assert!(d.push(b"data: \xff\xfe\n").is_err());
    }
}
