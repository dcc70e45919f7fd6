//! The OpenAI chat-completions wire format: request bodies, and replies (whole or streamed)
//! turned into our types.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::chat::{ChatRequest, FinishReason, Message, Sampling, ToolCall, Usage};
use crate::format::{FormatError, ToolChoice, ToolGrammar};

/// Messages as OpenAI wants them: call arguments as JSON *strings*, `content: null` for an
/// assistant turn that only calls tools.
pub(crate) fn messages(messages: &[Message]) -> Value {
    Value::Array(
        messages
            .iter()
            .map(|m| {
                let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
                if let Some(calls) = v.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    for c in calls {
                        let args = &mut c["function"]["arguments"];
                        if !args.is_string() {
                            *args = Value::String(args.to_string());
                        }
                    }
                    if m.content.is_empty() {
                        v["content"] = Value::Null;
                    }
                }
                v
            })
            .collect(),
    )
}

fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::Required => json!("required"),
        ToolChoice::None => json!("none"),
        ToolChoice::Named(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

/// Sampling settings: the OpenAI ones always, llama.cpp's and vLLM's extras when asked.
fn sampling(body: &mut Map<String, Value>, s: &Sampling, extended: bool) {
    body.insert("temperature".into(), json!(s.temperature));
    if s.temperature > 0.0 {
        body.insert("top_p".into(), json!(s.top_p));
    }
    body.insert("seed".into(), json!(s.seed));
    if extended {
        body.insert("top_k".into(), json!(s.top_k));
        body.insert("min_p".into(), json!(s.min_p));
        body.insert("repeat_penalty".into(), json!(s.repeat_penalty));
        body.insert("repeat_last_n".into(), json!(s.repeat_last_n));
    }
}

/// The body of a `/chat/completions` request.
pub(crate) fn chat_body(model: &str, req: &ChatRequest, stream: bool, extended: bool) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), messages(&req.messages));
    body.insert("max_tokens".into(), json!(req.options.max_tokens));
    sampling(&mut body, &req.options.sampling, extended);
    if !req.options.stop.is_empty() {
        body.insert("stop".into(), json!(req.options.stop));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req.tools.iter().map(|t| t.to_openai()).collect();
        body.insert("tools".into(), Value::Array(tools));
        body.insert("tool_choice".into(), tool_choice(&req.tool_choice));
        body.insert("parallel_tool_calls".into(), json!(req.parallel_tool_calls));
    }
    stream_fields(&mut body, stream);
    Value::Object(body)
}

/// The body of a `/completions` request for a prompt k2 rendered, with k2's grammar in
/// llama.cpp's fields (lazy, switched on by the format's opening marker, where it has one).
pub(crate) fn completion_body(
    model: &str,
    prompt: &str,
    req: &ChatRequest,
    grammar: Option<&ToolGrammar>,
    stream: bool,
    extended: bool,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("prompt".into(), json!(prompt));
    body.insert("max_tokens".into(), json!(req.options.max_tokens));
    sampling(&mut body, &req.options.sampling, extended);
    if !req.options.stop.is_empty() {
        body.insert("stop".into(), json!(req.options.stop));
    }
    if let Some(g) = grammar {
        body.insert("grammar".into(), json!(g.gbnf));
        if let Some(trigger) = &g.trigger {
            body.insert("grammar_lazy".into(), json!(true));
            // Type 1 is a trigger word; one that is a single token must also be preserved.
            body.insert(
                "grammar_triggers".into(),
                json!([{"type": 1, "value": trigger}]),
            );
            body.insert("preserved_tokens".into(), json!([trigger]));
        }
    }
    stream_fields(&mut body, stream);
    Value::Object(body)
}

fn stream_fields(body: &mut Map<String, Value>, stream: bool) {
    body.insert("stream".into(), json!(stream));
    if stream {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
}

/// The server's own message in an error body (`{"error": {"message"}}`, `{"error": "..."}`,
/// `{"message"}`), else the body itself.
pub(crate) fn error_message(body: &str) -> String {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(_) => return super::sse::clip(body.trim()),
    };
    let pick = |v: &Value| v.as_str().map(String::from);
    v.pointer("/error/message")
        .and_then(pick)
        .or_else(|| v.get("error").and_then(pick))
        .or_else(|| v.get("message").and_then(pick))
        .or_else(|| v.get("detail").and_then(pick))
        .unwrap_or_else(|| super::sse::clip(body.trim()))
}

