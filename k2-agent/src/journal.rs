//! The crash-safety journal: one JSON object per line, appended, flushed and synced to disk
//! after every entry, so a run can be [resumed](crate::Agent::resume) after the process died.
//!
//! A tool's result is written the moment the tool returns. A crash between a tool finishing
//! and its result reaching the disk means that call runs again on resume; every other call
//! runs exactly once.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k2_model::{Message, Usage};
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};
use crate::event::{StopReason, ToolRecord};

/// Journal format version, first entry of every journal.
const VERSION: u32 = 1;

/// One line of the journal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// The run began with these messages (system prompt and task).
    Start {
        version: u32,
        model: String,
        messages: Vec<Message>,
    },
    /// A message the agent added on its own (a malformed-call notice, the closing request).
    Note {
        message: Message,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        closing: Option<StopReason>,
    },
    /// A model turn.
    Assistant {
        step: usize,
        message: Message,
        usage: Usage,
        model_time: Duration,
        /// Set on the closing turn after a budget: its content is the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        closing: Option<StopReason>,
        /// Tool-call markup that could not be parsed, as the model will be told.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        malformed: Option<String>,
    },
    /// The result of call `index` of the step's assistant message.
    ToolResult { index: usize, record: ToolRecord },
}

/// An open journal, shared by the calls of a step that finish concurrently.
#[derive(Clone)]
pub(crate) struct Journal {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl Journal {
    fn error(path: &Path, reason: impl std::fmt::Display) -> AgentError {
        AgentError::Journal {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }

    /// Creates a new journal; an existing file is refused rather than mixed into.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Self::error(path, format!("cannot create: {e}")))?;
        Ok(Self::wrap(path, file))
    }

    fn wrap(path: &Path, file: File) -> Self {
        Journal {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
        }
    }

    /// Reads a journal and reopens it for appending. A last line cut short by a crash is
    /// dropped (and cut from the file); damage anywhere else is an error.
    pub(crate) fn open(path: &Path) -> Result<(Self, Vec<Entry>)> {
        let bytes =
            std::fs::read(path).map_err(|e| Self::error(path, format!("cannot read: {e}")))?;
        let mut entries = Vec::new();
        let mut good = 0usize;
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            match (serde_json::from_slice::<Entry>(line), complete) {
                (Ok(entry), true) => {
                    entries.push(entry);
                    good += line.len() + 1;
                    rest = &rest[line.len() + 1..];
                }
                // An unterminated last line is a write the crash interrupted.
                (_, false) => break,
                (Err(e), true) => {
                    return Err(Self::error(
                        path,
                        format!("entry {} is damaged: {e}", entries.len() + 1),
                    ))
                }
            }
        }
        match entries.first() {
            Some(Entry::Start { version, .. }) if *version == VERSION => {}
            Some(Entry::Start { version, .. }) => {
                return Err(Self::error(path, format!("unsupported version {version}")))
            }
            _ => return Err(Self::error(path, "does not begin with a start entry")),
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Self::error(path, format!("cannot reopen: {e}")))?;
        file.set_len(good as u64)
            .map_err(|e| Self::error(path, format!("cannot cut the torn last line: {e}")))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Self::error(path, format!("cannot reopen: {e}")))?;
        Ok((Self::wrap(path, file), entries))
    }

    pub(crate) fn start(model: String, messages: Vec<Message>) -> Entry {
        Entry::Start {
            version: VERSION,
            model,
            messages,
        }
    }

    /// Appends `entry` and waits until it is on disk.
    pub(crate) async fn write(&self, entry: &Entry) -> Result<()> {
        let mut line = serde_json::to_vec(entry).map_err(|e| Self::error(&self.path, e))?;
        line.push(b'\n');
        let file = self.file.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file
                .lock()
                .map_err(|_| Self::error(&path, "lock poisoned"))?;
            file.write_all(&line)
                .and_then(|()| file.flush())
                .and_then(|()| file.sync_data())
                .map_err(|e| Self::error(&path, format!("cannot write: {e}")))
        })
        .await
        .map_err(|e| Self::error(&self.path, e))?
    }
}
