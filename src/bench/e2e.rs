//! End to end: one fixed multi-step agent task, run by k2's embedded agent and by what a
//! Python user would otherwise build: llama-server with prompt caching and an `openai`
//! client loop (`benches/peer_agent.py`). Same model, threads, prompts, grammar, greedy
//! sampling, tool outputs and token limits; only the agent runs are timed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use futures::StreamExt;
use k2::agent::{Agent, AgentEvent, Budget};
use k2::model::{
    fold_tools_into_messages, ChatRequest, Engine, EngineOptions, Message, Sampling, ToolChoice,
    ToolSpec,
};
use k2::tools::{typed, Registry};
use serde::{Deserialize, Serialize};

use super::agent::{Lookup, LOOKUP_TEXT};
use super::server::LlamaServer;
use super::{stats, Figure, Setup};

const SYSTEM: &str = "You are a research assistant. Look each topic up with the lookup tool, \
    one topic per reply, then answer in two sentences.";
const TOPICS: [&str; 8] = [
    "rivers",
    "glaciers",
    "deltas",
    "estuaries",
    "lakes",
    "aquifers",
    "wetlands",
    "monsoons",
];
const PEER_SCRIPT: &str = include_str!("../../benches/peer_agent.py");

/// A different task per run, so neither side answers from a cache of the run before; both
/// sides get the same one.
fn task(run: usize, topics: usize) -> String {
    let chosen: Vec<&str> = (0..topics)
        .map(|i| TOPICS[(run + i) % TOPICS.len()])
        .collect();
    format!(
        "Research {}, then sum up what you found.",
        chosen.join(", ")
    )
}

/// What `peer_agent.py` prints.
#[derive(Deserialize)]
struct PeerRun {
    wall_s: f64,
    steps: usize,
    usage: PeerUsage,
    messages: Vec<PeerMessage>,
    /// What the server said of each step.
    per_step: Vec<serde_json::Value>,
    openai: String,
}

#[derive(Deserialize)]
struct PeerUsage {
    prompt_tokens: usize,
    cached_tokens: usize,
    completion_tokens: usize,
    server_ms: f64,
}

#[derive(Deserialize, Serialize, PartialEq)]
struct PeerMessage {
    role: String,
    content: String,
}

/// k2's transcript as plain messages, the way the peer keeps its own.
fn plain(messages: &[Message], tools: &[ToolSpec]) -> Vec<PeerMessage> {
    fold_tools_into_messages(messages, tools)
        .into_iter()
        .map(|m| PeerMessage {
            role: serde_json::to_value(m.role)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            content: m.content,
        })
        .collect()
}

/// One run of the peer loop; `dir` holds `peer_agent.py`.
fn peer(python: &Path, dir: &Path, spec: &serde_json::Value) -> Result<PeerRun, String> {
    let script = dir.join("peer_agent.py");
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).map_err(|e| e.to_string())?;
    let out = Command::new(python)
        .arg(&script)
        .arg(&spec_path)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "peer_agent.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("peer_agent.py printed junk: {e}"))
}

/// The Python of the virtual environment `scripts/build-peers` made next to the binaries.
fn peer_python(peers: &Path) -> Option<PathBuf> {
    let python = peers.parent()?.join("venv/bin/python");
    python.exists().then_some(python)
}

