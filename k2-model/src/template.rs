//! Rendering a conversation with a model's own Jinja chat template.
//!
//! Templates run the way Hugging Face `transformers` runs them (`trim_blocks`, `lstrip_blocks`,
//! Python string methods, `tojson` with Python's separators, `raise_exception`,
//! `strftime_now`), so the rendered prompt is byte-identical to the reference rendering.

use std::fmt::Write as _;

use minijinja::value::{Kwargs, Value as JValue};
use minijinja::{Environment, ErrorKind};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::chat::{Message, ToolSpec};
use crate::error::{error_chain, ModelError, Result};

const TEMPLATE_NAME: &str = "chat";
/// Marks errors raised by the template itself, so they can be told from engine bugs.
const RAISED: &str = "\u{1}raise_exception\u{1}";

/// The inputs of a chat template, as Hugging Face passes them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TemplateInput {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Tools in the OpenAI form (omitted from the context when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolSpec>,
    /// Whether to open an assistant turn at the end.
    pub add_generation_prompt: bool,
    /// Extra variables some templates read (`enable_thinking`, …).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A compiled chat template together with the special tokens it may refer to.
///
/// ```
/// use k2_model::{ChatTemplate, Message, TemplateInput};
///
/// let t = ChatTemplate::new(
///     "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}",
///     "<s>",
///     "</s>",
/// )?;
/// let out = t.render(&TemplateInput {
///     messages: vec![Message::user("hi")],
///     ..Default::default()
/// })?;
/// assert_eq!(out, "<|user|>hi\n");
/// # Ok::<(), k2_model::ModelError>(())
/// ```
pub struct ChatTemplate {
    source: String,
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are exposed to it under those names.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self> {
        let source = source.into();
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, python_string_continuations(&source))
            .map_err(|e| ModelError::Template(error_chain(&e)))?;
        Ok(ChatTemplate {
            source,
            env,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        })
    }

    /// Reads a template file (plain Jinja text, as in `tokenizer_config.json`'s `chat_template`).
    pub fn from_file(
        path: impl AsRef<std::path::Path>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self> {
        let path = path.as_ref();
        let source = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::new(source, bos_token, eos_token)
    }

    /// Compiles `source` with the BOS/EOS texts of the model described by `info`.
    pub fn for_model(info: &crate::ModelInfo, source: &str) -> Result<Self> {
        let text = |t: &Option<crate::SpecialToken>| {
            t.as_ref().map(|t| t.text.clone()).unwrap_or_default()
        };
        Self::new(source, text(&info.bos), text(&info.eos))
    }

    /// The template embedded in the model, if it has one.
    pub fn embedded(info: &crate::ModelInfo) -> Option<Result<Self>> {
        info.chat_template
            .as_deref()
            .map(|src| Self::for_model(info, src))
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template itself renders tool declarations (it mentions `tools`).
    pub fn supports_tools(&self) -> bool {
        Self::source_supports_tools(&self.source)
    }

    /// [`supports_tools`](Self::supports_tools) for template source text.
    pub fn source_supports_tools(source: &str) -> bool {
        source.contains("tools")
    }

    /// Renders the conversation exactly as the template produces it.
    pub fn render(&self, input: &TemplateInput) -> Result<String> {
        let ctx = serde_json::to_value(input)
            .map_err(|e| ModelError::Template(format!("cannot serialise the input: {e}")))?;
        self.render_value(ctx)
    }

    /// Renders a raw template context (`{"messages": …, "tools": …, "add_generation_prompt": …}`
    /// plus any extra variables), passed to the template untouched apart from `bos_token` and
    /// `eos_token`. This is what `k2 render` uses, so that fields k2 does not model still reach
    /// the template.
    pub fn render_value(&self, mut ctx: Value) -> Result<String> {
        if let Value::Object(map) = &mut ctx {
            map.insert("bos_token".into(), self.bos_token.clone().into());
            map.insert("eos_token".into(), self.eos_token.clone().into());
        }
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| ModelError::Template(error_chain(&e)))?;
        template
            .render(JValue::from_serialize(&ctx))
            .map_err(|e| match raised_message(&e) {
                Some(msg) => ModelError::TemplateRaised(msg),
                None => ModelError::Template(error_chain(&e)),
            })
    }
}

