//! The agent end to end on the real engine and the default model (SmolLM2-135M, greedy,
//! grammar on), against the research example's document server on 127.0.0.1.

mod support;

use futures::StreamExt;
use k2::agent::{AgentEvent, StopReason};
use k2::model::{
    ChatModel, ChatRequest, Engine, EngineOptions, GenerateOptions, Message, Role, ToolChoice,
    ToolSpec, Usage,
};
use k2::tools::builtin::{Calculator, CodeSandbox, WebFetch};
use k2::tools::{Registry, Tool};

fn engine() -> Engine {
    Engine::load(
        support::default_model(),
        EngineOptions {
            n_ctx: Some(4096),
            max_string_argument: Some(160),
            ..EngineOptions::default()
        },
    )
    .expect("load the default model")
}

#[tokio::test]
async fn a_fetch_and_a_calculation_on_the_real_model() {
    let docs = support::docs().await;
    let agent = support::research_agent(engine(), &docs);
    let task = support::research_task(&docs);
    let mut run = agent.stream(task);
    let mut steps: Vec<Usage> = Vec::new();
    while let Some(event) = run.next().await {
        if let AgentEvent::StepFinished { usage, .. } = event {
            steps.push(usage);
        }
    }
    let outcome = run.finish().await.unwrap();

    // Both tools really ran, in the planned order, and the fetch reached the local server.
    let names: Vec<_> = outcome.tools.iter().map(|r| r.call.name.as_str()).collect();
    assert_eq!(
        names[..2],
        ["web_fetch", "calculator"],
        "{:#?}",
        outcome.tools
    );
    assert!(outcome.tools.iter().all(|r| r.ran));
    assert!(
        !docs.hits.lock().unwrap().is_empty(),
        "the document server was asked"
    );
    let fetched = &outcome.tools[0];
    assert!(fetched.output.contains("Lakeside"), "{}", fetched.output);
    // Each result was fed back as a tool message before the next model turn.
    let roles: Vec<Role> = outcome.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles[..6],
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant,
            Role::Tool
        ]
    );
    assert_eq!(outcome.messages[3].content, outcome.tools[0].output);
    assert_eq!(outcome.messages[5].content, outcome.tools[1].output);
    // Within budget: two tool turns and an answer (or the closing turn).
    assert!(outcome.usage.steps <= 4, "{:?}", outcome.usage);
    assert!(matches!(
        outcome.stop,
        StopReason::Answered | StopReason::MaxSteps
    ));
    // The KV cache carried over: after the first step, the whole previous prompt (and all
    // but the tail of the model's own turn) came from the cache.
    assert_eq!(steps.len(), outcome.usage.steps);
    for pair in steps.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        assert!(
            after.prompt_tokens_cached() >= before.prompt_tokens,
            "step reused {} of {} tokens; the previous prompt had {}",
            after.prompt_tokens_cached(),
            after.prompt_tokens,
            before.prompt_tokens
        );
    }
    let total = outcome.usage.model;
    eprintln!(
        "{} steps: {} prompt tokens, {} evaluated; per step {:?}",
        outcome.usage.steps,
        total.prompt_tokens,
        total.prompt_tokens_evaluated,
        steps
            .iter()
            .map(|u| (
                u.prompt_tokens,
                u.prompt_tokens_evaluated,
                u.completion_tokens
            ))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn every_built_in_tool_schema_compiles_to_a_grammar_llama_cpp_accepts() {
    let engine = engine();
    let mut registry = Registry::new();
    registry
        .register(Calculator)
        .unwrap()
        .register(CodeSandbox::new())
        .unwrap()
        .register(WebFetch::new())
        .unwrap();
    let local = WebFetch::new()
        .allow("http://127.0.0.1:8080")
        .allow("docs.internal")
        .only_allowed();
    let mut specs: Vec<ToolSpec> = registry
        .to_openai()
        .iter()
        .filter_map(ToolSpec::from_openai)
        .collect();
    specs.push(ToolSpec {
        name: "web_fetch_local".into(),
        description: local.description().into(),
        parameters: local.parameters(),
    });
    for spec in &specs {
        let request = ChatRequest {
            messages: vec![Message::user("Use the tool.")],
            tools: vec![spec.clone()],
            tool_choice: ToolChoice::Required,
            options: GenerateOptions {
                max_tokens: 24,
                ..GenerateOptions::default()
            },
            ..ChatRequest::default()
        };
        // Generating makes llama.cpp parse the grammar; a rejected one is an error here.
        let done = engine.chat(request).await.unwrap_or_else(|e| {
            panic!("{}: {e}", spec.name);
        });
        assert!(
            done.text.starts_with("<tool_call>"),
            "{}: {}",
            spec.name,
            done.text
        );
    }
}
