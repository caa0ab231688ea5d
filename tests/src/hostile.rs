//! The hostile corpus: drives, repositories and peers crafted to hurt the machine that reads
//! them, each paired with what a refusal must look like, and [`expect_refused`], the one check
//! every case goes through (see `tests/tests/hostile_corpus.rs`).
//!
//! Every case starts from a [`Scene`]: a publisher with a signed 1.0 commit, and a destination
//! that already holds 1.0 through remote `origin`. The case then makes a newer commit and a
//! drive with the real tools (`ostree commit`, `ostree create-usb`, `gpg`), and edits the
//! drive's bytes: metadata objects are written directly as GVariant (see [`gv`]), and every
//! checksum above an edit is recomputed and the result signed again, so only the check the
//! case is about can refuse it.
//!
//! Large objects are sparse files (a little over the cap they test, [`oversized_len`]), so
//! they cost neither time nor disk; no case needs a mount.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{FixtureError, IoContext, Result};
use crate::gpg::GpgKey;
use crate::http::StaticServer;
use crate::ostree::{
    object_path_in, CommitSpec, ObjectKind, OstreeRepo, RefLocation, RemoteSpec, RepoMode, UsbDrive,
};
use crate::tamper;
use crate::tree::{standard, Tree, TreeOptions};
use crate::Tool;

pub use crate::publisher::{BRANCH, COLLECTION};
pub const OTHER_COLLECTION: &str = "org.other.Os";
pub const REMOTE: &str = "origin";

/// How long a refusal may take: long enough for a loaded 2-core machine, short enough that a
/// pull stuck on a FIFO or a loop fails the case instead of the suite.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Levels of the deeply nested tree: far beyond libostree's recursion limit (256) and, with
/// one-letter names, beyond PATH_MAX (4096 bytes).
pub const DEEP_LEVELS: usize = 2500;

/// Entries of the huge dirtree: a million, about 46 MB, under the 128 MiB metadata cap. (Two
/// million take a debug build of `ferryctl` about 50 s to refuse on a loaded 2-core machine.)
pub const MANY_ENTRIES: usize = 1_000_000;

/// The size of an object "a little over" `cap`, the engine's limit for its kind.
pub fn oversized_len(cap: u64) -> u64 {
    cap + 1
}

/// A publisher with `BRANCH` 1.0 signed in an archive repository of [`COLLECTION`], and a
/// bare-user destination whose remote `origin` trusts the publisher and already holds 1.0.
pub struct Scene {
    pub base: PathBuf,
    pub key: GpgKey,
    pub tree: Tree,
    pub server: OstreeRepo,
    pub v1: String,
    pub dest: OstreeRepo,
    /// `FERRY_TRUST_ROOT`: the machine-wide trust directories, empty.
    pub trust_root: PathBuf,
}

impl Scene {
    pub fn new(base: &Path) -> Result<Scene> {
        let key = GpgKey::generate(&base.join("gnupg"), "Publisher <publisher@example.org>")?;
        let tree = Tree::standard(&base.join("tree"), TreeOptions::plain())?;
        let server = OstreeRepo::init(&base.join("server"), RepoMode::Archive, Some(COLLECTION))?;
        let v1 = server.commit(
            &CommitSpec::new(BRANCH, &tree.root)
                .subject("first")
                .version("1.0")
                .timestamp("2024-01-01 00:00:00")
                .sign(&key),
        )?;
        let dest = OstreeRepo::init(&base.join("dest"), RepoMode::BareUser, None)?;
        dest.remote_add(
            &RemoteSpec::new(REMOTE, "http://127.0.0.1:9/unused")
                .collection_id(COLLECTION)
                .trust(&key),
        )?;
        dest.pull_local(&server.path, &[BRANCH], &["--remote=origin"])?;
        let trust_root = base.join("trust-root");
        fs::create_dir_all(&trust_root).at("create directory", &trust_root)?;
        let scene = Scene {
            base: base.to_path_buf(),
            key,
            tree,
            server,
            v1,
            dest,
            trust_root,
        };
        if scene.dest.read_ref(&dest_ref())?.as_deref() != Some(scene.v1.as_str()) {
            return Err(FixtureError::Unexpected(
                "the destination does not hold 1.0 after ostree pull-local".into(),
            ));
        }
        Ok(scene)
    }

