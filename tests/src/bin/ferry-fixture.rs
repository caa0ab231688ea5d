//! `ferry-fixture`: builds Ferry's fixtures outside the test suite, for the demo and the
//! benchmarks.
//!
//! ```text
//! ferry-fixture demo DIR                 the demo scene (update drive, target repo, sysroot)
//! ferry-fixture gen-tree DIR [--seed N] [--preset benchmark|many-files]
//! ferry-fixture clean DIR                remove a scene, sysroot deployments included
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use ferry_tests::generate::{generate_tree, GenSpec};

#[derive(Debug, Parser)]
#[command(
    name = "ferry-fixture",
    about = "Build Ferry's test fixtures for demos and benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the demo scene in DIR and print its paths as shell variables.
    Demo { dir: PathBuf },
    /// Write a deterministic tree of random files into DIR.
    GenTree {
        dir: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Preset::Benchmark)]
        preset: Preset,
    },
    /// Remove DIR, first clearing the immutable flag of sysroot deployments inside it.
    Clean { dir: PathBuf },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Preset {
    /// 20,000 files, about 400 MB.
    Benchmark,
    /// A few thousand small files and a few large ones.
    ManyFiles,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Demo { dir } => {
            let scene = ferry_tests::demo::build(&dir)
                .with_context(|| format!("building the demo scene in {}", dir.display()))?;
            println!("DEMO_DIR={}", shell_quote(&scene.dir));
            println!("DEMO_DRIVE={}", shell_quote(&scene.drive.root));
            println!("DEMO_TARGET_REPO={}", shell_quote(&scene.target_repo.path));
            println!("DEMO_SYSROOT={}", shell_quote(&scene.sysroot.path));
            println!("DEMO_KEY_FINGERPRINT={}", scene.key.fingerprint);
            println!("DEMO_V1={}", scene.v1);
            println!("DEMO_V2={}", scene.v2);
            // The scene outlives this process: leave the deployment immutable, as ostree made
            // it (dropping the rest stops the vendor key's gpg-agent).
            std::mem::forget(scene.sysroot);
        }
        Command::GenTree { dir, seed, preset } => {
            let spec = match preset {
                Preset::Benchmark => GenSpec::benchmark(seed),
                Preset::ManyFiles => GenSpec::many_files(seed),
            };
            let stats = generate_tree(&dir, &spec)
                .with_context(|| format!("generating a tree in {}", dir.display()))?;
            println!(
                "files={} bytes={} ({:.1} MiB)",
                stats.files,
                stats.bytes,
                stats.bytes as f64 / 1048576.0
            );
        }
        Command::Clean { dir } => {
            ferry_tests::sysroot::remove_tree_with_sysroots(&dir)
                .with_context(|| format!("removing {}", dir.display()))?;
        }
    }
    Ok(())
}

fn shell_quote(path: &std::path::Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}
