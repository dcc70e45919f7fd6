//! # k2-model
//!
//! The model side of k2: load a GGUF through llama.cpp, render conversations with the model's
//! own chat template, generate with streaming, and keep the KV cache warm across calls so that
//! each agent step evaluates only the tokens it added.
//!
//! The [`ChatModel`] trait is what the agent uses; [`Engine`] implements it in process.
#![warn(missing_docs)]

mod backend;
mod chat;
mod engine;
mod error;
mod format;
mod info;
mod remote;
mod resolve;
mod template;

pub use backend::{collect, parse_tool_calls, ChatModel, EventStream};
pub use chat::{
    CancelToken, ChatEvent, ChatRequest, Completion, FinishReason, GenerateOptions, Message, Role,
    Sampling, ToolCall, ToolSpec, Usage,
};
pub use engine::{default_threads, llama_cpp_version, Engine, EngineOptions};
pub use error::{ModelError, Result};
pub use format::{
    fold_tools_into_messages, parse, render_prompt, tool_grammar, tool_instructions, FormatError,
    GrammarOptions, ParseEvent, Parsed, StreamParser, ToolChoice, ToolFormat, ToolGrammar,
    MAX_ITEMS_WHEN_CAPPED,
};
pub use info::{ModelInfo, SpecialToken};
pub use remote::{api_key_from_env, Mode as RemoteMode, Remote, RemoteOptions};
pub use resolve::{ModelRef, Resolver, DEFAULT_MODEL, MODEL_ENV};
pub use template::{ChatTemplate, TemplateInput};