    /// Commits 2.0 (a changed and an added file, dated 2030) on the server's `BRANCH`,
    /// signed by `key` when given, with `spec` adjusting the commit. Returns its checksum.
    pub fn commit_v2<'a>(
        &self,
        key: Option<&'a GpgKey>,
        spec: impl FnOnce(CommitSpec<'a>) -> CommitSpec<'a>,
    ) -> Result<String> {
        self.tree.write_file(standard::HELLO, standard::HELLO_V2)?;
        self.tree
            .write_file(standard::ADDED_IN_V2, "new in the second commit\n")?;
        let mut commit = CommitSpec::new(BRANCH, &self.tree.root)
            .subject("second")
            .version("2.0")
            .timestamp("2030-01-01 00:00:00");
        if let Some(key) = key {
            commit = commit.sign(key);
        }
        self.server.commit(&spec(commit))
    }

    /// `ostree create-usb` of the server's `BRANCH` onto `BASE/NAME`.
    pub fn drive(&self, name: &str) -> Result<UsbDrive> {
        self.server
            .create_usb(&self.base.join(name), &[(COLLECTION, BRANCH)])
    }

    /// A drive `drive` holding 2.0 signed by `key` (the publisher when `None`).
    pub fn drive_with_v2(&self, key: Option<&GpgKey>) -> Result<(UsbDrive, String)> {
        let commit = self.commit_v2(Some(key.unwrap_or(&self.key)), |c| c)?;
        Ok((self.drive("drive")?, commit))
    }

    /// Adds `keyring` (a binary public keyring) to what remote `origin` trusts.
    pub fn trust_also(&self, keyring: &Path) -> Result<()> {
        self.dest
            .ostree()
            .args(["remote", "gpg-import"])
            .arg(crate::cmd::opt_path("--keyring", keyring))
            .arg(REMOTE)
            .run()?;
        Ok(())
    }

    /// A refusal expected when pulling `BRANCH` from `source` through remote `origin`, with
    /// the destination staying at 1.0.
    pub fn case(&self, source: impl Into<String>) -> Case {
        Case {
            dest: self.dest.clone(),
            trust_root: self.trust_root.clone(),
            watched: self.base.clone(),
            source: source.into(),
            names_source: true,
            extra: vec!["--remote".into(), REMOTE.into()],
            refs: vec![BRANCH.into()],
            location: dest_ref(),
            before: Some(self.v1.clone()),
            needles: Vec::new(),
            also_list: false,
            _server: None,
        }
    }

    /// [`Scene::case`] for a drive.
    pub fn drive_case(&self, drive: &UsbDrive) -> Case {
        self.case(drive.root.display().to_string())
    }
}

/// `refs/remotes/origin/BRANCH`.
pub fn dest_ref() -> RefLocation {
    RefLocation::Remote {
        remote: REMOTE.into(),
        name: BRANCH.into(),
    }
}

/// `refs/mirrors/COLLECTION/BRANCH`, where `create-usb` puts the ref on a drive.
pub fn mirror_ref(collection_id: &str) -> RefLocation {
    RefLocation::Mirror {
        collection_id: collection_id.into(),
        name: BRANCH.into(),
    }
}

/// One hostile input and what its refusal must show.
pub struct Case {
    pub dest: OstreeRepo,
    pub trust_root: PathBuf,
    /// Everything under it but `dest` must be left as it was: the drive, the publisher, the
    /// keys, the trust root.
    pub watched: PathBuf,
    /// `--from`: the drive's path or the peer's URL, which the error must name.
    pub source: String,
    /// Whether the error must name the source; not when the fault is in the destination's
    /// own configuration (then a needle names the destination).
    pub names_source: bool,
    pub extra: Vec<String>,
    pub refs: Vec<String>,
    pub location: RefLocation,
    pub before: Option<String>,
    /// What the error line must also say.
    pub needles: Vec<String>,
    /// Also run `ferryctl list` and `ferry-hook --mount` on the source, which must end within
    /// [`TIMEOUT`].
    pub also_list: bool,
    _server: Option<StaticServer>,
}

