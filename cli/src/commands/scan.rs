//! `ferryctl scan PATH [--json]`: the OSTree repositories on a drive or at a path.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ferry_engine::scan::scan;
use ferry_schema::ScanReport;

use super::format_date;
use crate::i18n::{tr, trf};
use crate::render;

#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// A drive's mount point, or a repository.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Print the result as one JSON object (`repos`, `problems`).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let report = scan(&args.path)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let text = serde_json::to_string_pretty(&report).context("cannot format the report")?;
        writeln!(out, "{text}")?;
    } else {
        write!(out, "{}", human(&args.path, &report))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The report as a table per repository, then the problems.
fn human(path: &std::path::Path, report: &ScanReport) -> String {
    let mut text = String::new();
    if report.repos.is_empty() {
        text.push_str(&trf(
            "No OSTree repository found at {}.\n",
            &[&path.display()],
        ));
    }
    for repo in &report.repos {
        text.push_str(&trf("{} ({} repository)\n", &[&repo.path, &repo.mode]));
        if repo.refs.is_empty() {
            text.push_str(&format!("  {}\n", tr("no refs")));
            continue;
        }
        let headings = [
            tr("REF"),
            tr("COLLECTION"),
            tr("COMMIT"),
            tr("VERSION"),
            tr("DATE"),
        ];
        let rows: Vec<[String; 5]> = repo
            .refs
            .iter()
            .map(|r| {
                [
                    r.ref_name.clone(),
                    r.collection_id.clone().unwrap_or_else(|| "-".to_owned()),
                    if r.partial {
                        // Some languages of a locale extension.
                        trf("{} (in part)", &[&r.commit.short()])
                    } else {
                        r.commit.short()
                    },
                    r.version.clone().unwrap_or_else(|| "-".to_owned()),
                    format_date(r.timestamp),
                ]
            })
            .collect();
        text.push_str(&render::table(&headings, &rows, "  "));
    }
    text.push_str(&render::problems(&report.problems));
    text
}
