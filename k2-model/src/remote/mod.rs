//! The remote backend: the same [`ChatModel`] over an OpenAI-compatible server (vLLM, SGLang,
//! llama-server, Moonshot's API), which is how a k2 program grows past one machine.
//!
//! Two modes. [`Mode::Chat`] sends the conversation and tools to `/chat/completions` and the
//! server renders, constrains and parses (vLLM and SGLang with their `kimi_k2` tool parser,
//! llama-server with `--jinja`, Moonshot). [`Mode::Raw`] renders the prompt with k2's chat
//! template, sends it to `/completions` with k2's tool-call grammar in llama.cpp's `grammar`
//! fields, and parses the text with k2's parsers: K2 works behind a server with no tool
//! parser, and calls come out of small models that the server's own machinery gets nothing
//! from.

mod sse;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backend::{parse_tool_calls, ChatModel, EventStream};
use crate::chat::{ChatEvent, ChatRequest, Completion, FinishReason, Usage};
use crate::error::{ModelError, Result};
use crate::format::{render_prompt, tool_grammar, GrammarOptions, StreamParser, ToolFormat};
use crate::template::ChatTemplate;

/// How requests are made; see the [module docs](self).
#[derive(Debug, Clone)]
pub enum Mode {
    /// `/chat/completions`: the server handles templates and tool calls.
    Chat {
        /// Also parse the reply's text for calls in this format (for servers that pass the
        /// model's markup through as content instead of parsing it).
        parse_content: Option<ToolFormat>,
    },
    /// `/completions` with a prompt k2 renders and text k2 parses.
    Raw {
        /// The model's chat template (from its GGUF: [`ChatTemplate::embedded`]).
        template: Arc<ChatTemplate>,
        /// Its tool-call format ([`ToolFormat::for_model`]).
        format: ToolFormat,
        /// Send k2's grammar for the calls (llama-server's `grammar` fields).
        grammar: bool,
        /// Cap free-form strings in that grammar (see [`GrammarOptions::max_string`]).
        max_string: Option<usize>,
    },
}

/// Where the server is and how to talk to it.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// The API root, e.g. `http://127.0.0.1:8080/v1` or `https://api.moonshot.ai/v1`.
    pub base_url: String,
    /// The model name the server knows (`kimi-k2-0905-preview`, `moonshotai/Kimi-K2-Instruct`).
    pub model: String,
    /// Sent as `Authorization: Bearer …`; [`RemoteOptions::new`] takes `K2_API_KEY`, else
    /// `OPENAI_API_KEY`.
    pub api_key: Option<String>,
    /// More headers for every request.
    pub headers: Vec<(String, String)>,
    /// Chat or raw.
    pub mode: Mode,
    /// Stream replies (SSE); otherwise one JSON reply per request.
    pub stream: bool,
    /// Send `top_k`, `min_p` and `repeat_penalty` too (llama-server and vLLM take them; the
    /// OpenAI API refuses unknown fields).
    pub extended_sampling: bool,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// Longest silence while a reply streams (between two chunks, or before a whole reply).
    pub idle_timeout: Duration,
    /// Time for a whole request, retries included.
    pub total_timeout: Duration,
    /// Retries after a connection error, 429 or 5xx, before any output.
    pub retries: u32,
    /// First retry delay; doubled each time (with jitter), capped at 30 s, or what the
    /// server's `Retry-After` asks.
    pub backoff: Duration,
}

