//! `ferryctl install [--sysroot DIR] [--installation user|system|DIR]... [--from SOURCE]...
//! [--offline] [--all | REF...] [--allow-downgrade] [--reboot] [--yes] [--json]`: install
//! what `ferryctl list` shows, as one transaction.
//!
//! It resolves exactly as `list` does, shows the plan and asks for confirmation on a
//! terminal (unless `--yes`), then pulls and deploys each update ([`ferry_engine::install`]).
//! With `--json` it prints the event stream the desktop app and the hook read: the plan,
//! phases and progress, one `result` per update, then `finished`. Exit code 1 when any
//! update failed or was cancelled; 0 with "already up to date" when there is nothing to do.
//!
//! Run as root through pkexec, it first narrows itself to what root may do for a user
//! ([`ferry_engine::privilege`]) and refuses the rest.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use ferry_engine::deploy;
use ferry_engine::event::Reporter;
use ferry_engine::install::{self, InstallOptions, Plan, Selection, Summary};
use ferry_engine::object::validate_ref_name;
use ferry_engine::privilege::{self, Caller, Machine, Refusal, Request};
use ferry_engine::source::source_name;
use ferry_engine::target::Target;
use ferry_engine::trust::TrustRoots;
use ferry_schema::event::{Event, MessageLevel, Phase};
use ferry_schema::{InstallStatus, Problem, TargetKind};

use super::selection::{gather, gather_on, SourceOptions, TargetOptions};
use super::{display_name, shown_version, version_change};
use crate::i18n::{tr, trf};
use crate::render::{self, human_bytes, Output};
use crate::signals;
use ferry_engine::resolve::sources::Gathered;

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// An OSTree sysroot whose OS to update (booted or not).
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,

    /// A Flatpak installation: user, system, an installation ID, or a directory. Repeat for
    /// several.
    #[arg(long, value_name = "user|system|DIR")]
    pub installation: Vec<String>,

    /// Also take updates from this drive or repository, or from this http(s) URL of a
    /// computer nearby. Repeat for several.
    #[arg(long = "from", value_name = "SOURCE")]
    pub from: Vec<String>,

    /// Do not ask the remotes' own servers.
    #[arg(long)]
    pub offline: bool,

    /// Take updates only from the --from sources: not from other recorded drives, the
    /// remotes' servers or computers nearby (the kiosk install of one inserted drive).
    #[arg(long, requires = "from")]
    pub only_from: bool,

    /// Install every update found.
    #[arg(long, conflicts_with = "refs")]
    pub all: bool,

    /// Accept commits older than what is installed.
    #[arg(long)]
    pub allow_downgrade: bool,

    /// Never use static deltas: fetch every object on its own.
    #[arg(long)]
    pub no_deltas: bool,

    /// Restart the machine when an update of the running OS was deployed.
    #[arg(long)]
    pub reboot: bool,

    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,

    /// Print progress and results as JSON lines on stdout (the stream the desktop app reads).
    #[arg(long)]
    pub json: bool,

    /// Cancel, as SIGTERM does, when standard input is closed: how a parent that cannot
    /// signal this process (it runs as root through pkexec) asks it to stop. Needs --yes,
    /// since standard input is then not read for the question.
    #[arg(long, requires = "yes")]
    pub cancel_on_stdin_eof: bool,

    /// What to install: refs (app/ID/ARCH/BRANCH, an OS ref), update IDs from
    /// `ferryctl list --json`, or app IDs. An app that is not installed yet, from
    /// `ferryctl list --available`, comes with the runtimes it needs.
    #[arg(value_name = "REF", value_parser = parse_name)]
    pub refs: Vec<String>,
}

fn parse_name(text: &str) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    // Update IDs (`flatpak:user:app/…`) contain colons; anything else must be a valid ref.
    if text.contains(':') || !text.contains('/') {
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            return Err(tr("a name cannot be empty or contain spaces").into());
        }
        return Ok(text.to_owned());
    }
    validate_ref_name(text)?;
    Ok(text.to_owned())
}

