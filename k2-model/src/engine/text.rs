//! Turning sampled token bytes into text deltas: UTF-8 reassembly and stop strings.

/// Accumulates token bytes and yields text that is safe to show: complete UTF-8 characters,
/// never a partial stop string (held back until it is known not to be one), nothing after a
/// stop string.
pub(crate) struct TextOut {
    pending: Vec<u8>,
    text: String,
    emitted: usize,
    stops: Vec<String>,
}

impl TextOut {
    pub(crate) fn new(stops: &[String]) -> Self {
        TextOut {
            pending: Vec::new(),
            text: String::new(),
            emitted: 0,
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
        }
    }

    /// Adds a token's bytes; returns the new displayable text and whether a stop string ended
    /// the output.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> (String, bool) {
        self.pending.extend_from_slice(bytes);
        self.decode_pending(false);
        if let Some(pos) = self.find_stop() {
            self.text.truncate(pos);
            return (self.take(self.text.len()), true);
        }
        let safe = self.text.len() - self.held_back();
        (self.take(safe), false)
    }

    /// Whether `bytes` added now would still read as UTF-8 (a character left unfinished at
    /// the end is fine: the next token may finish it).
    pub(crate) fn continues(&self, bytes: &[u8]) -> bool {
        let mut all = self.pending.clone();
        all.extend_from_slice(bytes);
        match std::str::from_utf8(&all) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        }
    }

    /// Flushes everything still held (an incomplete character becomes U+FFFD).
    pub(crate) fn finish(&mut self) -> String {
        self.decode_pending(true);
        self.take(self.text.len())
    }

    /// All text produced so far (excluding any stop string).
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    fn take(&mut self, upto: usize) -> String {
        let delta = self.text[self.emitted..upto].to_string();
        self.emitted = upto;
        delta
    }

    fn decode_pending(&mut self, flush: bool) {
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    self.text.push_str(s);
                    self.pending.clear();
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: from_utf8 just validated this prefix.
                    self.text
                        .push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            self.text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                        None if flush => {
                            self.text.push(char::REPLACEMENT_CHARACTER);
                            self.pending.clear();
                            return;
                        }
                        None => {
                            self.pending.drain(..valid);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Earliest stop string in the not-yet-emitted text. A match cannot start earlier: any
    /// suffix that could begin one is held back.
    fn find_stop(&self) -> Option<usize> {
        let tail = &self.text[self.emitted..];
        self.stops
            .iter()
            .filter_map(|s| tail.find(s.as_str()))
            .min()
            .map(|p| self.emitted + p)
    }

    /// Length of the longest suffix of the text that is a proper prefix of a stop string.
    fn held_back(&self) -> usize {
        let tail = &self.text[self.emitted..];
        self.stops
            .iter()
            .flat_map(|stop| {
                (1..stop.len())
                    .rev()
                    .filter(|&k| stop.is_char_boundary(k) && tail.ends_with(&stop[..k]))
                    .take(1)
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&[u8]], stops: &[&str]) -> (Vec<String>, bool, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut out = TextOut::new(&stops);
        let mut deltas = Vec::new();
        for p in pieces {
            let (d, stopped) = out.push(p);
            deltas.push(d);
            if stopped {
                return (deltas, true, out.text().to_string());
            }
        }
        deltas.push(out.finish());
        (deltas, false, out.text().to_string())
    }

    #[test]
    fn reassembles_split_utf8() {
        let e = "é".as_bytes();
        let (deltas, _, text) = run(&[b"caf", &e[..1], &e[1..], b"!"], &[]);
        assert_eq!(text, "café!");
        assert_eq!(deltas, ["caf", "", "é", "!", ""]);
    }

    #[test]
    fn stop_string_split_across_pieces_is_never_shown() {
        let (deltas, stopped, text) = run(&[b"Hello ", b"EN", b"D and more"], &["END"]);
        assert!(stopped);
        assert_eq!(text, "Hello ");
        assert_eq!(deltas.concat(), "Hello ");
        assert!(!deltas.concat().contains("EN"));
    }

    #[test]
    fn held_back_prefix_is_released_when_it_is_not_a_stop() {
        let (deltas, stopped, text) = run(&[b"a E", b"Nx"], &["END"]);
        assert!(!stopped);
        assert_eq!(text, "a ENx");
        assert_eq!(deltas, ["a ", "ENx", ""]);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (_, _, text) = run(&[b"a\xffb", b"\xe2\x82"], &[]);
        assert_eq!(text, "a\u{fffd}b\u{fffd}");
    }
}
