//! The loop against a scripted test model: ordering, failures, budgets, approval,
//! cancellation.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{call, echo, fail, registry, Probe};
use futures::StreamExt;
use k2_agent::testing::ScriptedModel;
use k2_agent::{Agent, AgentError, AgentEvent, Decision, StopReason};
use k2_model::{Role, ToolChoice, ToolFormat};
use k2_tools::{ToolError, ToolOutput};
use serde_json::json;
use tokio::sync::Notify;

fn scripted(replies: &[String]) -> ScriptedModel {
    ScriptedModel::new(ToolFormat::Hermes, replies.iter().cloned())
}

/// Guards against a deadlock turning into a hung test; not a performance bound.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("the run hung")
}

#[tokio::test]
async fn parallel_calls_run_together_and_results_keep_the_models_order() {
    // Call `n` may only finish after the call with `n - 1`: with the calls in the order
    // 2, 1, 0 they can only all finish if they run at the same time, and they finish in the
    // reverse of the model's order.
    let turn = Arc::new((AtomicUsize::new(0), Notify::new()));
    let order = Probe::new(
        "ordered",
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}),
        move |v, _| {
            let turn = turn.clone();
            async move {
                let n = v["n"].as_u64().unwrap() as usize;
                while turn.0.load(Ordering::SeqCst) != n {
                    let notified = turn.1.notified();
                    if turn.0.load(Ordering::SeqCst) == n {
                        break;
                    }
                    notified.await;
                }
                turn.0.fetch_add(1, Ordering::SeqCst);
                turn.1.notify_waiters();
                Ok(ToolOutput::text(format!("done {n}")))
            }
        },
    );
    let reply = [2, 1, 0]
        .map(|n| call("ordered", json!({"n": n})))
        .join("\n");
    let model = scripted(&[reply, "All three are done.".into()]);
    let agent = Agent::builder(model.clone())
        .tools(registry(&[&order]))
        .build()
        .unwrap();
    let mut run = agent.stream("Run them.");
    let mut finished = Vec::new();
    let mut events = Vec::new();
    while let Some(event) = within(run.next()).await {
        if let AgentEvent::ToolFinished { result, .. } = &event {
            finished.push(result.output.clone());
        }
        events.push(event);
    }
    let outcome = run.finish().await.unwrap();
    assert_eq!(finished, ["done 0", "done 1", "done 2"]);
    let results: Vec<_> = outcome
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| (m.content.as_str(), m.tool_call_id.clone().unwrap()))
        .collect();
    let ids: Vec<_> = outcome.messages[2]
        .tool_calls
        .iter()
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        results,
        [
            ("done 2", ids[0].clone()),
            ("done 1", ids[1].clone()),
            ("done 0", ids[2].clone())
        ]
    );
    assert_eq!(outcome.answer, "All three are done.");
    assert_eq!(outcome.usage.tool_calls, 3);
    // The second request carried the results back to the model.
    let second = &model.requests()[1];
    assert_eq!(
        second
            .messages
            .iter()
            .filter(|m| m.role == Role::Tool)
            .count(),
        3
    );
    // Events come in a sensible order and end with the outcome.
    let kinds: Vec<_> = events
        .iter()
        .map(|e| {
            serde_json::to_value(e).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds.first().map(String::as_str), Some("step_started"));
    assert_eq!(kinds.last().map(String::as_str), Some("finished"));
    let pos = |k: &str| kinds.iter().position(|x| x == k).unwrap();
    assert!(pos("tool_call") < pos("tool_started") && pos("tool_started") < pos("tool_finished"));
    assert!(pos("tool_finished") < pos("step_finished"));
    assert!(kinds.iter().filter(|k| *k == "delta").count() > 0);
}

