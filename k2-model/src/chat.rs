//! The conversation vocabulary shared by every backend: messages, tool calls, tool specs,
//! sampling settings, requests, streamed events and usage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::format::{FormatError, ToolChoice, ToolGrammar};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// The result of a tool call.
    Tool,
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id: the model's own where its format has one (K2: `functions.NAME:IDX`).
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, as JSON.
    pub arguments: Value,
}

/// One message of a conversation.
///
/// Serialises to the shape Hugging Face chat templates expect:
/// `{"role", "content", "tool_calls": [{"id", "type": "function", "function": {"name", "arguments"}}], "tool_call_id"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text (may be empty for an assistant message that only calls tools).
    pub content: String,
    /// Tool calls made in this (assistant) message.
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message: the id of the call it answers.
    pub tool_call_id: Option<String>,
    /// For a `tool` message: the name of the tool that produced it.
    pub name: Option<String>,
}

impl Message {
    fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            name: None,
        }
    }

    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    /// An assistant message with text only.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    /// An assistant message that calls tools (with optional text before the calls).
    pub fn assistant_with_calls(content: impl Into<String>, calls: Vec<ToolCall>) -> Self {
        Message {
            tool_calls: calls,
            ..Self::new(Role::Assistant, content)
        }
    }

    /// A tool result answering the call `call`.
    pub fn tool_result(call: &ToolCall, content: impl Into<String>) -> Self {
        Message {
            tool_call_id: Some(call.id.clone()),
            name: Some(call.name.clone()),
            ..Self::new(Role::Tool, content)
        }
    }
}

#[derive(Serialize, Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

#[derive(Serialize, Deserialize)]
struct WireCall {
    #[serde(default)]
    id: String,
    #[serde(rename = "type", default = "function_type")]
    kind: String,
    function: WireFunction,
}

fn function_type() -> String {
    "function".to_string()
}

#[derive(Serialize, Deserialize)]
struct WireMessage {
    role: Role,
    #[serde(default, deserialize_with = "null_as_empty")]
    content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

impl Serialize for Message {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireMessage {
            role: self.role,
            content: self.content.clone(),
            tool_calls: self
                .tool_calls
                .iter()
                .map(|c| WireCall {
                    id: c.id.clone(),
                    kind: function_type(),
                    function: WireFunction {
                        name: c.name.clone(),
                        arguments: c.arguments.clone(),
                    },
                })
                .collect(),
            tool_call_id: self.tool_call_id.clone(),
            name: self.name.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = WireMessage::deserialize(d)?;
        let tool_calls = wire
            .tool_calls
            .into_iter()
            .map(|c| {
                // OpenAI sends arguments as a JSON string; templates want the object.
                let arguments = match c.function.arguments {
                    Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                    other => other,
                };
                ToolCall {
                    id: c.id,
                    name: c.function.name,
                    arguments,
                }
            })
            .collect();
        Ok(Message {
            role: wire.role,
            content: wire.content,
            tool_calls,
            tool_call_id: wire.tool_call_id,
            name: wire.name,
        })
    }
}

/// A tool as the model sees it: name, description and JSON Schema of the arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The name the model calls it by.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments (an object schema).
    pub parameters: Value,
}

impl ToolSpec {
    /// The OpenAI / Hugging Face form: `{"type": "function", "function": {...}}`.
    pub fn to_openai(&self) -> Value {
        serde_json::json!({
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            }
        })
    }

    /// Reads the OpenAI form (or a bare `{"name", "description", "parameters"}` object).
    pub fn from_openai(value: &Value) -> Option<Self> {
        let f = value.get("function").unwrap_or(value);
        Some(ToolSpec {
            name: f.get("name")?.as_str()?.to_string(),
            description: f
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            parameters: f
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
        })
    }
}

impl Serialize for ToolSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_openai().serialize(s)
    }
}

impl<'de> Deserialize<'de> for ToolSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        ToolSpec::from_openai(&v)
            .ok_or_else(|| serde::de::Error::custom("a tool needs at least a `name`"))
    }
}

/// Sampling settings. The default is greedy decoding, which is deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sampling {
    /// Temperature; `0.0` (the default) means greedy.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (`0` disables).
    pub top_k: u32,
    /// Nucleus sampling threshold (`1.0` disables).
    pub top_p: f32,
    /// Minimum probability relative to the best token (`0.0` disables).
    pub min_p: f32,
    /// Penalty on repeated tokens (`1.0` disables).
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: u32,
    /// Seed of the random sampler.
    pub seed: u32,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl Sampling {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        Self::default()
    }

    /// Random sampling at `temperature` with the given seed and the other defaults.
    pub fn with_temperature(temperature: f32, seed: u32) -> Self {
        Sampling {
            temperature,
            seed,
            ..Self::default()
        }
    }

    /// Whether the settings make sense (probabilities in range, no negative temperature).
    pub fn validate(&self) -> Result<(), String> {
        let unit = 0.0..=1.0;
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature must be >= 0, got {}",
                self.temperature
            ));
        }
        if !unit.contains(&self.top_p) {
            return Err(format!("top_p must be in [0, 1], got {}", self.top_p));
        }
        if !unit.contains(&self.min_p) {
            return Err(format!("min_p must be in [0, 1], got {}", self.min_p));
        }
        if !(self.repeat_penalty > 0.0 && self.repeat_penalty.is_finite()) {
            return Err(format!(
                "repeat_penalty must be > 0, got {}",
                self.repeat_penalty
            ));
        }
        Ok(())
    }
}

