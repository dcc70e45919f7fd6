//! The one error type of `k2-agent`.

use std::path::PathBuf;

use k2_model::ModelError;

/// What ends a run early. Model mistakes (a malformed call, invalid arguments, an unknown
/// tool) and tool failures are not errors: the model reads them and tries again. What is left
/// is configuration, the model backend itself failing, cancellation and the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent was built with settings that cannot work.
    #[error("agent configuration: {0}")]
    Config(String),
    /// The model backend failed (not the model's output: the engine or the server).
    #[error("step {step}: the model failed: {source}")]
    Model {
        /// The step (0-based) that was generating.
        step: usize,
        /// What the backend reported.
        #[source]
        source: ModelError,
    },
    /// The run was cancelled from outside.
    #[error("cancelled during step {step}")]
    Cancelled {
        /// The step (0-based) in progress.
        step: usize,
    },
    /// The journal could not be written or read.
    #[error("journal {}: {reason}", path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// `Result` with [`AgentError`].
pub type Result<T, E = AgentError> = std::result::Result<T, E>;
