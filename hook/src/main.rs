//! `ferry-hook`: started by `ferry-hook@.service` when udev sees a drive, or by hand.

// What a drive, peer or file supplies is never unwrapped; tests may.
#![deny(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, CommandFactory, Parser};
use ferry_hook::run::Hook;

/// Validate a drive's OSTree repositories and record what it offers; or install what
/// computers nearby offer, as the policy says.
///
/// Environment: FERRY_RUN_DIR (default /run/ferry), FERRY_SIDELOAD_DIR (default
/// /run/flatpak/sideload-repos), FERRY_CONFIG (default /etc/ferry/ferry.conf),
/// FERRY_ACCEPT_FIXED_DRIVES=1 (treat fixed disks and loop devices as removable), FERRY_REBOOT_COMMAND (restart command after an OS update, default
/// `systemctl reboot`), OSTREE_SYSROOT (the sysroot whose OS is updated instead of the booted
/// one), FERRY_LOG (log filter, default info).
#[derive(Debug, Parser)]
#[command(name = "ferry-hook", version)]
#[command(group(ArgGroup::new("what").required(true).args(["device", "mount", "nearby"])))]
struct Args {
    /// The block device that appeared, for example /dev/sdb1.
    #[arg(long, value_name = "/dev/NAME")]
    device: Option<PathBuf>,
    /// A drive that is already mounted here.
    #[arg(long, value_name = "PATH")]
    mount: Option<PathBuf>,
    /// Forget the drive: delete its record and sideload links.
    #[arg(long, conflicts_with = "install")]
    remove: bool,
    /// Run the kiosk install for a drive recorded earlier (ferry-install@.service).
    #[arg(long, requires = "device")]
    install: bool,
    /// Install what computers nearby offer if the policy says `on-nearby = install`
    /// (ferry-nearby.timer).
    #[arg(long, conflicts_with_all = ["remove", "install"])]
    nearby: bool,
    /// Running as a systemd unit: mount with systemd-mount and start the kiosk install as
    /// ferry-install@NAME.service.
    #[arg(long)]
    systemd: bool,
}

/// `ferry-hook --generate-man DIR` writes ferry-hook.8 for packaging; parsed apart from
/// [`Args`] so that the page does not list it.
#[derive(Debug, Parser)]
#[command(name = "ferry-hook")]
struct GenerateMan {
    #[arg(long, value_name = "DIR")]
    generate_man: PathBuf,
}

impl GenerateMan {
    fn is_requested() -> bool {
        std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new("--generate-man"))
    }

    fn run(&self) -> anyhow::Result<()> {
        use anyhow::Context;
        let dir = &self.generate_man;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        clap_mangen::Man::new(Args::command())
            .section("8")
            .generate_to(dir)
            .with_context(|| format!("cannot write the manual page into {}", dir.display()))?;
        Ok(())
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false);
    // The journal stamps every line itself.
    if under_journal {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    ferry_engine::memory::return_large_buffers();
    if GenerateMan::is_requested() {
        return match GenerateMan::parse().run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {}", ferry_engine::causes::text(error.as_ref()));
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse();
    init_logging();
    let hook = Hook::from_env(args.systemd);
    let result = match (&args.device, &args.mount) {
        _ if args.nearby => hook.nearby(),
        (Some(device), _) if args.remove => hook.remove_device(device),
        (_, Some(mount)) if args.remove => hook.remove_mount(mount),
        (Some(device), _) if args.install => hook.install_device(device),
        (Some(device), _) => hook.insert_device(device),
        (_, Some(mount)) => hook.insert_mount(mount),
        (None, None) => Err(anyhow::anyhow!("pass --device /dev/NAME or --mount PATH")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
