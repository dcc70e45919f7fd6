//! A run: the loop that drives one task to an answer, and the handle its caller holds.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use futures::{Stream, StreamExt};
use k2_model::{
    CancelToken, ChatEvent, ChatRequest, Completion, FinishReason, GenerateOptions, Message,
    ModelError, ToolCall, ToolChoice, Usage,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::agent::Settings;
use crate::calls::{failures, run_calls};
use crate::error::{AgentError, Result};
use crate::event::{AgentEvent, Outcome, RunUsage, StopReason, ToolRecord};
use crate::journal::{Entry, Journal};

/// How a run begins.
pub(crate) enum Start {
    /// A new task, journalled to the path when given.
    Task(String, Option<PathBuf>),
    /// The run recorded in this journal.
    Resume(PathBuf),
}

/// What the loop and the tool calls share.
pub(crate) struct Ctx {
    pub(crate) settings: Arc<Settings>,
    events: mpsc::UnboundedSender<AgentEvent>,
    cancel: CancelToken,
    journal: Option<Journal>,
}

impl Ctx {
    pub(crate) fn emit(&self, event: AgentEvent) {
        // Nobody listening is fine: `finish` drops the receiver and still gets the outcome.
        let _ = self.events.send(event);
    }

    /// Resolves once the run is cancelled. Polls the flag: the engine's generation loop reads
    /// the same flag every token, and 5 ms is well within "promptly".
    pub(crate) async fn cancelled(&self) {
        while !self.cancel.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub(crate) fn cancelled_error(&self, step: usize) -> AgentError {
        AgentError::Cancelled { step }
    }

    pub(crate) async fn journal(&self, entry: &Entry) -> Result<()> {
        match &self.journal {
            Some(j) => j.write(entry).await,
            None => Ok(()),
        }
    }
}

/// A model turn whose calls have not all been answered yet.
struct Pending {
    step: usize,
    calls: Vec<ToolCall>,
    done: Vec<Option<ToolRecord>>,
    notice: Option<String>,
    usage: Usage,
}

/// Everything a run has so far; rebuilt from the journal on resume.
#[derive(Default)]
struct State {
    messages: Vec<Message>,
    records: Vec<ToolRecord>,
    usage: RunUsage,
    /// Model turns taken.
    step: usize,
    /// Set once a budget is spent: the next turn is the closing one, without tools.
    closing: Option<StopReason>,
    pending: Option<Pending>,
    answer: Option<(String, StopReason)>,
    /// Consecutive turns with malformed call markup.
    malformed_streak: usize,
    repeated_failure: bool,
}

impl State {
    fn assistant(&mut self, step: usize, message: Message, usage: Usage, time: Duration) {
        self.usage.model += usage;
        self.usage.model_time += time;
        self.usage.steps += 1;
        self.step = step + 1;
        self.messages.push(message);
    }

    /// Records a model turn and what follows from it: the answer (returns true), or calls
    /// to run and a notice to give.
    fn turn(
        &mut self,
        step: usize,
        message: Message,
        usage: Usage,
        time: Duration,
        closing: Option<StopReason>,
        malformed: Option<String>,
    ) -> bool {
        let calls = message.tool_calls.clone();
        let content = message.content.clone();
        self.assistant(step, message, usage, time);
        if let Some(reason) = closing {
            self.answer = Some((content, reason));
        } else if calls.is_empty() && malformed.is_none() {
            self.answer = Some((content, StopReason::Answered));
        } else {
            self.pending = Some(Pending {
                step,
                done: vec![None; calls.len()],
                calls,
                notice: malformed,
                usage,
            });
        }
        self.answer.is_some()
    }

    /// Appends a finished step's results (in the model's order) and the notice, if any.
    fn apply(&mut self, pending: Pending, records: Vec<ToolRecord>, repeat_limit: usize) {
        self.usage.tool_calls += records.len();
        self.usage.tool_time += records.iter().map(|r| r.duration).max().unwrap_or_default();
        for r in &records {
            self.messages
                .push(Message::tool_result(&r.call, r.output.clone()));
        }
        self.records.extend(records);
        let this_step = self.records.iter().filter(|r| r.step == pending.step);
        self.repeated_failure |= this_step
            .clone()
            .any(|r| r.is_error && failures(&r.call, &self.records) >= repeat_limit);
        match pending.notice {
            Some(notice) => {
                self.malformed_streak += 1;
                self.messages.push(Message::user(notice));
            }
            None => self.malformed_streak = 0,
        }
        self.repeated_failure |= self.malformed_streak >= repeat_limit;
    }

    /// Replays a journal.
    fn replay(entries: Vec<Entry>, repeat_limit: usize) -> State {
        let mut state = State::default();
        for entry in entries {
            if let Some(p) = state
                .pending
                .take_if(|p| p.done.iter().all(Option::is_some))
            {
                let records = p.done.iter().flatten().cloned().collect();
                state.apply(p, records, repeat_limit);
            }
            match entry {
                Entry::Start { messages, .. } => state.messages = messages,
                Entry::Note { message, closing } => {
                    state.messages.push(message);
                    state.closing = state.closing.or(closing);
                }
                Entry::Assistant {
                    step,
                    message,
                    usage,
                    model_time,
                    closing,
                    malformed,
                } => {
                    state.turn(step, message, usage, model_time, closing, malformed);
                }
                Entry::ToolResult { index, record } => {
                    if let Some(slot) = state.pending.as_mut().and_then(|p| p.done.get_mut(index)) {
                        *slot = Some(record);
                    }
                }
            }
        }
        state
    }

    fn outcome(self, answer: String, stop: StopReason) -> Outcome {
        Outcome {
            answer,
            stop,
            messages: self.messages,
            tools: self.records,
            usage: self.usage,
        }
    }
}

/// A run in progress: a [`Stream`] of [`AgentEvent`]s (ending with `Finished` or `Failed`),
/// a way to cancel it, and its result through [`finish`](Self::finish).
///
/// Dropping a `Run` cancels it.
pub struct Run {
    events: mpsc::UnboundedReceiver<AgentEvent>,
    cancel: CancelToken,
    task: Option<JoinHandle<Result<Outcome>>>,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl Run {
    pub(crate) fn spawn(settings: Arc<Settings>, start: Start) -> Run {
        let (tx, events) = mpsc::unbounded_channel();
        let cancel = CancelToken::new();
        let mut ctx = Ctx {
            settings,
            events: tx,
            cancel: cancel.clone(),
            journal: None,
        };
        let task = tokio::spawn(async move {
            let result = match begin(&mut ctx, start).await {
                Ok(state) => drive(&ctx, state).await,
                Err(e) => Err(e),
            };
            ctx.emit(match &result {
                Ok(outcome) => AgentEvent::Finished {
                    outcome: Box::new(outcome.clone()),
                },
                Err(e) => AgentEvent::Failed {
                    error: e.to_string(),
                },
            });
            result
        });
        Run {
            events,
            cancel,
            task: Some(task),
        }
    }

    /// A token that cancels this run from anywhere (another task, a signal handler).
    pub fn cancel_token(&self) -> CancelToken {
        self.cancel.clone()
    }

    /// Cancels the run: generation stops at the next token, running tools are abandoned
    /// (and told through their [`k2_tools::Cancel`]), and the run ends with
    /// [`AgentError::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits for the run to end (events not yet read are dropped) and returns its outcome.
    pub async fn finish(mut self) -> Result<Outcome> {
        self.events.close();
        let Some(task) = self.task.take() else {
            return Err(AgentError::Config("the run was already finished".into()));
        };
        task.await
            .map_err(|e| AgentError::Config(format!("the run's task ended abnormally: {e}")))?
    }
}

impl Stream for Run {
    type Item = AgentEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AgentEvent>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.cancel.cancel();
        }
    }
}

/// Opens the journal (new or replayed) and returns the state to go on from.
async fn begin(ctx: &mut Ctx, start: Start) -> Result<State> {
    match start {
        Start::Task(task, journal) => {
            let mut messages: Vec<Message> = ctx
                .settings
                .system
                .iter()
                .map(|s| Message::system(s.clone()))
                .collect();
            messages.push(Message::user(task));
            if let Some(path) = journal {
                let journal = tokio::task::spawn_blocking(move || Journal::create(&path))
                    .await
                    .map_err(|e| AgentError::Config(e.to_string()))??;
                ctx.journal = Some(journal);
                ctx.journal(&Journal::start(ctx.settings.model.name(), messages.clone()))
                    .await?;
            }
            Ok(State {
                messages,
                ..State::default()
            })
        }
        Start::Resume(path) => {
            let (journal, entries) = tokio::task::spawn_blocking(move || Journal::open(&path))
                .await
                .map_err(|e| AgentError::Config(e.to_string()))??;
            ctx.journal = Some(journal);
            Ok(State::replay(entries, ctx.settings.repeat_limit))
        }
    }
}

/// The loop: one model turn per step, its calls run, until an answer or a budget.
async fn drive(ctx: &Ctx, mut state: State) -> Result<Outcome> {
    let s = &ctx.settings;
    let started = Instant::now();
    let time_left = || {
        s.budget
            .max_time
            .map(|t| t.saturating_sub(started.elapsed()))
    };
    loop {
        if let Some((answer, stop)) = state.answer.take() {
            return Ok(state.outcome(answer, stop));
        }
        if ctx.cancel.is_cancelled() {
            return Err(ctx.cancelled_error(state.step));
        }
        if let Some(p) = state.pending.take() {
            let records = run_calls(
                ctx,
                p.step,
                &p.calls,
                p.done.clone(),
                &state.records,
                time_left(),
            )
            .await?;
            let (step, usage) = (p.step, p.usage);
            state.apply(p, records, s.repeat_limit);
            ctx.emit(AgentEvent::StepFinished { step, usage });
            continue;
        }
        if state.closing.is_none() {
            if let Some(reason) = spent(s, &state, time_left()) {
                if s.budget.answer_tokens == 0 {
                    let last = state
                        .messages
                        .iter()
                        .rev()
                        .find(|m| m.role == k2_model::Role::Assistant && !m.content.is_empty())
                        .map(|m| m.content.clone())
                        .unwrap_or_default();
                    return Ok(state.outcome(last, reason));
                }
                let message = Message::user(closing_note(reason));
                ctx.journal(&Entry::Note {
                    message: message.clone(),
                    closing: Some(reason),
                })
                .await?;
                state.messages.push(message);
                state.closing = Some(reason);
            }
        }
        let step = state.step;
        let closing = state.closing;
        ctx.emit(AgentEvent::StepStarted { step });
        let (choice, max_tokens) = match closing {
            Some(_) => (ToolChoice::None, s.budget.answer_tokens),
            None => {
                let used = state.usage.model.completion_tokens;
                let left = s
                    .budget
                    .max_tokens
                    .map_or(usize::MAX, |m| m.saturating_sub(used));
                (s.choice(step), s.budget.step_tokens.min(left))
            }
        };
        let started_turn = Instant::now();
        // Under `none` (the closing turn included) calls the model writes anyway are not run.
        let tools_on = choice != ToolChoice::None;
        let completion = generate(ctx, &state.messages, choice, max_tokens, step).await?;
        let model_time = started_turn.elapsed();
        let calls = match tools_on {
            true => completion.tool_calls.clone(),
            false => Vec::new(),
        };
        let malformed = match (tools_on, &completion.malformed) {
            (true, Some(e)) => Some(format!(
                "Your tool call could not be read: {e}. Write each call exactly in the format \
                 you were given, or answer without calling a tool."
            )),
            _ => None,
        };
        if let Some(error) = &malformed {
            ctx.emit(AgentEvent::Malformed {
                step,
                error: error.clone(),
            });
        }
        let message = Message::assistant_with_calls(completion.content.clone(), calls.clone());
        ctx.journal(&Entry::Assistant {
            step,
            message: message.clone(),
            usage: completion.usage,
            model_time,
            closing,
            malformed: malformed.clone(),
        })
        .await?;
        if state.turn(
            step,
            message,
            completion.usage,
            model_time,
            closing,
            malformed,
        ) {
            ctx.emit(AgentEvent::StepFinished {
                step,
                usage: completion.usage,
            });
        }
    }
}

/// The budget that is spent, if any.
fn spent(s: &Settings, state: &State, time_left: Option<Duration>) -> Option<StopReason> {
    let b = &s.budget;
    if state.repeated_failure {
        Some(StopReason::RepeatedFailure)
    } else if state.step >= b.max_steps {
        Some(StopReason::MaxSteps)
    } else if b
        .max_tokens
        .is_some_and(|m| state.usage.model.completion_tokens >= m)
    {
        Some(StopReason::MaxTokens)
    } else if time_left.is_some_and(|t| t.is_zero()) {
        Some(StopReason::MaxTime)
    } else {
        None
    }
}

fn closing_note(reason: StopReason) -> String {
    let why = match reason {
        StopReason::MaxSteps => "You have used all the tool steps you have.",
        StopReason::MaxTokens => "You have used the tokens you have.",
        StopReason::MaxTime => "You have used the time you have.",
        StopReason::RepeatedFailure => "The same tool call keeps failing, so tools are now off.",
        StopReason::Answered => "",
    };
    format!("{why} Answer the task now from the information above, without calling any tool.")
}

/// One model turn, its text and calls streamed out as events.
async fn generate(
    ctx: &Ctx,
    messages: &[Message],
    tool_choice: ToolChoice,
    max_tokens: usize,
    step: usize,
) -> Result<Completion> {
    let s = &ctx.settings;
    let tools_off = tool_choice == ToolChoice::None;
    let request = ChatRequest {
        messages: messages.to_vec(),
        tools: s.specs.clone(),
        tool_choice,
        parallel_tool_calls: s.parallel_tool_calls,
        options: GenerateOptions {
            sampling: s.sampling.clone(),
            max_tokens,
            stop: Vec::new(),
            cancel: ctx.cancel.clone(),
            ..GenerateOptions::default()
        },
    };
    let model_error = |source| AgentError::Model { step, source };
    let mut stream = tokio::select! {
        stream = s.model.stream(request) => stream.map_err(model_error)?,
        () = ctx.cancelled() => return Err(ctx.cancelled_error(step)),
    };
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            () = ctx.cancelled() => return Err(ctx.cancelled_error(step)),
        };
        match event {
            None => return Err(model_error(ModelError::EngineStopped)),
            Some(Err(e)) => return Err(model_error(e)),
            Some(Ok(ChatEvent::Delta(text))) => ctx.emit(AgentEvent::Delta { step, text }),
            Some(Ok(ChatEvent::ToolCall(call))) if !tools_off => {
                ctx.emit(AgentEvent::ToolCall { step, call })
            }
            Some(Ok(ChatEvent::Done(done))) if done.finish_reason == FinishReason::Cancelled => {
                return Err(ctx.cancelled_error(step))
            }
            Some(Ok(ChatEvent::Done(done))) => return Ok(done),
            Some(Ok(_)) => {}
        }
    }
}
