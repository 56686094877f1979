//! The bridge from an HTTP handler to the engine's Scheduler: the request's Sink sends events
//! into an unbounded channel whose receiver the response owns. When the client disconnects the
//! response (and receiver) is dropped, the next `send` fails, the Sink returns false and the engine
//! cancels that sequence within one decode step. The [`Lease`] rides along so the model stays
//! loaded until the response is finished.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use kiln_engine::{EngineError, Event, GenerateOutput, GenerateRequest, Sink};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::models::Lease;
use crate::state::AppState;
use crate::types::Timings;

pub enum Item {
    Text(String),
    Done(GenerateOutput),
    Failed(EngineError),
}

pub struct Generation {
    rx: mpsc::UnboundedReceiver<Event>,
    peeked: Option<Item>,
    finished: bool,
    state: AppState,
    started: Instant,
    load: Duration,
    last_token: Option<Instant>,
    _lease: Lease,
}

/// The HTTP status for an engine error; messages name what was wrong without internals.
pub fn engine_error(e: &EngineError) -> ApiError {
    match e {
        EngineError::QueueFull => ApiError::busy(),
        EngineError::ContextOverflow { .. }
        | EngineError::InvalidRequest(_)
        | EngineError::Sampling(_)
        | EngineError::Template(_)
        | EngineError::Tokenizer(_) => ApiError::bad_request(e.to_string()),
        EngineError::Shutdown => ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        _ => {
            tracing::error!(error = %e, "generation failed");
            ApiError::internal(e.to_string())
        }
    }
}

impl Generation {
    /// Submits to the model's generator; `started` is the request's arrival, `load` its load time.
    pub fn start(
        state: &AppState,
        lease: Lease,
        req: GenerateRequest,
        started: Instant,
        load: Duration,
    ) -> Result<Generation, ApiError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shutdown = state.shutdown.clone();
        let sink: Sink = Box::new(move |ev: Event| tx.send(ev).is_ok() && !shutdown.load(Ordering::Relaxed));
        lease.generator.submit(req, sink).map_err(|e| engine_error(&e))?;
        Ok(Generation {
            rx,
            peeked: None,
            finished: false,
            state: state.clone(),
            started,
            load,
            last_token: None,
            _lease: lease,
        })
    }

    /// Waits for the first event so an error before any output gets its own status code
    /// (400 for an over-long prompt, 503 when busy) instead of a 200 stream with an error line.
    pub async fn first_error(&mut self) -> Result<(), ApiError> {
        let first = self.next().await;
        if let Some(Item::Failed(e)) = &first {
            return Err(engine_error(e));
        }
        self.peeked = first;
        Ok(())
    }

    pub async fn next(&mut self) -> Option<Item> {
        if let Some(p) = self.peeked.take() {
            return Some(p);
        }
        while !self.finished {
            let Some(ev) = self.rx.recv().await else {
                self.finished = true;
                let why = if self.state.is_shutting_down() { "the server is shutting down" } else { "cancelled" };
                return Some(Item::Failed(EngineError::InvalidRequest(format!("generation stopped: {why}"))));
            };
            match ev {
                Event::Token(t) => {
                    let now = Instant::now();
                    match self.last_token {
                        None => self.state.metrics.observe_ttft(now - self.started),
                        Some(prev) => self.state.metrics.observe_token(now - prev),
                    }
                    self.last_token = Some(now);
                    if !t.text.is_empty() {
                        return Some(Item::Text(t.text));
                    }
                }
                Event::Done(mut out) => {
                    self.finished = true;
                    // Ollama counts the whole prompt, cached prefix included; the engine counts
                    // only what it evaluated. The context is prompt + generated tokens.
                    out.prompt_eval_count = out.context.len().saturating_sub(out.eval_count).max(out.prompt_eval_count);
                    self.state.metrics.record_tokens(out.prompt_eval_count, out.eval_count);
                    return Some(Item::Done(out));
                }
                Event::Error(e) => {
                    self.finished = true;
                    return Some(Item::Failed(e));
                }
            }
        }
        None
    }

    pub fn timings(&self, out: &GenerateOutput) -> Timings {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timings {
            total_duration: ns(self.started.elapsed()),
            load_duration: ns(self.load),
            prompt_eval_count: out.prompt_eval_count as u64,
            prompt_eval_duration: ns(out.prompt_eval_duration),
            eval_count: out.eval_count as u64,
            eval_duration: ns(out.eval_duration),
        }
    }

    /// Drains the generation into (text, final output) for non-streamed responses.
    pub async fn collect(&mut self) -> Result<(String, GenerateOutput), ApiError> {
        let mut text = String::new();
        loop {
            match self.next().await {
                Some(Item::Text(t)) => text.push_str(&t),
                Some(Item::Done(out)) => return Ok((text, out)),
                Some(Item::Failed(e)) => return Err(engine_error(&e)),
                None => return Err(ApiError::internal("generation ended without a result")),
            }
        }
    }
}

/// Streams a generation: `fmt` turns each item into the bytes to send (`None` = send nothing).
pub fn stream_response<F>(gen: Generation, content_type: &'static str, fmt: F) -> Response
where
    F: FnMut(&Generation, Item) -> Option<String> + Send + 'static,
{
    let stream = futures::stream::unfold(Some((gen, fmt)), |st| async move {
        let (mut gen, mut fmt) = st?;
        loop {
            let item = gen.next().await?;
            if let Some(s) = fmt(&gen, item) {
                return Some((Ok::<_, Infallible>(Bytes::from(s)), Some((gen, fmt))));
            }
        }
    });
    ([(header::CONTENT_TYPE, content_type)], Body::from_stream(stream)).into_response()
}

/// One NDJSON line.
pub fn ndjson_line<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

pub fn error_line(e: &EngineError) -> String {
    ndjson_line(&serde_json::json!({ "error": engine_error(e).message }))
}
