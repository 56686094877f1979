//! Generation: a request's state machine ([`Sequence`]) and the single-stream [`Session`].
//!
//! A sequence owns its KV cache and the tokens in it. Each step, the caller runs a forward
//! pass over `pending()` and hands the last logits row to [`Sequence::accept`], which samples,
//! detokenizes, applies stop rules and says what to emit. [`Session`] drives one sequence;
//! the [`crate::Scheduler`] drives many, batching their decode steps.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{EngineError, Result};
use crate::model::exec::{OutputKind, Outputs};
use crate::model::kv::KvCache;
use crate::model::Model;
use crate::sampling::{Sampler, SamplerConfig, StopMatcher};
use crate::tokenizer::StreamDecoder;

/// What to generate.
#[derive(Clone, Debug, Default)]
pub struct GenerateRequest {
    /// The whole context to condition on (a previous response's `context` + the new prompt).
    pub prompt: Vec<u32>,
    pub sampling: SamplerConfig,
    /// Stop after this many tokens; `None`: at end of generation or when the context is full.
    pub num_predict: Option<usize>,
    /// Stop sequences, matched on the generated text; the stop text is not emitted.
    pub stop: Vec<String>,
    /// Context length; 0: the default (4096, capped at the model's).
    pub num_ctx: usize,
    /// A prompt longer than the context: an error (false), or keep its tail and report it (true).
    pub truncate: bool,
}

/// One generated token and the text it completes (empty while a UTF-8 character is partial).
#[derive(Clone, Debug)]
pub struct TokenEvent {
    pub id: u32,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoneReason {
    /// End-of-generation token or stop sequence.
    Stop,
    /// num_predict reached or the context is full.
    Length,
    /// The caller stopped it.
    Cancelled,
}

impl DoneReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DoneReason::Stop => "stop",
            DoneReason::Length => "length",
            DoneReason::Cancelled => "cancelled",
        }
    }
}

/// How a generation ended, with Ollama's statistics.
#[derive(Clone, Debug)]
pub struct GenerateOutput {
    pub done_reason: DoneReason,
    /// Prompt + generated tokens: pass it back as the next request's prefix.
    pub context: Vec<u32>,
    pub prompt_eval_count: usize,
    pub prompt_eval_duration: Duration,
    pub eval_count: usize,
    pub eval_duration: Duration,
    /// The prompt was cut to fit the context.
    pub truncated: bool,
}

/// What [`Sequence::accept`] decided.
pub enum Step {
    /// Emit this token; the sequence goes on.
    Token(TokenEvent),
    /// The sequence is done; `Some` is a last piece of text to emit first (held-back text).
    Done(Option<TokenEvent>, DoneReason),
}

/// A generation in progress.
pub struct Sequence {
    pub(crate) cache: KvCache,
    /// Tokens whose K/V the cache holds, then `pending`.
    tokens: Vec<u32>,
    pub(crate) pending: Vec<u32>,
    sampler: Sampler,
    stop: StopMatcher,
    decoder: StreamDecoder,
    num_predict: Option<usize>,
    generated: usize,
    prompt_eval: usize,
    truncated: bool,
    started: Instant,
    prompt_done: Option<Instant>,
    logits: Vec<f32>,
}

