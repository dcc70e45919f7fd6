//! Crash safety: a run journalled to disk and cut off at every point of every step resumes to
//! the same transcript, running each unfinished call once and no finished call again.

mod common;

use std::path::Path;

use common::{call, echo, registry, Probe};
use k2_agent::testing::ScriptedModel;
use k2_agent::{Agent, AgentError, Outcome};
use k2_model::ToolFormat;
use serde_json::{json, Value};

fn script() -> ScriptedModel {
    ScriptedModel::new(
        ToolFormat::Hermes,
        [
            format!(
                "Two at once.\n{}\n{}",
                call("echo", json!({"text": "a"})),
                call("echo", json!({"text": "b"}))
            ),
            call("echo", json!({"text": "c"})),
            r#"<tool_call>{"name": "echo", "arguments": {"text": </tool_call>"#.to_string(),
            "a, b and c.".to_string(),
        ],
    )
}

fn agent(tool: &Probe) -> Agent {
    Agent::builder(script())
        .tools(registry(&[tool]))
        .build()
        .unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// The arguments of the tool results already in a journal prefix.
fn journaled_calls(prefix: &[String]) -> Vec<Value> {
    prefix
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "tool_result")
        .map(|e| e["record"]["call"]["arguments"].clone())
        .collect()
}

fn sorted(mut v: Vec<Value>) -> Vec<String> {
    let mut s: Vec<String> = v.drain(..).map(|v| v.to_string()).collect();
    s.sort();
    s
}

#[tokio::test]
async fn resume_after_a_crash_at_every_point_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let full_path = dir.path().join("full.jsonl");
    let tool = echo();
    let full: Outcome = agent(&tool)
        .stream_journaled("Echo a, b and c.", &full_path)
        .finish()
        .await
        .unwrap();
    assert_eq!(full.answer, "a, b and c.");
    assert_eq!(tool.ran().len(), 3);
    let journal = lines(&full_path);
    let all_calls = sorted(tool.ran());

    // Every whole-line prefix, and every prefix with the next line torn in half.
    for cut in 1..=journal.len() {
        for torn in [false, true] {
            if torn && cut == journal.len() {
                continue;
            }
            let prefix = &journal[..cut];
            let mut text = prefix.join("\n") + "\n";
            if torn {
                let next = &journal[cut];
                text.push_str(&next[..next.len() / 2]);
            }
            let path = dir.path().join(format!("cut-{cut}-{torn}.jsonl"));
            std::fs::write(&path, text).unwrap();

            let tool = echo();
            let resumed = agent(&tool).resume(&path).finish().await.unwrap();
            let what = format!("cut after {cut} lines (torn: {torn})");
            assert_eq!(resumed.answer, full.answer, "{what}");
            assert_eq!(resumed.messages, full.messages, "{what}");
            assert_eq!(resumed.stop, full.stop, "{what}");
            // Together, the journalled results and what the resume ran are each call once.
            let mut once = journaled_calls(prefix);
            once.extend(tool.ran());
            assert_eq!(sorted(once), all_calls, "{what}");
            // The resumed journal is whole again: resuming it once more runs nothing.
            let again = echo();
            let replayed = agent(&again).resume(&path).finish().await.unwrap();
            assert_eq!(replayed.messages, full.messages, "{what}");
            assert!(again.ran().is_empty(), "{what}");
        }
    }
}

#[tokio::test]
async fn a_journal_is_never_overwritten_or_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.jsonl");
    let tool = echo();
    agent(&tool)
        .stream_journaled("x", &path)
        .finish()
        .await
        .unwrap();
    let err = agent(&tool)
        .stream_journaled("x", &path)
        .finish()
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::Journal { .. }), "{err}");

    let mut damaged = lines(&path);
    damaged[1] = "{not json".into();
    std::fs::write(&path, damaged.join("\n") + "\n").unwrap();
    let err = agent(&tool).resume(&path).finish().await.unwrap_err();
    assert!(err.to_string().contains("entry 2 is damaged"), "{err}");

    let missing = dir.path().join("missing.jsonl");
    let err = agent(&tool).resume(&missing).finish().await.unwrap_err();
    assert!(matches!(err, AgentError::Journal { .. }), "{err}");
}