/// A flag another task can raise to stop a generation; checked every token.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask whoever holds a clone of this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Options of one generation.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Sampling settings.
    pub sampling: Sampling,
    /// Stop after this many generated tokens.
    pub max_tokens: usize,
    /// Stop when the output contains one of these strings (not included in the output).
    pub stop: Vec<String>,
    /// Raised by another task to stop early.
    pub cancel: CancelToken,
    /// Constrains the output with a grammar (built from tool schemas by the chat layer, or
    /// supplied directly for raw generation).
    pub grammar: Option<ToolGrammar>,
    /// Keep going past end-of-generation tokens until `max_tokens` (benchmarks measure a
    /// fixed number of tokens this way, as llama-bench does).
    pub ignore_eos: bool,
    /// With a grammar, evaluate the text it forces (most of a tool call's markup and keys)
    /// in one batch instead of decoding it token by token (default true). The output is the
    /// same text, tokenized as the tokenizer writes it; see [`Usage::forced_tokens`].
    pub fast_forward: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            sampling: Sampling::default(),
            max_tokens: 512,
            stop: Vec::new(),
            cancel: CancelToken::new(),
            grammar: None,
            ignore_eos: false,
            fast_forward: true,
        }
    }
}

/// A chat request: the conversation, the tools on offer and how to generate.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<ToolSpec>,
    /// Whether the model may, must, or must not call them.
    pub tool_choice: ToolChoice,
    /// Whether one reply may hold several calls (default true). With a grammar, `false`
    /// allows exactly one, which keeps small models from repeating a call.
    pub parallel_tool_calls: bool,
    /// Generation options.
    pub options: GenerateOptions,
}

impl Default for ChatRequest {
    fn default() -> Self {
        ChatRequest {
            messages: Vec::new(),
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: true,
            options: GenerateOptions::default(),
        }
    }
}

impl ChatRequest {
    /// A request with the given messages and default options.
    pub fn new(messages: Vec<Message>) -> Self {
        ChatRequest {
            messages,
            ..Self::default()
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    Stop,
    /// A stop string was produced.
    StopString,
    /// `max_tokens` was reached, or the context filled up.
    Length,
    /// The caller cancelled.
    Cancelled,
}

/// Token and time accounting for one call (or, added up, for a run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens actually evaluated (the rest came from the KV cache).
    pub prompt_tokens_evaluated: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Time spent evaluating the prompt.
    pub prompt_time: Duration,
    /// Time spent generating.
    pub generation_time: Duration,
    /// Generated tokens that went through a forward pass in this call. The others (the last
    /// one, when the output ended without needing another pass) are evaluated with the next
    /// prompt if the conversation goes on. 0 where a backend does not say (remote servers).
    #[serde(default)]
    pub completion_tokens_evaluated: usize,
    /// Of the generated tokens, those the grammar forced and that were evaluated in a batch
    /// rather than decoded one by one ([`GenerateOptions::fast_forward`]).
    #[serde(default)]
    pub forced_tokens: usize,
}

impl Usage {
    /// Prompt tokens served from the KV cache.
    pub fn prompt_tokens_cached(&self) -> usize {
        self.prompt_tokens - self.prompt_tokens_evaluated.min(self.prompt_tokens)
    }
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.prompt_tokens += o.prompt_tokens;
        self.prompt_tokens_evaluated += o.prompt_tokens_evaluated;
        self.completion_tokens += o.completion_tokens;
        self.prompt_time += o.prompt_time;
        self.generation_time += o.generation_time;
        self.completion_tokens_evaluated += o.completion_tokens_evaluated;
        self.forced_tokens += o.forced_tokens;
    }
}

/// The finished result of a generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The generated text, markup included (stop string excluded).
    pub text: String,
    /// The text outside tool-call markup, trimmed (equal to `text` when no tools were offered).
    pub content: String,
    /// The tool calls, in the model's order.
    pub tool_calls: Vec<ToolCall>,
    /// Tool-call markup the model got wrong; the calls before it are in `tool_calls`. An agent
    /// shows this to the model so it can try again.
    pub malformed: Option<FormatError>,
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Token and time accounting.
    pub usage: Usage,
}

impl Completion {
    /// A completion whose whole text is content (no tool parsing).
    pub fn plain(text: String, finish_reason: FinishReason, usage: Usage) -> Self {
        Completion {
            content: text.trim().to_string(),
            text,
            tool_calls: Vec::new(),
            malformed: None,
            finish_reason,
            usage,
        }
    }
}

/// What a streaming generation yields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ChatEvent {
    /// A piece of generated text (outside tool-call markup when tools were offered).
    Delta(String),
    /// A complete tool call, as soon as its markup closed.
    ToolCall(ToolCall),
    /// The generation is complete; always the last event.
    Done(Completion),
}