/// Removes backslash-newline pairs inside string literals of Jinja tags: Python (and so
/// Hugging Face's Jinja) treats them as line continuations, minijinja keeps them. Mistral's
/// templates wrap their long default prompts this way. Text outside tags is left alone.
fn python_string_continuations(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut in_tag = false;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match (in_tag, quote) {
            (false, _) => {
                if b == b'{' && matches!(next, Some(b'{') | Some(b'%')) {
                    in_tag = true;
                }
            }
            (true, None) => match b {
                b'"' | b'\'' => quote = Some(b),
                b'}' | b'%' if next == Some(b'}') => in_tag = false,
                _ => {}
            },
            (true, Some(q)) => {
                if b == b'\\' && next == Some(b'\n') {
                    i += 2;
                    continue;
                }
                if b == b'\\' {
                    out.push(b);
                    if let Some(n) = next {
                        out.push(n);
                    }
                    i += 2;
                    continue;
                }
                if b == q {
                    quote = None;
                }
            }
        }
        out.push(b);
        i += 1;
    }
    // Only ASCII bytes were removed, so the result is still UTF-8.
    String::from_utf8(out).unwrap_or_else(|_| source.to_string())
}

fn raised_message(e: &minijinja::Error) -> Option<String> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(mj) = err.downcast_ref::<minijinja::Error>() {
            if let Some(msg) = mj.detail().and_then(|d| d.strip_prefix(RAISED)) {
                return Some(msg.to_string());
            }
        }
        current = err.source();
    }
    None
}

fn raise_exception(message: String) -> Result<JValue, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("{RAISED}{message}"),
    ))
}

fn strftime_now(format: String) -> Result<JValue, minijinja::Error> {
    use chrono::format::{Item, StrftimeItems};
    let items: Vec<Item> = StrftimeItems::new(&format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("invalid strftime format `{format}`"),
        ));
    }
    Ok(JValue::from(
        chrono::Local::now()
            .format_with_items(items.into_iter())
            .to_string(),
    ))
}

/// `tojson` as `transformers` defines it: `json.dumps(x, ensure_ascii=False, indent=…,
/// separators=…, sort_keys=…)`. Templates print tool schemas with it, so its spacing must
/// match Python's exactly (minijinja's built-in is compact and HTML-escapes).
fn tojson(value: JValue, kwargs: Kwargs) -> Result<JValue, minijinja::Error> {
    let indent: Option<JValue> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<JValue> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(usize::try_from(v).unwrap_or(0)),
        }),
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() => {
            let item = v.get_item(&JValue::from(0))?;
            let key = v.get_item(&JValue::from(1))?;
            (item.to_string(), key.to_string())
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let json = serde_json::to_value(&value)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    let style = PyJson {
        indent: indent.as_deref(),
        item_sep: &item_sep,
        key_sep: &key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    style.write(&mut out, &json, 0);
    Ok(JValue::from_safe_string(out))
}

/// `json.dumps(v, ensure_ascii=False)`: the spacing chat templates give JSON, and so the
/// spacing models learnt to write it in.
pub(crate) fn python_json(v: &Value) -> String {
    let mut out = String::new();
    PyJson {
        indent: None,
        item_sep: ", ",
        key_sep: ": ",
        sort_keys: false,
        ensure_ascii: false,
    }
    .write(&mut out, v, 0);
    out
}

/// Python's `json.dumps` output format.
pub(crate) struct PyJson<'a> {
    pub indent: Option<&'a str>,
    pub item_sep: &'a str,
    pub key_sep: &'a str,
    pub sort_keys: bool,
    pub ensure_ascii: bool,
}

