//! One slot: an OS thread that owns a llama.cpp context (its KV cache) and runs generation
//! jobs one at a time, remembering exactly which tokens the cache holds.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use super::forced::{Jump, Probe};
use super::text::TextOut;
use super::SlotGuard;
use crate::chat::{ChatEvent, Completion, FinishReason, GenerateOptions, Sampling, Usage};
use crate::error::{ModelError, Result};
use crate::format::ToolGrammar;

/// A generation request handed to a slot thread.
pub(crate) struct Job {
    pub prompt: String,
    pub options: GenerateOptions,
    pub events: UnboundedSender<Result<ChatEvent>>,
    pub guard: SlotGuard,
}

/// Starts a slot thread; returns once its context exists (or failed to be created), because
/// llama.cpp contexts must not be created concurrently. Also returns the context size
/// llama.cpp actually allocated (it rounds the request up).
pub(crate) fn spawn(
    index: usize,
    model: Arc<LlamaModel>,
    params: LlamaContextParams,
) -> Result<(mpsc::Sender<Job>, u32)> {
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<u32>>(1);
    std::thread::Builder::new()
        .name(format!("k2-engine-{index}"))
        .spawn(move || {
            let backend = match super::backend() {
                Ok(b) => b,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            super::log::clear();
            let ctx = match model.new_context(backend, params) {
                Ok(ctx) => ctx,
                Err(e) => {
                    let detail = super::log::take();
                    let _ = ready_tx.send(Err(ModelError::Inference(format!(
                        "cannot create a context: {e} {detail}"
                    ))));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(ctx.n_ctx()));
            let mut slot = Slot {
                model: &model,
                batch: LlamaBatch::new(ctx.n_batch() as usize, 1),
                ctx,
                cached: Vec::new(),
                text: Vec::new(),
                ends: Vec::new(),
                probe: std::cell::OnceCell::new(),
            };
            for job in job_rx {
                slot.run(job);
            }
        })
        .map_err(|e| ModelError::Inference(format!("cannot start the engine thread: {e}")))?;
    let n_ctx = ready_rx.recv().map_err(|_| ModelError::EngineStopped)??;
    Ok((job_tx, n_ctx))
}

struct Slot<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    /// Exactly the tokens whose keys and values are in the KV cache, in order.
    cached: Vec<LlamaToken>,
    /// The text those tokens spell (their pieces, special tokens written out), and where
    /// each token's piece ends in it.
    text: Vec<u8>,
    ends: Vec<usize>,
    /// What the grammar is asked about to find forced text, built on first use.
    probe: std::cell::OnceCell<Option<Probe>>,
}

impl Slot<'_> {
    fn run(&mut self, job: Job) {
        let Job {
            prompt,
            options,
            events,
            guard,
        } = job;
        let result = self.generate(&prompt, &options, &events);
        if let Ok(done) = &result {
            guard.remember(format!("{prompt}{}", done.text));
        }
        let _ = events.send(result.map(ChatEvent::Done));
        drop(guard);
    }

    fn tokenize(&self, prompt: &str) -> Vec<LlamaToken> {
        let vocab = self.model.vocab();
        // Templates usually write the BOS text themselves; adding another would double it.
        let bos = vocab.token_to_piece(vocab.bos(), true, None);
        let add_bos = vocab.should_add_bos() && !prompt.as_bytes().starts_with(&bos);
        vocab.tokenize(prompt.as_bytes(), add_bos, true)
    }

    /// The tokens to evaluate for `prompt`: its own tokenization, unless the cache spells a
    /// longer part of it as text. Tokenizing a rendered conversation again need not give the
    /// tokens the model sampled for its last turn (`Os`+`lo` where the tokenizer says
    /// `Oslo`); matching on text keeps those tokens and evaluates only what follows them.
    fn plan(&self, prompt: &str) -> Vec<LlamaToken> {
        let full = self.tokenize(prompt);
        let by_tokens = common_prefix(&self.cached, &full);
        let bytes = prompt.as_bytes();
        let same = common_prefix(&self.text, bytes);
        let mut k = self.ends.partition_point(|&end| end <= same);
        while k > 0 && !prompt.is_char_boundary(self.ends[k - 1]) {
            k -= 1;
        }
        if k <= by_tokens {
            return full;
        }
        let mut tokens = self.cached[..k].to_vec();
        let rest = &bytes[self.ends[k - 1]..];
        tokens.extend(self.model.vocab().tokenize(rest, false, true));
        tokens
    }

    /// Trims the cache to the longest prefix it shares with `tokens` (keeping at least one
    /// token to evaluate, since sampling needs fresh logits) and returns that prefix length.
    fn reuse_prefix(&mut self, tokens: &[LlamaToken]) -> usize {
        let mut keep = common_prefix(&self.cached, tokens);
        if keep == tokens.len() {
            keep -= 1;
        }
        if keep < self.cached.len() {
            let trimmed = u32::try_from(keep)
                .ok()
                .and_then(|p0| self.ctx.clear_kv_cache_seq(Some(0), Some(p0), None).ok())
                .unwrap_or(false);
            if !trimmed {
                // Some memory types (recurrent state) cannot drop a suffix: start over.
                self.ctx.clear_kv_cache();
                keep = 0;
            }
            self.forget_after(keep);
        }
        keep
    }

    /// Keeps the first `n` cached tokens (and their text) in the record.
    fn forget_after(&mut self, n: usize) {
        self.cached.truncate(n);
        self.ends.truncate(n);
        self.text.truncate(self.ends.last().copied().unwrap_or(0));
    }

    /// Decodes `tokens` at the end of the cache, `n_batch` at a time; logits for the last one.
    fn decode(&mut self, tokens: &[LlamaToken], cancel: &dyn Fn() -> bool) -> Result<bool> {
        let n_batch = self.ctx.n_batch() as usize;
        for chunk in tokens.chunks(n_batch.max(1)) {
            if cancel() {
                return Ok(false);
            }
            self.batch.clear();
            let start = self.cached.len();
            for (i, &t) in chunk.iter().enumerate() {
                let last = i + 1 == chunk.len();
                self.batch
                    .add(t, (start + i) as i32, &[0], last)
                    .map_err(|e| ModelError::Inference(e.to_string()))?;
            }
            if let Err(e) = self.ctx.decode(&mut self.batch) {
                // The cache may now hold part of the batch; forget it rather than guess.
                self.ctx.clear_kv_cache();
                self.forget_after(0);
                return Err(ModelError::Inference(format!("decode failed: {e}")));
            }
            let vocab = self.model.vocab();
            for &t in chunk {
                vocab.token_to_piece_into(t, &mut self.text, true, None);
                self.ends.push(self.text.len());
            }
            self.cached.extend_from_slice(chunk);
        }
        Ok(true)
    }

    fn generate(
        &mut self,
        prompt: &str,
        options: &GenerateOptions,
        events: &UnboundedSender<Result<ChatEvent>>,
    ) -> Result<Completion> {
        options
            .sampling
            .validate()
            .map_err(ModelError::InvalidOption)?;
        let tokens = self.plan(prompt);
        let n_ctx = self.ctx.n_ctx() as usize;
        if tokens.is_empty() {
            return Err(ModelError::InvalidOption("the prompt is empty".into()));
        }
        if tokens.len() >= n_ctx {
            return Err(ModelError::PromptTooLong {
                tokens: tokens.len(),
                n_ctx,
            });
        }
        let stopped = || options.cancel.is_cancelled() || events.is_closed();
        let started = Instant::now();
        let keep = self.reuse_prefix(&tokens);
        let mut usage = Usage {
            prompt_tokens: tokens.len(),
            prompt_tokens_evaluated: tokens.len() - keep,
            ..Usage::default()
        };
        let complete = self.decode(&tokens[keep..], &stopped)?;
        usage.prompt_time = started.elapsed();
        if !complete {
            return Ok(Completion::plain(
                String::new(),
                FinishReason::Cancelled,
                usage,
            ));
        }

        let gen_started = Instant::now();
        let mut sampler = sampler_chain(self.model, options, &tokens)?;
        let mut out = TextOut::new(&options.stop);
        let mut logits_at = self.batch.n_tokens() - 1;
        let finish = loop {
            if stopped() {
                break FinishReason::Cancelled;
            }
            if usage.completion_tokens >= options.max_tokens {
                break FinishReason::Length;
            }
            let vocab = self.model.vocab();
            let valid = |t| out.continues(&vocab.token_to_piece(t, true, None));
            let token = sampler.sample(&self.ctx, logits_at, &valid);
            if vocab.is_eog(token) && !options.ignore_eos {
                break FinishReason::Stop;
            }
            let mut next = vec![token];
            let mut complete = false;
            if options.fast_forward && sampler.grammar.is_some() {
                let room = (options.max_tokens - usage.completion_tokens - 1)
                    .min(n_ctx.saturating_sub(self.cached.len() + 2));
                if let Some(probe) = self.probe.get_or_init(|| Probe::new(self.model)) {
                    let jump = sampler.jump(self.model, probe, room);
                    usage.forced_tokens += jump.tokens.len();
                    next.extend(jump.tokens);
                    complete = jump.end && !options.ignore_eos;
                }
            }
            let mut hit_stop = false;
            for &t in &next {
                usage.completion_tokens += 1;
                let (delta, hit) = out.push(&vocab.token_to_piece(t, true, None));
                if !delta.is_empty() {
                    let _ = events.send(Ok(ChatEvent::Delta(delta)));
                }
                if hit {
                    hit_stop = true;
                    break;
                }
            }
            if hit_stop {
                break FinishReason::StopString;
            }
            if complete {
                // Nothing but the end can follow: no forward pass needed to sample it. The
                // next request evaluates these tokens with its prompt, in one batch.
                break FinishReason::Stop;
            }
            if usage.completion_tokens >= options.max_tokens
                || self.cached.len() + next.len() >= n_ctx
            {
                break FinishReason::Length;
            }
            self.decode(&next, &|| false)?;
            usage.completion_tokens_evaluated += next.len();
            logits_at = self.batch.n_tokens() - 1;
        };
        if finish != FinishReason::StopString {
            let rest = out.finish();
            if !rest.is_empty() {
                let _ = events.send(Ok(ChatEvent::Delta(rest)));
            }
        }
        usage.generation_time = gen_started.elapsed();
        Ok(Completion::plain(out.text().to_string(), finish, usage))
    }
}

