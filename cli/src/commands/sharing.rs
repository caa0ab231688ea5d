//! `ferryctl sharing status|on|off`: whether this machine offers its updates to computers
//! nearby (`share-nearby` in ferry.conf, and `ferry-serve.socket`). The app's Preferences
//! switch runs `on` and `off` through pkexec.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry_engine::privilege::{self, Caller};
use ferry_engine::sharing::{self, SharingStatus, DEFAULT_STATS_FILE};

use crate::i18n::{tr, trf};

/// The policy file; `FERRY_CONFIG` moves it, except under pkexec.
const DEFAULT_CONFIG: &str = "/etc/ferry/ferry.conf";

#[derive(Debug, clap::Args)]
pub struct SharingArgs {
    #[command(subcommand)]
    pub action: SharingAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum SharingAction {
    /// Whether sharing is on, running, and how many computers fetched from this one today.
    Status {
        /// Print one JSON object (`enabled`, `running`, `computers_today`, `bytes_today`).
        #[arg(long)]
        json: bool,
    },
    /// Share: set `share-nearby = yes` and enable ferry-serve.socket (needs root).
    On,
    /// Stop sharing: set `share-nearby = no` and disable ferry-serve.socket (needs root).
    Off,
}

fn env_path(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

pub fn run(args: SharingArgs) -> anyhow::Result<ExitCode> {
    // Under pkexec the fixed places count, whatever the caller's environment says.
    if Caller::detect()?.is_some() {
        for name in privilege::IGNORED_VARIABLES {
            std::env::remove_var(name);
        }
    }
    let config = env_path("FERRY_CONFIG", DEFAULT_CONFIG);
    let stats = env_path("FERRY_SERVE_STATS", DEFAULT_STATS_FILE);
    match args.action {
        SharingAction::Status { json } => {
            let status = sharing::status(&config, &stats)?;
            let mut out = std::io::stdout().lock();
            if json {
                let text = serde_json::to_string(&status).context("cannot format the status")?;
                writeln!(out, "{text}")?;
            } else {
                write!(out, "{}", human(&status))?;
            }
            out.flush()?;
        }
        SharingAction::On => sharing::switch(&config, true)?,
        SharingAction::Off => sharing::switch(&config, false)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn human(status: &SharingStatus) -> String {
    let mut text = if status.enabled {
        tr("Sharing updates with computers nearby: on")
    } else {
        tr("Sharing updates with computers nearby: off")
    };
    text.push('\n');
    match status.running {
        Some(true) => text.push_str(&tr("The server is listening (ferry-serve.socket).")),
        Some(false) => text.push_str(&tr("The server is not listening (ferry-serve.socket).")),
        None => text.push_str(&tr(
            "Whether the server is listening is unknown (no systemd).",
        )),
    }
    text.push('\n');
    text.push_str(&trf(
        "Computers that fetched updates from this one today: {} ({})",
        &[
            &status.computers_today,
            &ferry_engine::event::human_bytes(status.bytes_today),
        ],
    ));
    text.push('\n');
    text
}
