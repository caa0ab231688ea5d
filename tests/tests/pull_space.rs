//! Hostile content against a destination on a small ext4 image: headers that lie about
//! their size in either direction, a decompression bomb, compressed padding, and a header
//! that disagrees with the signed commit's `ostree.sizes`. Each pull must be refused with
//! the destination ref unchanged and `ostree fsck` clean, and a background thread polling
//! `statvfs` checks that the filesystem never went below the repository's reserve.

mod pull_support;

use anyhow::{ensure, Context, Result};
use ferry_tests::loopdev::{FreeSpaceWatch, LoopDevice, LoopImage, Mount};
use ferry_tests::ostree::{CommitSpec, ObjectKind, OstreeRepo, RepoMode};
use ferry_tests::tamper;
use ferry_tests::tree::{standard, TreeOptions};
use pull_support::{
    assert_refused, client, pull_remote, remote_ref, trust_root, Publisher, PullRun, BRANCH,
};
use tempfile::TempDir;

/// What the destination repository keeps free (`core.min-free-space-size`).
const RESERVE: u64 = 4 << 20;
const RESERVE_SETTING: &str = "4MB";

/// The publisher with v1 on a drive-like repository, and a destination that already holds
/// v1, on a 32 MiB ext4 image.
struct Scene {
    tmp: TempDir,
    publisher: Publisher,
    device: Option<LoopDevice>,
    mount: Option<Mount>,
    dest: OstreeRepo,
    before: Option<String>,
}

impl Scene {
    fn new(mode: RepoMode) -> Result<Self> {
        ferry_tests::require_root("a loop-mounted destination")?;
        let tmp = TempDir::new()?;
        let publisher = Publisher::new(&tmp.path().join("publisher"), TreeOptions::plain())?;
        let image = LoopImage::create(&tmp.path().join("dest.img"), 32, "DEST")?;
        let device = image.attach()?;
        let mount = device.mount(&tmp.path().join("dest"), &[])?;
        let dest = client(&mount.target.join("repo"), mode, Some(&publisher.key))?;
        dest.config_set("core.min-free-space-size", RESERVE_SETTING)?;
        pull_remote(
            &trust_root(tmp.path()),
            &dest.path,
            &publisher.repo.path,
            &[BRANCH],
        )?
        .require_success()?;
        let before = Some(publisher.commit.clone());
        Ok(Self {
            tmp,
            publisher,
            device: Some(device),
            mount: Some(mount),
            dest,
            before,
        })
    }

    /// A signed v2 on the publisher's branch with `extra` files added.
    fn publish(&self, extra: &[(&str, Vec<u8>)], sizes: bool) -> Result<String> {
        let tree = &self.publisher.tree;
        tree.write_file(standard::HELLO, standard::HELLO_V2)?;
        for (path, content) in extra {
            tree.write_file(path, content)?;
        }
        let mut spec = CommitSpec::new(BRANCH, &tree.root)
            .version("2.0")
            .timestamp("2030-01-01 00:00:00")
            .sign(&self.publisher.key);
        if sizes {
            spec = spec.generate_sizes();
        }
        Ok(self.publisher.repo.commit(&spec)?)
    }

    /// Pulls the branch while watching the destination's free space; returns the run and
    /// the least free space seen.
    fn pull(&self) -> Result<(PullRun, u64)> {
        let watch = FreeSpaceWatch::start(&self.dest.path);
        let run = pull_remote(
            &trust_root(self.tmp.path()),
            &self.dest.path,
            &self.publisher.repo.path,
            &[BRANCH],
        );
        let least = watch.stop()?;
        Ok((run?, least))
    }

    /// Checks the refusal, the reserve and that `object` was not stored.
    fn expect_refused(&self, needles: &[&str], object: &str) -> Result<()> {
        let (run, least) = self.pull()?;
        assert_refused(&run, &self.dest, &remote_ref(BRANCH), &self.before, needles)?;
        ensure!(
            least >= RESERVE,
            "the destination went down to {least} bytes free, below its {RESERVE}-byte reserve"
        );
        ensure!(
            !self.dest.object_path(object, ObjectKind::Content)?.exists(),
            "the refused object {object} was stored"
        );
        Ok(())
    }