/// The API key from the environment: `K2_API_KEY`, else `OPENAI_API_KEY`.
pub fn api_key_from_env() -> Option<String> {
    ["K2_API_KEY", "OPENAI_API_KEY"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

impl RemoteOptions {
    /// Chat mode against `base_url` for `model`, streaming, with the API key from the
    /// environment and default timeouts (10 s connect, 120 s idle, 10 min total, 3 retries).
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        RemoteOptions {
            base_url: base_url.into(),
            model: model.into(),
            api_key: api_key_from_env(),
            headers: Vec::new(),
            mode: Mode::Chat {
                parse_content: None,
            },
            stream: true,
            extended_sampling: false,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            total_timeout: Duration::from_secs(600),
            retries: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

impl RemoteOptions {
    /// Raw mode for the model described by `info` (read a GGUF's metadata with
    /// [`crate::Engine::inspect`]): its chat template and tool-call format, k2's grammar with
    /// strings capped at 160 characters, llama.cpp's sampling fields.
    pub fn raw(
        base_url: impl Into<String>,
        model: impl Into<String>,
        info: &crate::ModelInfo,
    ) -> Result<Self> {
        let template = ChatTemplate::embedded(info).ok_or(ModelError::NoTemplate)??;
        Ok(RemoteOptions {
            mode: Mode::Raw {
                template: Arc::new(template),
                format: ToolFormat::for_model(info),
                grammar: true,
                max_string: Some(160),
            },
            extended_sampling: true,
            ..Self::new(base_url, model)
        })
    }
}

/// An OpenAI-compatible server as a [`ChatModel`].
///
/// ```no_run
/// # async fn demo() -> Result<(), k2_model::ModelError> {
/// use k2_model::{ChatModel, ChatRequest, Message, Remote, RemoteOptions};
///
/// let kimi = Remote::new(RemoteOptions::new("https://api.moonshot.ai/v1", "kimi-k2-0905-preview"))?;
/// let reply = kimi.chat(ChatRequest::new(vec![Message::user("Hello!")])).await?;
/// println!("{}", reply.content);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Remote {
    client: reqwest::Client,
    options: Arc<RemoteOptions>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("base_url", &self.options.base_url)
            .field("model", &self.options.model)
            .field("mode", &self.options.mode)
            .finish_non_exhaustive()
    }
}

impl Remote {
    /// A backend for `options` (no request is made yet).
    pub fn new(options: RemoteOptions) -> Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            ModelError::InvalidOption(format!("remote {what}: {e}"))
        };
        for (name, value) in &options.headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| bad("header name", &e))?;
            let value = reqwest::header::HeaderValue::from_str(value)
                .map_err(|e| bad("header value", &e))?;
            headers.insert(name, value);
        }
        if let Some(key) = &options.api_key {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
                .map_err(|e| bad("API key", &e))?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(options.connect_timeout)
            .user_agent(concat!("k2/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad("client", &e))?;
        Ok(Remote {
            client,
            options: Arc::new(options),
        })
    }

    /// Its options.
    pub fn options(&self) -> &RemoteOptions {
        &self.options
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.options.base_url.trim_end_matches('/'))
    }

    /// POSTs `body`, retrying connection errors, 429 and 5xx with backoff (or as long as
    /// `Retry-After` says), within the total timeout. Nothing has reached the caller yet.
    async fn send(&self, url: &str, body: &Value, deadline: Instant) -> Result<reqwest::Response> {
        let o = &self.options;
        let mut attempt = 0u32;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let sent = tokio::time::timeout(
                left.min(o.idle_timeout),
                self.client.post(url).json(body).send(),
            )
            .await;
            let (retry_after, error) = match sent {
                Err(_) => (
                    None,
                    ModelError::Reply {
                        url: url.into(),
                        reason: format!(
                            "no response within {:.0} s",
                            left.min(o.idle_timeout).as_secs_f64()
                        ),
                    },
                ),
                Ok(Err(e)) => (
                    None,
                    ModelError::Connect {
                        url: url.into(),
                        reason: crate::error::error_chain(&e),
                    },
                ),
                Ok(Ok(resp)) if resp.status().is_success() => return Ok(resp),
                Ok(Ok(resp)) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<f64>().ok())
                        .filter(|s| s.is_finite() && *s >= 0.0)
                        .map(Duration::from_secs_f64);
                    let text = resp.text().await.unwrap_or_default();
                    let error = ModelError::Http {
                        url: url.into(),
                        status,
                        message: wire::error_message(&text),
                    };
                    if status != 429 && status < 500 {
                        return Err(error);
                    }
                    (retry_after, error)
                }
            };
            let wait = retry_after.unwrap_or_else(|| backoff(o.backoff, attempt));
            if attempt >= o.retries || Instant::now() + wait >= deadline {
                return Err(error);
            }
            tracing::debug!(%url, attempt, ?wait, "retrying: {error}");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// `base · 2^attempt`, capped at 30 s, times a random factor in [0.5, 1) so that many
