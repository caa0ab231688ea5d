//! `ferryctl pull --repo DEST --from SOURCE... [--remote NAME | --mirror] [--collection-id ID]
//! [--allow-downgrade] [--json] REF...`: fetch refs from drives, repositories or peers into a
//! local repository, verifying every object and the commit's signature.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use ferry_engine::cancel::CancelToken;
use ferry_engine::event::Reporter;
use ferry_engine::object::{
    validate_collection_id, validate_ref_name, validate_remote_name, InvalidName,
};
use ferry_engine::pull::{
    pull, PullOptions, PullRequest, PullStatus, PullTrust, PulledRef, RefOutcome, RefTarget,
};
use ferry_engine::repo::Repo;
use ferry_engine::source::{open_drive, HttpSource, Source};
use ferry_engine::trust::{Signer, TrustRoots, Verdict};
use ferry_schema::event::{Event, MessageLevel};
use ferry_schema::{InstallResult, InstallStatus, SourceKind, TargetKind};

use crate::i18n::{tr, trf};
use crate::render::{describe_sources, human_bytes, Output};
use crate::signals;

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// The repository to pull into.
    #[arg(long, value_name = "DEST")]
    pub repo: PathBuf,

    /// Where to take objects from: a drive's mount point, a repository, or the http(s) URL of
    /// an archive repository. Repeat for several; drives are read first.
    #[arg(long = "from", value_name = "SOURCE", required = true)]
    pub from: Vec<String>,

    /// Store each ref at refs/remotes/NAME/REF; NAME's configuration in DEST decides which
    /// signatures count.
    #[arg(long, value_name = "NAME", value_parser = parse_remote, conflicts_with = "mirror")]
    pub remote: Option<String>,

    /// Store each ref at refs/mirrors/COLLECTION-ID/REF; the remote of DEST with that
    /// collection ID decides which signatures count.
    #[arg(long)]
    pub mirror: bool,

    /// The collection of the refs, when the sources offer a ref in several.
    #[arg(long, value_name = "ID", value_parser = parse_collection_id)]
    pub collection_id: Option<String>,

    /// Accept commits older than what the ref points at now.
    #[arg(long)]
    pub allow_downgrade: bool,

    /// Never use static deltas: fetch every object on its own.
    #[arg(long)]
    pub no_deltas: bool,

    /// Print progress and results as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,

    /// Refs to pull.
    #[arg(value_name = "REF", required = true, value_parser = parse_ref)]
    pub refs: Vec<String>,
}

fn parse_ref(text: &str) -> Result<String, InvalidName> {
    validate_ref_name(text).map(|()| text.to_owned())
}

fn parse_remote(text: &str) -> Result<String, InvalidName> {
    validate_remote_name(text).map(|()| text.to_owned())
}