impl Case {
    pub fn needle(mut self, needle: impl Into<String>) -> Self {
        self.needles.push(needle.into());
        self
    }

    pub fn listed(mut self) -> Self {
        self.also_list = true;
        self
    }
}

fn ferryctl(case: &Case) -> Result<Tool> {
    Ok(crate::bins::ferryctl()?
        .env("FERRY_TRUST_ROOT", &case.trust_root)
        .env("LC_ALL", "C.UTF-8")
        .env_remove("FERRY_LOG"))
}

fn failed(what: String) -> FixtureError {
    FixtureError::Unexpected(what)
}

/// The check every case goes through: `ferryctl pull` ends within [`TIMEOUT`] with exit code
/// 1 and one error line naming the source and every needle, without a panic; the destination
/// ref is unchanged and `ostree fsck` passes; nothing under the watched folder but the
/// destination changed (the drive included). With `also_list`, `ferryctl list` and
/// `ferry-hook --mount` on the source end within the timeout without a panic.
pub fn expect_refused(case: &Case) -> Result<()> {
    let before = snapshot(&case.watched, &case.dest.path)?;
    let pull = ferryctl(case)?
        .args(["pull", "--json", "--repo"])
        .arg(&case.dest.path)
        .args(["--from", &case.source])
        .args(&case.extra)
        .args(&case.refs);
    let display = pull.display();
    let started = std::time::Instant::now();
    let out = pull
        .output_within(TIMEOUT)?
        .ok_or_else(|| failed(format!("`{display}` still ran after {TIMEOUT:?}")))?;
    let shown = format!(
        "`{display}` ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.code(),
        out.stdout,
        out.stderr
    );
    if out.code() != Some(1) || out.stderr.contains("panicked") {
        return Err(failed(format!("expected a refusal (exit code 1): {shown}")));
    }
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    let [error] = errors.as_slice() else {
        return Err(failed(format!("expected one error line: {shown}")));
    };
    eprintln!("{display} (refused in {:?})\n  {error}", started.elapsed());
    let source = case.names_source.then_some(&case.source);
    for needle in source.into_iter().chain(&case.needles) {
        if !error.contains(needle.as_str()) {
            return Err(failed(format!(
                "the error does not mention {needle:?}:\n{error}"
            )));
        }
    }
    let now = case.dest.read_ref(&case.location)?;
    if now != case.before {
        return Err(failed(format!(
            "the destination ref changed from {:?} to {now:?}",
            case.before
        )));
    }
    case.dest.fsck()?;
    if case.also_list {
        let list = ferryctl(case)?
            .args(["list", "--offline", "--json", "--repo"])
            .arg(&case.dest.path)
            .args(["--from", &case.source]);
        let display = list.display();
        let out = list
            .output_within(TIMEOUT)?
            .ok_or_else(|| failed(format!("`{display}` still ran after {TIMEOUT:?}")))?;
        if !matches!(out.code(), Some(0 | 1)) || out.stderr.contains("panicked") {
            return Err(failed(format!(
                "`{display}` crashed ({:?}):\n{}",
                out.code(),
                out.stderr
            )));
        }
        expect_hook_ends(case)?;
    }
    let after = snapshot(&case.watched, &case.dest.path)?;
    if before != after {
        let changed: Vec<_> = before
            .iter()
            .filter(|(path, entry)| after.get(*path) != Some(entry))
            .map(|(path, _)| path.clone())
            .chain(
                after
                    .keys()
                    .filter(|path| !before.contains_key(*path))
                    .cloned(),
            )
            .take(10)
            .collect();
        return Err(failed(format!(
            "the refused pull changed files outside the destination: {changed:?}"
        )));
    }
    Ok(())
}