/// `list_sources` (`-v`): each update's sources follow its result line.
pub fn run(args: InstallArgs, list_sources: bool) -> anyhow::Result<ExitCode> {
    if !args.all && args.refs.is_empty() {
        // Bad usage, like clap's own errors: exit code 2.
        eprintln!(
            "{}{}",
            tr("error: "),
            tr("name the updates to install, or use --all")
        );
        return Ok(ExitCode::from(2));
    }
    let output = Output::new(args.json);
    // Before any thread starts: it edits the environment.
    let privileged = match privileged_request(&args) {
        Ok(privileged) => privileged,
        Err(refusal) => return Err(output.fail(refusal)),
    };
    // Asked before anything is read, so a refusal costs nothing.
    if let Some(privileged) = &privileged {
        let reasons = privilege::admin_reasons(privileged.request.allow_downgrade, []);
        if let Err(refusal) = privilege::authorize_admin(privileged.caller, &reasons) {
            return Err(output.fail(refusal));
        }
    }
    let cancel = signals::install()?;
    if args.cancel_on_stdin_eof {
        signals::cancel_on_stdin_eof(&cancel)?;
    }
    // On a terminal the plan and the question come first; a spinner would draw over them.
    if output.is_json() {
        output.on_event(Event::Phase {
            phase: Phase::Resolve,
            update: None,
        });
    }
    let asked = match &privileged {
        Some(privileged) => privileged.request.clone(),
        None => Request {
            sysroot: args.sysroot.clone(),
            installations: args.installation.clone(),
            from: args.from.clone(),
            allow_downgrade: args.allow_downgrade,
        },
    };
    let choice = TargetOptions {
        sysroot: asked.sysroot.as_deref(),
        installations: &asked.installations,
        repo: None,
    };
    let from = SourceOptions {
        named: &asked.from,
        offline: args.offline,
        only_named: args.only_from,
    };
    // One value for the listing and the pull, so both check commits against the same keys.
    let trust_roots = match &privileged {
        Some(privileged) => privileged.machine.trust_roots.clone(),
        None => TrustRoots::from_env(),
    };
    let Gathered {
        targets,
        sources: set,
        list: listing,
    } = match &privileged {
        Some(privileged) => gather_on(
            &privileged.machine.host,
            &privileged.machine.run_dir,
            choice,
            from,
            None,
            &trust_roots,
        )?,
        None => gather(choice, from, None, &trust_roots)?,
    };

    let selection = if args.all {
        Selection::All
    } else {
        Selection::Refs(args.refs.clone())
    };
    let plan = install::plan(&listing, &selection, &targets)
        .and_then(|plan| install::preflight(&plan, &targets).map(|()| plan));
    let plan = match plan {
        Ok(plan) => plan,
        Err(error) => return Err(output.fail(error)),
    };

    if plan.is_empty() {
        if output.is_json() {
            output.on_event(Event::Plan {
                updates: Vec::new(),
                problems: plan.problems.clone(),
            });
            output.on_event(Event::Finished { ok: true });
        } else {
            print_problems(&plan.problems);
            println!("{}", tr("Already up to date: nothing to install."));
        }
        return Ok(ExitCode::SUCCESS);
    }

    if let Some(privileged) = &privileged {
        let reasons = privilege::admin_reasons(false, &plan.updates);
        if let Err(refusal) = privilege::authorize_admin(privileged.caller, &reasons) {
            return Err(output.fail(refusal));
        }
    }

    if !output.is_json() {
        print!("{}", describe_plan(&plan));
    }
    if !args.yes {
        confirm()?;
    }

    let install_options = InstallOptions {
        allow_downgrade: args.allow_downgrade,
        trust_roots,
        workers: 0,
        no_deltas: args.no_deltas,
    };
    let summary = install::run(
        &plan,
        &targets,
        &set.sources,
        &install_options,
        &output,
        &cancel,
    );
    output.finish();
    if !output.is_json() {
        let sources = list_sources.then_some(&output);
        print!("{}", describe_results(&plan, &summary, sources));
    }
    if args.reboot {
        restart(&args, &plan, &summary, &targets, &output)?;
    }
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A run as root through pkexec: for whom, the request as validated, and the fixed places.
struct Privileged {
    caller: Caller,
    request: Request,
    machine: Machine,
}

/// None for an ordinary run; for a privileged one, the environment's overrides removed and
/// the request checked ([`privilege::validate`]).
fn privileged_request(args: &InstallArgs) -> Result<Option<Privileged>, Refusal> {
    let Some(caller) = Caller::detect()? else {
        return Ok(None);
    };
    for name in privilege::IGNORED_VARIABLES {
        std::env::remove_var(name);
    }
    let machine = Machine::fixed();
    let asked = Request {
        sysroot: args.sysroot.clone(),
        installations: args.installation.clone(),
        from: args.from.clone(),
        allow_downgrade: args.allow_downgrade,
    };
    let request = privilege::validate(caller, &asked, &machine)?;
    Ok(Some(Privileged {
        caller,
        request,
        machine,
    }))
}

/// Asks on the terminal; refuses when there is none to ask on.
fn confirm() -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "{}",
            tr("no terminal to ask for confirmation on: pass --yes to install without asking")
        );
    }
    print!("{}", tr("Install these updates? [y/N] "));
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let answer = answer.trim().to_lowercase();
    // The translated "yes" initial is accepted too.
    let yes_initial = tr("y");
    if answer == "y" || answer == "yes" || (!answer.is_empty() && answer == yes_initial) {
        Ok(())
    } else {
        bail!("{}", tr("nothing was installed"))
    }
}

