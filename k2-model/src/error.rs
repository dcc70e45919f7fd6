//! The one error type of `k2-model`.

use std::path::PathBuf;

/// Everything that can go wrong while resolving, loading, rendering for or running a model.
///
/// Variants carry the context a user needs to act on them (which file, which reference,
/// how many tokens against which limit) rather than a bare message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The model file does not exist.
    #[error("model file not found: {}", path.display())]
    NotFound {
        /// The path that was looked up.
        path: PathBuf,
    },
    /// The file exists but is not a GGUF model, or is damaged.
    #[error("{} is not a valid GGUF model: {reason}", path.display())]
    InvalidGguf {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// llama.cpp refused to load a file that looked like GGUF.
    #[error("llama.cpp could not load {}: {reason}", path.display())]
    Load {
        /// The file that failed to load.
        path: PathBuf,
        /// llama.cpp's reason, as far as it tells.
        reason: String,
    },
    /// A model reference (`hf:…`, `pypi:…`, a path) could not be parsed or resolved.
    #[error("cannot resolve model `{reference}`: {reason}")]
    Resolve {
        /// The reference as the user gave it.
        reference: String,
        /// Why it failed.
        reason: String,
    },
    /// A download failed or produced a file that does not match its published digest.
    #[error("download of {url} failed: {reason}")]
    Download {
        /// What was being downloaded.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The chat template could not be parsed or rendered.
    #[error("chat template error: {0}")]
    Template(String),
    /// The chat template itself called `raise_exception` (the template rejected the input).
    #[error("chat template rejected the conversation: {0}")]
    TemplateRaised(String),
    /// The model carries no chat template and none was supplied.
    #[error("the model has no embedded chat template; pass one explicitly")]
    NoTemplate,
    /// A server answered with an error status (429 and 5xx only after the retries).
    #[error("{url}: HTTP {status}: {message}{}", http_hint(*status))]
    Http {
        /// The endpoint.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's own message.
        message: String,
    },
    /// A server could not be reached (after the retries).
    #[error("cannot reach {url}: {reason}")]
    Connect {
        /// The endpoint.
        url: String,
        /// What the connection attempt said.
        reason: String,
    },
    /// A server's reply broke off or made no sense: a cut connection, malformed SSE, a
    /// stream idle for too long.
    #[error("{url}: the reply failed: {reason}")]
    Reply {
        /// The endpoint.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The prompt does not fit in the context window.
    #[error("prompt is {tokens} tokens but the context holds {n_ctx} (at least one token must stay free for the answer)")]
    PromptTooLong {
        /// Tokens in the prompt.
        tokens: usize,
        /// Context size of the session.
        n_ctx: usize,
    },
    /// A sampling or engine option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// llama.cpp failed while evaluating or sampling.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The engine thread is gone (it panicked or was shut down).
    #[error("the engine thread has stopped")]
    EngineStopped,
    /// An I/O error with the path it concerns.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}

/// An error followed by its causes (`a: b: c`): wrappers such as reqwest's or minijinja's
/// put the useful part (DNS, TLS, the template line) in the source chain.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Shorthand for results in this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What to check for an HTTP error status, when there is something to say.
fn http_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (check the API key: K2_API_KEY or OPENAI_API_KEY)",
        404 => " (check the base URL and the model name)",
        413 => " (the request is too large: shorten the conversation)",
        429 => " (rate limited; retries exhausted)",
        _ => "",
    }
}
