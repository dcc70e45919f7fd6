//! Tool-call formats: how each model family writes calls, parsed whole or incrementally.
//!
//! Every format is one incremental state machine; the whole-text [`parse`] feeds it the text
//! in one piece, so streaming and whole-text parsing agree by construction (and a property
//! test checks it for every split point).

mod core;
mod error;
mod grammar;
mod hermes;
mod json;
mod k2;
mod prompt;

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use self::core::Core;
pub use self::error::FormatError;
pub use self::grammar::{
    tool_grammar, GrammarOptions, ToolChoice, ToolGrammar, MAX_ITEMS_WHEN_CAPPED,
};
pub use self::prompt::{fold_tools_into_messages, render_prompt, tool_instructions};
use crate::chat::ToolCall;

/// A tool-call markup convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolFormat {
    /// Kimi K2: `<|tool_calls_section_begin|>…<|tool_calls_section_end|>`.
    K2,
    /// Hermes / ChatML: `<tool_call>{…}</tool_call>`.
    Hermes,
    /// Llama 3.x: `{"name": …, "parameters": …}`, optionally after `<|python_tag|>`.
    Llama3,
    /// Mistral: `[TOOL_CALLS][{…}]` or `[TOOL_CALLS]name[ARGS]{…}`.
    Mistral,
    /// Plain JSON: an object, an array of objects, or `{"tool_calls": […]}`.
    Json,
}

impl ToolFormat {
    /// All formats.
    pub const ALL: [ToolFormat; 5] = [
        ToolFormat::K2,
        ToolFormat::Hermes,
        ToolFormat::Llama3,
        ToolFormat::Mistral,
        ToolFormat::Json,
    ];

