//! The tiny Kimi K2-architecture model on the real engine: load, inspect, tokenize the K2
//! special tokens, render with the embedded official template, and generate K2 tool calls.

#[path = "support/tiny_k2.rs"]
mod tiny_k2;

use k2_model::{Engine, EngineOptions, GenerateOptions};

fn engine() -> Engine {
    Engine::load(
        tiny_k2::path(),
        EngineOptions {
            n_ctx: Some(2048),
            ..EngineOptions::default()
        },
    )
    .expect("the tiny K2 model loads")
}

#[test]
fn the_generator_is_deterministic() {
    assert_eq!(tiny_k2::bytes(), tiny_k2::bytes());
}

#[tokio::test]
async fn it_loads_as_deepseek2_and_generates() {
    let engine = engine();
    let info = engine.info();
    assert_eq!(info.architecture, "deepseek2");
    assert_eq!(info.expert_count, Some(8));
    assert_eq!(info.expert_used_count, Some(2));
    assert_eq!(info.expert_shared_count, Some(1));
    assert_eq!(info.chat_template.as_deref(), Some(tiny_k2::TEMPLATE));
    let done = engine
        .complete(
            "<|im_user|>user<|im_middle|>hello<|im_end|><|im_assistant|>assistant<|im_middle|>",
            GenerateOptions {
                max_tokens: 16,
                ..GenerateOptions::default()
            },
        )
        .await
        .unwrap();
    assert!(done.usage.completion_tokens > 0, "{done:?}");
}

#[test]
fn every_k2_special_token_is_one_token_and_round_trips() {
    let engine = engine();
    for special in tiny_k2::SPECIAL_TOKENS {
        let tokens = engine.tokenize(special);
        assert_eq!(tokens.len(), 1, "{special} -> {tokens:?}");
        assert_eq!(engine.detokenize(&tokens), *special);
        assert!(engine.is_special_token(special), "{special}");
    }
    // In running text too, and ordinary text survives the byte-level BPE exactly.
    let text = "<|im_user|>user<|im_middle|>Grüße, 東京! {\"x\": 1}<|im_end|>";
    let tokens = engine.tokenize(text);
    assert_eq!(engine.detokenize(&tokens), text);
    assert!(
        tokens.len() < text.len(),
        "merges apply: {} tokens",
        tokens.len()
    );
}

#[test]
fn the_embedded_template_renders_like_the_official_one() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/templates");
    let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
    let conv: serde_json::Value = serde_json::from_str(&read("conversation.json")).unwrap();
    let engine = engine();
    let template = engine.template().expect("the GGUF carries a template");
    assert_eq!(
        template.render_value(conv).unwrap(),
        read("kimi-k2-instruct.expected")
    );
    assert_eq!(engine.tool_format(), k2_model::ToolFormat::K2);
}

#[tokio::test]
async fn random_weights_still_write_well_formed_k2_calls_under_the_grammar() {
    use k2_model::{ChatModel, ChatRequest, Message, ToolChoice, ToolSpec};
    let engine = engine();
    let tools = vec![ToolSpec {
        name: "get_weather".into(),
        description: "Weather for a city".into(),
        parameters: serde_json::json!({
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["city", "days"]
        }),
    }];
    for parallel in [false, true] {
        let done = engine
            .chat(ChatRequest {
                messages: vec![Message::user("Weather in Oslo?")],
                tools: tools.clone(),
                tool_choice: ToolChoice::Required,
                parallel_tool_calls: parallel,
                options: GenerateOptions {
                    max_tokens: 200,
                    ..GenerateOptions::default()
                },
            })
            .await
            .unwrap();
        assert!(
            done.malformed.is_none(),
            "{:?}\n{}",
            done.malformed,
            done.text
        );
        assert!(!done.tool_calls.is_empty(), "{}", done.text);
        assert!(
            done.text.starts_with(
                "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:"
            ),
            "{}",
            done.text
        );
        for call in &done.tool_calls {
            assert_eq!(call.name, "get_weather");
            let days = call.arguments["days"].as_i64().unwrap();
            assert!((1..=7).contains(&days), "{}", call.arguments);
            assert!(
                call.arguments["city"].as_str().unwrap().chars().count() <= 12,
                "{}",
                done.text
            );
        }
        if !parallel {
            assert_eq!(done.tool_calls.len(), 1);
        }
    }
}
