//! The scheduler: batched requests give the same text as solo runs, cancellation frees the
//! slot, a full queue refuses, errors reach the right request, and Session reuses its cache.

mod common;

use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use common::model_path;
use kiln::sampling::SamplerConfig;
use kiln::{DoneReason, EngineError, Event, GenerateRequest, LoadOptions, Model, Scheduler, SchedulerOptions, Session};

fn load() -> Option<Arc<Model>> {
    let path = model_path("smollm2")?;
    Some(Model::load(path, &LoadOptions::default()).expect("model loads"))
}

fn request(model: &Model, prompt: &str, seed: u64, n: usize) -> GenerateRequest {
    GenerateRequest {
        prompt: model.tokenize(prompt, false).unwrap(),
        sampling: SamplerConfig { seed: Some(seed), temperature: 0.9, ..SamplerConfig::default() },
        num_predict: Some(n),
        ..Default::default()
    }
}

/// Submits a request; the receiver yields (text, output or error).
fn submit(s: &Scheduler, req: GenerateRequest) -> mpsc::Receiver<Event> {
    let (tx, rx) = mpsc::channel();
    s.submit(req, Box::new(move |ev| tx.send(ev).is_ok())).expect("accepted");
    rx
}

fn collect(rx: mpsc::Receiver<Event>) -> (String, Vec<u32>, DoneReason) {
    let mut text = String::new();
    let mut ids = Vec::new();
    for ev in rx.iter() {
        match ev {
            Event::Token(t) => {
                text.push_str(&t.text);
                ids.push(t.id);
            }
            Event::Done(out) => return (text, ids, out.done_reason),
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
    panic!("stream ended without Done");
}

#[test]
fn batched_requests_equal_their_solo_runs() {
    let Some(model) = load() else { return };
    batched_equals_solo(model);
}

/// gemma3's weights are Q4_K/Q6_K/Q5_0/Q8_0: the K-quant kernels must also compute each row
/// the same way whether a token comes alone (mat-vec) or in a batch (mat-mat).
#[test]
fn batched_requests_equal_their_solo_runs_gemma3() {
    let Some(path) = model_path("gemma3") else { return };
    batched_equals_solo(Model::load(path, &LoadOptions::default()).expect("model loads"));
}

fn batched_equals_solo(model: Arc<Model>) {
    let prompts = ["The capital of France is", "Once upon a time", "def fib(n):", "Rust is a language that"];
    let sched = Scheduler::new(model.clone(), SchedulerOptions { num_parallel: 4, max_queue: 16 });
    let solo: Vec<_> = prompts.iter().enumerate().map(|(i, p)| collect(submit(&sched, request(&model, p, 7 + i as u64, 24)))).collect();
    // All at once (and twice each, so the batch is fuller than the slots).
    let rxs: Vec<_> = (0..2).flat_map(|_| prompts.iter().enumerate().map(|(i, p)| submit(&sched, request(&model, p, 7 + i as u64, 24))).collect::<Vec<_>>()).collect();
    for (k, rx) in rxs.into_iter().enumerate() {
        let got = collect(rx);
        let want = &solo[k % prompts.len()];
        assert_eq!(got.0, want.0, "request {k}: batched text differs from its solo run");
        assert_eq!(got.1, want.1, "request {k}: batched token ids differ from its solo run");
        assert_eq!(got.2, want.2, "request {k}: done reason differs from its solo run");
    }
}

#[test]
fn session_matches_scheduler_and_reuses_its_cache() {
    let Some(model) = load() else { return };
    let req = request(&model, "The capital of France is", 3, 16);
    let mut session = Session::new(model.clone());
    let mut text = String::new();
    let out = session.generate(&req, &mut |t| {
        text.push_str(&t.text);
        true
    })
    .unwrap();
    assert_eq!(out.eval_count, 16);
    let sched = Scheduler::new(model.clone(), SchedulerOptions::default());
    assert_eq!(collect(submit(&sched, req.clone())).0, text);
    // A follow-up extending the context only evaluates the new tokens.
    let mut next = out.context.clone();
    next.extend(model.tokenize(" And Germany?", false).unwrap());
    let follow = GenerateRequest { prompt: next.clone(), ..req.clone() };
    let out2 = session.generate(&follow, &mut |_| true).unwrap();
    assert!(out2.prompt_eval_count < next.len() / 2, "evaluated {} of {} prompt tokens", out2.prompt_eval_count, next.len());
}

#[test]
fn cancelling_frees_the_slot() {
    let Some(model) = load() else { return };
    let sched = Scheduler::new(model.clone(), SchedulerOptions { num_parallel: 1, max_queue: 4 });
    let (tx, rx) = mpsc::channel();
    let mut seen = 0;
    sched
        .submit(request(&model, "Count to one hundred:", 1, 500), Box::new(move |ev| {
            seen += 1;
            let _ = tx.send(matches!(ev, Event::Token(_)));
            seen < 3 // the client goes away after two events
        }))
        .unwrap();
    // The next request gets the only slot and finishes.
    let (text, _, reason) = collect(submit(&sched, request(&model, "Hello", 2, 4)));
    assert_eq!(reason, DoneReason::Length);
    assert!(!text.is_empty());
    assert_eq!(rx.iter().count(), 3, "the cancelled request got events after it said stop");
}

#[test]
fn full_queue_is_refused_and_bad_requests_fail_alone() {
    let Some(model) = load() else { return };
    let sched = Scheduler::new(model.clone(), SchedulerOptions { num_parallel: 1, max_queue: 1 });
    let mut rxs = Vec::new();
    let mut refused = 0;
    for i in 0..6 {
        let (tx, rx) = mpsc::channel();
        match sched.submit(request(&model, "Tell me a long story", i, 40), Box::new(move |ev| tx.send(ev).is_ok())) {
            Ok(()) => rxs.push(rx),
            Err(EngineError::QueueFull) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(refused >= 3, "only {refused} of 6 refused with 1 slot and a queue of 1");
    // A request with an out-of-vocabulary token fails with an error; the others finish.
    let bad = GenerateRequest { prompt: vec![u32::MAX - 1], ..request(&model, "x", 0, 4) };
    let (tx, bad_rx) = mpsc::channel();
    let accepted = sched.submit(bad, Box::new(move |ev| tx.send(ev).is_ok()));
    for rx in rxs {
        collect(rx);
    }
    if accepted.is_ok() {
        match bad_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Event::Error(e)) => assert!(e.to_string().contains("vocabulary"), "{e}"),
            other => panic!("expected an error event, got {other:?}"),
        }
    }
}

#[test]
fn context_overflow_is_an_error_or_reported_truncation() {
    let Some(model) = load() else { return };
    let long: Vec<u32> = model.tokenize(&"word ".repeat(300), false).unwrap();
    let mut session = Session::new(model.clone());
    let mut req = GenerateRequest { prompt: long.clone(), num_ctx: 128, num_predict: Some(4), sampling: SamplerConfig::greedy(), ..Default::default() };
    match session.generate(&req, &mut |_| true) {
        Err(EngineError::ContextOverflow { prompt, ctx }) => assert_eq!((prompt, ctx), (long.len(), 128)),
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    req.truncate = true;
    let out = session.generate(&req, &mut |_| true).unwrap();
    assert!(out.truncated);
    assert!(out.context.len() <= 128);
}
