//! What a run reports: live events while it runs, and the [`Outcome`] at the end.

use std::time::Duration;

use k2_model::{Message, ToolCall, Usage};
use serde::{Deserialize, Serialize};

/// Something that happened during a run, in order. Serialises to one JSON object per event
/// (`{"type": "tool_finished", ...}`) for logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AgentEvent {
    /// A step (one model turn and the calls it made) begins.
    StepStarted {
        /// The step, from 0.
        step: usize,
    },
    /// A piece of the model's text (outside tool-call markup).
    Delta {
        /// The step.
        step: usize,
        /// The text.
        text: String,
    },
    /// The model made a call (parsed, not yet validated or run).
    ToolCall {
        /// The step.
        step: usize,
        /// The call.
        call: ToolCall,
    },
    /// The model's tool-call markup was malformed; the model is told and tries again.
    Malformed {
        /// The step.
        step: usize,
        /// What was wrong, as the model will read it.
        error: String,
    },
    /// A call passed approval and validation and is running.
    ToolStarted {
        /// The step.
        step: usize,
        /// The call, with the arguments it runs with (after any edit by the approval hook).
        call: ToolCall,
    },
    /// A call ended (or was refused); `result` is what the model will read.
    ToolFinished {
        /// The step.
        step: usize,
        /// Its record.
        result: ToolRecord,
    },
    /// A step ended.
    StepFinished {
        /// The step.
        step: usize,
        /// The model's accounting for this step.
        usage: Usage,
    },
    /// The run ended with an answer (possibly cut short by a budget).
    Finished {
        /// The outcome.
        outcome: Box<Outcome>,
    },
    /// The run ended with an error (also returned by [`Run::finish`](crate::Run::finish)).
    Failed {
        /// The error, as text.
        error: String,
    },
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model answered without calling a tool.
    Answered,
    /// The step budget ran out.
    MaxSteps,
    /// The generated-token budget ran out.
    MaxTokens,
    /// The wall-time budget ran out.
    MaxTime,
    /// The model kept repeating a call that failed the same way.
    RepeatedFailure,
}

/// One tool call and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolRecord {
    /// The step that made the call.
    pub step: usize,
    /// The call as run (arguments after any approval edit).
    pub call: ToolCall,
    /// The text the model reads.
    pub output: String,
    /// Whether it is an error (invalid arguments, unknown tool, failure, timeout, denial).
    pub is_error: bool,
    /// Whether the tool actually ran (false for refused calls).
    pub ran: bool,
    /// How long it took.
    pub duration: Duration,
}

/// Accounting for a whole run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RunUsage {
    /// The model's figures, summed over steps: `prompt_tokens_evaluated` against
    /// `prompt_tokens` shows how much the KV cache saved.
    pub model: Usage,
    /// Model turns taken (the closing turn after a budget included).
    pub steps: usize,
    /// Tool calls made (refused ones included).
    pub tool_calls: usize,
    /// Time spent waiting for the model.
    pub model_time: Duration,
    /// Time spent running tools (wall time of each step's calls, which run in parallel).
    pub tool_time: Duration,
}

/// How a run ended: the answer, the whole transcript and the accounting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The final answer.
    pub answer: String,
    /// Why the run stopped; anything but [`StopReason::Answered`] means it was cut short and
    /// the answer is the model's best effort from what it had.
    pub stop: StopReason,
    /// The conversation, system prompt and task included.
    pub messages: Vec<Message>,
    /// Every tool call, in order.
    pub tools: Vec<ToolRecord>,
    /// Tokens and time.
    pub usage: RunUsage,
}

impl Outcome {
    /// Whether a budget (or repeated failures) stopped the run before the model was done.
    pub fn cut_short(&self) -> bool {
        self.stop != StopReason::Answered
    }
}