#[tokio::test]
async fn every_failure_goes_back_to_the_model_as_a_result() {
    let slow = Probe::new("slow", common::text_schema(), |_, _| async move {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(ToolOutput::text("never"))
    });
    let (echo, fail) = (echo(), fail());
    let reply = [
        call("no_such_tool", json!({})),
        call("echo", json!({"text": 5})),
        call("fail", json!({"text": "x"})),
        call("slow", json!({"text": "x"})),
        call("echo", json!({"text": "fine"})),
    ]
    .join("\n");
    let model = scripted(&[reply, "I saw what happened.".into()]);
    let agent = Agent::builder(model.clone())
        .tools(registry(&[&echo, &fail, &slow]))
        .tool_timeout(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    let outcome = within(agent.run("Try everything.")).await.unwrap();
    assert_eq!(outcome.stop, StopReason::Answered);
    let out: Vec<_> = outcome
        .tools
        .iter()
        .map(|r| (r.output.as_str(), r.is_error, r.ran))
        .collect();
    assert!(
        out[0].0.contains("unknown tool `no_such_tool`") && out[0].1 && !out[0].2,
        "{out:?}"
    );
    assert!(
        out[1].0.contains("at /text: 5 is not of type \"string\"") && !out[1].2,
        "{out:?}"
    );
    assert!(
        out[2].0.contains("the disk is on fire") && out[2].1 && out[2].2,
        "{out:?}"
    );
    assert!(out[3].0.contains("timed out") && out[3].1, "{out:?}");
    assert_eq!(out[4], ("fine", false, true));
    // Invalid and unknown calls never reached a tool.
    assert_eq!(echo.ran(), [json!({"text": "fine"})]);
    let second = &model.requests()[1];
    let tool_texts: Vec<_> = second
        .messages
        .iter()
        .filter(|m| m.role == Role::Tool)
        .map(|m| m.content.clone())
        .collect();
    assert_eq!(tool_texts.len(), 5);
    assert!(tool_texts[2].starts_with("error: tool `fail` failed"));
}

#[tokio::test]
async fn malformed_markup_is_explained_and_the_model_tries_again() {
    let echo = echo();
    let model = scripted(&[
        r#"Let me call it. <tool_call>{"name": "echo", "arguments": {"text": }</tool_call>"#.into(),
        call("echo", json!({"text": "again"})),
        "Done.".into(),
    ]);
    let agent = Agent::builder(model.clone())
        .tools(registry(&[&echo]))
        .build()
        .unwrap();
    let mut run = agent.stream("Echo something.");
    let mut malformed = Vec::new();
    while let Some(e) = within(run.next()).await {
        if let AgentEvent::Malformed { step, error } = e {
            malformed.push((step, error));
        }
    }
    let outcome = run.finish().await.unwrap();
    assert_eq!(malformed.len(), 1);
    assert_eq!(malformed[0].0, 0);
    assert_eq!(outcome.answer, "Done.");
    assert_eq!(echo.ran(), [json!({"text": "again"})]);
    let second = &model.requests()[1].messages;
    let notice = second.last().unwrap();
    assert_eq!(notice.role, Role::User);
    assert!(
        notice.content.contains("could not be read"),
        "{}",
        notice.content
    );
    // What the model wrote before the broken call is kept.
    assert_eq!(second[second.len() - 2].content, "Let me call it.");
}

#[tokio::test]
async fn identical_failing_calls_are_stopped() {
    let fail = fail();
    let same = call("fail", json!({"text": "same"}));
    // A fourth identical call would be reply 3; the closing turn gets it instead.
    let model = scripted(&[
        same.clone(),
        same.clone(),
        same.clone(),
        "I could not do it.".into(),
    ]);
    let agent = Agent::builder(model.clone())
        .tools(registry(&[&fail]))
        .repeat_limit(3)
        .build()
        .unwrap();
    let outcome = within(agent.run("Do it.")).await.unwrap();
    assert_eq!(outcome.stop, StopReason::RepeatedFailure);
    assert!(outcome.cut_short());
    assert_eq!(fail.ran().len(), 3);
    assert!(
        outcome.tools[1].output.contains("failed 2 times"),
        "{}",
        outcome.tools[1].output
    );
    let requests = model.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[3].tool_choice, ToolChoice::None);
    assert_eq!(outcome.answer, "I could not do it.");
}

