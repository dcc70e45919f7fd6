//! # k2-agent
//!
//! The agent loop: give a model (anything implementing [`k2_model::ChatModel`]) a task and a
//! [`k2_tools::Registry`]; each step it renders the conversation with the tools declared,
//! generates (grammar-constrained on the embedded engine), parses the calls, validates them
//! against their schemas, runs them (concurrently when there are several) and feeds the
//! results back, until the model answers or a [`Budget`] is spent.
//!
//! Model mistakes never crash a run: malformed call markup, unknown tools, invalid arguments,
//! tool failures and timeouts go back to the model as messages it can act on. Runs stream
//! typed [`AgentEvent`]s, can be cancelled, gated by an [`Approver`] and journalled to disk
//! so a crashed process can [`resume`](Agent::resume) without running finished tools again.
//!
//! ```
//! use k2_agent::{testing::ScriptedModel, Agent, StopReason};
//! use k2_model::ToolFormat;
//! use k2_tools::builtin::Calculator;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // A scripted stand-in for a model: it "writes" these replies, one per step.
//! let model = ScriptedModel::new(ToolFormat::Hermes, [
//!     r#"<tool_call>{"name": "calculator", "arguments": {"expression": "6 * 7"}}</tool_call>"#,
//!     "The answer is 42.",
//! ]);
//! let agent = Agent::builder(model).tool(Calculator).build()?;
//! let outcome = agent.run("What is six times seven?").await?;
//! assert_eq!(outcome.answer, "The answer is 42.");
//! assert_eq!(outcome.stop, StopReason::Answered);
//! assert_eq!(outcome.tools[0].output, "42");
//! # Ok::<(), k2_agent::AgentError>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod agent;
mod approval;
mod calls;
mod error;
mod event;
mod journal;
mod run;
pub mod testing;

pub use agent::{Agent, AgentBuilder, Budget, DEFAULT_SYSTEM_PROMPT};
pub use approval::{Approver, Decision};
pub use error::{AgentError, Result};
pub use event::{AgentEvent, Outcome, RunUsage, StopReason, ToolRecord};
pub use run::Run;