    fn source(&self) -> Result<String> {
        Ok(std::fs::canonicalize(&self.publisher.repo.path)?
            .display()
            .to_string())
    }

    fn remove(mut self) -> Result<()> {
        if let Some(mount) = self.mount.take() {
            mount.unmount()?;
        }
        if let Some(device) = self.device.take() {
            device.detach()?;
        }
        Ok(())
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        drop(self.mount.take());
        if let Some(device) = self.device.take() {
            let _ = device.detach();
        }
    }
}

#[test]
fn serial_a_header_declaring_more_than_the_free_space_is_refused_before_writing() -> Result<()> {
    let scene = Scene::new(RepoMode::BareUser)?;
    let commit = scene.publish(&[], false)?;
    let object = scene
        .publisher
        .repo
        .content_checksum(&commit, standard::HELLO)?;
    tamper::set_filez_size(&scene.publisher.repo, &commit, standard::HELLO, 1 << 30)?;
    scene.expect_refused(&["not enough free space", "hello.txt"], &object)?;
    scene.remove()
}

#[test]
fn serial_a_decompression_bomb_larger_than_the_budget_is_refused_before_writing() -> Result<()> {
    let scene = Scene::new(RepoMode::BareUser)?;
    // 64 MiB of zeros: a few hundred KiB on the drive, twice the destination unpacked.
    let commit = scene.publish(&[("usr/share/zeros", vec![0u8; 64 << 20])], false)?;
    let object = scene
        .publisher
        .repo
        .content_checksum(&commit, "usr/share/zeros")?;
    scene.expect_refused(&["not enough free space", "zeros"], &object)?;
    scene.remove()
}

#[test]
fn serial_compressed_padding_in_an_archive_copy_is_refused_before_filling_the_disk() -> Result<()> {
    let scene = Scene::new(RepoMode::Archive)?;
    let commit = scene.publish(&[], false)?;
    let object = scene
        .publisher
        .repo
        .content_checksum(&commit, standard::HELLO)?;
    // 40 MiB of empty deflate blocks before the real data: the object still hashes right.
    tamper::pad_filez(&scene.publisher.repo, &commit, standard::HELLO, 8 << 20)?;
    scene.expect_refused(&[&object, "longer than", &scene.source()?], &object)?;
    scene.remove()
}

#[test]
fn serial_headers_lying_about_their_size_are_refused_in_every_mode() -> Result<()> {
    let real = standard::HELLO_V2.len() as u64;
    for mode in [RepoMode::BareUser, RepoMode::Archive] {
        // An archive copy finds a short stream while it inflates; the drive's reader, which
        // hands out inflated content, finds it first otherwise.
        let short = if mode == RepoMode::Archive {
            "ended after"
        } else {
            "shorter than"
        };
        for (declared, needle) in [(real - 1, "longer than"), (real + 1000, short)] {
            let scene = Scene::new(mode)?;
            let commit = scene.publish(&[], false)?;
            let object = scene
                .publisher
                .repo
                .content_checksum(&commit, standard::HELLO)?;
            tamper::set_filez_size(&scene.publisher.repo, &commit, standard::HELLO, declared)?;
            scene
                .expect_refused(&[&object, needle, &scene.source()?], &object)
                .with_context(|| format!("{mode:?}, header declaring {declared} bytes"))?;
            scene.remove()?;
        }
    }
    Ok(())
}

#[test]
fn serial_a_header_disagreeing_with_ostree_sizes_is_refused_at_once() -> Result<()> {
    for mode in [RepoMode::BareUser, RepoMode::Archive] {
        let scene = Scene::new(mode)?;
        let commit = scene.publish(&[], true)?;
        let object = scene
            .publisher
            .repo
            .content_checksum(&commit, standard::HELLO)?;
        let declared = standard::HELLO_V2.len() as u64 - 1;
        tamper::set_filez_size(&scene.publisher.repo, &commit, standard::HELLO, declared)?;
        scene
            .expect_refused(&[&object, "ostree.sizes", &scene.source()?], &object)
            .with_context(|| format!("{mode:?}"))?;
        scene.remove()?;
    }
    Ok(())
}
