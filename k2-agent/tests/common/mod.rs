//! Tools for the loop tests: each records its calls so a test can count what really ran.

#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use k2_tools::{Registry, Tool, ToolContext, ToolError, ToolOutput};
use serde_json::{json, Value};

type Body = Arc<
    dyn Fn(
            Value,
            ToolContext,
        ) -> Pin<Box<dyn Future<Output = Result<ToolOutput, ToolError>> + Send>>
        + Send
        + Sync,
>;

/// A tool made of a closure, recording the arguments of every call that ran.
#[derive(Clone)]
pub struct Probe {
    name: String,
    schema: Value,
    body: Body,
    pub calls: Arc<Mutex<Vec<Value>>>,
}

impl Probe {
    pub fn new<F, Fut>(name: &str, schema: Value, body: F) -> Self
    where
        F: Fn(Value, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ToolOutput, ToolError>> + Send + 'static,
    {
        Probe {
            name: name.into(),
            schema,
            body: Arc::new(move |v, c| Box::pin(body(v, c))),
            calls: Arc::default(),
        }
    }

    pub fn ran(&self) -> Vec<Value> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Tool for Probe {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "a test tool"
    }
    fn parameters(&self) -> Value {
        self.schema.clone()
    }
    async fn call(&self, arguments: Value, ctx: &ToolContext) -> Result<ToolOutput, ToolError> {
        self.calls.lock().unwrap().push(arguments.clone());
        (self.body)(arguments, ctx.clone()).await
    }
}

pub fn text_schema() -> Value {
    json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]})
}

/// `echo {text}` returns its text.
pub fn echo() -> Probe {
    Probe::new("echo", text_schema(), |v, _| async move {
        Ok(ToolOutput::text(v["text"].as_str().unwrap_or_default()))
    })
}

/// `fail {text}` always fails.
pub fn fail() -> Probe {
    Probe::new("fail", text_schema(), |_, _| async move {
        Err(ToolError::failed("fail", "the disk is on fire"))
    })
}

/// A registry of the given probes.
pub fn registry(probes: &[&Probe]) -> Registry {
    let mut r = Registry::new();
    for p in probes {
        r.register((*p).clone()).unwrap();
    }
    r
}

/// One Hermes call.
pub fn call(name: &str, args: Value) -> String {
    format!(
        "<tool_call>{}</tool_call>",
        json!({"name": name, "arguments": args})
    )
}
