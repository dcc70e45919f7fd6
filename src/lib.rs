//! # k2
//!
//! Tool-using agents on an embedded, quantized Kimi K2-class model, in process: no Python,
//! no separate server. This crate is a thin facade over focused crates:
//!
//! - [`model`] (`k2-model`): load a GGUF through llama.cpp, chat templates, streaming
//!   generation with KV-cache reuse, and the [`model::ChatModel`] trait.
//! - [`tools`] (`k2-tools`): the tool side.
//! - [`agent`] (`k2-agent`): the planner loop.
//!
//! ```no_run
//! use k2::model::{ChatModel, ChatRequest, Engine, EngineOptions, Message};
//! # async fn demo() -> Result<(), k2::model::ModelError> {
//! let engine = Engine::open(k2::model::DEFAULT_MODEL, EngineOptions::default()).await?;
//! let answer = engine.chat(ChatRequest::new(vec![Message::user("What is 2 + 2?")])).await?;
//! println!("{}", answer.text);
//! # Ok(()) }
//! ```

pub use k2_agent as agent;
pub use k2_model as model;
pub use k2_tools as tools;

/// The README's Rust examples, compiled by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
