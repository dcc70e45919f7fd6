//! Kimi K2's native tool-call markup:
//! `<|tool_calls_section_begin|><|tool_call_begin|>functions.NAME:IDX<|tool_call_argument_begin|>{…}<|tool_call_end|>…<|tool_calls_section_end|>`.
//! The call id is the whole `functions.NAME:IDX`; the name sits between `functions.` and the
//! last `:`.

use super::core::{find_from, parse_arguments, skip_ws, Core};
use super::error::FormatError;
use super::Machine;

pub(crate) const SECTION_BEGIN: &str = "<|tool_calls_section_begin|>";
pub(crate) const SECTION_END: &str = "<|tool_calls_section_end|>";
pub(crate) const CALL_BEGIN: &str = "<|tool_call_begin|>";
pub(crate) const ARG_BEGIN: &str = "<|tool_call_argument_begin|>";
pub(crate) const CALL_END: &str = "<|tool_call_end|>";

/// A header longer than this cannot be `functions.NAME:IDX`; fail instead of buffering on.
const MAX_HEADER: usize = 512;

enum State {
    Content,
    /// Inside a section, between calls; `start` is where the section began.
    Section {
        start: usize,
    },
    /// After `<|tool_call_begin|>`, reading the id up to the argument marker.
    Header {
        start: usize,
        scan: usize,
    },
    /// Reading the JSON arguments up to `<|tool_call_end|>`.
    Arguments {
        /// Where the call began (for truncation reports).
        call: usize,
        start: usize,
        id: String,
        name: String,
        scan: usize,
    },
}

pub(crate) struct K2 {
    state: State,
}

impl K2 {
    pub fn new() -> Self {
        K2 {
            state: State::Content,
        }
    }
}

/// Splits `functions.NAME:IDX` into the name (tolerating a missing prefix or index).
pub(crate) fn name_from_id(id: &str) -> &str {
    let id = id.trim();
    let rest = id.strip_prefix("functions.").unwrap_or(id);
    match rest.rsplit_once(':') {
        Some((name, idx)) if idx.chars().all(|c| c.is_ascii_digit()) => name,
        _ => rest,
    }
}

impl Machine for K2 {
    fn step(&mut self, core: &mut Core) -> Result<bool, FormatError> {
        match &mut self.state {
            State::Content => {
                let mut from = 0;
                if let Some(p) = find_from(core.buf(), &mut from, SECTION_BEGIN) {
                    core.emit_content(p);
                    self.state = State::Section { start: core.base };
                    core.consume(SECTION_BEGIN.len());
                    return Ok(true);
                }
                // A call marker outside a section would otherwise leak into the content.
                if let Some(p) = find_from(core.buf(), &mut 0, CALL_BEGIN) {
                    return Err(core.unexpected(p, "`<|tool_calls_section_begin|>` before a call"));
                }
                core.emit_content_except_partial(&[SECTION_BEGIN, CALL_BEGIN]);
                Ok(false)
            }
            State::Section { .. } => {
                let at = skip_ws(core.buf(), 0);
                let rest = &core.buf()[at..];
                if rest.starts_with(CALL_BEGIN) {
                    core.consume(at + CALL_BEGIN.len());
                    self.state = State::Header {
                        start: core.base - CALL_BEGIN.len(),
                        scan: 0,
                    };
                    Ok(true)
                } else if rest.starts_with(SECTION_END) {
                    core.consume(at + SECTION_END.len());
                    self.state = State::Content;
                    Ok(true)
                } else if CALL_BEGIN.starts_with(rest) || SECTION_END.starts_with(rest) {
                    Ok(false)
                } else {
                    Err(core
                        .unexpected(at, "`<|tool_call_begin|>` or `<|tool_calls_section_end|>`"))
                }
            }
            State::Header { start, scan } => match find_from(core.buf(), scan, ARG_BEGIN) {
                Some(p) => {
                    let id = core.buf()[..p].trim().to_string();
                    if id.contains("<|") {
                        return Err(core.unexpected(0, "a call id such as `functions.NAME:0`"));
                    }
                    let name = name_from_id(&id).to_string();
                    if name.is_empty() {
                        return Err(FormatError::EmptyName { offset: *start });
                    }
                    let call = *start;
                    core.consume(p + ARG_BEGIN.len());
                    self.state = State::Arguments {
                        call,
                        start: core.base,
                        id,
                        name,
                        scan: 0,
                    };
                    Ok(true)
                }
                None if core.buf().len() > MAX_HEADER || core.buf().contains(CALL_END) => {
                    Err(core.unexpected(0, "`<|tool_call_argument_begin|>` after the call id"))
                }
                None => Ok(false),
            },
            State::Arguments {
                start,
                id,
                name,
                scan,
                ..
            } => match find_from(core.buf(), scan, CALL_END) {
                Some(p) => {
                    let args = parse_arguments(&core.buf()[..p], name, *start)?;
                    let (id, name, start) = (std::mem::take(id), std::mem::take(name), *start);
                    core.consume(p + CALL_END.len());
                    core.emit_call(Some(id), &name, args, start)?;
                    self.state = State::Section { start };
                    Ok(true)
                }
                None => Ok(false),
            },
        }
    }

    fn finish(&mut self, core: &mut Core) -> Result<(), FormatError> {
        match &self.state {
            State::Content => {
                core.emit_content(core.buf().len());
                Ok(())
            }
            // All calls complete, only the closing marker missing: nothing is lost.
            State::Section { .. } if core.buf().trim().is_empty() && !core.calls.is_empty() => {
                Ok(())
            }
            State::Section { start } => Err(core.truncated(*start, "`<|tool_calls_section_end|>`")),
            State::Header { start, .. } => {
                Err(core.truncated(*start, "`<|tool_call_argument_begin|>`"))
            }
            State::Arguments { call, .. } => Err(core.truncated(*call, "`<|tool_call_end|>`")),
        }
    }
}
