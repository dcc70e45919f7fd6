//! Hermes / ChatML tool calls (Qwen 2.5/3, SmolLM, Hermes):
//! `<tool_call>{"name": "…", "arguments": {…}}</tool_call>`, any number of them.

use serde_json::Value;

use super::core::{find_from, kind, parse_arguments, skip_ws, Core, JsonScanner};
use super::error::FormatError;
use super::Machine;

pub(crate) const OPEN: &str = "<tool_call>";
pub(crate) const CLOSE: &str = "</tool_call>";

enum State {
    Content,
    Call { start: usize, scanner: JsonScanner },
}

pub(crate) struct Hermes {
    state: State,
}

impl Hermes {
    pub fn new() -> Self {
        Hermes {
            state: State::Content,
        }
    }
}

/// Reads `{"name": …, "arguments"|"parameters": …}` (the shape Hermes, Llama 3 and plain JSON
/// calls share) and emits the call.
pub(crate) fn emit_object(core: &mut Core, value: Value, offset: usize) -> Result<(), FormatError> {
    let Value::Object(mut obj) = value else {
        return Err(FormatError::Unexpected {
            offset,
            expected: "a tool call object `{\"name\": …, \"arguments\": …}`",
            found: kind(&value).to_string(),
        });
    };
    // OpenAI-style `{"function": {"name", "arguments"}}` nests the call one level down.
    if let Some(Value::Object(inner)) = obj.remove("function") {
        let id = obj.get("id").and_then(Value::as_str).map(str::to_string);
        obj = inner;
        if let Some(id) = id {
            obj.insert("id".into(), Value::String(id));
        }
    }
    let name = match obj.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(FormatError::Unexpected {
                offset,
                expected: "a string `name`",
                found: kind(other).to_string(),
            })
        }
        None => return Err(FormatError::EmptyName { offset }),
    };
    let args = match obj.remove("arguments").or_else(|| obj.remove("parameters")) {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(Value::String(s)) => parse_arguments(&s, &name, offset)?,
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            return Err(FormatError::BadArguments {
                offset,
                name,
                reason: format!("expected a JSON object, got {}", kind(&other)),
            })
        }
    };
    let id = obj.get("id").and_then(Value::as_str).map(str::to_string);
    core.emit_call(id, &name, args, offset)
}

impl Machine for Hermes {
    fn step(&mut self, core: &mut Core) -> Result<bool, FormatError> {
        match &mut self.state {
            State::Content => match find_from(core.buf(), &mut 0, OPEN) {
                Some(p) => {
                    core.emit_content(p);
                    let start = core.base;
                    core.consume(OPEN.len());
                    self.state = State::Call {
                        start,
                        scanner: JsonScanner::default(),
                    };
                    Ok(true)
                }
                None => {
                    core.emit_content_except_partial(&[OPEN]);
                    Ok(false)
                }
            },
            State::Call { start, scanner } => {
                // The call's end is where its JSON object closes (found string-aware, so a
                // `</tool_call>` inside an argument is just text), then `</tool_call>`.
                let start = *start;
                let lead = skip_ws(core.buf(), 0);
                if lead == core.buf().len() {
                    return Ok(false);
                }
                if !core.buf()[lead..].starts_with('{') {
                    return Err(core.unexpected(lead, "a JSON object after `<tool_call>`"));
                }
                let Some(end) = scanner.advance(core.buf()) else {
                    return Ok(false);
                };
                let after = skip_ws(core.buf(), end);
                let rest = &core.buf()[after..];
                if rest.len() < CLOSE.len() && CLOSE.starts_with(rest) {
                    return Ok(false);
                }
                if !rest.starts_with(CLOSE) {
                    return Err(core.unexpected(after, "`</tool_call>` after the call object"));
                }
                let value: Value = serde_json::from_str(&core.buf()[lead..end]).map_err(|e| {
                    FormatError::BadArguments {
                        offset: core.base + lead,
                        name: String::new(),
                        reason: format!("the call is not valid JSON: {e}"),
                    }
                })?;
                core.consume(after + CLOSE.len());
                emit_object(core, value, start)?;
                self.state = State::Content;
                Ok(true)
            }
        }
    }

    fn finish(&mut self, core: &mut Core) -> Result<(), FormatError> {
        match &self.state {
            State::Content => {
                core.emit_content(core.buf().len());
                Ok(())
            }
            State::Call { start, .. } => {
                let start = *start;
                // Small models often stop right after the JSON and forget `</tool_call>`;
                // a complete call is still a call.
                let body = core.buf().trim();
                if let Ok(value @ Value::Object(_)) = serde_json::from_str::<Value>(body) {
                    core.consume(core.buf().len());
                    return emit_object(core, value, start);
                }
                Err(core.truncated(start, "`</tool_call>`"))
            }
        }
    }
}
