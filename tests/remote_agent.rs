//! Agents over the remote backend: many at once against one server, and a real llama-server
//! (built by `scripts/build-peers`) running the default model on 127.0.0.1.

#[path = "../k2-model/tests/support/http.rs"]
mod http;
#[path = "../src/bench/server.rs"]
mod server;
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use http::{Reply, Server};
use k2::agent::{Agent, StopReason};
use k2::model::{
    ChatModel, ChatRequest, ChatTemplate, Engine, Message, Remote, RemoteMode, RemoteOptions, Role,
    ToolFormat,
};
use k2::tools::{Run, ToolContext, ToolError, ToolOutput};
use serde_json::{json, Value};
use server::LlamaServer;

/// Echoes its text.
#[derive(serde::Deserialize, schemars::JsonSchema, k2::tools::Tool)]
#[tool(crate = "k2::tools")]
struct Echo {
    /// What to echo.
    text: String,
}

#[async_trait::async_trait]
impl Run for Echo {
    async fn run(self, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text(format!("echo {}", self.text)))
    }
}

/// A server that plays a model: it calls `echo` with the task's number, then answers with
/// what the tool said. The call streams in small pieces, as real servers send them.
fn scripted_server_reply(body: &Value) -> Reply {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let task = messages
        .iter()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let number = task.trim_start_matches("task ").to_string();
    let chunk = |delta: Value, finish: Value| json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    match messages.iter().rev().find(|m| m["role"] == "tool") {
        None => {
            let args = json!({"text": number}).to_string();
            let mut events = vec![chunk(
                json!({"tool_calls": [{"index": 0, "id": format!("call_{number}"), "type": "function", "function": {"name": "echo", "arguments": ""}}]}),
                Value::Null,
            )];
            for piece in args.as_bytes().chunks(3) {
                events.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": String::from_utf8_lossy(piece)}}]}),
                    Value::Null,
                ));
            }
            events.push(chunk(json!({}), json!("tool_calls")));
            Reply::sse(&events)
        }
        Some(result) => {
            let text = format!(
                "answer {number}: {}",
                result["content"].as_str().unwrap_or_default()
            );
            Reply::sse(&[chunk(json!({"content": text}), json!("stop"))])
        }
    }
}

#[tokio::test]
async fn thirty_two_agents_at_once_keep_their_own_transcripts() {
    let server = Server::start(|req, _| scripted_server_reply(&req.body)).await;
    let remote = Remote::new(RemoteOptions::new(server.url(), "scripted")).unwrap();
    let agent = Agent::builder(remote)
        .tool(k2::tools::typed::<Echo>())
        .max_steps(3)
        .build()
        .unwrap();
    let runs = (0..32).map(|i| {
        let agent = agent.clone();
        async move { (i, agent.run(format!("task {i}")).await) }
    });
    let all = tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(runs))
        .await
        .expect("32 runs finish");
    for (i, outcome) in all {
        let outcome = outcome.unwrap();
        assert_eq!(outcome.answer, format!("answer {i}: echo {i}"));
        assert_eq!(outcome.stop, StopReason::Answered);
        assert_eq!(outcome.tools.len(), 1);
        assert_eq!(outcome.tools[0].call.id, format!("call_{i}"));
        let user = &outcome.messages[1];
        assert_eq!(
            (user.role, user.content.as_str()),
            (Role::User, format!("task {i}").as_str())
        );
    }
    assert_eq!(server.count(), 64);
}

/// The directory with llama-server and llama-bench (built once by `scripts/build-peers`).
fn peers() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-peers");
    let out = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/build-peers");
    assert!(out.status.success(), "scripts/build-peers failed");
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default(),
    )
}

async fn llama_server(model: &std::path::Path) -> LlamaServer {
    let args = ["--jinja", "-c", "8192", "-np", "2"];
    LlamaServer::start(&peers().join("llama-server"), model, &args)
        .await
        .expect("llama-server starts")
}

#[tokio::test]
async fn a_research_task_through_a_real_llama_server() {
    let model = support::default_model();
    let server = llama_server(&model).await;
    let info = Engine::inspect(&model).unwrap();
    let template = std::sync::Arc::new(ChatTemplate::embedded(&info).unwrap().unwrap());
    let docs = support::docs().await;

    // Chat mode: the server renders and parses; a plain question gets a plain answer.
    let chat = Remote::new(RemoteOptions::new(server.url(), "default")).unwrap();
    let hello = chat
        .chat(ChatRequest::new(vec![Message::user("Say hello.")]))
        .await
        .unwrap();
    assert!(!hello.content.is_empty());
    assert!(hello.usage.completion_tokens > 0);

    // Raw mode, streaming and not: k2's template, grammar and parser behind the server.
    for stream in [true, false] {
        let remote = Remote::new(RemoteOptions {
            mode: RemoteMode::Raw {
                template: template.clone(),
                format: ToolFormat::for_model(&info),
                grammar: true,
                max_string: Some(160),
            },
            stream,
            extended_sampling: true,
            ..RemoteOptions::new(server.url(), "default")
        })
        .unwrap();
        let agent = support::research_agent(remote, &docs);
        let task = support::research_task(&docs);
        let outcome = agent.run(task).await.unwrap();
        let names: Vec<_> = outcome.tools.iter().map(|r| r.call.name.as_str()).collect();
        assert_eq!(
            names[..2],
            ["web_fetch", "calculator"],
            "stream {stream}: {:#?}",
            outcome.tools
        );
        assert!(
            outcome.tools[0].output.contains("Lakeside"),
            "{}",
            outcome.tools[0].output
        );
        assert!(outcome.usage.steps <= 4);
        assert!(!docs.hits.lock().unwrap().is_empty());
        // llama-server's prompt cache carries across steps too.
        assert!(
            outcome.usage.model.prompt_tokens_cached() > 0,
            "{:?}",
            outcome.usage
        );
    }
}