    /// The format's name as the CLI spells it.
    pub fn name(self) -> &'static str {
        match self {
            ToolFormat::K2 => "k2",
            ToolFormat::Hermes => "hermes",
            ToolFormat::Llama3 => "llama3",
            ToolFormat::Mistral => "mistral",
            ToolFormat::Json => "json",
        }
    }

    /// Picks the format a model speaks from its chat template and special tokens. Models that
    /// declare none get Hermes, the convention small instruct models handle best.
    ///
    /// ```
    /// use k2_model::ToolFormat;
    /// let k2 = "{{ '<|tool_calls_section_begin|>' }}";
    /// assert_eq!(ToolFormat::detect(Some(k2), &[]), ToolFormat::K2);
    /// assert_eq!(ToolFormat::detect(None, &["<|python_tag|>"]), ToolFormat::Llama3);
    /// assert_eq!(ToolFormat::detect(None, &[]), ToolFormat::Hermes);
    /// ```
    pub fn detect(template: Option<&str>, special_tokens: &[&str]) -> ToolFormat {
        let has = |needle: &str| {
            template.is_some_and(|t| t.contains(needle)) || special_tokens.contains(&needle)
        };
        if has(k2::SECTION_BEGIN) {
            ToolFormat::K2
        } else if has(json::MISTRAL_CALLS) {
            ToolFormat::Mistral
        } else if has(hermes::OPEN) {
            ToolFormat::Hermes
        } else if has(json::PYTHON_TAG) || template.is_some_and(|t| t.contains("<|eom_id|>")) {
            ToolFormat::Llama3
        } else {
            ToolFormat::Hermes
        }
    }

    /// The format k2 uses with a model: the one its template speaks when the template
    /// handles tools, else Hermes (which k2 then declares in the system prompt itself).
    pub fn for_model(info: &crate::ModelInfo) -> ToolFormat {
        match info.chat_template.as_deref() {
            Some(t) if crate::ChatTemplate::source_supports_tools(t) => {
                let specials: Vec<&str> = info
                    .special_tokens
                    .iter()
                    .map(|t| t.text.as_str())
                    .collect();
                ToolFormat::detect(Some(t), &specials)
            }
            _ => ToolFormat::Hermes,
        }
    }

    /// Guesses the format of a raw output from the markup in it (for `--format auto` without
    /// a model). Text with no markup parses the same in every format.
    pub fn sniff(text: &str) -> ToolFormat {
        let t = text.trim_start();
        if text.contains(k2::SECTION_BEGIN) || text.contains(k2::CALL_BEGIN) {
            ToolFormat::K2
        } else if text.contains(json::MISTRAL_CALLS) {
            ToolFormat::Mistral
        } else if text.contains(hermes::OPEN) {
            ToolFormat::Hermes
        } else if t.starts_with(json::PYTHON_TAG) {
            ToolFormat::Llama3
        } else if t.starts_with(['{', '[']) {
            ToolFormat::Json
        } else {
            ToolFormat::Hermes
        }
    }

    /// The text that opens a call in this format, where it has one (lazy grammars start there).
    pub fn trigger(self) -> Option<&'static str> {
        match self {
            ToolFormat::K2 => Some(k2::SECTION_BEGIN),
            ToolFormat::Hermes => Some(hermes::OPEN),
            ToolFormat::Llama3 => Some(json::PYTHON_TAG),
            ToolFormat::Mistral => Some(json::MISTRAL_CALLS),
            ToolFormat::Json => None,
        }
    }

    /// Renders calls the way this format writes them (the inverse of [`parse`]), with JSON
    /// spaced as Python's `json.dumps` spaces it: as chat templates render calls, as models
    /// learnt to write them, and as the call grammar's fixed parts are, so that a call the
    /// model wrote renders back to the same text and the KV cache holds.
    pub fn render_calls(self, calls: &[ToolCall]) -> String {
        use crate::template::python_json;
        let object = |c: &ToolCall, key: &str| {
            format!(
                "{{\"name\": {}, \"{key}\": {}}}",
                python_json(&c.name.clone().into()),
                python_json(&c.arguments)
            )
        };
        let joined = |key: &str, sep: &str| {
            calls
                .iter()
                .map(|c| object(c, key))
                .collect::<Vec<_>>()
                .join(sep)
        };
        match self {
            ToolFormat::K2 => {
                let mut s = String::from(k2::SECTION_BEGIN);
                for c in calls {
                    s.push_str(k2::CALL_BEGIN);
                    s.push_str(&c.id);
                    s.push_str(k2::ARG_BEGIN);
                    s.push_str(&python_json(&c.arguments));
                    s.push_str(k2::CALL_END);
                }
                s.push_str(k2::SECTION_END);
                s
            }
            ToolFormat::Hermes => calls
                .iter()
                .map(|c| {
                    format!(
                        "{}\n{}\n{}",
                        hermes::OPEN,
                        object(c, "arguments"),
                        hermes::CLOSE
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            ToolFormat::Llama3 => joined("parameters", "; "),
            ToolFormat::Mistral => {
                format!("{}[{}]", json::MISTRAL_CALLS, joined("arguments", ", "))
            }
            ToolFormat::Json => format!("[{}]", joined("arguments", ", ")),
        }
    }
}

impl std::str::FromStr for ToolFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ToolFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!("unknown tool-call format `{s}` (k2, hermes, llama3, mistral, json)")
            })
    }
}

impl std::fmt::Display for ToolFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the incremental parser yields.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseEvent {
    /// Text outside any tool-call markup.
    Content(String),
    /// A complete, well-formed call.
    ToolCall(ToolCall),
}

/// A parsed model output: the text outside the markup (trimmed) and the calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Parsed {
    /// Content with surrounding whitespace trimmed.
    pub content: String,
    /// The calls, in the model's order.
    pub tool_calls: Vec<ToolCall>,
}

/// One format's state machine over the shared [`Core`].
pub(crate) trait Machine: Send {
    /// Decides as much of the buffer as it can; `Ok(true)` when it changed state.
    fn step(&mut self, core: &mut Core) -> Result<bool, FormatError>;
    /// End of input: flush content, or report a call left open.
    fn finish(&mut self, core: &mut Core) -> Result<(), FormatError>;
}

/// Parses model output as it streams: feed pieces, get content deltas and calls as soon as
/// each is complete. Markup never leaks into content, whatever the split points.
///
/// ```
/// use k2_model::{ParseEvent, StreamParser, ToolFormat};
/// let mut p = StreamParser::new(ToolFormat::Hermes);
/// let mut events = p.feed("Let me check. <tool_").unwrap();
/// events.extend(p.feed("call>{\"name\": \"clock\", \"arguments\": {}}</tool_call>").unwrap());
/// events.extend(p.finish().unwrap());
/// assert_eq!(events[0], ParseEvent::Content("Let me check. ".into()));
/// assert!(matches!(&events[1], ParseEvent::ToolCall(c) if c.name == "clock"));
/// ```
pub struct StreamParser {
    core: Core,
    machine: Box<dyn Machine>,
    failed: Option<FormatError>,
}