fn parse_collection_id(text: &str) -> Result<String, InvalidName> {
    validate_collection_id(text).map(|()| text.to_owned())
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// `list_sources` (`-v`): each ref's sources follow its result line.
pub fn run(args: PullArgs, list_sources: bool) -> anyhow::Result<ExitCode> {
    let cancel = signals::install()?;
    let output = Output::new(args.json);
    let dest = Repo::open(&args.repo).with_context(|| {
        trf(
            "cannot open the destination {}; create it with `ostree init`",
            &[&args.repo.display()],
        )
    })?;
    let trust = PullTrust::for_repo(&args.repo, TrustRoots::from_env())?;
    let sources = open_sources(&args.from, &output, &cancel)?;

    let target = match (&args.remote, args.mirror) {
        (Some(remote), _) => RefTarget::Remote(remote.clone()),
        (None, true) => RefTarget::Mirror,
        (None, false) => RefTarget::Head,
    };
    let requests: Vec<PullRequest> = args
        .refs
        .iter()
        .map(|name| {
            PullRequest::new(name, target.clone())
                .with_collection(args.collection_id.as_deref())
                .with_update_id(name.clone())
        })
        .collect();
    let mut options = PullOptions::new(trust);
    options.allow_downgrade = args.allow_downgrade;
    options.no_deltas = args.no_deltas;

    let outcomes = pull(&dest, &sources, &requests, &options, &output, &cancel);
    output.finish();
    let outcomes = outcomes?;
    let ok = report(&outcomes, &output, list_sources)?;
    if output.is_json() {
        output.on_event(Event::Finished { ok });
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Opens every `--from`: drives and repositories are scanned (a repository leading off the
/// drive is refused there), URLs are connected to. Sources that cannot be used are reported
/// as warnings; having none at all is an error.
fn open_sources(
    from: &[String],
    output: &Output,
    cancel: &CancelToken,
) -> anyhow::Result<Vec<Arc<dyn Source>>> {
    let mut sources: Vec<Arc<dyn Source>> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    for location in from {
        if is_url(location) {
            match HttpSource::connect(location, SourceKind::Lan, None, cancel) {
                Ok(source) => sources.push(Arc::new(source)),
                Err(error) => problems.push(ferry_engine::causes::text(&error)),
            }
            continue;
        }
        let drive = open_drive(std::path::Path::new(location), None, None)?;
        for problem in &drive.report.problems {
            let text = match &problem.ref_name {
                Some(name) => format!("{} ({name}): {}", problem.source, problem.reason),
                None => format!("{}: {}", problem.source, problem.reason),
            };
            problems.push(text);
        }
        if drive.sources.is_empty() && drive.report.problems.is_empty() {
            problems.push(trf("no OSTree repository found at {}", &[location]));
        }
        for source in drive.sources {
            sources.push(Arc::new(source));
        }
    }
    if sources.is_empty() {
        bail!("{}", trf("no usable source: {}", &[&problems.join("; ")]));
    }
    for problem in problems {
        if output.is_json() {
            output.on_event(Event::Message {
                level: MessageLevel::Warning,
                text: problem,
            });
        } else {
            eprintln!("{}{problem}", tr("warning: "));
        }
    }
    Ok(sources)
}

/// Prints how each ref ended, with its sources when `list_sources`; returns whether all
/// succeeded.
fn report(outcomes: &[RefOutcome], output: &Output, list_sources: bool) -> anyhow::Result<bool> {
    let mut ok = true;
    let mut stdout = std::io::stdout().lock();
    for outcome in outcomes {
        let id = outcome
            .request
            .update_id
            .clone()
            .unwrap_or_else(|| outcome.request.ref_name.clone());
        let (status, message) = match &outcome.result {
            Ok(pulled) => (
                match pulled.status {
                    PullStatus::Updated => InstallStatus::Installed,
                    PullStatus::UpToDate => InstallStatus::UpToDate,
                },
                describe(pulled),
            ),
            Err(error) => {
                ok = false;
                let status = if error.is_cancelled() {
                    InstallStatus::Cancelled
                } else {
                    InstallStatus::Failed
                };
                crate::print_error(Some(&outcome.request.ref_name), error, list_sources);
                (status, ferry_engine::causes::text(error))
            }
        };
        // The pull's own account when it finished; what progress said when it failed.
        let sources = match &outcome.result {
            Ok(pulled) if !pulled.sources.is_empty() => pulled.sources.clone(),
            _ => output.sources_of(&id),
        };
        if output.is_json() {
            output.on_event(Event::Result(InstallResult {
                update: id,
                ref_name: outcome.request.ref_name.clone(),
                target: TargetKind::Repo,
                status,
                message: Some(message),
                restart_required: false,
                sources,
            }));
        } else {
            if outcome.result.is_ok() {
                writeln!(stdout, "{message}")?;
            }
            if list_sources {
                write!(stdout, "{}", describe_sources(&sources))?;
            }
        }
    }
    stdout.flush()?;
    Ok(ok)
}

/// One line about a pulled ref, for people.
fn describe(pulled: &PulledRef) -> String {
    let version = pulled
        .version
        .as_deref()
        .map(|v| trf(", version {}", &[&v]))
        .unwrap_or_default();
    let trust = match &pulled.verdict {
        Verdict::Unsigned => trf(
            "unsigned: remote '{}' verifies no signatures",
            &[&pulled.remote],
        ),
        Verdict::Signed { signers } => {
            let names: Vec<String> = signers.iter().map(signer_name).collect();
            trf("signed by {}", &[&names.join(", ")])
        }
    };
    match pulled.status {
        PullStatus::UpToDate => trf(
            "{}: already up to date at {}{} ({})",
            &[&pulled.location, &pulled.commit.short(), &version, &trust],
        ),
        PullStatus::Updated => trf(
            "{}: updated to {}{} ({}) from {}: {} objects, {}",
            &[
                &pulled.location,
                &pulled.commit.short(),
                &version,
                &trust,
                &pulled.source,
                &pulled.stats.objects(),
                &human_bytes(pulled.stats.bytes),
            ],
        ),
    }
}

fn signer_name(signer: &Signer) -> String {
    match signer {
        Signer::Gpg(gpg) => match &gpg.user_id {
            Some(user) => format!("key 0x{} ({user})", gpg.primary_fingerprint),
            None => format!("key 0x{}", gpg.primary_fingerprint),
        },
        Signer::Ed25519(key) => format!("ed25519 key {key}"),
    }
}
