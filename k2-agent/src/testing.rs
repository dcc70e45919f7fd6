//! Test doubles for agent code: [`ScriptedModel`] stands in for a model so loop logic (and
//! your own tools and approval hooks) can be tested without one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use k2_model::{
    parse_tool_calls, ChatEvent, ChatModel, ChatRequest, Completion, EventStream, FinishReason,
    ModelError, StreamParser, ToolFormat, Usage,
};

/// A **test double**, not a model: it replies with prepared text, chosen by how many
/// assistant turns the conversation already holds (reply 0 to the first turn, and so on), so
/// a resumed run gets the same replies as the original.
///
/// The text goes through the same tool-call parser as the embedded engine's output, in
/// pieces of four characters (each counted as one token, `max_tokens` honoured), so malformed
/// markup, streaming and truncation behave as they would with a real model. The usage
/// figures imitate a KV cache: prompt "tokens" are four-byte chunks of the serialised
/// conversation, and only those after the common prefix with the previous request count as
/// evaluated.
#[derive(Clone)]
pub struct ScriptedModel {
    inner: Arc<Inner>,
    delay: Duration,
}

struct Inner {
    format: ToolFormat,
    replies: Vec<String>,
    requests: Mutex<Vec<ChatRequest>>,
    last_prompt: Mutex<String>,
}

impl ScriptedModel {
    /// A model that writes `replies` in `format`'s tool-call markup.
    pub fn new<S: Into<String>>(format: ToolFormat, replies: impl IntoIterator<Item = S>) -> Self {
        ScriptedModel {
            inner: Arc::new(Inner {
                format,
                replies: replies.into_iter().map(Into::into).collect(),
                requests: Mutex::new(Vec::new()),
                last_prompt: Mutex::new(String::new()),
            }),
            delay: Duration::ZERO,
        }
    }

    /// Waits this long before each piece, like a slow model.
    pub fn with_delay(self, per_piece: Duration) -> Self {
        ScriptedModel {
            delay: per_piece,
            ..self
        }
    }

    /// The requests received so far (clones share them).
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.inner
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }
}

fn chunks(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(4).map(|c| c.iter().collect()).collect()
}

#[async_trait]
impl ChatModel for ScriptedModel {
    fn name(&self) -> String {
        "scripted test model".into()
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream, ModelError> {
        let turn = request
            .messages
            .iter()
            .filter(|m| m.role == k2_model::Role::Assistant)
            .count();
        let reply = self.inner.replies.get(turn).cloned().ok_or_else(|| {
            ModelError::Inference(format!(
                "the script has {} replies; turn {turn} asked for one more",
                self.inner.replies.len()
            ))
        })?;
        let prompt = serde_json::to_string(&request.messages)
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        let usage = {
            let mut last = self
                .inner
                .last_prompt
                .lock()
                .map_err(|_| ModelError::Inference("lock poisoned".into()))?;
            let common = last
                .bytes()
                .zip(prompt.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            let tokens = prompt.len().div_ceil(4);
            *last = prompt;
            Usage {
                prompt_tokens: tokens,
                prompt_tokens_evaluated: tokens - common / 4,
                ..Usage::default()
            }
        };
        if let Ok(mut requests) = self.inner.requests.lock() {
            requests.push(request.clone());
        }
        let options = request.options.clone();
        let delay = self.delay;
        let pieces = chunks(&reply);
        let raw = futures::stream::unfold(
            (
                pieces.into_iter(),
                0usize,
                String::new(),
                Instant::now(),
                false,
            ),
            move |(mut pieces, n, mut text, start, done)| {
                let options = options.clone();
                async move {
                    if done {
                        return None;
                    }
                    let finish = |reason, text: String, n| {
                        let usage = Usage {
                            completion_tokens: n,
                            generation_time: start.elapsed(),
                            ..usage
                        };
                        Some(Ok(ChatEvent::Done(Completion::plain(text, reason, usage))))
                    };
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let event = if options.cancel.is_cancelled() {
                        finish(FinishReason::Cancelled, text.clone(), n)
                    } else if n >= options.max_tokens {
                        finish(FinishReason::Length, text.clone(), n)
                    } else {
                        match pieces.next() {
                            Some(piece) => {
                                text.push_str(&piece);
                                let event = Ok(ChatEvent::Delta(piece));
                                return Some((event, (pieces, n + 1, text, start, false)));
                            }
                            None => finish(FinishReason::Stop, text.clone(), n),
                        }
                    };
                    event.map(|e| (e, (pieces, n, text, start, true)))
                }
            },
        )
        .boxed();
        if request.tools.is_empty() {
            return Ok(raw);
        }
        Ok(parse_tool_calls(raw, StreamParser::new(self.inner.format)))
    }
}