impl Sequence {
    /// Prepares `req` on `cache`, which holds the K/V of `cached` (a previous sequence's
    /// tokens): the longest shared prefix is kept, the rest of the prompt becomes pending.
    pub fn new(model: &Model, mut cache: KvCache, cached: &[u32], req: &GenerateRequest) -> Result<Sequence> {
        let sampler = Sampler::new(req.sampling.clone())?;
        let n_ctx = cache.capacity();
        if req.prompt.is_empty() {
            return Err(EngineError::InvalidRequest("the prompt has no tokens".into()));
        }
        let mut prompt = req.prompt.clone();
        let mut truncated = false;
        if prompt.len() >= n_ctx {
            if !req.truncate {
                return Err(EngineError::ContextOverflow { prompt: prompt.len(), ctx: n_ctx });
            }
            // Keep BOS (when present) and the most recent tokens, leaving room to answer.
            let room = req.num_predict.unwrap_or(n_ctx / 4).clamp(1, n_ctx / 2);
            let keep = n_ctx.saturating_sub(room).max(1);
            let bos = model.tokenizer().bos_id().filter(|&b| prompt[0] == b && model.tokenizer().add_bos());
            let tail_len = keep - usize::from(bos.is_some());
            let mut kept: Vec<u32> = bos.into_iter().collect();
            kept.extend_from_slice(&prompt[prompt.len() - tail_len..]);
            prompt = kept;
            truncated = true;
        }
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= model.info().n_vocab) {
            return Err(EngineError::InvalidRequest(format!("token id {bad} is outside the vocabulary")));
        }
        // Reuse the shared prefix, but always evaluate at least one token to get logits.
        let shared = cached.iter().zip(&prompt).take_while(|(a, b)| a == b).count().min(cache.len());
        let keep = cache.truncate(shared.min(prompt.len() - 1));
        Ok(Sequence {
            cache,
            tokens: prompt[..keep].to_vec(),
            pending: prompt[keep..].to_vec(),
            sampler,
            stop: StopMatcher::new(req.stop.clone()),
            decoder: StreamDecoder::new(),
            num_predict: req.num_predict,
            generated: 0,
            prompt_eval: prompt.len() - keep,
            truncated,
            started: Instant::now(),
            prompt_done: None,
            logits: Vec::new(),
        })
    }

    /// Tokens to feed to the next forward pass.
    pub fn pending(&self) -> &[u32] {
        &self.pending
    }

    /// True while the prompt is still being evaluated.
    pub fn in_prompt(&self) -> bool {
        self.prompt_done.is_none()
    }

    /// Marks the first `n` pending tokens as evaluated (their K/V are in the cache).
    pub fn consumed(&mut self, n: usize) {
        self.tokens.extend(self.pending.drain(..n));
    }

    /// Samples from the logits that followed the last evaluated token and decides what to do.
    pub fn accept(&mut self, model: &Model, logits: &[f32]) -> Step {
        if self.prompt_done.is_none() {
            self.prompt_done = Some(Instant::now());
        }
        if self.num_predict == Some(0) {
            return Step::Done(None, DoneReason::Length);
        }
        self.logits.clear();
        self.logits.extend_from_slice(logits);
        let id = self.sampler.sample(&mut self.logits, &self.tokens);
        let tok = model.tokenizer();
        if tok.is_eog(id) {
            return self.finish(None, DoneReason::Stop);
        }
        self.generated += 1;
        let piece = self.decoder.push(tok, id);
        let (text, hit) = self.stop.push(&piece);
        if hit {
            return self.finish(Some((id, text)), DoneReason::Stop);
        }
        let full = self.tokens.len() + 1 >= self.cache.capacity();
        if self.num_predict.is_some_and(|n| self.generated >= n) || full {
            self.tokens.push(id);
            return self.finish(Some((id, text)), DoneReason::Length);
        }
        self.pending.push(id);
        Step::Token(TokenEvent { id, text })
    }

    fn finish(&mut self, last: Option<(u32, String)>, reason: DoneReason) -> Step {
        let mut text = last.as_ref().map(|(_, t)| t.clone()).unwrap_or_default();
        if reason != DoneReason::Stop || last.is_none() {
            // Flush what the decoder and stop matcher held back (no stop text was matched).
            let tail = self.decoder.flush();
            let (t, _) = self.stop.push(&tail);
            text.push_str(&t);
            text.push_str(&self.stop.flush());
        }
        let id = last.map(|(id, _)| id);
        if let Some(id) = id {
            if reason == DoneReason::Stop {
                self.tokens.push(id);
            }
        }
        let ev = match (id, text.is_empty()) {
            (Some(id), _) => Some(TokenEvent { id, text }),
            (None, false) => Some(TokenEvent { id: u32::MAX, text }),
            (None, true) => None,
        };
        Step::Done(ev, reason)
    }

    /// Statistics and context once the sequence is done.
    pub fn output(&self, reason: DoneReason) -> GenerateOutput {
        let now = Instant::now();
        let prompt_done = self.prompt_done.unwrap_or(now);
        GenerateOutput {
            done_reason: reason,
            context: self.tokens.clone(),
            prompt_eval_count: self.prompt_eval,
            prompt_eval_duration: prompt_done - self.started,
            eval_count: self.generated,
            eval_duration: now - prompt_done,
            truncated: self.truncated,
        }
    }

    /// Gives back the cache and the tokens it holds (for reuse by the next request).
    pub fn into_cache(self) -> (KvCache, Vec<u32>) {
        (self.cache, self.tokens)
    }
}

/// A single stream of generation on one model, keeping its KV cache between calls so a
/// follow-up request that extends the previous context only evaluates the new tokens.
pub struct Session {
    model: Arc<Model>,
    cache: Option<KvCache>,
    tokens: Vec<u32>,
}

impl Session {
    pub fn new(model: Arc<Model>) -> Session {
        Session { model, cache: None, tokens: Vec::new() }
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// Tokens whose K/V the session's cache holds.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Generates for `req`, calling `on_token` for every token; returning false cancels.
    pub fn generate(&mut self, req: &GenerateRequest, on_token: &mut dyn FnMut(&TokenEvent) -> bool) -> Result<GenerateOutput> {
        let n_ctx = self.model.context_len(req.num_ctx);
        let cache = match self.cache.take() {
            Some(c) if c.capacity() == n_ctx => c,
            _ => {
                self.tokens.clear();
                self.model.new_cache(n_ctx)
            }
        };
        let mut seq = Sequence::new(&self.model, cache, &self.tokens, req)?;
        self.tokens.clear();
        let result = run_to_end(&self.model, &mut seq, on_token);
        let (cache, tokens) = seq.into_cache();
        if result.is_ok() {
            self.cache = Some(cache);
            self.tokens = tokens;
        }
        result
    }
}

fn run_to_end(model: &Model, seq: &mut Sequence, on_token: &mut dyn FnMut(&TokenEvent) -> bool) -> Result<GenerateOutput> {
    let mut logits = Vec::new();
    loop {
        logits.clear();
        let pending = seq.pending().to_vec();
        model.eval(&mut seq.cache, &pending, Outputs::Last, OutputKind::Logits, &mut logits)?;
        seq.consumed(pending.len());
        match seq.accept(model, &logits) {
            Step::Token(ev) => {
                if !on_token(&ev) {
                    return Ok(seq.output(DoneReason::Cancelled));
                }
            }
            Step::Done(ev, reason) => {
                if let Some(ev) = ev {
                    on_token(&ev);
                }
                return Ok(seq.output(reason));
            }
        }
    }
}
