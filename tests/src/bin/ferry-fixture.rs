//! `ferry-fixture`: builds Ferry's fixtures outside the test suite, for the demo and the
//! benchmarks.
//!
//! ```text
//! ferry-fixture demo DIR                 the demo scene (update drive, sysroot, user apps)
//! ferry-fixture gen-tree DIR [--seed N] [--preset benchmark|many-files|lan]
//! ferry-fixture clean DIR                remove a scene, sysroot deployments included
//! ferry-fixture tamper-filez REPO REV PATH ORIGINAL
//!                                        alter PATH's object in an archive repository
//! ```

use std::path::{Path, PathBuf};

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
    /// Build the demo scene in DIR and print it as `export NAME=value` lines.
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
    /// Alter the content object of file PATH in commit REV of archive repository REPO: its
    /// first bytes (up to 16, read from ORIGINAL, a copy of the committed file) are inverted.
    /// The object stays well formed and declares the same size; only its checksum is wrong.
    /// It is rewritten through a new file, so a hard-linked copy of a repository can be
    /// altered without touching the original.
    TamperFilez {
        repo: PathBuf,
        rev: String,
        path: String,
        original: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Preset {
    /// 20,000 files, about 400 MB.
    Benchmark,
    /// A few thousand small files and a few large ones.
    ManyFiles,
    /// 4,000 files, about 212 MB.
    Lan,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Demo { dir } => {
            let scene = ferry_tests::demo::build(&dir)
                .with_context(|| format!("building the demo scene in {}", dir.display()))?;
            print_demo_vars(&scene);
            // The scene outlives this process: leave the deployment immutable, as ostree made
            // it (dropping the rest stops the vendor keys' gpg-agents).
            let ferry_tests::demo::DemoScene { sysroot, .. } = scene;
            std::mem::forget(sysroot);
        }
        Command::GenTree { dir, seed, preset } => {
            let spec = match preset {
                Preset::Benchmark => GenSpec::benchmark(seed),
                Preset::ManyFiles => GenSpec::many_files(seed),
                Preset::Lan => GenSpec::lan(seed),
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
        Command::TamperFilez {
            repo,
            rev,
            path,
            original,
        } => {
            let content = std::fs::read(&original)
                .with_context(|| format!("reading {}", original.display()))?;
            let old = &content[..content.len().min(16)];
            anyhow::ensure!(!old.is_empty(), "{} is empty", original.display());
            let new: Vec<u8> = old.iter().map(|byte| !byte).collect();
            let repo = ferry_tests::ostree::OstreeRepo::open(&repo);
            let object = ferry_tests::tamper::tamper_content(&repo, &rev, &path, old, &new)
                .with_context(|| format!("altering {path} in {}", repo.path.display()))?;
            println!("{}", object.display());
        }
    }
    Ok(())
}

/// The scene as `export NAME=value` lines for the shell to `eval`.
fn print_demo_vars(scene: &ferry_tests::demo::DemoScene) {
    let export = |name: &str, value: &str| println!("export {name}={}", shell_quote(value));
    let path = |name: &str, value: &Path| export(name, &value.display().to_string());
    path("DEMO_DIR", &scene.dir);
    path("DEMO_DRIVE", &scene.drive.root);
    path("DEMO_TARGET_REPO", &scene.target_repo.path);
    path("DEMO_SYSROOT", &scene.sysroot.path);
    path("DEMO_FLATPAK_USER_DIR", &scene.user_installation());
    for (name, value) in scene.user.vars() {
        let name = match name.as_str() {
            "HOME" => "DEMO_HOME",
            "FLATPAK_SYSTEM_DIR" => "DEMO_FLATPAK_SYSTEM_DIR",
            "FLATPAK_CONFIG_DIR" => "DEMO_FLATPAK_CONFIG_DIR",
            _ => continue,
        };
        path(name, Path::new(&value));
    }
    export("DEMO_KEY_FINGERPRINT", &scene.key.fingerprint);
    export("DEMO_APPS_KEY_FINGERPRINT", &scene.apps_key.fingerprint);
    export("DEMO_V1", &scene.v1);
    export("DEMO_V2", &scene.v2);
    let ids: Vec<&str> = scene.apps.iter().map(|app| app.app.id).collect();
    export("DEMO_APP_IDS", &ids.join(" "));
    for (index, app) in scene.apps.iter().enumerate() {
        let n = index + 1;
        export(&format!("DEMO_APP{n}_ID"), app.app.id);
        export(&format!("DEMO_APP{n}_NAME"), app.app.name);
        export(&format!("DEMO_APP{n}_OLD"), app.app.old);
        export(&format!("DEMO_APP{n}_NEW"), app.app.new);
        export(&format!("DEMO_APP{n}_COMMIT"), &app.offered);
    }
}

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}
