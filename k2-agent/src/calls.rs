//! One step's tool calls: approval, validation, running them concurrently, journalling each
//! result the moment it exists.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use futures::stream::{FuturesUnordered, StreamExt};
use k2_model::ToolCall;
use k2_tools::{Cancel, ToolContext, ToolError};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::agent::Settings;
use crate::approval::Decision;
use crate::error::Result;
use crate::event::{AgentEvent, ToolRecord};
use crate::journal::Entry;
use crate::run::Ctx;

/// Runs the calls of `step` that have no record yet (`done[i]` is `Some` for those finished
/// before a resume) and returns every record in the model's order.
pub(crate) async fn run_calls(
    ctx: &Ctx,
    step: usize,
    calls: &[ToolCall],
    mut done: Vec<Option<ToolRecord>>,
    history: &[ToolRecord],
    time_left: Option<Duration>,
) -> Result<Vec<ToolRecord>> {
    let s = &ctx.settings;
    done.resize(calls.len(), None);
    // Review and validate in the model's order, before anything runs.
    let mut runnable = Vec::new();
    for (index, call) in calls.iter().enumerate() {
        if done[index].is_some() {
            continue;
        }
        let mut call = call.clone();
        let refusal = match review(s, &call).await {
            Decision::Deny(reason) => Some(format!(
                "error: the user did not allow this call of `{}`: {reason}",
                call.name
            )),
            Decision::Edit(arguments) => {
                call.arguments = arguments;
                invalid(s, &call)
            }
            Decision::Approve => invalid(s, &call),
        };
        match refusal {
            Some(text) => {
                let text = hint_if_repeated(text, &call, history);
                let record = ToolRecord {
                    step,
                    call,
                    output: text,
                    is_error: true,
                    ran: false,
                    duration: Duration::ZERO,
                };
                finish(ctx, index, &record).await?;
                done[index] = Some(record);
            }
            None => runnable.push((index, call)),
        }
    }

    let limit = Arc::new(Semaphore::new(s.max_parallel_tools));
    let timeout = match (s.tool_timeout, time_left) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let cancel = Cancel::new();
    let mut running: FuturesUnordered<_> = runnable
        .into_iter()
        .map(|(index, call)| {
            let limit = limit.clone();
            let tool_ctx = ToolContext {
                cancel: cancel.clone(),
                timeout,
                state: s.state.clone(),
            };
            async move {
                let _permit = limit.acquire().await;
                ctx.emit(AgentEvent::ToolStarted {
                    step,
                    call: call.clone(),
                });
                let started = Instant::now();
                let result = s
                    .tools
                    .call(&call.name, call.arguments.clone(), &tool_ctx)
                    .await;
                let (output, is_error) = match result {
                    Ok(out) => (out.text, out.is_error),
                    Err(e) => (format!("error: {e}"), true),
                };
                let output = if is_error {
                    hint_if_repeated(output, &call, history)
                } else {
                    output
                };
                let record = ToolRecord {
                    step,
                    output: truncate(output, s.max_tool_output),
                    call,
                    is_error,
                    ran: true,
                    duration: started.elapsed(),
                };
                (index, record)
            }
        })
        .collect();
    loop {
        let next = tokio::select! {
            next = running.next() => next,
            () = ctx.cancelled() => {
                cancel.cancel();
                return Err(ctx.cancelled_error(step));
            }
        };
        let Some((index, record)) = next else { break };
        finish(ctx, index, &record).await?;
        done[index] = Some(record);
    }
    Ok(done.into_iter().flatten().collect())
}

async fn review(s: &Settings, call: &ToolCall) -> Decision {
    match &s.approver {
        Some(approver) if s.needs_approval(&call.name) => approver.review(call).await,
        _ => Decision::Approve,
    }
}

/// Why the call cannot run (unknown tool, invalid arguments), as the model should read it.
fn invalid(s: &Settings, call: &ToolCall) -> Option<String> {
    s.tools
        .validate(&call.name, &call.arguments)
        .err()
        .map(|e: ToolError| format!("error: {e}"))
}

async fn finish(ctx: &Ctx, index: usize, record: &ToolRecord) -> Result<()> {
    ctx.journal(&Entry::ToolResult {
        index,
        record: record.clone(),
    })
    .await?;
    ctx.emit(AgentEvent::ToolFinished {
        step: record.step,
        result: record.clone(),
    });
    Ok(())
}

/// Two calls are the same when tool and arguments are equal (key order aside).
pub(crate) fn same_call(a: &ToolCall, b: &ToolCall) -> bool {
    a.name == b.name && canonical(&a.arguments) == canonical(&b.arguments)
}

fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<_> = m.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                keys.into_iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// How often this exact call failed before.
pub(crate) fn failures(call: &ToolCall, history: &[ToolRecord]) -> usize {
    history
        .iter()
        .filter(|r| r.is_error && same_call(&r.call, call))
        .count()
}

fn hint_if_repeated(text: String, call: &ToolCall, history: &[ToolRecord]) -> String {
    match failures(call, history) {
        0 => text,
        n => format!(
            "{text}\n(This exact call has now failed {} times. Change the arguments, try \
             another tool, or answer with what you have.)",
            n + 1
        ),
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max) {
        let dropped = text[cut..].chars().count();
        text.truncate(cut);
        text.push_str(&format!("\n[... {dropped} more characters cut]"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn truncates_on_character_boundaries() {
        assert_eq!(truncate("héllo".into(), 10), "héllo");
        assert_eq!(
            truncate("héllo".into(), 2),
            "hé\n[... 3 more characters cut]"
        );
    }

    #[test]
    fn calls_compare_without_key_order() {
        let call = |args| ToolCall {
            id: "x".into(),
            name: "t".into(),
            arguments: args,
        };
        assert!(same_call(
            &call(json!({"a": 1, "b": {"c": 2, "d": 3}})),
            &call(json!({"b": {"d": 3, "c": 2}, "a": 1}))
        ));
        assert!(!same_call(&call(json!({"a": 1})), &call(json!({"a": 2}))));
    }
}