pub(crate) fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

/// Usage from `usage` and, where llama-server adds them, `timings` (which say how much of
/// the prompt came from its cache).
pub(crate) fn usage(v: &Value, usage: &mut Usage) {
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).map(|n| n as usize);
    if let Some(p) = n("/usage/prompt_tokens") {
        usage.prompt_tokens = p;
        usage.prompt_tokens_evaluated = p;
    }
    if let Some(c) = n("/usage/completion_tokens") {
        usage.completion_tokens = c;
    }
    if let Some(cached) = n("/usage/prompt_tokens_details/cached_tokens") {
        usage.prompt_tokens_evaluated = usage.prompt_tokens.saturating_sub(cached);
    }
    if let Some(evaluated) = n("/timings/prompt_n") {
        usage.prompt_tokens_evaluated = evaluated;
        if let Some(cached) = n("/timings/cache_n") {
            usage.prompt_tokens = usage.prompt_tokens.max(evaluated + cached);
        }
    }
    let ms = |p: &str| v.pointer(p).and_then(Value::as_f64);
    if let Some(t) = ms("/timings/prompt_ms") {
        usage.prompt_time = Duration::from_secs_f64(t / 1000.0);
    }
    if let Some(t) = ms("/timings/predicted_ms") {
        usage.generation_time = Duration::from_secs_f64(t / 1000.0);
    }
}

/// Streamed tool calls, put together: pieces arrive by `index`, the id and name once,
/// the arguments in many fragments, several calls interleaved.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    parts: Vec<(usize, String, String, String)>,
}

impl Calls {
    /// Adds a `delta.tool_calls` array (or a whole `message.tool_calls`).
    pub(crate) fn add(&mut self, deltas: &[Value]) {
        for (position, d) in deltas.iter().enumerate() {
            let index = d
                .get("index")
                .and_then(Value::as_u64)
                .map_or(self.parts.len().max(position), |i| i as usize);
            let slot = match self.parts.iter().position(|p| p.0 == index) {
                Some(i) => i,
                None => {
                    self.parts
                        .push((index, String::new(), String::new(), String::new()));
                    self.parts.len() - 1
                }
            };
            let part = &mut self.parts[slot];
            if let Some(id) = d.get("id").and_then(Value::as_str) {
                part.1 = id.to_string();
            }
            if let Some(name) = d.pointer("/function/name").and_then(Value::as_str) {
                part.2.push_str(name);
            }
            match d.pointer("/function/arguments") {
                Some(Value::String(s)) => part.3.push_str(s),
                Some(v) if !v.is_null() => part.3.push_str(&v.to_string()),
                _ => {}
            }
        }
    }

    /// The calls in index order; arguments that are not a JSON object make the reply
    /// malformed (the calls before it are kept), as with any other model output.
    pub(crate) fn finish(mut self) -> (Vec<ToolCall>, Option<FormatError>) {
        self.parts.sort_by_key(|p| p.0);
        let mut calls = Vec::new();
        for (i, (_, id, name, args)) in self.parts.into_iter().enumerate() {
            let args = if args.trim().is_empty() {
                "{}".to_string()
            } else {
                args
            };
            if name.is_empty() {
                return (calls, Some(FormatError::EmptyName { offset: i }));
            }
            match serde_json::from_str::<Value>(&args) {
                Ok(arguments) if arguments.is_object() => calls.push(ToolCall {
                    id: if id.is_empty() {
                        format!("call_{i}")
                    } else {
                        id
                    },
                    name,
                    arguments,
                }),
                Ok(_) | Err(_) => {
                    let reason = match serde_json::from_str::<Value>(&args) {
                        Ok(_) => "the arguments are not a JSON object".to_string(),
                        Err(e) => e.to_string(),
                    };
                    return (
                        calls,
                        Some(FormatError::BadArguments {
                            offset: i,
                            name,
                            reason,
                        }),
                    );
                }
            }
        }
        (calls, None)
    }
}