/// The samplers of one generation: the chain, and the grammar kept apart from it so that
/// most tokens skip it.
struct Sampler {
    chain: LlamaSampler,
    grammar: Option<LlamaSampler>,
    /// The chain is plain greedy: the best logit wins, no candidate list needed.
    argmax: bool,
}

impl Sampler {
    /// The next token. With a grammar, the chain first picks from the raw logits and the
    /// grammar only checks that one token; only when it refuses does the grammar filter the
    /// whole vocabulary, and the chain pick again. Checking one token instead of every
    /// token of the vocabulary is what keeps constrained decoding near full speed (greedy
    /// picks the same token either way: the best token, if allowed, is the best allowed).
    ///
    /// `valid` says whether a token keeps the output well-formed UTF-8: llama.cpp's grammar
    /// reads a token's bytes leniently (continuation bytes unchecked), so under a grammar a
    /// token it allows can still write broken text, which would then count as more
    /// characters than the grammar allowed. Such picks are masked and the chain picks again.
    fn sample(
        &mut self,
        ctx: &LlamaContext,
        idx: i32,
        valid: &dyn Fn(LlamaToken) -> bool,
    ) -> LlamaToken {
        let best = || {
            let logits = ctx.get_logits_ith(idx);
            let i = (0..logits.len()).fold(0, |b, i| if logits[i] > logits[b] { i } else { b });
            LlamaToken(i as i32)
        };
        let first = if self.argmax {
            // llama.cpp's greedy sampler would copy the whole vocabulary into a candidate
            // list first; at decode speed that copy is a measurable share of each token.
            Some(best())
        } else if self.grammar.is_some() {
            let mut all = ctx.token_data_array_ith(idx);
            all.apply_sampler(&mut self.chain);
            all.selected_token()
        } else {
            return self.chain.sample(ctx, idx);
        };
        let Some(grammar) = self.grammar.as_mut() else {
            // Plain greedy: `first` is the token.
            let token = first.unwrap_or_else(best);
            self.chain.accept(token);
            return token;
        };
        let allows = |grammar: &mut LlamaSampler, t: LlamaToken| {
            let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(t, 1.0, 0.0)], false);
            one.apply_sampler(grammar);
            one.data[0].logit().is_finite()
        };
        let token = match first {
            Some(first) if allows(grammar, first) && valid(first) => first,
            _ => {
                let mut allowed = ctx.token_data_array_ith(idx);
                allowed.apply_sampler(grammar);
                let mut pick = None;
                for _ in 0..MAX_REPICKS {
                    let mut trial = LlamaTokenDataArray::new(allowed.data.clone(), false);
                    trial.apply_sampler(&mut self.chain);
                    let Some(t) = trial.selected_token() else {
                        break;
                    };
                    pick = Some(t);
                    if valid(t) {
                        break;
                    }
                    if let Some(d) = allowed.data.iter_mut().find(|d| d.id() == t) {
                        d.set_logit(f32::NEG_INFINITY);
                    }
                }
                match pick.or(first) {
                    Some(t) => t,
                    None => self.chain.sample(ctx, idx),
                }
            }
        };
        grammar.accept(token);
        self.chain.accept(token);
        token
    }

    /// The tokens the grammar forces next ([`Probe::jump`]), accepted by the grammar and
    /// the chain (repetition penalties count them too).
    fn jump(&mut self, model: &LlamaModel, probe: &Probe, max: usize) -> Jump {
        let Some(grammar) = self.grammar.as_mut() else {
            return Jump::default();
        };
        let jump = probe.jump(model, grammar, max);
        for &t in &jump.tokens {
            self.chain.accept(t);
        }
        jump
    }
}

