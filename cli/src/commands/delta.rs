//! `ferryctl delta generate --repo R [--from A] --to B`: writes a static delta in libostree's
//! format next to the repository's objects.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry_engine::delta::write::generate;
use ferry_engine::repo::Repo;
use ferry_schema::{Checksum, InvalidChecksum};

#[derive(Debug, clap::Args)]
pub struct DeltaArgs {
    #[command(subcommand)]
    pub command: DeltaCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DeltaCommand {
    /// Write the delta from one commit to another (or from nothing) under `deltas/`.
    Generate(GenerateArgs),
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// The repository holding both commits completely.
    #[arg(long, value_name = "REPO")]
    pub repo: PathBuf,

    /// The commit the destination has; without it, the delta is from scratch.
    #[arg(long, value_name = "COMMIT", value_parser = parse_checksum)]
    pub from: Option<Checksum>,

    /// The new commit.
    #[arg(long, value_name = "COMMIT", value_parser = parse_checksum)]
    pub to: Checksum,
}

fn parse_checksum(text: &str) -> Result<Checksum, InvalidChecksum> {
    Checksum::from_hex(text)
}

pub fn run(args: DeltaArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DeltaCommand::Generate(args) => {
            let repo = Repo::open(&args.repo)
                .with_context(|| format!("cannot open {}", args.repo.display()))?;
            let generated =
                generate(&repo, args.from.as_ref(), &args.to).context("cannot write the delta")?;
            println!(
                "parts={} objects={} patched={} fallbacks={} compressed={} uncompressed={}",
                generated.parts,
                generated.objects,
                generated.patched,
                generated.fallbacks,
                generated.compressed_size,
                generated.uncompressed_size
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