impl PyJson<'_> {
    fn newline(&self, out: &mut String, level: usize) {
        if let Some(ind) = self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    }

    pub(crate) fn write(&self, out: &mut String, v: &Value, level: usize) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => match n.as_f64() {
                Some(f) if !n.is_i64() && !n.is_u64() => out.push_str(&py_float(f)),
                _ => out.push_str(&n.to_string()),
            },
            Value::String(s) => self.string(out, s),
            Value::Array(items) if items.is_empty() => out.push_str("[]"),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(out, level + 1);
                    self.write(out, item, level + 1);
                }
                self.newline(out, level);
                out.push(']');
            }
            Value::Object(map) if map.is_empty() => out.push_str("{}"),
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(self.item_sep);
                    }
                    self.newline(out, level + 1);
                    self.string(out, k);
                    out.push_str(self.key_sep);
                    self.write(out, item, level + 1);
                }
                self.newline(out, level);
                out.push('}');
            }
        }
    }

    fn string(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && (c as u32) > 0x7e) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr(float)`: shortest round-trip digits, `1e-05` / `1e+16` exponent style.
fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let s = format!("{f:?}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dumps(v: Value) -> String {
        let mut s = String::new();
        PyJson {
            indent: None,
            item_sep: ", ",
            key_sep: ": ",
            sort_keys: false,
            ensure_ascii: false,
        }
        .write(&mut s, &v, 0);
        s
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        assert_eq!(
            dumps(json!({"a": [1, 2.5, "é\n"], "b": {}, "c": null, "d": 1e-5, "e": 1e16})),
            r#"{"a": [1, 2.5, "é\n"], "b": {}, "c": null, "d": 1e-05, "e": 1e+16}"#
        );
        assert_eq!(py_float(3.0), "3.0");
        assert_eq!(py_float(0.0001), "0.0001");
    }

    #[test]
    fn tojson_filter_with_indent_and_sort_keys() {
        let t = ChatTemplate::new("{{ x | tojson(indent=2, sort_keys=true) }}", "", "").unwrap();
        let mut input = TemplateInput::default();
        input.extra.insert("x".into(), json!({"b": 1, "a": [true]}));
        assert_eq!(
            t.render(&input).unwrap(),
            "{\n  \"a\": [\n    true\n  ],\n  \"b\": 1\n}"
        );
    }

    #[test]
    fn raise_exception_is_a_typed_error() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}",
            "",
            "",
        )
        .unwrap();
        let err = t
            .render(&TemplateInput {
                messages: vec![Message::assistant("x")],
                ..Default::default()
            })
            .unwrap_err();
        match err {
            ModelError::TemplateRaised(m) => assert_eq!(m, "first must be user"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn syntax_error_is_reported_at_compile_time() {
        let err = ChatTemplate::new("{% for m in messages %}", "", "").unwrap_err();
        assert!(matches!(err, ModelError::Template(_)), "{err:?}");
    }

    #[test]
    fn python_methods_and_trim_blocks_behave_like_transformers() {
        let t = ChatTemplate::new(
            "{% for m in messages %}\n  {{ m.content.strip().upper() }}|{{ m.get('name', 'none') }}\n{% endfor %}",
            "",
            "",
        )
        .unwrap();
        let out = t
            .render(&TemplateInput {
                messages: vec![Message::user("  hi  ")],
                ..Default::default()
            })
            .unwrap();
        // lstrip_blocks strips before `{%` only, as in jinja2.
        assert_eq!(out, "  HI|none\n");
    }

    #[test]
    fn backslash_newline_in_tag_strings_is_a_continuation() {
        let src = "{% set x = \"a\\\nb\" %}{{ x }}|c\\\nd";
        assert_eq!(
            python_string_continuations(src),
            "{% set x = \"ab\" %}{{ x }}|c\\\nd"
        );
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert_eq!(t.render(&TemplateInput::default()).unwrap(), "ab|c\\\nd");
    }

    #[test]
    fn strftime_now_formats_the_date() {
        let t = ChatTemplate::new("{{ strftime_now('%Y') }}", "", "").unwrap();
        let year = t.render(&TemplateInput::default()).unwrap();
        assert_eq!(year.len(), 4);
        assert!(year.chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn tool_calls_render_in_hf_shape() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% for c in m.tool_calls %}{{ c.id }} {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        let call = crate::ToolCall {
            id: "functions.add:0".into(),
            name: "add".into(),
            arguments: json!({"a": 1, "b": 2}),
        };
        let out = t
            .render(&TemplateInput {
                messages: vec![Message::assistant_with_calls("", vec![call])],
                ..Default::default()
            })
            .unwrap();
        assert_eq!(out, r#"functions.add:0 add {"a": 1, "b": 2}"#);
    }
}