/// `ferry-hook --mount SOURCE`, as when the drive is inserted, must end within [`TIMEOUT`]
/// without a panic. Its records and links go to a folder of their own, outside the watched one.
fn expect_hook_ends(case: &Case) -> Result<()> {
    let run = tempfile::TempDir::new().at("create temporary directory", "/tmp")?;
    let hook = crate::bins::ferry_hook()?
        .env("FERRY_RUN_DIR", run.path().join("run"))
        .env("FERRY_SIDELOAD_DIR", run.path().join("sideload"))
        .env("FERRY_CONFIG", run.path().join("ferry.conf"))
        .env("FERRY_REBOOT_COMMAND", "/bin/false")
        .env("FERRY_TRUST_ROOT", &case.trust_root)
        .env_remove("FERRY_ACCEPT_FIXED_DRIVES")
        .env_remove("OSTREE_SYSROOT")
        .args(["--mount", &case.source]);
    let display = hook.display();
    let out = hook
        .output_within(TIMEOUT)?
        .ok_or_else(|| failed(format!("`{display}` still ran after {TIMEOUT:?}")))?;
    eprintln!("{display}: {:?}\n{}", out.code(), out.stderr.trim_end());
    if !matches!(out.code(), Some(0 | 1)) || out.stderr.contains("panicked") {
        return Err(failed(format!(
            "`{display}` crashed ({:?}):\n{}",
            out.code(),
            out.stderr
        )));
    }
    Ok(())
}

/// Type, size, modification time, inode and symlink target of everything under `root` but
/// `skip`, without following symlinks.
fn snapshot(root: &Path, skip: &Path) -> Result<BTreeMap<PathBuf, String>> {
    let mut entries = BTreeMap::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .into_iter()
        .filter_entry(|entry| entry.path() != skip);
    for entry in walk {
        let entry = entry.map_err(|e| failed(format!("walk {}: {e}", root.display())))?;
        let meta = fs::symlink_metadata(entry.path()).at("stat", entry.path())?;
        // gpg-agents of the test's keys come and go with their sockets; a folder's own times
        // change with them, and anything added or removed inside it is seen entry by entry.
        if entry.file_type().is_socket() {
            continue;
        }
        let state = if meta.is_dir() {
            format!("{:o}", meta.mode())
        } else {
            let target = fs::read_link(entry.path()).ok();
            format!(
                "{:o} {} {}.{} {} {target:?}",
                meta.mode(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ino()
            )
        };
        entries.insert(entry.path().to_path_buf(), state);
    }
    Ok(entries)
}

/// GVariant serialisation of OSTree's dirtree, written out so a case can make any dirtree,
/// including those `ostree` never would (duplicates, bad names, millions of entries).
pub mod gv {
    /// Width of the framing offsets of a container with `body` bytes and `offsets` offsets.
    fn offset_width(body: usize, offsets: usize) -> usize {
        if body + offsets <= 0xff {
            1
        } else if body + 2 * offsets <= 0xffff {
            2
        } else if body + 4 * offsets <= 0xffff_ffff {
            4
        } else {
            8
        }
    }

    fn push_offset(out: &mut Vec<u8>, value: usize, width: usize) {
        out.extend_from_slice(&(value as u64).to_le_bytes()[..width]);
    }

    /// An array of variable-size elements of alignment 1, from their serialised forms.
    fn array(elements: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
        let mut body = Vec::new();
        let mut ends = Vec::new();
        for element in elements {
            body.extend_from_slice(&element);
            ends.push(body.len());
        }
        let width = offset_width(body.len(), ends.len());
        for end in ends {
            push_offset(&mut body, end, width);
        }
        body
    }

    /// A structure whose members have alignment 1: `members` serialised, with the end of
    /// every member but the last stored as framing offsets, last member first. `(say)`,
    /// `(sayay)` and `(a(say)a(sayay))`, whose `ay` are all 32 bytes, are such structures
    /// when only the variable-size members before the last one get an offset.
    fn tuple(members: &[(&[u8], bool)]) -> Vec<u8> {
        let mut body = Vec::new();
        let mut ends = Vec::new();
        for (index, (member, variable)) in members.iter().enumerate() {
            body.extend_from_slice(member);
            if *variable && index + 1 < members.len() {
                ends.push(body.len());
            }
        }
        let width = offset_width(body.len(), ends.len());
        for end in ends.into_iter().rev() {
            push_offset(&mut body, end, width);
        }
        body
    }

    fn string(name: &[u8]) -> Vec<u8> {
        let mut bytes = name.to_vec();
        bytes.push(0);
        bytes
    }

    /// `(say)`: a file entry.
    pub fn file_entry(name: &[u8], checksum: &[u8; 32]) -> Vec<u8> {
        tuple(&[(&string(name), true), (checksum, true)])
    }

    /// `(sayay)`: a directory entry.
    pub fn dir_entry(name: &[u8], tree: &[u8; 32], meta: &[u8; 32]) -> Vec<u8> {
        tuple(&[(&string(name), true), (tree, true), (meta, true)])
    }

    /// `(a(say)a(sayay))` from serialised entries, in the order given.
    pub fn dirtree(
        files: impl IntoIterator<Item = Vec<u8>>,
        dirs: impl IntoIterator<Item = Vec<u8>>,
    ) -> Vec<u8> {
        let files = array(files);
        let dirs = array(dirs);
        tuple(&[(&files, true), (&dirs, true)])
    }
}

fn raw(checksum: &str) -> Result<[u8; 32]> {
    hex::decode(checksum)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| failed(format!("not a checksum: {checksum}")))
}

