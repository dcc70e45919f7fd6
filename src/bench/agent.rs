//! The agent loop: KV reuse over whole runs on the real engine, the loop's own cost with a
//! scripted model, parser throughput, and parallel tools.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k2::agent::testing::ScriptedModel;
use k2::agent::{Agent, AgentEvent, Budget};
use k2::model::{Engine, EngineOptions, Sampling, ToolChoice, ToolFormat};
use k2::tools::{typed, Run, ToolContext, ToolError, ToolOutput};

use super::chart::KvStep;
use super::{rate_stats, stats, Figure, Setup};

/// What `lookup` answers, `{topic}` replaced by the topic asked for.
pub const LOOKUP_TEXT: &str = "{topic}: rivers carry water from high ground to the sea. Their \
    flow depends on rain, snowmelt and the shape of the land; the largest carry thousands of \
    cubic metres every second.";

/// Looks a topic up in a fixed reference text.
#[derive(serde::Deserialize, schemars::JsonSchema, k2::tools::Tool)]
#[tool(crate = "k2::tools")]
pub struct Lookup {
    /// The topic.
    topic: String,
}

#[async_trait::async_trait]
impl Run for Lookup {
    async fn run(self, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text(
            LOOKUP_TEXT.replace("{topic}", &self.topic),
        ))
    }
}

/// Waits as long as it is told.
#[derive(serde::Deserialize, schemars::JsonSchema, k2::tools::Tool)]
#[tool(crate = "k2::tools")]
struct Sleep {
    /// Milliseconds.
    ms: u64,
}

#[async_trait::async_trait]
impl Run for Sleep {
    async fn run(self, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        Ok(ToolOutput::text("slept"))
    }
}

/// Tokens evaluated over an N-step run (prompt and generated tokens put through a forward
/// pass) per token of the sequence the model holds at the end: 1.0 means none was read twice.
/// Returns the longest run step by step, for the chart.
pub async fn kv_reuse(
    setup: &Setup,
    figures: &mut Vec<Figure>,
) -> Result<Vec<KvStep>, Box<dyn std::error::Error>> {
    let steps: &[usize] = if setup.quick { &[2] } else { &[2, 4, 8, 16] };
    let mut trace = Vec::new();
    for &n in steps {
        // A fresh engine per run: nothing carried over from the run before.
        let engine = Engine::load(
            &setup.model,
            EngineOptions {
                n_ctx: Some(8192),
                threads: Some(setup.threads),
                max_string_argument: Some(40),
                ..EngineOptions::default()
            },
        )?;
        let agent = Agent::builder(engine)
            .tool(typed::<Lookup>())
            .tool_choice(ToolChoice::Required)
            .parallel_tool_calls(false)
            .sampling(Sampling {
                repeat_penalty: 1.2,
                ..Sampling::greedy()
            })
            .budget(Budget {
                max_steps: n,
                step_tokens: 64,
                answer_tokens: 32,
                ..Budget::default()
            })
            .build()?;
        let mut run = agent.stream("Research rivers, one topic at a time.");
        trace.clear();
        let (mut evaluated, mut without_reuse) = (0, 0);
        while let Some(event) = run.next().await {
            if let AgentEvent::StepFinished { usage: u, .. } = event {
                evaluated += u.prompt_tokens_evaluated + u.completion_tokens_evaluated;
                without_reuse += u.prompt_tokens + u.completion_tokens;
                trace.push(KvStep {
                    step: trace.len() + 1,
                    evaluated,
                    held: u.prompt_tokens + u.completion_tokens,
                    without_reuse,
                });
            }
        }
        run.finish().await?;
        let end = *trace.last().ok_or("the run finished no step")?;
        let held = end.held as f64;
        let ratio = end.evaluated as f64 / held;
        figures.push(Figure {
            name: format!("KV reuse over a {n}-step run (evaluated / held tokens)"),
            value: ratio,
            best: ratio,
            unit: "x".into(),
            reference: Some(held),
            ratio: Some(ratio),
            target: "<= 1.05".into(),
            met: Some(ratio <= 1.05),
        });
    }
    Ok(trace)
}