#[tokio::test]
async fn the_step_budget_ends_with_a_closing_turn_without_tools() {
    let echo = echo();
    let model = scripted(&[
        call("echo", json!({"text": "a"})),
        call("echo", json!({"text": "b"})),
        "From a and b: the answer.".into(),
    ]);
    let agent = Agent::builder(model.clone())
        .tools(registry(&[&echo]))
        .max_steps(2)
        .build()
        .unwrap();
    let outcome = within(agent.run("Keep going.")).await.unwrap();
    assert_eq!(outcome.stop, StopReason::MaxSteps);
    assert_eq!(outcome.answer, "From a and b: the answer.");
    assert_eq!(outcome.usage.steps, 3);
    let last = model.requests().pop().unwrap();
    assert_eq!(last.tool_choice, ToolChoice::None);
    // Tools stay declared so the prompt (and a KV cache) stays the same.
    assert_eq!(last.tools.len(), 1);
    assert!(last
        .messages
        .last()
        .unwrap()
        .content
        .contains("without calling any tool"));
}

#[tokio::test]
async fn the_token_budget_caps_each_turn_and_the_run() {
    let echo = echo();
    let long = call("echo", json!({"text": "x".repeat(200)}));
    let model = scripted(&[long.clone(), long, "Short answer.".into()]);
    let agent = Agent::builder(model.clone())
        .tools(registry(&[&echo]))
        .max_tokens(70)
        .build()
        .unwrap();
    let outcome = within(agent.run("Talk.")).await.unwrap();
    assert_eq!(outcome.stop, StopReason::MaxTokens);
    let caps: Vec<_> = model
        .requests()
        .iter()
        .map(|r| r.options.max_tokens)
        .collect();
    // The first call takes ~60 of the 70 pieces, the second turn gets the rest, and is cut.
    assert_eq!(caps[0], 70);
    assert!(caps[1] < 70 && caps[1] > 0, "{caps:?}");
    assert_eq!(caps.len(), 3);
    assert_eq!(outcome.answer, "Short answer.");
    assert!(outcome.usage.model.completion_tokens >= 70);
}

#[tokio::test(start_paused = true)]
async fn the_time_budget_cuts_tools_short_and_closes() {
    let slow = Probe::new("slow", common::text_schema(), |_, _| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(ToolOutput::text("late"))
    });
    let model = scripted(&[call("slow", json!({"text": "x"})), "Out of time.".into()]);
    let agent = Agent::builder(model)
        .tools(registry(&[&slow]))
        .max_time(Duration::from_secs(5))
        .build()
        .unwrap();
    let outcome = agent.run("Hurry.").await.unwrap();
    assert_eq!(outcome.stop, StopReason::MaxTime);
    assert!(
        outcome.tools[0].output.contains("timed out after 5.0 s"),
        "{}",
        outcome.tools[0].output
    );
    assert_eq!(outcome.answer, "Out of time.");
}

#[tokio::test]
async fn approval_can_deny_edit_or_be_skipped() {
    let (echo, fail) = (echo(), fail());
    let calc = Probe::new("calc", common::text_schema(), |_, _| async move {
        Ok(ToolOutput::text("4"))
    });
    let reviewed = Arc::new(Mutex::new(Vec::new()));
    let seen = reviewed.clone();
    let model = scripted(&[
        [
            call("fail", json!({"text": "rm -rf"})),
            call("echo", json!({"text": "draft"})),
            call("calc", json!({"text": "2+2"})),
            call("echo", json!({"text": "make-invalid"})),
        ]
        .join("\n"),
        "ok".into(),
    ]);
    let agent = Agent::builder(model)
        .tools(registry(&[&echo, &fail, &calc]))
        .approval(move |c: k2_model::ToolCall| {
            seen.lock().unwrap().push(c.name.clone());
            async move {
                match (c.name.as_str(), c.arguments["text"].as_str()) {
                    ("fail", _) => Decision::Deny("too dangerous".into()),
                    (_, Some("make-invalid")) => Decision::Edit(json!({"text": 1})),
                    _ => Decision::Edit(json!({"text": "edited"})),
                }
            }
        })
        .auto_approve("calc")
        .build()
        .unwrap();
    let outcome = within(agent.run("Go.")).await.unwrap();
    assert_eq!(*reviewed.lock().unwrap(), ["fail", "echo", "echo"]);
    assert!(fail.ran().is_empty());
    assert_eq!(echo.ran(), [json!({"text": "edited"})]);
    assert_eq!(calc.ran().len(), 1);
    let t = &outcome.tools;
    assert!(t[0].output.contains("did not allow") && t[0].output.contains("too dangerous"));
    assert_eq!(t[1].output, "edited");
    assert_eq!(t[1].call.arguments, json!({"text": "edited"}));
    assert!(t[3].output.contains("invalid arguments") && !t[3].ran);
}

