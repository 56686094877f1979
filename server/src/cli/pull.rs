//! `kiln pull`: placeholder until its owner lands it.
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct PullArgs {
    /// Arguments, ignored for now.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

pub fn pull(_args: PullArgs, _models: Option<PathBuf>) -> anyhow::Result<()> {
    anyhow::bail!("`kiln pull` is not implemented yet")
}