/// The drive's repository with 2.0's root dirtree replaced by `dirtree`, signed by the
/// publisher and on the drive's ref. Returns the new commit.
pub fn with_root_dirtree(
    scene: &Scene,
    drive: &UsbDrive,
    v2: &str,
    dirtree: &[u8],
) -> Result<String> {
    let commit = tamper::replace_dirtree(&drive.repo, v2, "/", dirtree)?;
    publish_on_drive(scene, drive, &commit)?;
    Ok(commit)
}

/// Signs `commit` by the publisher and puts it on the drive's ref.
fn publish_on_drive(scene: &Scene, drive: &UsbDrive, commit: &str) -> Result<()> {
    tamper::publish(
        &drive.repo,
        &mirror_ref(COLLECTION),
        commit,
        Some(&scene.key),
    )
}

/// The checksum of 2.0's standard file on the drive, as raw bytes for a dirtree entry.
fn hello_content(drive: &UsbDrive, v2: &str) -> Result<[u8; 32]> {
    raw(&drive
        .repo
        .content_checksum(v2, &format!("/{}", standard::HELLO))?)
}

/// A root dirtree holding the 2.0 `usr` directory plus `files` (name, content checksum) and
/// `dirs` (name → 2.0's `usr`), in the order given.
pub fn root_with_entries(
    drive: &UsbDrive,
    v2: &str,
    files: &[&[u8]],
    dirs: &[&[u8]],
) -> Result<Vec<u8>> {
    let content = hello_content(drive, v2)?;
    let (usr_tree, usr_meta) = drive.repo.dir_checksums(v2, "/usr")?;
    let (usr_tree, usr_meta) = (raw(&usr_tree)?, raw(&usr_meta)?);
    Ok(gv::dirtree(
        files.iter().map(|name| gv::file_entry(name, &content)),
        dirs.iter()
            .map(|name| gv::dir_entry(name, &usr_tree, &usr_meta)),
    ))
}

/// A case whose drive's 2.0 root holds `files` and `dirs` besides `usr` (see
/// [`root_with_entries`]), consistently rehashed and signed.
pub fn bad_root_entries(scene: &Scene, files: &[&[u8]], dirs: &[&[u8]]) -> Result<Case> {
    let (drive, v2) = scene.drive_with_v2(None)?;
    let bytes = root_with_entries(&drive, &v2, files, dirs)?;
    with_root_dirtree(scene, &drive, &v2, &bytes)?;
    Ok(scene.drive_case(&drive))
}

