//! `ferryctl`: the one entry point for scripts, kiosks, tests and the desktop app's installer.
//!
//! Exit codes: 0 success, 1 failure (one line on stderr; `-v` shows the causes), 2 bad usage.

// What a drive, peer or file supplies is never unwrapped; tests may.
#![deny(clippy::unwrap_used)]

mod commands;
mod i18n;
mod render;
mod signals;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Carries OSTree OS updates and Flatpak apps from drives and nearby computers.
#[derive(Debug, Parser)]
#[command(name = "ferryctl", version, about, propagate_version = true)]
struct Cli {
    /// Show the causes of errors, each update's sources after `pull` and `install`, and more
    /// log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the OSTree repositories found on a drive or at a path.
    Scan(commands::scan::ScanArgs),
    /// Fetch refs from drives or repositories into a local repository, verifying everything.
    Pull(commands::pull::PullArgs),
    /// List the updates drives, nearby computers and upstream servers offer for this machine.
    List(commands::list::ListArgs),
    /// Install updates: fetch and verify them, then deploy with ostree admin and flatpak.
    Install(commands::install::InstallArgs),
    /// Serve repositories read-only to computers nearby over HTTP, as archive repositories, and
    /// advertise them (DNS-SD).
    Serve(commands::serve::ServeArgs),
    /// Write this machine's OS and apps to a drive that other machines update from.
    PrepareDrive(commands::prepare_drive::PrepareDriveArgs),
    /// Write static deltas (an update as a few compressed parts) into a repository.
    Delta(commands::delta::DeltaArgs),
    /// Whether this machine shares its updates with computers nearby; switch it on or off.
    Sharing(commands::sharing::SharingArgs),
    /// What was installed and rolled back, when, and from where (from the systemd journal).
    History(commands::history::HistoryArgs),
    /// Make the previous OS deployment the default again.
    Rollback(commands::rollback::RollbackArgs),
}

/// Packaging helpers, parsed apart from [`Cli`] so that neither the manual pages nor the
/// completions offer them.
#[derive(Debug, Parser)]
#[command(name = "ferryctl")]
enum Generate {
    GenerateMan(commands::generate::ManArgs),
    GenerateCompletions(commands::generate::CompletionArgs),
}

impl Generate {
    fn is_requested() -> bool {
        let first = std::env::args_os().nth(1);
        matches!(
            first.as_deref().and_then(|arg| arg.to_str()),
            Some("generate-man" | "generate-completions")
        )
    }

    fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Generate::GenerateMan(args) => commands::generate::man(Cli::command(), args),
            Generate::GenerateCompletions(args) => {
                commands::generate::completions(Cli::command(), args)
            }
        }
    }
}

fn init_logging(verbose: u8) {
    // The OpenPGP library warns about keyring details (trust packets) that are normal in
    // keyrings exported by gpg; only its errors are worth showing.
    let default = match verbose {
        0 => "warn,pgp=error",
        1 => "info,pgp=warn",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    ferry_engine::memory::return_large_buffers();
    i18n::init();
    if Generate::is_requested() {
        return match Generate::parse().run() {
            Ok(code) => code,
            Err(error) => {
                eprintln!("{}{}", i18n::tr("error: "), one_line(&error));
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Scan(args) => commands::scan::run(args),
        Command::Pull(args) => commands::pull::run(args, cli.verbose > 0),
        Command::List(args) => commands::list::run(args),
        Command::Install(args) => commands::install::run(args, cli.verbose > 0),
        Command::Serve(args) => commands::serve::run(args),
        Command::PrepareDrive(args) => commands::prepare_drive::run(args),
        Command::Delta(args) => commands::delta::run(args),
        Command::Sharing(args) => commands::sharing::run(args),
        Command::History(args) => commands::history::run(args),
        Command::Rollback(args) => commands::rollback::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            print_error(None, error.as_ref(), cli.verbose > 0);
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once.
fn one_line(error: &anyhow::Error) -> String {
    ferry_engine::causes::text(error.as_ref())
}

/// Prints a failure on stderr, after `subject` (what failed, such as a ref) when given: with
/// `verbose` the message, then each cause on a line of its own; otherwise one line naming each
/// cause once.
pub(crate) fn print_error(
    subject: Option<&str>,
    error: &(dyn std::error::Error + 'static),
    verbose: bool,
) {
    let subject = subject.map(|s| format!("{s}: ")).unwrap_or_default();
    if verbose {
        eprintln!("{}{subject}{error}", i18n::tr("error: "));
        let mut cause = error.source();
        while let Some(current) = cause {
            eprintln!("  {}{current}", i18n::tr("caused by: "));
            cause = current.source();
        }
    } else {
        eprintln!(
            "{}{subject}{}",
            i18n::tr("error: "),
            ferry_engine::causes::Causes(error)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_names_each_cause_once() {
        let io = std::io::Error::other("the drive went away");
        let engine = ferry_engine::repo::RepoError::Io {
            action: "read",
            path: "/media/k/repo/config".into(),
            source: io,
        };
        let error = anyhow::Error::from(engine).context("cannot open the drive");
        assert_eq!(
            one_line(&error),
            "cannot open the drive: cannot read /media/k/repo/config: the drive went away"
        );
        assert_eq!(error.chain().count(), 3, "the causes are kept for -v");
    }
}
