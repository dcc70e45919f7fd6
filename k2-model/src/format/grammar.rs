//! Grammars that make a model's tool calls well-formed: from the offered tools' JSON Schemas
//! (converted by llama.cpp's own json-schema-to-grammar) to a GBNF grammar for a whole call in
//! the model's format.

use serde::{Deserialize, Serialize};

use super::{hermes, json, k2, ToolFormat};
use crate::chat::ToolSpec;
use crate::error::{ModelError, Result};

/// Whether and how the model must call tools.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoice {
    /// The model decides; a call, once started, is constrained (lazy grammar).
    #[default]
    Auto,
    /// The model must call some tool (constrained from the first token).
    Required,
    /// The model must not call tools (no grammar, no tools in the prompt).
    None,
    /// The model must call this tool.
    #[serde(untagged)]
    Named(String),
}

impl std::str::FromStr for ToolChoice {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s {
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            "none" => ToolChoice::None,
            name => ToolChoice::Named(name.to_string()),
        })
    }
}

/// A GBNF grammar for tool calls, with the text that switches it on when it is lazy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolGrammar {
    /// The grammar; its start rule is `root`.
    pub gbnf: String,
    /// For a lazy grammar: the marker that switches it on (free text until then). `None`
    /// means the grammar applies from the first token.
    pub trigger: Option<String>,
}

/// Limits a grammar adds on top of the schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrammarOptions {
    /// Allow several calls in one reply; otherwise exactly one.
    pub parallel: bool,
    /// Cap string arguments that have no `maxLength` (and no enum, pattern or format) at this
    /// many characters, and arrays that have no `maxItems` at [`MAX_ITEMS_WHEN_CAPPED`]
    /// items. Small models sometimes loop inside a string or a list until the token budget
    /// runs out; a cap makes every call close. Calls stay schema-valid.
    pub max_string: Option<usize>,
}

impl Default for GrammarOptions {
    fn default() -> Self {
        GrammarOptions {
            parallel: true,
            max_string: None,
        }
    }
}

/// Builds the grammar for calls to `tools` in `format` under `choice`; `None` when nothing
/// is to be constrained (`ToolChoice::None`, no tools, or `auto` in a format without an
/// opening marker). `is_special` tells whether a marker is a single special token of the
/// model, so the grammar can require that token rather than its spelling.
///
/// ```
/// use k2_model::{tool_grammar, ToolChoice, ToolFormat, ToolSpec};
/// let tools = vec![ToolSpec {
///     name: "get_weather".into(),
///     description: "Weather for a city".into(),
///     parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
/// }];
/// let g = tool_grammar(ToolFormat::K2, &tools, &ToolChoice::Auto, &Default::default(), &|_| false)?.unwrap();
/// assert_eq!(g.trigger.as_deref(), Some("<|tool_calls_section_begin|>"));
/// assert!(g.gbnf.contains("functions.get_weather:"));
/// # Ok::<(), k2_model::ModelError>(())
/// ```
pub fn tool_grammar(
    format: ToolFormat,
    tools: &[ToolSpec],
    choice: &ToolChoice,
    options: &GrammarOptions,
    is_special: &dyn Fn(&str) -> bool,
) -> Result<Option<ToolGrammar>> {
    let parallel = options.parallel;
    let chosen: Vec<&ToolSpec> = match choice {
        ToolChoice::None => return Ok(None),
        ToolChoice::Named(name) => {
            let tool = tools.iter().find(|t| &t.name == name).ok_or_else(|| {
                ModelError::InvalidOption(format!(
                    "tool_choice names `{name}`, which is not offered"
                ))
            })?;
            vec![tool]
        }
        ToolChoice::Auto | ToolChoice::Required => tools.iter().collect(),
    };
    if chosen.is_empty() {
        return Ok(None);
    }
    let lazy = *choice == ToolChoice::Auto;
    if lazy && format.trigger().is_none() {
        return Ok(None);
    }
    let mark = |m: &str| {
        if is_special(m) {
            m.to_string()
        } else {
            literal(m)
        }
    };
    let mut out = String::new();
    let mut alternatives = Vec::new();
    for (i, tool) in chosen.iter().enumerate() {
        let prefix = format!("t{i}-");
        let mut params = tool.parameters.clone();
        if let Some(max) = options.max_string {
            cap_sizes(&mut params, max);
        }
        let schema = serde_json::to_string(&params).map_err(|e| grammar_err(tool, e))?;
        let args =
            llama_cpp_2::json_schema_to_grammar(&schema).map_err(|e| grammar_err(tool, e))?;
        out.push_str(&python_spacing(&rename_rules(&args, &prefix), &prefix));
        out.push('\n');
        let args_rule = format!("{prefix}root");
        let call = match format {
            // K2 numbers calls across the conversation; four digits is plenty and keeps a
            // wandering model from writing an endless id.
            ToolFormat::K2 => format!(
                "{} [0-9]{{1,4}} {} {args_rule}",
                literal(&format!("functions.{}:", tool.name)),
                mark(k2::ARG_BEGIN)
            ),
            ToolFormat::Llama3 => format!(
                "{} {args_rule} \"}}\"",
                literal(&format!(
                    "{{\"name\": {}, \"parameters\": ",
                    json_str(&tool.name)
                ))
            ),
            ToolFormat::Hermes | ToolFormat::Mistral | ToolFormat::Json => format!(
                "{} {args_rule} \"}}\"",
                literal(&format!(
                    "{{\"name\": {}, \"arguments\": ",
                    json_str(&tool.name)
                ))
            ),
        };
        out.push_str(&format!("{prefix}call ::= {call}\n"));
        alternatives.push(format!("{prefix}call"));
    }
    out.push_str(&format!("call ::= {}\n", alternatives.join(" | ")));
    // `more` repeats a call after a separator when parallel calls are allowed.
    let more = |sep: &str, call: &str| {
        if parallel {
            format!("({sep} {call})*")
        } else {
            String::new()
        }
    };
    let root = match format {
        ToolFormat::K2 => {
            let call = format!("{} call {}", mark(k2::CALL_BEGIN), mark(k2::CALL_END));
            format!(
                "{} {call} {} {}",
                mark(k2::SECTION_BEGIN),
                more("", &call),
                mark(k2::SECTION_END)
            )
        }
        ToolFormat::Hermes => {
            let call = format!(
                "{} \"\\n\" call \"\\n\" {}",
                mark(hermes::OPEN),
                mark(hermes::CLOSE)
            );
            format!("{call} {}", more("\"\\n\"", &call))
        }
        ToolFormat::Llama3 => format!("{} call {}", mark(json::PYTHON_TAG), more("\"; \"", "call")),
        ToolFormat::Mistral => format!(
            "{} \"[\" call {} \"]\"",
            mark(json::MISTRAL_CALLS),
            more("\", \"", "call")
        ),
        ToolFormat::Json => format!("\"[\" call {} \"]\"", more("\", \"", "call")),
    };
    out.push_str(&format!("root ::= {root}\n"));
    Ok(Some(ToolGrammar {
        gbnf: out,
        trigger: if lazy {
            format.trigger().map(str::to_string)
        } else {
            None
        },
    }))
}

