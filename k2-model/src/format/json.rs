//! Calls written as bare JSON: Llama 3.x (`{"name": …, "parameters": …}`, optionally after
//! `<|python_tag|>`, several separated by `;`), Mistral (`[TOOL_CALLS][{…}, …]` or
//! `[TOOL_CALLS]name[ARGS]{…}`), and the plain-JSON fallback (an object, an array of objects,
//! or `{"tool_calls": […]}`).

use serde_json::Value;

use super::core::{parse_arguments, partial_suffix, skip_ws, Core, JsonScanner};
use super::error::FormatError;
use super::hermes::emit_object;
use super::Machine;

pub(crate) const PYTHON_TAG: &str = "<|python_tag|>";
pub(crate) const MISTRAL_CALLS: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";
const MISTRAL_CALL_ID: &str = "[CALL_ID]";

/// Which bare-JSON dialect.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Llama3,
    Mistral,
    Plain,
}

impl Dialect {
    /// The marker that opens calls in this dialect, if it has one.
    fn marker(self) -> Option<&'static str> {
        match self {
            Dialect::Llama3 => Some(PYTHON_TAG),
            Dialect::Mistral => Some(MISTRAL_CALLS),
            Dialect::Plain => None,
        }
    }
}

enum State {
    /// Nothing decided yet (leading whitespace only).
    Start,
    /// Free text; Mistral may still switch to calls at `[TOOL_CALLS]`.
    Content,
    /// Expecting a JSON call value (or, for Mistral, a `name[ARGS]` call).
    Value { start: usize },
    /// Inside a JSON value.
    Scanning { start: usize, scanner: JsonScanner },
    /// Mistral `name[ARGS]{…}`: reading the arguments object.
    MistralArgs {
        start: usize,
        name: String,
        scanner: JsonScanner,
    },
    /// Between values: `;`, `,`, whitespace, or the end.
    Between,
}

pub(crate) struct JsonCalls {
    dialect: Dialect,
    state: State,
}

impl JsonCalls {
    pub fn new(dialect: Dialect) -> Self {
        JsonCalls {
            dialect,
            state: State::Start,
        }
    }

    fn emit_value(core: &mut Core, value: Value, start: usize) -> Result<(), FormatError> {
        match value {
            Value::Array(items) => items
                .into_iter()
                .try_for_each(|item| emit_object(core, item, start)),
            Value::Object(mut obj)
                if obj.contains_key("tool_calls") && !obj.contains_key("name") =>
            {
                match obj.remove("tool_calls") {
                    Some(calls) => Self::emit_value(core, calls, start),
                    None => Ok(()),
                }
            }
            other => emit_object(core, other, start),
        }
    }
}

