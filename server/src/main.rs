//! `kiln`: the command line. Each subcommand lives in `cli/<name>.rs` with its arguments.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser, Debug)]
#[command(name = "kiln", version, about = "A from-scratch GGUF inference engine with an Ollama-compatible server")]
struct Cli {
    /// Model directory [default: ~/.kiln/models]. Ollama's store (OLLAMA_MODELS, default
    /// ~/.ollama/models) is always searched too.
    #[arg(long, env = "KILN_MODELS", global = true, value_name = "DIR")]
    models: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the Ollama-compatible HTTP server
    Serve(cli::serve::ServeArgs),
    /// Run a model interactively or on one prompt
    Run(cli::run::RunArgs),
    /// List models
    #[command(alias = "ls")]
    List(cli::list::ListArgs),
    /// Show a model's architecture, size and quantization
    Show(cli::show::ShowArgs),
    /// Measure prompt and generation speed
    Bench(cli::bench::BenchArgs),
    /// Download a model
    Pull(cli::pull::PullArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let models = cli.models;
    let result = match cli.command {
        Command::Serve(mut args) => {
            args.models = args.models.or(models);
            cli::serve::serve(args)
        }
        Command::Run(args) => cli::run::run(args, models),
        Command::List(args) => cli::list::list(args, models),
        Command::Show(args) => cli::show::show(args, models),
        Command::Bench(args) => cli::bench::bench(args, models),
        Command::Pull(args) => cli::pull::pull(args, models),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and those causes its message does not already include.
            let mut msg = String::new();
            for cause in e.chain().map(|c| c.to_string()) {
                if !msg.contains(&cause) {
                    msg.push_str(if msg.is_empty() { "" } else { ": " });
                    msg.push_str(&cause);
                }
            }
            eprintln!("Error: {}", msg.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