/// Adds `maxLength` to every free-form string schema inside `schema`.
/// Fixes the converter's free whitespace to Python's `json.dumps` spacing (`{"a": 1, "b": 2}`):
/// what chat templates render and models learnt to write. Left free, models write indented
/// JSON that renders back differently, and a call's tokens drop out of the KV cache at the
/// next step. Should the converter's rule shapes change, what is left is compact JSON.
fn python_spacing(gbnf: &str, prefix: &str) -> String {
    let space = format!("{prefix}space");
    gbnf.replace(&format!("{space} \":\" {space}"), "\": \"")
        .replace(&format!("\",\" {space}"), "\", \"")
        .lines()
        .map(|line| match line.starts_with(&format!("{space} ::=")) {
            true => format!("{space} ::= \"\""),
            false => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The array length cap that comes with [`GrammarOptions::max_string`].
pub const MAX_ITEMS_WHEN_CAPPED: usize = 16;

fn cap_sizes(schema: &mut serde_json::Value, max: usize) {
    use serde_json::Value;
    let Value::Object(obj) = schema else {
        if let Value::Array(items) = schema {
            items.iter_mut().for_each(|s| cap_sizes(s, max));
        }
        return;
    };
    let is_string = match obj.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    let constrained = ["maxLength", "enum", "const", "pattern", "format"]
        .iter()
        .any(|k| obj.contains_key(*k));
    if is_string && !constrained {
        obj.insert("maxLength".into(), max.into());
    }
    let is_array = match obj.get("type") {
        Some(Value::String(t)) => t == "array",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "array"),
        _ => false,
    };
    let at_least = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
    if is_array && !obj.contains_key("maxItems") && at_least <= MAX_ITEMS_WHEN_CAPPED {
        obj.insert("maxItems".into(), MAX_ITEMS_WHEN_CAPPED.into());
    }
    for key in ["properties", "$defs", "definitions", "patternProperties"] {
        if let Some(Value::Object(children)) = obj.get_mut(key) {
            children.values_mut().for_each(|s| cap_sizes(s, max));
        }
    }
    for key in [
        "items",
        "additionalProperties",
        "anyOf",
        "oneOf",
        "allOf",
        "prefixItems",
        "not",
    ] {
        if let Some(child) = obj.get_mut(key) {
            cap_sizes(child, max);
        }
    }
}

fn grammar_err(tool: &ToolSpec, e: impl std::fmt::Display) -> ModelError {
    ModelError::InvalidOption(format!(
        "cannot build a grammar for the arguments of `{}`: {e}",
        tool.name
    ))
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A GBNF string literal for `s`.
fn literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prefixes every rule name in a GBNF grammar (definitions and references), leaving string
/// literals, character classes, token references and comments alone, so that the grammars of
/// several tools can live in one file.
pub(crate) fn rename_rules(gbnf: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(gbnf.len() + 64);
    let mut chars = gbnf.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '[' | '<' => {
                let close = match c {
                    '"' => '"',
                    '[' => ']',
                    _ => '>',
                };
                out.push(c);
                while let Some(d) = chars.next() {
                    out.push(d);
                    if d == '\\' && close != '>' {
                        if let Some(e) = chars.next() {
                            out.push(e);
                        }
                    } else if d == close {
                        break;
                    }
                }
            }
            '#' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                out.push_str(prefix);
                out.push(c);
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_alphanumeric() || d == '-' || d == '_' {
                        out.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_rules_but_not_literals_or_classes() {
        let g = "root ::= \"{\" space kv \"root\" [a-z\\]] <|x|>\nspace ::= \" \"? # space here\nkv ::= [0-9]{1,2}\n";
        assert_eq!(
            rename_rules(g, "p-"),
            "p-root ::= \"{\" p-space p-kv \"root\" [a-z\\]] <|x|>\np-space ::= \" \"? # space here\np-kv ::= [0-9]{1,2}\n"
        );
    }

    #[test]
    fn named_choice_must_be_offered() {
        let err = tool_grammar(
            ToolFormat::Hermes,
            &[],
            &ToolChoice::Named("x".into()),
            &Default::default(),
            &|_| false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not offered"));
        assert_eq!(
            tool_grammar(
                ToolFormat::Hermes,
                &[],
                &ToolChoice::Required,
                &Default::default(),
                &|_| false
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn caps_only_free_form_strings_and_lists() {
        let mut schema = serde_json::json!({"type": "object", "properties": {
            "a": {"type": "string"},
            "b": {"type": "string", "enum": ["x"]},
            "c": {"type": "array", "items": {"type": ["string", "null"]}},
            "d": {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "string", "format": "date"}]}
        }});
        cap_sizes(&mut schema, 10);
        let p = &schema["properties"];
        assert_eq!(p["a"]["maxLength"], 10);
        assert!(p["b"].get("maxLength").is_none());
        assert_eq!(p["c"]["items"]["maxLength"], 10);
        assert_eq!(p["d"]["anyOf"][0]["maxLength"], 3);
        assert!(p["d"]["anyOf"][1].get("maxLength").is_none());
        assert_eq!(p["c"]["maxItems"], MAX_ITEMS_WHEN_CAPPED);
        let mut bounded = serde_json::json!({"type": "array", "maxItems": 3, "items": {}});
        cap_sizes(&mut bounded, 10);
        assert_eq!(bounded["maxItems"], 3);
        let mut long = serde_json::json!({"type": "array", "minItems": 20, "items": {}});
        cap_sizes(&mut long, 10);
        assert!(
            long.get("maxItems").is_none(),
            "a cap below minItems would be unsatisfiable"
        );
    }

    #[test]
    fn arguments_are_spaced_as_python_spaces_json() {
        let tools = vec![ToolSpec {
            name: "f".into(),
            description: String::new(),
            parameters: serde_json::json!({"type": "object", "properties": {
                "a": {"type": "array", "items": {"type": "integer"}},
                "b": {"type": "object", "properties": {"c": {"type": "boolean"}}}
            }, "required": ["a", "b"]}),
        }];
        let g = tool_grammar(
            ToolFormat::Hermes,
            &tools,
            &ToolChoice::Required,
            &GrammarOptions::default(),
            &|_| false,
        )
        .unwrap()
        .unwrap();
        assert!(g.gbnf.contains("t0-space ::= \"\"\n"), "{}", g.gbnf);
        assert!(g.gbnf.contains("\"\\\"a\\\"\" \": \""), "{}", g.gbnf);
        assert!(g.gbnf.contains("\", \""), "{}", g.gbnf);
        assert!(!g.gbnf.contains("\"\\n\"{1,2}"), "{}", g.gbnf);
    }

    #[test]
    fn special_markers_become_token_references() {
        let tools = vec![ToolSpec {
            name: "f".into(),
            description: String::new(),
            parameters: serde_json::json!({"type": "object"}),
        }];
        let g = tool_grammar(
            ToolFormat::K2,
            &tools,
            &ToolChoice::Required,
            &Default::default(),
            &|_| true,
        )
        .unwrap()
        .unwrap();
        assert!(g.gbnf.contains(
            "root ::= <|tool_calls_section_begin|> <|tool_call_begin|> call <|tool_call_end|> ( <|tool_call_begin|> call <|tool_call_end|>)* <|tool_calls_section_end|>"
        ), "{}", g.gbnf);
        assert_eq!(g.trigger, None);
    }
}