/// How many times a pick that breaks UTF-8 is masked before the last one is kept anyway.
const MAX_REPICKS: usize = 8;

/// The llama.cpp samplers for these options. Greedy skips the random machinery.
fn sampler_chain(
    model: &LlamaModel,
    options: &GenerateOptions,
    prompt: &[LlamaToken],
) -> Result<Sampler> {
    let s: &Sampling = &options.sampling;
    let mut chain = Vec::new();
    if s.repeat_penalty != 1.0 {
        let mut penalties = LlamaSampler::penalties(
            model.n_vocab(),
            s.repeat_last_n as i32,
            s.repeat_penalty,
            0.0,
            0.0,
        );
        // The penalty looks at recent history, which starts in the prompt. Only this sampler
        // sees the prompt: a grammar must not.
        let from = prompt.len().saturating_sub(s.repeat_last_n as usize);
        penalties.accept_many(&prompt[from..]);
        chain.push(penalties);
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        if s.top_k > 0 {
            chain.push(LlamaSampler::top_k(s.top_k as i32));
        }
        if s.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(s.top_p, 1));
        }
        if s.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(s.min_p, 1));
        }
        chain.push(LlamaSampler::temp(s.temperature));
        chain.push(LlamaSampler::dist(s.seed));
    }
    let grammar = match &options.grammar {
        Some(g) => Some(grammar_sampler(model, g)?),
        None => None,
    };
    Ok(Sampler {
        argmax: s.temperature <= 0.0 && s.repeat_penalty == 1.0,
        chain: LlamaSampler::chain_simple(chain),
        grammar,
    })
}

/// The token a marker is, when the model has it as one special token.
pub(crate) fn special_token(model: &LlamaModel, text: &str) -> Option<LlamaToken> {
    let vocab = model.vocab();
    match vocab.tokenize(text.as_bytes(), false, true).as_slice() {
        [t] if vocab.is_control(*t) => Some(*t),
        _ => None,
    }
}

fn grammar_sampler(model: &LlamaModel, g: &ToolGrammar) -> Result<LlamaSampler> {
    let bad = |e: String| ModelError::InvalidOption(format!("the grammar was rejected: {e}"));
    match &g.trigger {
        None => LlamaSampler::grammar(model, &g.gbnf, "root").map_err(|e| bad(e.to_string())),
        Some(trigger) => {
            let (words, tokens): (Vec<&str>, Vec<LlamaToken>) = match special_token(model, trigger)
            {
                Some(t) => (vec![], vec![t]),
                None => (vec![trigger.as_str()], vec![]),
            };
            LlamaSampler::grammar_lazy(model, &g.gbnf, "root", words, &tokens)
                .map_err(|e| bad(e.to_string()))
        }
    }
}

/// How many leading items `a` and `b` share.
fn common_prefix<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