impl std::fmt::Debug for StreamParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamParser")
            .field("offset", &self.core.base)
            .field("calls", &self.core.calls.len())
            .finish()
    }
}

impl StreamParser {
    /// A parser for `format` that accepts any function name.
    pub fn new(format: ToolFormat) -> Self {
        let machine: Box<dyn Machine> = match format {
            ToolFormat::K2 => Box::new(k2::K2::new()),
            ToolFormat::Hermes => Box::new(hermes::Hermes::new()),
            ToolFormat::Llama3 => Box::new(json::JsonCalls::new(json::Dialect::Llama3)),
            ToolFormat::Mistral => Box::new(json::JsonCalls::new(json::Dialect::Mistral)),
            ToolFormat::Json => Box::new(json::JsonCalls::new(json::Dialect::Plain)),
        };
        StreamParser {
            core: Core::new(None),
            machine,
            failed: None,
        }
    }

    /// Only these function names are accepted; others are [`FormatError::UnknownFunction`].
    pub fn with_known_tools<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        names: I,
    ) -> Self {
        self.core.known = Some(Arc::new(
            names.into_iter().map(Into::into).collect::<HashSet<_>>(),
        ));
        self
    }

    /// Feeds the next piece of output.
    pub fn feed(&mut self, piece: &str) -> Result<Vec<ParseEvent>, FormatError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        // A big piece goes in a few KB at a time: the machines search their whole buffer for
        // markers, so a small buffer keeps parsing a whole output at once linear.
        const CHUNK: usize = 1024;
        let mut rest = piece;
        let mut result = Ok(());
        while !rest.is_empty() && result.is_ok() {
            let mut cut = rest.len().min(CHUNK);
            while !rest.is_char_boundary(cut) {
                cut += 1;
            }
            self.core.push(&rest[..cut]);
            rest = &rest[cut..];
            result = self.drive();
        }
        self.settle(result)
    }

    /// Ends the input; reports a call left unfinished as [`FormatError::Truncated`].
    pub fn finish(&mut self) -> Result<Vec<ParseEvent>, FormatError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let result = self
            .drive()
            .and_then(|()| self.machine.finish(&mut self.core));
        self.settle(result)
    }

    /// Content decided so far (untrimmed).
    pub fn content(&self) -> &str {
        &self.core.content
    }

    /// Calls decided so far.
    pub fn calls(&self) -> &[ToolCall] {
        &self.core.calls
    }

    fn drive(&mut self) -> Result<(), FormatError> {
        while self.machine.step(&mut self.core)? {}
        Ok(())
    }

    fn settle(&mut self, result: Result<(), FormatError>) -> Result<Vec<ParseEvent>, FormatError> {
        match result {
            Ok(()) => Ok(std::mem::take(&mut self.core.events)),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }
}

/// Parses a whole model output.
///
/// ```
/// use k2_model::{parse, ToolFormat};
/// let out = "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0\
///            <|tool_call_argument_begin|>{\"city\": \"Paris\"}<|tool_call_end|>\
///            <|tool_calls_section_end|>";
/// let parsed = parse(ToolFormat::K2, out)?;
/// assert_eq!(parsed.tool_calls[0].id, "functions.get_weather:0");
/// assert_eq!(parsed.tool_calls[0].name, "get_weather");
/// assert_eq!(parsed.tool_calls[0].arguments["city"], "Paris");
/// # Ok::<(), k2_model::FormatError>(())
/// ```
pub fn parse(format: ToolFormat, text: &str) -> Result<Parsed, FormatError> {
    let mut parser = StreamParser::new(format);
    // Only the result is wanted: no event copies of the content and calls.
    parser.core.record_events = false;
    parser.core.content.reserve(text.len());
    parser.feed(text)?;
    parser.finish()?;
    Ok(Parsed {
        content: parser.core.content.trim().to_string(),
        tool_calls: std::mem::take(&mut parser.core.calls),
    })
}

#[cfg(test)]
mod tests;