/// Parse, validate and dispatch per step, with a scripted model and an instant tool.
pub async fn loop_overhead(
    setup: &Setup,
    figures: &mut Vec<Figure>,
) -> Result<(), Box<dyn std::error::Error>> {
    // Short runs, many of them: the scripted model re-reads the whole conversation every
    // turn (to imitate a KV cache), which long runs would end up measuring instead.
    let steps = 10;
    let call = r#"<tool_call>{"name": "lookup", "arguments": {"topic": "rivers"}}</tool_call>"#;
    let mut replies = vec![call.to_string(); steps];
    replies.push("Done.".into());
    let mut per_step = Vec::new();
    for _ in 0..setup.size(50, 5) * setup.repeat {
        let model = ScriptedModel::new(ToolFormat::Hermes, replies.clone());
        let agent = Agent::builder(model)
            .tool(typed::<Lookup>())
            .max_steps(steps + 1)
            .build()?;
        let started = Instant::now();
        let outcome = agent.run("Go.").await?;
        per_step.push(started.elapsed().as_secs_f64() * 1e6 / outcome.usage.steps as f64);
    }
    let (value, best) = stats(per_step);
    figures.push(Figure {
        name: "agent loop per step, scripted model (parse + validate + dispatch)".into(),
        value,
        best,
        unit: "µs".into(),
        reference: None,
        ratio: None,
        target: "< 100 µs".into(),
        met: Some(value < 100.0),
    });
    Ok(())
}

/// The K2 parser on 1 MB of output.
pub fn parser_throughput(setup: &Setup, figures: &mut Vec<Figure>) {
    let size = setup.size(1 << 20, 64 << 10);
    let call = "Checking the weather first. <|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Oslo\", \"days\": 3}<|tool_call_end|><|tool_calls_section_end|>";
    let mut text = String::with_capacity(size + call.len());
    while text.len() < size {
        text.push_str("Some prose between calls, as a model writes it. ");
        text.push_str(call);
    }
    let mut rates = Vec::new();
    for _ in 0..setup.repeat.max(3) {
        let started = Instant::now();
        let parsed = k2::model::parse(ToolFormat::K2, &text);
        let t = started.elapsed().as_secs_f64();
        assert!(parsed.is_ok());
        rates.push(text.len() as f64 / t / 1e6);
    }
    let (value, best) = rate_stats(rates);
    figures.push(Figure {
        name: format!("K2 parser on {} KB", text.len() >> 10),
        value,
        best,
        unit: "MB/s".into(),
        reference: None,
        ratio: None,
        target: ">= 200 MB/s".into(),
        met: Some(value >= 200.0),
    });
}

/// Four 200 ms tools asked for in one step: wall time over 200 ms.
pub async fn parallel_tools(
    setup: &Setup,
    figures: &mut Vec<Figure>,
) -> Result<(), Box<dyn std::error::Error>> {
    let ms = 200u64;
    let call =
        format!(r#"<tool_call>{{"name": "sleep", "arguments": {{"ms": {ms}}}}}</tool_call>"#);
    let mut walls = Vec::new();
    for _ in 0..setup.repeat {
        let model = ScriptedModel::new(ToolFormat::Hermes, [call.repeat(4), "Done.".to_string()]);
        let agent = Agent::builder(model).tool(typed::<Sleep>()).build()?;
        let mut run = agent.stream("Sleep four times.");
        let (mut first, mut last) = (None, None);
        while let Some(event) = run.next().await {
            match event {
                AgentEvent::ToolStarted { .. } => {
                    first.get_or_insert_with(Instant::now);
                }
                AgentEvent::ToolFinished { .. } => last = Some(Instant::now()),
                _ => {}
            }
        }
        run.finish().await?;
        if let (Some(a), Some(b)) = (first, last) {
            walls.push((b - a).as_secs_f64() * 1000.0 / ms as f64);
        }
    }
    let (value, best) = stats(walls);
    figures.push(Figure {
        name: format!("4 parallel {ms} ms tools, wall / {ms} ms"),
        value,
        best,
        unit: "x".into(),
        reference: None,
        ratio: Some(value),
        target: "<= 1.1".into(),
        met: Some(value <= 1.1),
    });
    Ok(())
}