/// Runs the task on both sides, alternating, after one unmeasured warm-up run each.
pub async fn end_to_end(
    setup: &Setup,
    figures: &mut Vec<Figure>,
    notes: &mut Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let Some((peers, python)) = setup
        .peers
        .as_ref()
        .and_then(|p| Some((p.clone(), peer_python(p)?)))
    else {
        notes.push(
            "End to end skipped: llama-server or the Python `openai` environment is missing \
             (run scripts/build-peers)."
                .into(),
        );
        return Ok(());
    };
    let tool_steps = setup.size(4, 1);
    let (step_tokens, answer_tokens, max_string) = (64, 64, 40);
    let engine = Engine::load(
        &setup.model,
        EngineOptions {
            n_ctx: Some(8192),
            threads: Some(setup.threads),
            max_string_argument: Some(max_string),
            ..EngineOptions::default()
        },
    )?;
    let mut registry = Registry::new();
    registry.register(typed::<Lookup>())?;
    let tools: Vec<ToolSpec> = registry
        .to_openai()
        .iter()
        .filter_map(ToolSpec::from_openai)
        .collect();
    let grammar = engine
        .grammar_for(&ChatRequest {
            tools: tools.clone(),
            tool_choice: ToolChoice::Required,
            parallel_tool_calls: false,
            ..ChatRequest::default()
        })?
        .ok_or("the engine made no grammar for a required call")?
        .gbnf;
    let agent = Agent::builder(engine)
        .system(Some(SYSTEM))
        .tool(typed::<Lookup>())
        .tool_choice(ToolChoice::Required)
        .tool_choice_at(tool_steps, ToolChoice::None)
        .parallel_tool_calls(false)
        .sampling(Sampling::greedy())
        .budget(Budget {
            max_steps: tool_steps + 1,
            step_tokens,
            answer_tokens,
            ..Budget::default()
        })
        .build()?;

    let threads = setup.threads.to_string();
    let args = [
        "--jinja", "-c", "8192", "-np", "1", "-t", &threads, "-tb", &threads,
    ];
    let server = LlamaServer::start(&peers.join("llama-server"), &setup.model, &args).await?;
    let dir = std::env::temp_dir().join(format!("k2-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("peer_agent.py"), PEER_SCRIPT)?;

    let system = fold_tools_into_messages(&[Message::system(SYSTEM)], &tools)
        .remove(0)
        .content;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let (mut same, mut openai) = (0, String::new());
    let (mut k2_tokens, mut peer_tokens) = ((0, 0), (0, 0));
    let (mut k2_model_s, mut server_s, mut k2_forced) = (0.0, 0.0, 0);
    for run in 0..=setup.repeat {
        let task = task(run, tool_steps);
        let started = Instant::now();
        let mut stream = agent.stream(task.clone());
        let mut k2_steps = Vec::new();
        while let Some(event) = stream.next().await {
            if let AgentEvent::StepFinished { usage, .. } = event {
                k2_steps.push(usage);
            }
        }
        let outcome = stream.finish().await?;
        let k2_wall = started.elapsed().as_secs_f64();
        let spec = serde_json::json!({
            "base_url": server.url(),
            "model": "default",
            "system": system,
            "task": task,
            "grammar": grammar,
            "tool_steps": tool_steps,
            "step_tokens": step_tokens,
            "answer_tokens": answer_tokens,
            "tool_output": LOOKUP_TEXT,
        });
        let (python, dir) = (python.clone(), dir.clone());
        let theirs_run = tokio::task::spawn_blocking(move || peer(&python, &dir, &spec)).await??;
        if run == 0 {
            continue; // warm-up: caches, page cache, the server's first request
        }
        ours.push(k2_wall);
        theirs.push(theirs_run.wall_s);
        let ours_plain = plain(&outcome.messages, &tools);
        same += usize::from(ours_plain == theirs_run.messages);
        // Both sides of the last run, step by step, for a look at where they differ.
        let both = serde_json::json!({
            "k2": {"messages": ours_plain, "steps": k2_steps},
            "peer": {"messages": theirs_run.messages, "steps": theirs_run.per_step},
        });
        std::fs::write(setup.out.join("e2e-last-run.json"), both.to_string())?;
        let u = &outcome.usage.model;
        k2_tokens = (u.prompt_tokens_evaluated, u.completion_tokens);
        let p = &theirs_run.usage;
        peer_tokens = (
            p.prompt_tokens.saturating_sub(p.cached_tokens),
            p.completion_tokens,
        );
        k2_model_s = outcome.usage.model_time.as_secs_f64();
        k2_forced = u.forced_tokens;
        server_s = p.server_ms / 1000.0;
        openai = theirs_run.openai;
        if outcome.usage.steps != theirs_run.steps {
            notes.push(format!(
                "End to end, run {run}: k2 took {} steps, the peer {}.",
                outcome.usage.steps, theirs_run.steps
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(server);

    // As for the raw engine: the median of each run's ratio, the two sides having run
    // back to back.
    let (ratio, _) = stats(ours.iter().zip(&theirs).map(|(a, b)| a / b).collect());
    let (value, best) = stats(ours);
    let (reference, _) = stats(theirs);
    figures.push(Figure {
        name: format!(
            "{}-step agent task, wall vs llama-server + Python openai loop",
            tool_steps + 1
        ),
        value,
        best,
        unit: "s".into(),
        reference: Some(reference),
        ratio: Some(ratio),
        target: "<= 0.8".into(),
        met: Some(ratio <= 0.8),
    });
    notes.push(format!(
        "End to end: identical transcripts in {same} of {} runs. Last run: k2 evaluated {} \
         prompt + {} generated tokens ({k2_forced} of them forced by the grammar and evaluated \
         in batches) in {k2_model_s:.2} s of model time; llama-server {} + {} in \
         {server_s:.2} s of its own timings (openai {openai}).",
        setup.repeat, k2_tokens.0, k2_tokens.1, peer_tokens.0, peer_tokens.1
    ));
    Ok(())
}