impl Machine for JsonCalls {
    fn step(&mut self, core: &mut Core) -> Result<bool, FormatError> {
        match &mut self.state {
            State::Start => {
                let at = skip_ws(core.buf(), 0);
                let rest = &core.buf()[at..];
                if rest.is_empty() {
                    return Ok(false);
                }
                if let Some(m) = self.dialect.marker() {
                    if rest.starts_with(m) {
                        core.consume(at + m.len());
                        self.state = State::Value { start: core.base };
                        return Ok(true);
                    }
                    if m.starts_with(rest) {
                        return Ok(false);
                    }
                }
                if self.dialect != Dialect::Mistral && rest.starts_with(['{', '[']) {
                    core.consume(at);
                    self.state = State::Value { start: core.base };
                } else {
                    self.state = State::Content;
                }
                Ok(true)
            }
            State::Content => {
                if self.dialect == Dialect::Mistral {
                    if let Some(p) = core.buf().find(MISTRAL_CALLS) {
                        core.emit_content(p);
                        core.consume(MISTRAL_CALLS.len());
                        self.state = State::Value { start: core.base };
                        return Ok(true);
                    }
                    core.emit_content_except_partial(&[MISTRAL_CALLS]);
                } else {
                    core.emit_content(core.buf().len());
                }
                Ok(false)
            }
            State::Value { start } => {
                let start = *start;
                let at = skip_ws(core.buf(), 0);
                let Some(first) = core.buf()[at..].chars().next() else {
                    return Ok(false);
                };
                core.consume(at);
                if first == '{' || first == '[' {
                    self.state = State::Scanning {
                        start,
                        scanner: JsonScanner::default(),
                    };
                    return Ok(true);
                }
                if self.dialect == Dialect::Mistral {
                    // `name[ARGS]{…}` (newer Mistral templates), optionally `[CALL_ID]id`.
                    if let Some(p) = core.buf().find(MISTRAL_ARGS) {
                        let head = &core.buf()[..p];
                        let name = head.split(MISTRAL_CALL_ID).next().unwrap_or("").to_string();
                        core.consume(p + MISTRAL_ARGS.len());
                        self.state = State::MistralArgs {
                            start,
                            name,
                            scanner: JsonScanner::default(),
                        };
                        return Ok(true);
                    }
                    if core.buf().len() <= 256 && !core.buf().contains(['{', '\n']) {
                        return Ok(false);
                    }
                }
                Err(core.unexpected(0, "a JSON tool call"))
            }
            State::Scanning { start, scanner } => match scanner.advance(core.buf()) {
                Some(end) => {
                    let start = *start;
                    let value: Value = serde_json::from_str(&core.buf()[..end]).map_err(|e| {
                        FormatError::BadArguments {
                            offset: start,
                            name: String::new(),
                            reason: format!("the call is not valid JSON: {e}"),
                        }
                    })?;
                    core.consume(end);
                    Self::emit_value(core, value, start)?;
                    self.state = State::Between;
                    Ok(true)
                }
                None => Ok(false),
            },
            State::MistralArgs {
                start,
                name,
                scanner,
            } => {
                let lead = skip_ws(core.buf(), 0);
                if core.buf().len() > lead && !core.buf()[lead..].starts_with('{') {
                    return Err(core.unexpected(lead, "a JSON object after `[ARGS]`"));
                }
                match scanner.advance(core.buf()) {
                    Some(end) => {
                        let (start, name) = (*start, std::mem::take(name));
                        let args = parse_arguments(&core.buf()[..end], &name, start)?;
                        core.consume(end);
                        core.emit_call(None, &name, args, start)?;
                        self.state = State::Between;
                        Ok(true)
                    }
                    None => Ok(false),
                }
            }
            State::Between => {
                let at = skip_ws(core.buf(), 0);
                let rest = &core.buf()[at..];
                if rest.is_empty() {
                    return Ok(false);
                }
                let next = self.dialect.marker().unwrap_or(PYTHON_TAG);
                if rest.starts_with([';', ',']) {
                    core.consume(at + 1);
                    self.state = State::Value { start: core.base };
                } else if rest.starts_with(next) {
                    core.consume(at + next.len());
                    self.state = State::Value { start: core.base };
                } else if rest.starts_with(['{', '[']) {
                    core.consume(at);
                    self.state = State::Value { start: core.base };
                } else if partial_suffix(rest, &[next]) == rest.len() {
                    return Ok(false);
                } else {
                    return Err(core.unexpected(at, "another call or the end of the output"));
                }
                Ok(true)
            }
        }
    }

    fn finish(&mut self, core: &mut Core) -> Result<(), FormatError> {
        match &self.state {
            State::Start | State::Content => {
                core.emit_content(core.buf().len());
                Ok(())
            }
            State::Between => {
                if core.buf().trim().is_empty() {
                    Ok(())
                } else {
                    Err(core.unexpected(skip_ws(core.buf(), 0), "the end of the output"))
                }
            }
            // Only a trailing separator after complete calls: nothing is lost.
            State::Value { .. } if core.buf().trim().is_empty() && !core.calls.is_empty() => Ok(()),
            State::Value { start }
            | State::Scanning { start, .. }
            | State::MistralArgs { start, .. } => {
                Err(core.truncated(*start, "a complete JSON call"))
            }
        }
    }
}
