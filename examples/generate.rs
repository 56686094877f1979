//! Load a GGUF model, stream a completion, then embed a sentence.
//!
//! cargo run --release --example generate -- ~/.kiln/models/SmolLM2-135M-Instruct.Q4_1.gguf "What is Rust?"

use kiln::sampling::SamplerConfig;
use kiln::template::ChatMessage;
use kiln::{GenerateRequest, LoadOptions, Model, Session};
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: generate MODEL.gguf [PROMPT]")?;
    let prompt = args.next().unwrap_or_else(|| "Write one sentence about the sea.".to_string());

    let model = Model::load(&path, &LoadOptions::default())?;
    let info = model.info();
    eprintln!("{} ({}, {} layers, {} threads)", info.name, info.architecture, info.n_layer, info.threads);

    // Render the model's chat template and tokenize (BOS as the model's rules say).
    let tokens = model.chat_tokens(&[ChatMessage::new("user", &prompt)])?;
    let req = GenerateRequest {
        prompt: tokens,
        sampling: SamplerConfig { seed: Some(42), ..SamplerConfig::default() },
        num_predict: Some(64),
        ..Default::default()
    };
    let mut session = Session::new(model.clone());
    let out = session.generate(&req, &mut |tok| {
        print!("{}", tok.text);
        let _ = std::io::stdout().flush();
        true
    })?;
    println!();
    eprintln!(
        "{} prompt tokens in {:?}, {} generated in {:?} ({})",
        out.prompt_eval_count, out.prompt_eval_duration, out.eval_count, out.eval_duration, out.done_reason.as_str()
    );

    let v = model.embed("The cat sat on the mat.")?;
    eprintln!("embedding: {} dimensions, first {:?}", v.len(), &v[..4]);
    Ok(())
}
