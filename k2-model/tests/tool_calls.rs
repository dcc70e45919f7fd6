//! Grammar-constrained tool calls on the real default model: every call it generates must
//! parse, name the right tool and have the schema's shape; only the bounds of floating-point
//! `number`s, which llama.cpp's schema grammar does not enforce (integer bounds it does),
//! may be missed, and then the registry's validation tells the model.

mod common;

use k2_model::{ChatModel, ChatRequest, GenerateOptions, Message, ToolChoice, ToolSpec};
use serde_json::Value;

fn fixture() -> Vec<(ToolSpec, String)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tool_schemas.json"
    ))
    .unwrap();
    let items: Vec<Value> = serde_json::from_str(&text).unwrap();
    items
        .iter()
        .map(|v| {
            (
                ToolSpec::from_openai(v).unwrap(),
                v["prompt"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_constrained_call_parses_and_has_the_schemas_shape() {
    // Greedy decoding with a mild repeat penalty, and string arguments capped in the grammar:
    // a 135M model otherwise loops inside a string until its token budget runs out.
    let engine = k2_model::Engine::load(
        common::model_path(),
        k2_model::EngineOptions {
            n_ctx: Some(2048),
            max_string_argument: Some(160),
            ..Default::default()
        },
    )
    .unwrap();
    let tools = fixture();
    assert!(tools.len() >= 50);
    let mut failures = Vec::new();
    let mut out_of_range = Vec::new();
    for (i, (tool, prompt)) in tools.iter().enumerate() {
        // The tool, plus a neighbour so the model sees a choice in the declaration.
        let other = &tools[(i + 1) % tools.len()].0;
        let done = engine
            .chat(ChatRequest {
                messages: vec![Message::user(prompt.clone())],
                tools: vec![tool.clone(), other.clone()],
                tool_choice: ToolChoice::Named(tool.name.clone()),
                parallel_tool_calls: false,
                options: GenerateOptions {
                    max_tokens: 384,
                    sampling: k2_model::Sampling {
                        repeat_penalty: 1.2,
                        ..Default::default()
                    },
                    ..GenerateOptions::default()
                },
            })
            .await
            .unwrap();
        if let Some(e) = &done.malformed {
            failures.push(format!("{}: malformed: {e}\n{}", tool.name, done.text));
            continue;
        }
        if done.tool_calls.len() != 1 || done.tool_calls[0].name != tool.name {
            failures.push(format!(
                "{}: calls {:?}\n{}",
                tool.name, done.tool_calls, done.text
            ));
            continue;
        }
        let validator = jsonschema::validator_for(&tool.parameters).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&done.tool_calls[0].arguments)
            .map(|e| e.to_string())
            .collect();
        let range = |e: &String| e.contains("the maximum of") || e.contains("the minimum of");
        let report = format!(
            "{}: invalid {}: {errors:?}",
            tool.name, done.tool_calls[0].arguments
        );
        if errors.iter().all(range) && !errors.is_empty() {
            out_of_range.push(report);
        } else if !errors.is_empty() {
            failures.push(report);
        }
    }
    eprintln!("number bounds missed: {out_of_range:#?}");
    assert!(
        out_of_range.len() * 20 <= tools.len(),
        "more than 5% of calls out of range: {out_of_range:#?}"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn weather() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "Current weather for a city".into(),
        parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    }
}

#[tokio::test]
async fn tool_choice_none_keeps_the_prompt_but_drops_the_grammar() {
    let engine = common::shared();
    let request = ChatRequest {
        messages: vec![Message::user("Weather in Rome?")],
        tools: vec![weather()],
        tool_choice: ToolChoice::None,
        ..ChatRequest::default()
    };
    assert_eq!(engine.grammar_for(&request).unwrap(), None);
    let auto = ChatRequest {
        tool_choice: ToolChoice::Auto,
        ..request.clone()
    };
    // Same prompt whatever the choice, so an agent's steps share one KV cache prefix.
    let prompt = engine.prompt_for(&auto).unwrap();
    assert!(prompt.contains("<tools>") && prompt.contains("get_weather"));
    assert_eq!(engine.prompt_for(&request).unwrap(), prompt);
    let bare = ChatRequest {
        tools: Vec::new(),
        ..request.clone()
    };
    assert!(!engine.prompt_for(&bare).unwrap().contains("get_weather"));
    let lazy = engine.grammar_for(&auto).unwrap().unwrap();
    assert_eq!(lazy.trigger.as_deref(), Some("<tool_call>"));
}

#[tokio::test]
async fn auto_choice_with_a_lazy_grammar_yields_only_well_formed_calls() {
    let engine = common::shared();
    for question in [
        "What's the weather in Rome?",
        "Tell me a joke.",
        "Weather in Oslo, please.",
    ] {
        let done = engine
            .chat(ChatRequest {
                messages: vec![Message::user(question)],
                tools: vec![weather()],
                tool_choice: ToolChoice::Auto,
                options: GenerateOptions {
                    max_tokens: 96,
                    ..GenerateOptions::default()
                },
                ..ChatRequest::default()
            })
            .await
            .unwrap();
        // Free text stays free; any call the model starts is forced to completion — unless
        // the token budget ran out inside it, which is reported, not hidden.
        match &done.malformed {
            None => {
                for call in &done.tool_calls {
                    assert_eq!(call.name, "get_weather");
                    assert!(call.arguments["city"].is_string(), "{call:?}");
                }
                assert!(!done.content.contains("<tool_call>"), "{}", done.content);
            }
            Some(k2_model::FormatError::Truncated { .. }) => {
                assert_eq!(done.finish_reason, k2_model::FinishReason::Length)
            }
            Some(other) => panic!("{other}: {}", done.text),
        }
    }
}

#[tokio::test]
async fn text_the_grammar_forces_is_evaluated_in_batches_and_spells_the_same_call() {
    use futures::StreamExt;
    let engine = common::shared();
    let request = |fast_forward| ChatRequest {
        messages: vec![Message::user("Weather in Rome?")],
        tools: vec![weather()],
        tool_choice: ToolChoice::Named("get_weather".into()),
        parallel_tool_calls: false,
        options: GenerateOptions {
            max_tokens: 64,
            fast_forward,
            ..GenerateOptions::default()
        },
    };
    let slow = engine.chat(request(false)).await.unwrap();
    assert_eq!(slow.usage.forced_tokens, 0);
    // Streamed, so the deltas of forced text are checked too.
    let mut stream = engine.stream(request(true)).await.unwrap();
    let (mut deltas, mut calls, mut done) = (String::new(), Vec::new(), None);
    while let Some(event) = stream.next().await {
        match event.unwrap() {
            k2_model::ChatEvent::Delta(d) => deltas.push_str(&d),
            k2_model::ChatEvent::ToolCall(c) => calls.push(c),
            k2_model::ChatEvent::Done(c) => done = Some(c),
            _ => {}
        }
    }
    let fast = done.expect("a completion");
    assert_eq!(deltas.trim(), fast.content);
    assert_eq!(calls, fast.tool_calls);
    for done in [&slow, &fast] {
        assert!(done.malformed.is_none(), "{}", done.text);
        assert_eq!(done.tool_calls.len(), 1, "{}", done.text);
        assert_eq!(done.tool_calls[0].name, "get_weather");
        assert!(done.tool_calls[0].arguments["city"].is_string());
    }
    // `<tool_call>\n{"name": "get_weather", "arguments": {"city": "` is the grammar's, not
    // the model's: most of the call is forced.
    let u = fast.usage;
    assert!(u.forced_tokens * 2 > u.completion_tokens, "{u:?}");
    assert!(fast
        .text
        .starts_with("<tool_call>\n{\"name\": \"get_weather\""));
}
