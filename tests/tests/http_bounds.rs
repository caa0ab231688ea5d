//! What a server or peer states about a commit bounds what is read of it: a commit larger
//! than the size its summary lists is refused, not read to the end.

mod pull_support;

use anyhow::{ensure, Context, Result};
use ferry_engine::cancel::CancelToken;
use ferry_engine::object::summary::build_summary;
use ferry_engine::object::{Checksum, ObjectKind, Summary};
use ferry_engine::schema::SourceKind;
use ferry_engine::source::{HttpSource, Interrupt, Source};
use ferry_tests::tree::TreeOptions;
use pull_support::peer::Peer;
use pull_support::Publisher;
use tempfile::TempDir;

#[test]
fn a_commit_larger_than_its_summary_says_is_refused() -> Result<()> {
    let tmp = TempDir::new()?;
    let publisher = Publisher::new(&tmp.path().join("publisher"), TreeOptions::full())?;
    let commit: Checksum = publisher.commit.parse().context("commit checksum")?;
    let summary_path = publisher.repo.path.join("summary");
    let summary = Summary::parse(&std::fs::read(&summary_path)?)?;
    let stated = |shrink: u64| -> Result<Vec<u8>> {
        let refs: Vec<_> = summary
            .refs
            .iter()
            .map(|r| {
                let size = if r.commit == commit {
                    r.commit_size - shrink
                } else {
                    r.commit_size
                };
                (r.name.clone(), r.commit, size, r.metadata.clone())
            })
            .collect();
        Ok(build_summary(&refs, &summary.metadata)?)
    };
    let server = Peer::serve(&publisher.repo.path)?;
    let url = format!("{}/", server.url);

    // As published, the commit is read whole.
    std::fs::write(&summary_path, stated(0)?)?;
    let source = HttpSource::connect(&url, SourceKind::Lan, None, &CancelToken::new())?;
    let bytes = source.fetch_metadata(ObjectKind::Commit, &commit, &Interrupt::never())?;
    ensure!(
        bytes.len() as u64
            == summary
                .refs
                .iter()
                .find(|r| r.commit == commit)
                .map_or(0, |r| r.commit_size)
    );

    // A summary that understates it: the read stops at the stated size.
    std::fs::write(&summary_path, stated(1)?)?;
    let source = HttpSource::connect(&url, SourceKind::Lan, None, &CancelToken::new())?;
    let error = source
        .fetch_metadata(ObjectKind::Commit, &commit, &Interrupt::never())
        .expect_err("read past the stated size");
    // The message names the source; what went wrong is its cause.
    let error = ferry_engine::causes::text(&error);
    ensure!(error.contains("bytes allowed"), "{error}");
    Ok(())
}