/// `DEEP_LEVELS` directories `d/d/d/…` as the root's `d`, each level its own dirtree.
pub fn deep_tree(scene: &Scene, levels: usize) -> Result<Case> {
    let (drive, v2) = scene.drive_with_v2(None)?;
    let (_, meta) = drive.repo.root_checksums(&v2)?;
    let meta = raw(&meta)?;
    let mut child = tamper::store_metadata(&drive.repo, &gv::dirtree([], []), "dirtree")?;
    for _ in 0..levels {
        let bytes = gv::dirtree([], [gv::dir_entry(b"d", &raw(&child)?, &meta)]);
        child = tamper::store_metadata(&drive.repo, &bytes, "dirtree")?;
    }
    let root = fs::read(object_path_in(&drive.repo.path, &child, "dirtree"))
        .at("read", &drive.repo.path)?;
    with_root_dirtree(scene, &drive, &v2, &root)?;
    Ok(scene.drive_case(&drive))
}

/// A root dirtree with `entries` files, sorted but for the last, all with one content.
pub fn many_entries(scene: &Scene, entries: usize) -> Result<Case> {
    let (drive, v2) = scene.drive_with_v2(None)?;
    let content = hello_content(&drive, &v2)?;
    let names = (0..entries.saturating_sub(1))
        .map(|i| format!("{i:09}").into_bytes())
        // '!' sorts before every digit: the very last entry breaks the order.
        .chain(std::iter::once(b"!".to_vec()));
    let bytes = gv::dirtree(names.map(|name| gv::file_entry(&name, &content)), []);
    // `sha256sum` hashes the ~90 MB far faster than an unoptimised test build would.
    let scratch = drive.repo.path.join("tmp").join("many");
    fs::write(&scratch, &bytes).at("write", &scratch)?;
    drop(bytes);
    let root = store_by_sha256sum(&drive.repo, &scratch, "dirtree")?;
    let (old_root, _) = drive.repo.root_checksums(&v2)?;
    let commit = tamper::replace_in_commit(&drive.repo, &v2, &old_root, &root)?;
    publish_on_drive(scene, &drive, &commit)?;
    Ok(scene.drive_case(&drive))
}

/// A sparse file of `len` bytes stored as a `kind` object under its SHA-256 name (computed by
/// `sha256sum`); returns the checksum.
pub fn sparse_object(repo: &OstreeRepo, len: u64, extension: &str) -> Result<String> {
    let scratch = repo.path.join("tmp").join("sparse");
    let file = fs::File::create(&scratch).at("create", &scratch)?;
    file.set_len(len).at("size", &scratch)?;
    drop(file);
    store_by_sha256sum(repo, &scratch, extension)
}

/// Moves file `scratch` into `repo` as an object named by its SHA-256 (computed by
/// `sha256sum`); returns the checksum.
fn store_by_sha256sum(repo: &OstreeRepo, scratch: &Path, extension: &str) -> Result<String> {
    let out = Tool::new("sha256sum").arg(scratch).stdout()?;
    let checksum = out
        .split_whitespace()
        .next()
        .filter(|c| c.len() == 64)
        .ok_or_else(|| failed(format!("sha256sum printed {out:?}")))?
        .to_string();
    let path = object_path_in(&repo.path, &checksum, extension);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at("create directory", dir)?;
    }
    fs::rename(scratch, &path).at("rename", &path)?;
    Ok(checksum)
}

/// Which metadata the oversized case inflates.
#[derive(Debug, Clone, Copy)]
pub enum Oversized {
    Commit,
    DirTree,
    DirMeta,
    DetachedMetadata,
}