#[tokio::test]
async fn cancelling_during_generation_stops_the_run() {
    let model = ScriptedModel::new(ToolFormat::Hermes, ["word ".repeat(10_000)])
        .with_delay(Duration::from_millis(2));
    let agent = Agent::builder(model).build().unwrap();
    let mut run = agent.stream("Talk forever.");
    let token = run.cancel_token();
    while let Some(e) = within(run.next()).await {
        if matches!(e, AgentEvent::Delta { .. }) {
            token.cancel();
        }
    }
    let err = run.finish().await.unwrap_err();
    assert!(matches!(err, AgentError::Cancelled { step: 0 }), "{err}");
}

#[tokio::test]
async fn cancelling_during_tools_stops_them() {
    let raised = Arc::new(Mutex::new(None));
    let slot = raised.clone();
    let started = Arc::new(Notify::new());
    let go = started.clone();
    let hang = Probe::new("hang", common::text_schema(), move |_, ctx| {
        *slot.lock().unwrap() = Some(ctx.cancel.clone());
        go.notify_one();
        async move {
            std::future::pending::<()>().await;
            Err(ToolError::failed("hang", "unreachable"))
        }
    });
    let model = scripted(&[call("hang", json!({"text": "x"})), "never".into()]);
    let agent = Agent::builder(model)
        .tools(registry(&[&hang]))
        .tool_timeout(None)
        .build()
        .unwrap();
    let run = agent.stream("Hang.");
    within(started.notified()).await;
    run.cancel();
    let err = within(run.finish()).await.unwrap_err();
    assert!(matches!(err, AgentError::Cancelled { step: 0 }), "{err}");
    let flag = raised.lock().unwrap().clone().unwrap();
    assert!(flag.is_cancelled(), "the tool was told to stop");
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let model = || scripted(&[]);
    let err = Agent::builder(model())
        .tool_choice(ToolChoice::Required)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("required"), "{err}");
    let err = Agent::builder(model())
        .tool(echo())
        .tool_choice_at(0, ToolChoice::Named("nope".into()))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("`nope`"), "{err}");
    let err = Agent::builder(model())
        .tool(echo())
        .tool(echo())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("already registered"), "{err}");
    let err = Agent::builder(model()).max_steps(0).build().unwrap_err();
    assert!(matches!(err, AgentError::Config(_)));
}

#[tokio::test]
async fn a_model_backend_error_ends_the_run_with_its_step() {
    // The script has one reply; the second turn asks for more than it has.
    let echo = echo();
    let model = scripted(&[call("echo", json!({"text": "a"}))]);
    let agent = Agent::builder(model)
        .tools(registry(&[&echo]))
        .build()
        .unwrap();
    let err = within(agent.run("Go.")).await.unwrap_err();
    assert!(matches!(err, AgentError::Model { step: 1, .. }), "{err}");
}

#[tokio::test]
async fn calls_written_under_tool_choice_none_are_not_run() {
    let echo = echo();
    let model = scripted(&[format!("Sure. {}", call("echo", json!({"text": "x"})))]);
    let agent = Agent::builder(model)
        .tools(registry(&[&echo]))
        .tool_choice(ToolChoice::None)
        .build()
        .unwrap();
    let outcome = within(agent.run("Answer.")).await.unwrap();
    assert_eq!(outcome.stop, StopReason::Answered);
    assert_eq!(outcome.answer, "Sure.");
    assert!(echo.ran().is_empty());
    assert!(outcome.messages.last().unwrap().tool_calls.is_empty());
}
