//! `ferryctl rollback [--sysroot DIR] [--yes]`: makes the previous OS deployment the default
//! again ([`ferry_engine::history::rollback`]). Through pkexec it acts on the running
//! system's sysroot `/` only.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use ferry_engine::history::rollback::{self, Version};
use ferry_engine::privilege::{self, Caller, Machine, Request};
use ferry_engine::target::HostPaths;

use crate::i18n::{tr, trf};

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The OSTree sysroot whose default deployment to change (default: the booted system,
    /// or OSTREE_SYSROOT).
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

pub fn run(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let (host, sysroot) = match Caller::detect()? {
        Some(caller) => {
            // Under pkexec: the fixed places, and only the running system's sysroot.
            for name in privilege::IGNORED_VARIABLES {
                std::env::remove_var(name);
            }
            let machine = Machine::fixed();
            let asked = Request {
                sysroot: args.sysroot.clone(),
                ..Request::default()
            };
            let checked = privilege::validate(caller, &asked, &machine)?;
            (machine.host, checked.sysroot)
        }
        None => (HostPaths::from_env(), args.sysroot.clone()),
    };
    let Some(sysroot) = sysroot.or_else(|| host.os_target_sysroot().map(PathBuf::from)) else {
        bail!(tr(
            "this system was not booted from OSTree: name the sysroot with --sysroot"
        ));
    };
    let plan = rollback::plan(&sysroot, &host.boot)?;
    let question = trf(
        "Make {} the default instead of {}?",
        &[&shown(&plan.to), &shown(&plan.from)],
    );
    if !args.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            bail!(trf("{} Run again with --yes to do it.", &[&question]));
        }
        print!("{question} [y/N] ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        stdin.lock().take_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            println!("{}", tr("Nothing was changed."));
            return Ok(ExitCode::FAILURE);
        }
    }
    rollback::run(&plan, &host.boot)?;
    println!(
        "{}",
        trf(
            "{} is the default deployment of {} again; it runs from the next boot.",
            &[&shown(&plan.to), &sysroot.display()],
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// `1.0 (3f2a…)`, or the short commit alone.
fn shown(version: &Version) -> String {
    match &version.version {
        Some(text) => format!("{text} ({})", version.commit.short()),
        None => version.commit.short(),
    }
}

trait TakeLine {
    fn take_line(&mut self, line: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    /// One answer line, at most 1 KiB.
    fn take_line(&mut self, line: &mut String) -> std::io::Result<usize> {
        use std::io::Read;
        self.take(1024).read_line(line)
    }
}