/// clients do not retry in step.
fn backoff(base: Duration, attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let jitter = 0.5 + (h.finish() % 1000) as f64 / 2000.0;
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    exp.min(Duration::from_secs(30)).mul_f64(jitter)
}

#[async_trait]
impl ChatModel for Remote {
    fn name(&self) -> String {
        format!("{} at {}", self.options.model, self.options.base_url)
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream> {
        let o = &self.options;
        let (url, body, parser) = match &o.mode {
            Mode::Chat { parse_content } => {
                let body = wire::chat_body(&o.model, &request, o.stream, o.extended_sampling);
                let parser = parse_content.filter(|_| !request.tools.is_empty());
                (self.url("chat/completions"), body, parser)
            }
            Mode::Raw {
                template,
                format,
                grammar,
                max_string,
            } => {
                let prompt = render_prompt(template, &request)?;
                let grammar = match grammar {
                    true => tool_grammar(
                        *format,
                        &request.tools,
                        &request.tool_choice,
                        &GrammarOptions {
                            parallel: request.parallel_tool_calls,
                            max_string: *max_string,
                        },
                        &|_| false,
                    )?,
                    false => None,
                };
                let body = wire::completion_body(
                    &o.model,
                    &prompt,
                    &request,
                    grammar.as_ref(),
                    o.stream,
                    o.extended_sampling,
                );
                let parser = Some(*format).filter(|_| !request.tools.is_empty());
                (self.url("completions"), body, parser)
            }
        };
        let started = Instant::now();
        let deadline = started + o.total_timeout;
        let response = self.send(&url, &body, deadline).await?;
        let (tx, rx) = mpsc::channel(64);
        let reader = Reader {
            url,
            options: o.clone(),
            request,
            started,
            deadline,
            tx,
        };
        tokio::spawn(reader.run(response));
        let raw: EventStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx));
        Ok(match parser {
            Some(format) => parse_tool_calls(raw, StreamParser::new(format)),
            None => raw,
        })
    }
}

/// Reads one reply and sends it on as events; stops when the caller drops the stream.
struct Reader {
    url: String,
    options: Arc<RemoteOptions>,
    request: ChatRequest,
    started: Instant,
    deadline: Instant,
    tx: mpsc::Sender<Result<ChatEvent>>,
}

/// What has come in so far.
#[derive(Default)]
struct Reply {
    text: String,
    calls: wire::Calls,
    finish: Option<FinishReason>,
    usage: Usage,
    first_token: Option<Instant>,
}

impl Reader {
    fn fail(&self, reason: impl Into<String>) -> ModelError {
        ModelError::Reply {
            url: self.url.clone(),
            reason: reason.into(),
        }
    }

    async fn run(self, response: reqwest::Response) {
        let result = match self.options.stream {
            true => self.read_stream(response).await,
            false => self.read_whole(response).await,
        };
        let event = match result {
            Ok(Some(done)) => Ok(ChatEvent::Done(done)),
            Ok(None) => return, // the caller went away
            Err(e) => Err(e),
        };
        let _ = self.tx.send(event).await;
    }

    /// Sends a text delta; false when nobody listens any more.
    async fn delta(&self, reply: &mut Reply, text: &str) -> bool {
        if text.is_empty() {
            return true;
        }
        reply.first_token.get_or_insert_with(Instant::now);
        reply.text.push_str(text);
        self.tx
            .send(Ok(ChatEvent::Delta(text.to_string())))
            .await
            .is_ok()
    }

    /// Applies one JSON object of the reply (a chunk, or the whole reply).
    async fn apply(&self, v: &Value, reply: &mut Reply) -> Result<bool> {
        if v.get("error").is_some_and(|e| !e.is_null()) {
            let message = wire::error_message(&v.to_string());
            return Err(self.fail(format!("the server reported an error: {message}")));
        }
        wire::usage(v, &mut reply.usage);
        let Some(choice) = v.pointer("/choices/0") else {
            return Ok(true);
        };
        // A chunk has `delta`; a whole reply has `message`; `/completions` has `text`.
        let part = choice.get("delta").or_else(|| choice.get("message"));
        let text = part
            .and_then(|p| p.get("content"))
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !self.delta(reply, text).await {
            return Ok(false);
        }
        if let Some(calls) = part
            .and_then(|p| p.get("tool_calls"))
            .and_then(Value::as_array)
        {
            reply.first_token.get_or_insert_with(Instant::now);
            reply.calls.add(calls);
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            reply.finish = Some(wire::finish_reason(Some(reason)));
        }
        Ok(true)
    }

