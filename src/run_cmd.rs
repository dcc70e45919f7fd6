//! `k2 run`: an agent with the built-in tools, from the command line.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use k2::agent::{Agent, AgentEvent, Outcome, Run};
use k2::model::{ChatModel, Sampling, ToolChoice};
use k2::tools::builtin::{Calculator, CodeSandbox, WebFetch};

/// Options of `k2 run`.
#[derive(Args)]
pub struct RunArgs {
    /// Built-in tools to offer, comma-separated: calculator, web_fetch, code_sandbox.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "calculator,web_fetch,code_sandbox"
    )]
    tools: Vec<String>,
    /// Let web_fetch reach this private host, address or origin too (repeatable).
    #[arg(long = "allow-host")]
    allow_hosts: Vec<String>,
    /// Let web_fetch reach only the --allow-host destinations.
    #[arg(long)]
    only_allowed: bool,
    /// System prompt (default: the agent's own).
    #[arg(long)]
    system: Option<String>,
    /// Model turns that may call tools.
    #[arg(long, default_value_t = 8)]
    max_steps: usize,
    /// Tokens the model may generate over the run.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Seconds the run may take.
    #[arg(long)]
    max_time: Option<u64>,
    /// The first step must call a tool.
    #[arg(long)]
    tool_first: bool,
    /// Journal the run to this (new) file, so `--resume` can finish it after a crash.
    #[arg(long, conflicts_with = "resume")]
    journal: Option<PathBuf>,
    /// Finish the run recorded in this journal instead of starting one.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Print every event as a JSON line on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// The task (not with --resume).
    #[arg(required_unless_present = "resume")]
    task: Option<String>,
}

/// Runs the agent and prints its progress.
pub async fn run(
    model: Arc<dyn ChatModel>,
    args: RunArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Agent::builder_shared(model)
        .max_steps(args.max_steps)
        .sampling(Sampling {
            repeat_penalty: 1.1,
            ..Sampling::greedy()
        });
    if let Some(system) = args.system {
        builder = builder.system(Some(system));
    }
    if let Some(n) = args.max_tokens {
        builder = builder.max_tokens(n);
    }
    if let Some(s) = args.max_time {
        builder = builder.max_time(Duration::from_secs(s));
    }
    if args.tool_first {
        builder = builder.tool_choice_at(0, ToolChoice::Required);
    }
    for name in &args.tools {
        builder = match name.trim() {
            "calculator" => builder.tool(Calculator),
            "web_fetch" => {
                let mut web = WebFetch::new();
                for host in &args.allow_hosts {
                    web = web.allow(host);
                }
                if args.only_allowed {
                    web = web.only_allowed();
                }
                builder.tool(web)
            }
            "code_sandbox" => builder.tool(CodeSandbox::new()),
            other => return Err(format!("unknown built-in tool `{other}`").into()),
        };
    }
    let agent = builder.build()?;
    let run: Run = match (&args.resume, &args.journal, args.task) {
        (Some(path), _, _) => agent.resume(path),
        (None, Some(path), Some(task)) => agent.stream_journaled(task, path),
        (None, None, Some(task)) => agent.stream(task),
        (None, _, None) => return Err("a task is needed".into()),
    };
    let token = run.cancel_token();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            token.cancel();
        }
    });
    let outcome = follow(run, args.json).await?;
    if !args.json {
        println!("\n{}", outcome.answer.trim());
        let u = &outcome.usage;
        eprintln!(
            "[{:?}; {} steps, {} tool calls; {} prompt tokens, {} evaluated; {} generated]",
            outcome.stop,
            u.steps,
            u.tool_calls,
            u.model.prompt_tokens,
            u.model.prompt_tokens_evaluated,
            u.model.completion_tokens
        );
    }
    Ok(())
}

/// Prints the events as they come; returns the outcome.
async fn follow(mut run: Run, json: bool) -> Result<Outcome, Box<dyn std::error::Error>> {
    let mut out = std::io::stdout();
    while let Some(event) = run.next().await {
        if json {
            writeln!(out, "{}", serde_json::to_string(&event)?)?;
            continue;
        }
        match &event {
            AgentEvent::StepStarted { step } => eprintln!("── step {}", step + 1),
            AgentEvent::Delta { text, .. } => {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            AgentEvent::Malformed { error, .. } => eprintln!("\n  ! {error}"),
            AgentEvent::ToolStarted { call, .. } => {
                eprintln!("\n  → {} {}", call.name, call.arguments)
            }
            AgentEvent::ToolFinished { result, .. } => {
                let line = result.output.lines().next().unwrap_or_default();
                let mark = if result.is_error { "✗" } else { "←" };
                eprintln!("  {mark} {}: {}", result.call.name, line);
            }
            _ => {}
        }
    }
    Ok(run.finish().await?)
}
