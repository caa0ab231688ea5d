//! `ferryctl generate-man DIR` and `ferryctl generate-completions SHELL DIR`, which `--help` does
//! not list: write the manual pages and shell completions from the clap definitions, for packaging.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap_complete::Shell;

#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// The directory that receives ferryctl.1 and one page per subcommand.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell the completion script is for.
    #[arg(value_name = "SHELL")]
    pub shell: Shell,
    /// The directory that receives the script, named as the shell expects.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub fn man(command: clap::Command, args: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    clap_mangen::generate_to(command, &args.dir)
        .with_context(|| format!("cannot write the manual pages into {}", args.dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

pub fn completions(mut command: clap::Command, args: CompletionArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let name = command.get_name().to_owned();
    clap_complete::generate_to(args.shell, &mut command, name, &args.dir).with_context(|| {
        format!(
            "cannot write the {} completions into {}",
            args.shell,
            args.dir.display()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}