    async fn read_whole(&self, response: reqwest::Response) -> Result<Option<Completion>> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        let wait = left.min(self.options.idle_timeout);
        let body = tokio::time::timeout(wait, response.bytes())
            .await
            .map_err(|_| self.fail(format!("no reply within {:.0} s", wait.as_secs_f64())))?
            .map_err(|e| self.fail(crate::error::error_chain(&e)))?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| {
            self.fail(format!(
                "the reply is not JSON ({e}): {}",
                sse::clip(&String::from_utf8_lossy(&body))
            ))
        })?;
        let mut reply = Reply::default();
        if !self.apply(&v, &mut reply).await? {
            return Ok(None);
        }
        if v.pointer("/choices/0").is_none() {
            return Err(self.fail("the reply has no choices"));
        }
        Ok(Some(self.complete(reply)))
    }

    async fn read_stream(&self, response: reqwest::Response) -> Result<Option<Completion>> {
        let mut bytes = response.bytes_stream();
        let mut decoder = sse::Decoder::default();
        let mut reply = Reply::default();
        let mut done = false;
        let cancel = &self.request.options.cancel;
        while !done {
            let left = self.deadline.saturating_duration_since(Instant::now());
            let wait = left.min(self.options.idle_timeout);
            let next = tokio::select! {
                next = tokio::time::timeout(wait, bytes.next()) => next,
                () = poll_cancel(cancel) => {
                    reply.finish = Some(FinishReason::Cancelled);
                    break;
                }
            };
            let events = match next {
                Err(_) if left <= self.options.idle_timeout => {
                    return Err(self.fail(format!(
                        "the request took longer than {:.0} s",
                        self.options.total_timeout.as_secs_f64()
                    )))
                }
                Err(_) => return Err(self.fail(format!("no data for {:.0} s", wait.as_secs_f64()))),
                Ok(None) => {
                    done = true;
                    decoder.finish()
                }
                Ok(Some(Err(e))) => {
                    return Err(self.fail(format!(
                        "the connection broke: {}",
                        crate::error::error_chain(&e)
                    )))
                }
                Ok(Some(Ok(chunk))) => decoder.push(&chunk),
            }
            .map_err(|e| self.fail(e))?;
            for event in events {
                match event {
                    sse::Sse::Done => done = true,
                    sse::Sse::Data(data) => {
                        let v: Value = serde_json::from_str(&data).map_err(|e| {
                            self.fail(format!("an event is not JSON ({e}): {}", sse::clip(&data)))
                        })?;
                        if !self.apply(&v, &mut reply).await? {
                            return Ok(None);
                        }
                    }
                }
            }
        }
        if reply.finish.is_none() {
            return Err(self.fail("the stream ended before the reply did (no finish_reason)"));
        }
        Ok(Some(self.complete(reply)))
    }

    fn complete(&self, reply: Reply) -> Completion {
        let Reply {
            text,
            calls,
            finish,
            mut usage,
            first_token,
        } = reply;
        let now = Instant::now();
        if usage.prompt_time.is_zero() {
            usage.prompt_time = first_token.unwrap_or(now) - self.started;
        }
        if usage.generation_time.is_zero() {
            usage.generation_time = now - first_token.unwrap_or(now);
        }
        let (tool_calls, malformed) = calls.finish();
        let mut done = Completion::plain(text, finish.unwrap_or(FinishReason::Stop), usage);
        done.tool_calls = tool_calls;
        done.malformed = malformed;
        done
    }
}

/// Resolves once `cancel` is raised (checked every 20 ms).
async fn poll_cancel(cancel: &crate::chat::CancelToken) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