/// A drive whose 2.0 has one metadata object of `len` bytes, named by its checksum; the
/// commit pointing at it is signed again.
pub fn oversized(scene: &Scene, what: Oversized, len: u64) -> Result<Case> {
    let (drive, v2) = scene.drive_with_v2(None)?;
    let repo = &drive.repo;
    let (root_tree, root_meta) = repo.root_checksums(&v2)?;
    let mirror = mirror_ref(COLLECTION);
    match what {
        Oversized::Commit => {
            let big = sparse_object(repo, len, "commit")?;
            tamper::publish(repo, &mirror, &big, None)?;
        }
        Oversized::DirTree | Oversized::DirMeta => {
            let (old, extension) = match what {
                Oversized::DirTree => (root_tree, "dirtree"),
                _ => (root_meta, "dirmeta"),
            };
            let big = sparse_object(repo, len, extension)?;
            let commit = tamper::replace_in_commit(repo, &v2, &old, &big)?;
            publish_on_drive(scene, &drive, &commit)?;
        }
        Oversized::DetachedMetadata => {
            let path = object_path_in(&repo.path, &v2, "commitmeta");
            let file = fs::File::create(&path).at("create", &path)?;
            file.set_len(len).at("size", &path)?;
        }
    }
    Ok(scene.drive_case(&drive))
}

/// The publisher's repository served over HTTP with a `summary` of `len` bytes.
pub fn oversized_summary(scene: &Scene, len: u64) -> Result<Case> {
    scene.commit_v2(Some(&scene.key), |c| c)?;
    scene.server.update_summary(None)?;
    let summary = scene.server.path.join("summary");
    fs::File::create(&summary)
        .and_then(|file| file.set_len(len))
        .at("size", &summary)?;
    let server = StaticServer::serve(&scene.server.path)?;
    let mut case = scene.case(server.url.clone());
    case._server = Some(server);
    Ok(case)
}

/// Metadata objects stored under the right name but with the wrong type.
#[derive(Debug, Clone, Copy)]
pub enum WrongType {
    /// The root dirmeta's bytes, also stored as `.dirtree`, as the root dirtree.
    DirMetaAsDirTree,
    /// 2.0's commit bytes, stored as `.dirtree`, as the root dirtree.
    CommitAsDirTree,
    /// The root dirtree's bytes, also stored as `.dirmeta`, as the root dirmeta.
    DirTreeAsDirMeta,
    /// The `usr` dirtree's bytes, stored as a content object, as a file's content.
    DirTreeAsContent,
}

pub fn wrong_type(scene: &Scene, what: WrongType) -> Result<Case> {
    let (drive, v2) = scene.drive_with_v2(None)?;
    let repo = &drive.repo;
    let (root_tree, root_meta) = repo.root_checksums(&v2)?;
    let copy = |checksum: &str, from: &str, to: &str| -> Result<()> {
        let source = object_path_in(&repo.path, checksum, from);
        let target = object_path_in(&repo.path, checksum, to);
        fs::copy(&source, &target).at("copy", &source).map(|_| ())
    };
    let commit = match what {
        WrongType::DirMetaAsDirTree => {
            copy(&root_meta, "dirmeta", "dirtree")?;
            tamper::replace_in_commit(repo, &v2, &root_tree, &root_meta)?
        }
        WrongType::CommitAsDirTree => {
            copy(&v2, "commit", "dirtree")?;
            tamper::replace_in_commit(repo, &v2, &root_tree, &v2)?
        }
        WrongType::DirTreeAsDirMeta => {
            copy(&root_tree, "dirtree", "dirmeta")?;
            tamper::replace_in_commit(repo, &v2, &root_meta, &root_tree)?
        }
        WrongType::DirTreeAsContent => {
            let (usr_tree, _) = repo.dir_checksums(&v2, "/usr")?;
            copy(&usr_tree, "dirtree", "filez")?;
            let bytes = gv::dirtree([gv::file_entry(b"a", &raw(&usr_tree)?)], []);
            let root = tamper::store_metadata(repo, &bytes, "dirtree")?;
            tamper::replace_in_commit(repo, &v2, &root_tree, &root)?
        }
    };
    publish_on_drive(scene, &drive, &commit)?;
    Ok(scene.drive_case(&drive))
}

