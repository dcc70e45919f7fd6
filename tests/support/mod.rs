//! What the cross-crate tests share: the default model, the research example's document
//! server, and the small research task they run on it.

#![allow(dead_code)]

#[path = "../../examples/research_agent/server.rs"]
pub mod server;

use std::path::PathBuf;
use std::sync::OnceLock;

use k2::agent::{Agent, Budget};
use k2::model::{ChatModel, Resolver, Sampling, ToolChoice};
use k2::tools::builtin::{Calculator, WebFetch};
use server::DocServer;

/// The default model's file, resolved (downloaded into the cache if needed) once.
pub fn default_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // Its own thread: callers may be inside a tokio runtime already.
        std::thread::spawn(|| {
            tokio::runtime::Runtime::new()
                .expect("runtime")
                .block_on(Resolver::from_env().resolve(&Resolver::pick(None)))
        })
        .join()
        .expect("resolver thread")
        .expect("the default model must be resolvable (run `cargo run -- pull` once)")
    })
    .clone()
}

/// The research example's document server, on 127.0.0.1.
pub async fn docs() -> DocServer {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/research_agent/corpus");
    DocServer::start(corpus).await.expect("document server")
}

/// An agent that must fetch (from `docs` only), then calculate, then may answer: greedy,
/// one call per turn, three tool steps.
pub fn research_agent(model: impl ChatModel + 'static, docs: &DocServer) -> Agent {
    let web = WebFetch::new()
        .allow(&format!("http://{}", docs.addr))
        .only_allowed();
    Agent::builder(model)
        .tool(web)
        .tool(Calculator)
        .sampling(Sampling {
            repeat_penalty: 1.2,
            ..Sampling::greedy()
        })
        .tool_choice_at(0, ToolChoice::Named("web_fetch".into()))
        .tool_choice_at(1, ToolChoice::Named("calculator".into()))
        .parallel_tool_calls(false)
        .budget(Budget {
            max_steps: 3,
            step_tokens: 160,
            answer_tokens: 96,
            ..Budget::default()
        })
        .build()
        .expect("agent")
}

/// The task for [`research_agent`].
pub fn research_task(docs: &DocServer) -> String {
    format!(
        "Read {} and then compute 12500 * 400 with the calculator. How many watts is that?",
        docs.url("")
    )
}
