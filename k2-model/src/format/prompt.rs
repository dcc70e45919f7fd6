//! Tools for models whose chat template knows nothing of tools (SmolLM2, many base and small
//! instruct models): declare the tools in the system message, write earlier calls and their
//! results as Hermes-style text, and let the template render plain messages.
//!
//! This is kept apart from template rendering on purpose: `ChatTemplate::render` stays a pure
//! rendering of what the template itself does.

use super::ToolFormat;
use crate::chat::{ChatRequest, Message, Role, ToolSpec};
use crate::error::Result;
use crate::template::{ChatTemplate, TemplateInput};

/// The prompt for `request` with `template`, ready to evaluate: the tools declared the
/// template's own way when it handles them, folded into the messages otherwise
/// ([`fold_tools_into_messages`]), and the assistant's turn opened. The embedded engine and
/// the remote backend's raw mode both use it, so the same request is the same prompt.
pub fn render_prompt(template: &ChatTemplate, request: &ChatRequest) -> Result<String> {
    let (messages, tools) = if !request.tools.is_empty() && !template.supports_tools() {
        let folded = fold_tools_into_messages(&request.messages, &request.tools);
        (folded, Vec::new())
    } else {
        (request.messages.clone(), request.tools.clone())
    };
    template.render(&TemplateInput {
        messages,
        tools,
        add_generation_prompt: true,
        extra: Default::default(),
    })
}

/// The system text that declares `tools` and how to call them (Hermes markup).
///
/// It does not depend on `tool_choice`: an agent changes the choice between steps (a forced
/// first call, a closing turn without tools) and the system message, the very start of the
/// KV cache, must stay the same for the cache to be reused. The grammar enforces the choice.
pub fn tool_instructions(tools: &[ToolSpec]) -> String {
    let mut s = String::from(
        "You can call functions (tools) to help answer. The available tools, as JSON Schema \
         signatures, are within <tools></tools>:\n<tools>\n",
    );
    for t in tools {
        s.push_str(&t.to_openai().to_string());
        s.push('\n');
    }
    s.push_str(
        "</tools>\nTo call a tool, reply with a JSON object inside <tool_call></tool_call> tags:\n\
         <tool_call>\n{\"name\": <tool name>, \"arguments\": <arguments object>}\n</tool_call>\n\
         You may call several tools in one reply. Tool results come back inside \
         <tool_response></tool_response> tags. Arguments must satisfy the schema: its types, \
         required fields, enums, minimum and maximum. When you can answer without a tool, \
         answer directly.",
    );
    s
}

/// Rewrites a conversation with tools into plain messages any template can render: the tool
/// declarations join the system message, assistant calls become Hermes text, and consecutive
/// tool results become one user message (templates that insist on alternating roles accept
/// that).
pub fn fold_tools_into_messages(messages: &[Message], tools: &[ToolSpec]) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
    let declare = !tools.is_empty();
    let instructions = tool_instructions(tools);
    let mut rest = messages;
    match messages.first() {
        Some(first) if first.role == Role::System => {
            let content = if declare {
                format!("{}\n\n{instructions}", first.content)
            } else {
                first.content.clone()
            };
            out.push(Message::system(content));
            rest = &messages[1..];
        }
        _ if declare => out.push(Message::system(instructions)),
        _ => {}
    }
    for m in rest {
        match m.role {
            Role::Assistant if !m.tool_calls.is_empty() => {
                let calls = ToolFormat::Hermes.render_calls(&m.tool_calls);
                let content = if m.content.trim().is_empty() {
                    calls
                } else {
                    format!("{}\n{calls}", m.content)
                };
                out.push(Message::assistant(content));
            }
            Role::Tool => {
                let block = format!("<tool_response>\n{}\n</tool_response>", m.content);
                match out.last_mut() {
                    Some(last)
                        if last.role == Role::User
                            && last.content.ends_with("</tool_response>") =>
                    {
                        last.content.push('\n');
                        last.content.push_str(&block);
                    }
                    _ => out.push(Message::user(block)),
                }
            }
            _ => out.push(Message {
                tool_calls: Vec::new(),
                tool_call_id: None,
                ..m.clone()
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ToolCall;
    use serde_json::json;

    #[test]
    fn folds_calls_and_results_into_plain_messages() {
        let call = ToolCall {
            id: "call_0".into(),
            name: "add".into(),
            arguments: json!({"a": 1, "b": 2}),
        };
        let tools = vec![ToolSpec {
            name: "add".into(),
            description: "Adds".into(),
            parameters: json!({"type": "object"}),
        }];
        let msgs = vec![
            Message::user("1+2?"),
            Message::assistant_with_calls("", vec![call.clone(), call.clone()]),
            Message::tool_result(&call, "3"),
            Message::tool_result(&call, "3"),
        ];
        let out = fold_tools_into_messages(&msgs, &tools);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].role, Role::System);
        assert!(out[0].content.contains(r#""name":"add""#));
        assert_eq!(
            out[2].content,
            "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>"
        );
        assert_eq!(
            out[3].content,
            "<tool_response>\n3\n</tool_response>\n<tool_response>\n3\n</tool_response>"
        );
        assert!(out.iter().all(|m| m.tool_calls.is_empty()));
    }
}