/// The path of 2.0's content object for `path` (`usr/share/…`) on the drive.
pub fn content_object(drive: &UsbDrive, v2: &str, path: &str) -> Result<PathBuf> {
    let checksum = drive.repo.content_checksum(v2, &format!("/{path}"))?;
    drive.repo.object_path(&checksum, ObjectKind::Content)
}

/// Replaces an object file by a symlink to `target`.
pub fn replace_by_symlink(object: &Path, target: &Path) -> Result<()> {
    fs::remove_file(object).at("remove", object)?;
    std::os::unix::fs::symlink(target, object).at("symlink", object)
}

/// Replaces an object file by a FIFO nobody writes to.
pub fn replace_by_fifo(object: &Path) -> Result<()> {
    fs::remove_file(object).at("remove", object)?;
    Tool::new("mkfifo").arg(object).run().map(|_| ())
}

/// Copies an object file outside the drive, to `BASE/outside/NAME`, and returns the copy.
pub fn copy_outside(scene: &Scene, object: &Path) -> Result<PathBuf> {
    let dir = scene.base.join("outside");
    fs::create_dir_all(&dir).at("create directory", &dir)?;
    let name = object
        .file_name()
        .ok_or_else(|| failed(format!("{} has no name", object.display())))?;
    let copy = dir.join(name);
    fs::copy(object, &copy).at("copy", object)?;
    Ok(copy)
}

/// Rewrites the content object of `path` in 2.0 on the drive with `edit` (any bytes).
pub fn edit_content(
    drive: &UsbDrive,
    v2: &str,
    path: &str,
    edit: impl FnOnce(Vec<u8>) -> Vec<u8>,
) -> Result<()> {
    let object = content_object(drive, v2, path)?;
    let bytes = fs::read(&object).at("read", &object)?;
    let edited = edit(bytes);
    fs::remove_file(&object).at("remove", &object)?;
    fs::write(&object, edited).at("write", &object)
}

/// Commits whose parent chain loops. A true loop cannot exist under content addressing: a
/// commit names its parent by the SHA-256 of the parent's bytes, so A → B → A needs a hash
/// cycle. The closest thing a drive can hold is commits stored under names their bytes do not
/// hash to: 2.0's bytes with the parent pointing at `names[i+1]`, stored as `names[i]`, the
/// last pointing back at the first. The drive's ref names the first.
pub fn parent_loop(scene: &Scene, length: usize) -> Result<Case> {
    let (drive, v2) = scene.drive_with_v2(None)?;
    let repo = &drive.repo;
    let names: Vec<String> = (0..length)
        .map(|i| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(format!("loop {i}")))
        })
        .collect();
    let bytes = fs::read(object_path_in(&repo.path, &v2, "commit")).at("read", &repo.path)?;
    let parent = raw(&scene.v1)?;
    for (i, name) in names.iter().enumerate() {
        let next = raw(&names[(i + 1) % length])?;
        let at = bytes
            .windows(32)
            .position(|w| w == parent)
            .ok_or_else(|| failed("2.0 does not name 1.0 as its parent".into()))?;
        let mut looped = bytes.clone();
        looped[at..at + 32].copy_from_slice(&next);
        let path = object_path_in(&repo.path, name, "commit");
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).at("create directory", dir)?;
        }
        fs::write(&path, looped).at("write", &path)?;
    }
    tamper::publish(repo, &mirror_ref(COLLECTION), &names[0], None)?;
    Ok(scene.drive_case(&drive).listed())
}

/// A second key, in `BASE/gnupg-NAME` with `conf` in its `gpg.conf` before it is made.
pub fn key(scene: &Scene, name: &str, algo: &str, expire: &str, conf: &[&str]) -> Result<GpgKey> {
    let home = scene.base.join(format!("gnupg-{name}"));
    GpgKey::write_conf(&home, conf)?;
    GpgKey::generate_with(&home, &format!("{name} <{name}@example.org>"), algo, expire)
}