fn print_problems(problems: &[Problem]) {
    eprint!("{}", render::problems(problems));
}

/// What will be installed, from where, and how much.
fn describe_plan(plan: &Plan) -> String {
    print_problems(&plan.problems);
    let mut text = trf(
        "{} updates to install, {} to download:\n",
        &[&plan.updates.len(), &human_bytes(plan.download_size())],
    );
    for update in &plan.updates {
        let from = update
            .sources
            .first()
            .map(|source| source.label.clone().unwrap_or_else(|| source_name(source)))
            .unwrap_or_default();
        let place = update.installation.clone().unwrap_or_default();
        text.push_str(&format!(
            "  {}  {}  {}  {}\n",
            display_name(update),
            version_change(update),
            human_bytes(update.download_size),
            trf("into {} from {}", &[&place, &from]),
        ));
    }
    text
}

/// One line per update, each followed by its sources when `sources` is given (`-v`), then
/// what remains to do.
fn describe_results(plan: &Plan, summary: &Summary, sources: Option<&Output>) -> String {
    let mut text = String::new();
    for (update, result) in plan.updates.iter().zip(&summary.results) {
        let status = match result.status {
            InstallStatus::Installed => tr("installed"),
            InstallStatus::UpToDate => tr("up to date"),
            InstallStatus::Failed => tr("FAILED"),
            InstallStatus::Cancelled => tr("cancelled"),
            InstallStatus::Skipped => tr("skipped"),
        };
        // What went well needs no detail; anything else says why.
        let detail = match result.status {
            InstallStatus::Installed | InstallStatus::UpToDate => None,
            _ => result
                .message
                .as_deref()
                .filter(|message| !message.is_empty()),
        };
        let what = match shown_version(update) {
            Some(version) => format!("{}: {version}", display_name(update)),
            None => display_name(update),
        };
        text.push_str(&match detail {
            Some(detail) => format!("{what} {status}: {detail}\n"),
            None => format!("{what} {status}\n"),
        });
        if let Some(output) = sources {
            let used = if result.sources.is_empty() {
                output.sources_of(&result.update)
            } else {
                result.sources.clone()
            };
            text.push_str(&render::describe_sources(&used));
        }
    }
    if summary.restart_required() {
        text.push_str(&tr(
            "A new OS deployment was made: restart the machine to complete the update.\n",
        ));
    }
    text
}

/// `--reboot`: restarts when the running OS got a new deployment (a result the engine marks
/// `restart_required`); a sysroot that is not the running system is never restarted.
fn restart(
    args: &InstallArgs,
    plan: &Plan,
    summary: &Summary,
    targets: &[Target],
    output: &Output,
) -> anyhow::Result<()> {
    if !args.reboot {
        return Ok(());
    }
    let mut restart = false;
    for (update, result) in plan.updates.iter().zip(&summary.results) {
        if update.target != TargetKind::Os || result.status != InstallStatus::Installed {
            continue;
        }
        if result.restart_required {
            restart = true;
        } else if let Some(target) = install::target_of(targets, update) {
            let text = trf(
                "{} is not the running system, so the machine is not restarted for it.",
                &[&target.installation],
            );
            say(output, MessageLevel::Info, text);
        }
    }
    if restart {
        say(
            output,
            MessageLevel::Info,
            tr("Restarting to complete the update."),
        );
        deploy::reboot()?;
    }
    Ok(())
}

fn say(output: &Output, level: MessageLevel, text: String) {
    if output.is_json() {
        output.on_event(Event::Message { level, text });
    } else {
        println!("{text}");
    }
}
