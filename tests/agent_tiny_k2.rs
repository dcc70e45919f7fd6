//! The agent on the tiny Kimi K2-architecture model (random weights) through the real
//! engine: the K2 grammar forces a well-formed native call, the parser reads it, the tool
//! runs, its result is rendered back in K2 form, and the model answers under `none`.

#[path = "../k2-model/tests/support/tiny_k2.rs"]
mod tiny_k2;

use k2::agent::{Agent, Budget, StopReason};
use k2::model::{ChatRequest, Engine, EngineOptions, Role, ToolChoice, ToolFormat};
use k2::tools::{Run, ToolContext, ToolError, ToolOutput};

/// Current weather for a city.
#[derive(serde::Deserialize, schemars::JsonSchema, k2::tools::Tool)]
#[tool(crate = "k2::tools")]
struct GetWeather {
    /// The city.
    city: City,
}

#[derive(serde::Deserialize, schemars::JsonSchema, Debug)]
enum City {
    Oslo,
    Rome,
}

#[async_trait::async_trait]
impl Run for GetWeather {
    async fn run(self, _ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text(format!(
            "{:?}: 7 °C, light rain",
            self.city
        )))
    }
}

#[tokio::test]
async fn the_k2_path_end_to_end_on_random_weights() {
    let engine = Engine::load(
        tiny_k2::path(),
        EngineOptions {
            n_ctx: Some(2048),
            ..EngineOptions::default()
        },
    )
    .unwrap();
    assert_eq!(engine.tool_format(), ToolFormat::K2);
    let agent = Agent::builder(engine.clone())
        .tool(k2::tools::typed::<GetWeather>())
        .tool_choice(ToolChoice::None)
        .tool_choice_at(0, ToolChoice::Required)
        .parallel_tool_calls(false)
        .budget(Budget {
            max_steps: 3,
            step_tokens: 160,
            ..Budget::default()
        })
        .build()
        .unwrap();
    let outcome = agent.run("What's the weather in Oslo?").await.unwrap();

    // One native K2 call, parsed with its K2 id, validated and run.
    assert_eq!(outcome.tools.len(), 1, "{:#?}", outcome.tools);
    let record = &outcome.tools[0];
    assert!(record.ran && !record.is_error, "{record:?}");
    assert_eq!(record.call.name, "get_weather");
    assert!(
        record.call.id.starts_with("functions.get_weather:"),
        "{}",
        record.call.id
    );
    assert!(record.output.ends_with(": 7 °C, light rain"));
    // Then an answer under `none`.
    assert_eq!(outcome.stop, StopReason::Answered);
    assert_eq!(outcome.usage.steps, 2);
    let roles: Vec<Role> = outcome.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::System,
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Assistant
        ]
    );
    // The result went back to the model in K2's own form, after the call in K2's own form.
    let prompt = engine
        .prompt_for(&ChatRequest::new(outcome.messages[..4].to_vec()))
        .unwrap();
    let call = format!(
        "<|tool_calls_section_begin|><|tool_call_begin|>{}<|tool_call_argument_begin|>",
        record.call.id
    );
    let result = format!("## Return of {}\n", record.call.id);
    assert!(prompt.contains(&call), "{prompt}");
    assert!(prompt.contains(&result), "{prompt}");
    assert!(
        prompt.contains(&format!("{}<|im_end|>", record.output)),
        "{prompt}"
    );
    assert!(
        prompt.ends_with("<|im_assistant|>assistant<|im_middle|>"),
        "{prompt}"
    );
    // Only the new tokens were evaluated for the answer.
    assert!(
        outcome.usage.model.prompt_tokens_cached() > 0,
        "{:?}",
        outcome.usage
    );
}
