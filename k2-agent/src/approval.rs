//! The approval hook: a say before each tool call runs.

use std::future::Future;

use async_trait::async_trait;
use k2_model::ToolCall;
use serde_json::Value;

/// What the approval hook decided about a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Run it as asked.
    Approve,
    /// Do not run it; the model reads the reason.
    Deny(String),
    /// Run it with these arguments instead (validated again before it runs).
    Edit(Value),
}

/// Consulted before each call of a tool that needs approval (see
/// [`AgentBuilder::approval`](crate::AgentBuilder::approval)).
///
/// Any `Fn(ToolCall) -> impl Future<Output = Decision>` is one:
///
/// ```
/// use k2_agent::{Approver, Decision};
///
/// let hook = |call: k2_model::ToolCall| async move {
///     if call.name == "code_sandbox" {
///         Decision::Deny("no code today".into())
///     } else {
///         Decision::Approve
///     }
/// };
/// fn takes(_: impl Approver) {}
/// takes(hook);
/// ```
#[async_trait]
pub trait Approver: Send + Sync {
    /// Decides about `call`. Calls of one step are reviewed one at a time, in the model's
    /// order, before any of them runs.
    async fn review(&self, call: &ToolCall) -> Decision;
}

#[async_trait]
impl<F, Fut> Approver for F
where
    F: Fn(ToolCall) -> Fut + Send + Sync,
    Fut: Future<Output = Decision> + Send,
{
    async fn review(&self, call: &ToolCall) -> Decision {
        self(call.clone()).await
    }
}
