//! OSTree repositories made and inspected with the real `ostree` command.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use crate::cmd::{opt_path, Output, Tool};
use crate::error::{FixtureError, IoContext, Result};
use crate::gpg::GpgKey;

/// The storage modes of an OSTree repository: the engine's, whose names are the ones
/// `ostree init --mode=` takes.
pub use ferry_engine::object::RepoMode;

/// Kinds of objects in `objects/XX/<rest>.<extension>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    Commit,
    CommitMeta,
    DirTree,
    DirMeta,
    /// A content object: `.filez` in archive repos, `.file` otherwise.
    Content,
}

/// Where a ref lives in `refs/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefLocation {
    /// `refs/heads/REF`
    Head(String),
    /// `refs/remotes/REMOTE/REF`
    Remote { remote: String, name: String },
    /// `refs/mirrors/COLLECTION/REF`
    Mirror { collection_id: String, name: String },
}

impl RefLocation {
    pub fn relative_path(&self) -> PathBuf {
        match self {
            RefLocation::Head(name) => Path::new("refs/heads").join(name),
            RefLocation::Remote { remote, name } => {
                Path::new("refs/remotes").join(remote).join(name)
            }
            RefLocation::Mirror {
                collection_id,
                name,
            } => Path::new("refs/mirrors").join(collection_id).join(name),
        }
    }
}

/// How `ostree checkout` writes files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutMode {
    /// `ostree checkout -U`: files owned by the caller, no xattrs applied. From a bare-user
    /// repo, files are hard links to objects and so carry `user.ostreemeta`.
    User,
    /// Plain `ostree checkout` (as root: ownership and xattrs restored).
    Plain,
}

/// What to commit and how. Built with [`CommitSpec::new`] and the setters.
#[derive(Debug, Clone)]
pub struct CommitSpec<'a> {
    pub branch: String,
    pub tree: PathBuf,
    pub subject: Option<String>,
    pub body: Option<String>,
    pub version: Option<String>,
    pub key: Option<&'a GpgKey>,
    pub metadata: Vec<(String, String)>,
    pub bootable: bool,
    /// `--timestamp=`, in any form `ostree commit` accepts (for example `2024-01-02 03:04:05`).
    pub timestamp: Option<String>,
    pub no_xattrs: bool,
    pub canonical_permissions: bool,
    pub generate_sizes: bool,
    pub extra_args: Vec<OsString>,
}

impl<'a> CommitSpec<'a> {
    pub fn new(branch: &str, tree: &Path) -> CommitSpec<'a> {
        CommitSpec {
            branch: branch.to_string(),
            tree: tree.to_path_buf(),
            subject: None,
            body: None,
            version: None,
            key: None,
            metadata: Vec::new(),
            bootable: false,
            timestamp: None,
            no_xattrs: false,
            canonical_permissions: false,
            generate_sizes: false,
            extra_args: Vec::new(),
        }
    }

    pub fn subject(mut self, subject: &str) -> Self {
        self.subject = Some(subject.to_string());
        self
    }

    pub fn body(mut self, body: &str) -> Self {
        self.body = Some(body.to_string());
        self
    }

    /// The `version` metadata string.
    pub fn version(mut self, version: &str) -> Self {
        self.version = Some(version.to_string());
        self
    }

    /// Sign the commit with `key`.
    pub fn sign(mut self, key: &'a GpgKey) -> Self {
        self.key = Some(key);
        self
    }

    /// An extra metadata string (`--add-metadata-string=KEY=VALUE`).
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.push((key.to_string(), value.to_string()));
        self
    }

    pub fn bootable(mut self) -> Self {
        self.bootable = true;
        self
    }

    pub fn timestamp(mut self, timestamp: &str) -> Self {
        self.timestamp = Some(timestamp.to_string());
        self
    }

    /// `--no-xattrs --canonical-permissions`, as Flatpak and `bare-user-only` repos want.
    pub fn canonical(mut self) -> Self {
        self.no_xattrs = true;
        self.canonical_permissions = true;
        self
    }

    /// `--generate-sizes`: store `ostree.sizes` in the commit.
    pub fn generate_sizes(mut self) -> Self {
        self.generate_sizes = true;
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }
}

/// A remote to add with [`OstreeRepo::remote_add`].
#[derive(Debug, Clone)]
pub struct RemoteSpec<'a> {
    pub name: String,
    pub url: String,
    pub collection_id: Option<String>,
    /// Key whose public keyring is imported (`--gpg-import`); `None` adds the remote with
    /// `--no-gpg-verify`.
    pub key: Option<&'a GpgKey>,
    /// Extra `--set=KEY=VALUE` options.
    pub options: Vec<(String, String)>,
}

impl<'a> RemoteSpec<'a> {
    pub fn new(name: &str, url: &str) -> RemoteSpec<'a> {
        RemoteSpec {
            name: name.to_string(),
            url: url.to_string(),
            collection_id: None,
            key: None,
            options: Vec::new(),
        }
    }

    /// A `file://` URL for a local repository.
    pub fn file(name: &str, repo: &Path) -> RemoteSpec<'a> {
        Self::new(name, &format!("file://{}", repo.display()))
    }

    pub fn collection_id(mut self, collection_id: &str) -> Self {
        self.collection_id = Some(collection_id.to_string());
        self
    }

    pub fn trust(mut self, key: &'a GpgKey) -> Self {
        self.key = Some(key);
        self
    }

    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.options.push((key.to_string(), value.to_string()));
        self
    }
}

/// An OSTree repository on disk.
#[derive(Debug, Clone)]
pub struct OstreeRepo {
    pub path: PathBuf,
}

impl OstreeRepo {
    /// `ostree init`; `path` is created.
    pub fn init(path: &Path, mode: RepoMode, collection_id: Option<&str>) -> Result<OstreeRepo> {
        fs::create_dir_all(path).at("create repository directory", path)?;
        let repo = OstreeRepo::open(path);
        let mut tool = repo.ostree().arg("init").arg(format!("--mode={mode}"));
        if let Some(id) = collection_id {
            tool = tool.arg(format!("--collection-id={id}"));
        }
        tool.run()?;
        Ok(repo)
    }

    /// A handle on an existing repository (nothing is checked).
    pub fn open(path: &Path) -> OstreeRepo {
        OstreeRepo {
            path: path.to_path_buf(),
        }
    }

    /// `ostree --repo=PATH`, to add a subcommand and arguments.
    pub fn ostree(&self) -> Tool {
        Tool::new("ostree").arg(opt_path("--repo", &self.path))
    }

    /// `ostree commit`; returns the new commit checksum.
    pub fn commit(&self, spec: &CommitSpec<'_>) -> Result<String> {
        let mut tool = self
            .ostree()
            .arg("commit")
            .arg(format!("--branch={}", spec.branch));
        if let Some(subject) = &spec.subject {
            tool = tool.arg(format!("--subject={subject}"));
        }
        if let Some(body) = &spec.body {
            tool = tool.arg(format!("--body={body}"));
        }
        if let Some(version) = &spec.version {
            tool = tool.arg(format!("--add-metadata-string=version={version}"));
        }
        for (key, value) in &spec.metadata {
            tool = tool.arg(format!("--add-metadata-string={key}={value}"));
        }
        if let Some(key) = spec.key {
            tool = tool.args(key.sign_args());
        }
        if let Some(timestamp) = &spec.timestamp {
            tool = tool.arg(format!("--timestamp={timestamp}"));
        }
        for (flag, on) in [
            ("--bootable", spec.bootable),
            ("--no-xattrs", spec.no_xattrs),
            ("--canonical-permissions", spec.canonical_permissions),
            ("--generate-sizes", spec.generate_sizes),
        ] {
            if on {
                tool = tool.arg(flag);
            }
        }
        let out = tool.args(&spec.extra_args).arg(&spec.tree).stdout()?;
        parse_checksum(out.trim(), "ostree commit output")
    }

    /// `ostree summary -u`, signed with `key` when given.
    pub fn update_summary(&self, key: Option<&GpgKey>) -> Result<()> {
        let mut tool = self.ostree().args(["summary", "-u"]);
        if let Some(key) = key {
            tool = tool.args(key.sign_args());
        }
        tool.run()?;
        Ok(())
    }

    /// `ostree gpg-sign`: adds a signature by `key` to an existing commit.
    pub fn gpg_sign(&self, rev: &str, key: &GpgKey) -> Result<()> {
        self.ostree()
            .args(["gpg-sign", rev, &key.fingerprint])
            .arg(opt_path("--gpg-homedir", &key.homedir))
            .run()?;
        Ok(())
    }

    /// `ostree remote add`.
    pub fn remote_add(&self, spec: &RemoteSpec<'_>) -> Result<()> {
        let mut tool = self.ostree().args(["remote", "add"]);
        if let Some(id) = &spec.collection_id {
            tool = tool.arg(format!("--collection-id={id}"));
        }
        match spec.key {
            Some(key) => tool = tool.arg(opt_path("--gpg-import", &key.public_keyring)),
            None => tool = tool.arg("--no-gpg-verify"),
        }
        for (key, value) in &spec.options {
            tool = tool.arg(format!("--set={key}={value}"));
        }
        tool.args([&spec.name, &spec.url]).run()?;
        Ok(())
    }

    /// `ostree pull-local SOURCE REF...` with extra options (`--remote=`, `--untrusted`, …)
    /// placed before the source.
    pub fn pull_local(&self, source: &Path, refs: &[&str], options: &[&str]) -> Result<()> {
        self.ostree()
            .arg("pull-local")
            .args(options)
            .arg(source)
            .args(refs)
            .run()?;
        Ok(())
    }

    /// `ostree pull REMOTE REF...`.
    pub fn pull(&self, remote: &str, refs: &[&str]) -> Result<()> {
        self.ostree().arg("pull").arg(remote).args(refs).run()?;
        Ok(())
    }

    /// `ostree rev-parse`: the commit a refspec (`REF`, `REMOTE:REF`) or checksum names.
    pub fn rev_parse(&self, rev: &str) -> Result<String> {
        let out = self.ostree().args(["rev-parse", rev]).stdout()?;
        parse_checksum(out.trim(), "ostree rev-parse output")
    }

    /// Reads a ref file directly; `None` when it does not exist. Works whatever state the
    /// repository is in, which is what "the ref is unchanged" checks want.
    pub fn read_ref(&self, location: &RefLocation) -> Result<Option<String>> {
        let path = self.path.join(location.relative_path());
        match fs::read_to_string(&path) {
            Ok(text) => parse_checksum(text.trim(), &path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).at("read ref", path),
        }
    }

    /// `ostree refs`: every ref, as `ostree` prints them (`REF`, `REMOTE:REF`).
    pub fn refs(&self) -> Result<Vec<String>> {
        Ok(lines(&self.ostree().arg("refs").stdout()?))
    }

    /// `ostree refs --collections`: `(collection ID, ref)` pairs.
    pub fn collection_refs(&self) -> Result<Vec<(String, String)>> {
        let out = self.ostree().args(["refs", "--collections"]).stdout()?;
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                line.trim()
                    .strip_prefix('(')
                    .and_then(|l| l.strip_suffix(')'))
                    .and_then(|l| l.split_once(", "))
                    .map(|(c, r)| (c.to_string(), r.to_string()))
                    .ok_or_else(|| {
                        FixtureError::Unexpected(format!(
                            "unexpected line in `ostree refs --collections`: {line}"
                        ))
                    })
            })
            .collect()
    }

    /// `ostree fsck`, required to pass.
    pub fn fsck(&self) -> Result<Output> {
        self.ostree().arg("fsck").run()
    }

    /// `ostree fsck` whatever its result, for tests that expect corruption to be found.
    pub fn fsck_output(&self) -> Result<Output> {
        self.ostree().arg("fsck").output()
    }

    /// `ostree checkout` of `rev` into `dest` (which must not exist).
    pub fn checkout(&self, rev: &str, dest: &Path, mode: CheckoutMode) -> Result<()> {
        let mut tool = self.ostree().arg("checkout");
        if mode == CheckoutMode::User {
            tool = tool.arg("-U");
        }
        tool.arg(rev).arg(dest).run()?;
        Ok(())
    }

    /// A metadata string of a commit, `None` when the key is absent.
    pub fn commit_metadata(&self, rev: &str, key: &str) -> Result<Option<String>> {
        let out = self
            .ostree()
            .args(["show", &format!("--print-metadata-key={key}"), rev])
            .output()?;
        if out.success() {
            Ok(Some(unquote_gvariant_string(out.stdout.trim())))
        } else if out.stderr.contains("No such metadata key") {
            Ok(None)
        } else {
            Err(FixtureError::Command {
                command: format!("ostree show --print-metadata-key={key} {rev}"),
                status: out.status.to_string(),
                stdout: out.stdout,
                stderr: out.stderr,
            })
        }
    }

    /// The repository's mode, from `core.mode` in its config.
    pub fn mode(&self) -> Result<RepoMode> {
        let mode = self.config_get("core.mode")?;
        match mode.as_str() {
            "archive" | "archive-z2" => Ok(RepoMode::Archive),
            "bare" => Ok(RepoMode::Bare),
            "bare-user" => Ok(RepoMode::BareUser),
            "bare-user-only" => Ok(RepoMode::BareUserOnly),
            other => Err(FixtureError::Unexpected(format!(
                "unknown core.mode {other:?} in {}",
                self.path.display()
            ))),
        }
    }

    /// `ostree config get SECTION.KEY`.
    pub fn config_get(&self, key: &str) -> Result<String> {
        Ok(self
            .ostree()
            .args(["config", "get", key])
            .stdout()?
            .trim()
            .to_string())
    }

    /// `ostree config set SECTION.KEY VALUE`.
    pub fn config_set(&self, key: &str, value: &str) -> Result<()> {
        self.ostree().args(["config", "set", key, value]).run()?;
        Ok(())
    }

    /// The content object checksum of a file, symlink or other non-directory at `path` in
    /// `rev` (`ostree ls -C`).
    pub fn content_checksum(&self, rev: &str, path: &str) -> Result<String> {
        let line = self.ls_entry(rev, path)?;
        line.split_whitespace()
            .nth(4)
            .ok_or_else(|| FixtureError::Unexpected(format!("no checksum in `{line}`")))
            .and_then(|c| parse_checksum(c, "ostree ls -C"))
    }

    /// The dirtree and dirmeta checksums of directory `path` in `rev`.
    pub fn dir_checksums(&self, rev: &str, path: &str) -> Result<(String, String)> {
        let line = self.ls_entry(rev, path)?;
        let mut words = line.split_whitespace().skip(4);
        match (words.next(), words.next()) {
            (Some(tree), Some(meta)) if line.starts_with('d') => Ok((
                parse_checksum(tree, "ostree ls -C -d")?,
                parse_checksum(meta, "ostree ls -C -d")?,
            )),
            _ => Err(FixtureError::Unexpected(format!(
                "{path} in {rev} is not a directory: `{line}`"
            ))),
        }
    }

    fn ls_entry(&self, rev: &str, path: &str) -> Result<String> {
        let out = self.ostree().args(["ls", "-C", "-d", rev, path]).stdout()?;
        out.lines().next().map(str::to_string).ok_or_else(|| {
            FixtureError::Unexpected(format!("`ostree ls` printed nothing for {path}"))
        })
    }

    /// The root dirtree and dirmeta checksums of commit `rev`.
    pub fn root_checksums(&self, rev: &str) -> Result<(String, String)> {
        self.dir_checksums(rev, "/")
    }

    /// Path of an object file in this repository (which may not exist).
    pub fn object_path(&self, checksum: &str, kind: ObjectKind) -> Result<PathBuf> {
        let extension = match kind {
            ObjectKind::Commit => "commit",
            ObjectKind::CommitMeta => "commitmeta",
            ObjectKind::DirTree => "dirtree",
            ObjectKind::DirMeta => "dirmeta",
            ObjectKind::Content => ferry_engine::object::ObjectKind::File.extension(self.mode()?),
        };
        Ok(object_path_in(&self.path, checksum, extension))
    }

    /// Number of object files per extension (`commit`, `dirtree`, `filez`, …).
    pub fn count_objects(&self) -> Result<BTreeMap<String, usize>> {
        let mut counts = BTreeMap::new();
        let objects = self.path.join("objects");
        for entry in walkdir::WalkDir::new(&objects).min_depth(2).max_depth(2) {
            let entry = entry.map_err(|e| {
                FixtureError::Unexpected(format!("walk {}: {e}", objects.display()))
            })?;
            if let Some(ext) = entry.path().extension() {
                *counts
                    .entry(ext.to_string_lossy().into_owned())
                    .or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// `ostree create-usb DRIVE COLLECTION REF...` into the standard `.ostree/repo`.
    pub fn create_usb(&self, drive: &Path, refs: &[(&str, &str)]) -> Result<UsbDrive> {
        self.create_usb_impl(drive, None, refs)?;
        Ok(UsbDrive {
            root: drive.to_path_buf(),
            repo: OstreeRepo::open(&drive.join(".ostree/repo")),
        })
    }

    /// `ostree create-usb --destination-repo=DEST`: the repository goes to `DRIVE/DEST` and
    /// a symlink to it is added under `.ostree/repos.d/` (`00-generated`, `01-generated`, …).
    pub fn create_usb_repos_d(
        &self,
        drive: &Path,
        destination: &str,
        refs: &[(&str, &str)],
    ) -> Result<UsbDrive> {
        self.create_usb_impl(drive, Some(destination), refs)?;
        Ok(UsbDrive {
            root: drive.to_path_buf(),
            repo: OstreeRepo::open(&drive.join(destination)),
        })
    }

    fn create_usb_impl(
        &self,
        drive: &Path,
        destination: Option<&str>,
        refs: &[(&str, &str)],
    ) -> Result<()> {
        fs::create_dir_all(drive).at("create drive directory", drive)?;
        let mut tool = self.ostree().arg("create-usb");
        if let Some(dest) = destination {
            tool = tool.arg(format!("--destination-repo={dest}"));
        }
        tool = tool.arg(drive);
        for (collection_id, name) in refs {
            tool = tool.args([collection_id, name]);
        }
        tool.run()?;
        Ok(())
    }
}

/// A drive written by `ostree create-usb` (or `flatpak create-usb`).
#[derive(Debug, Clone)]
pub struct UsbDrive {
    /// The directory standing for the drive's mount point.
    pub root: PathBuf,
    /// The repository the tool wrote.
    pub repo: OstreeRepo,
}

impl UsbDrive {
    /// The commit of `refs/mirrors/COLLECTION/REF` in the drive's repository.
    pub fn mirror_commit(&self, collection_id: &str, name: &str) -> Result<String> {
        self.repo
            .read_ref(&RefLocation::Mirror {
                collection_id: collection_id.to_string(),
                name: name.to_string(),
            })?
            .ok_or_else(|| {
                FixtureError::Unexpected(format!(
                    "no ref ({collection_id}, {name}) in {}",
                    self.repo.path.display()
                ))
            })
    }

    /// Adds `.ostree/repos.d/NAME` as a symlink to `target` (relative or absolute), for
    /// tests of repositories that point elsewhere, including outside the drive.
    pub fn add_repos_d_symlink(&self, name: &str, target: &Path) -> Result<PathBuf> {
        let dir = self.root.join(".ostree/repos.d");
        fs::create_dir_all(&dir).at("create directory", &dir)?;
        let link = dir.join(name);
        std::os::unix::fs::symlink(target, &link).at("create symlink", &link)?;
        Ok(link)
    }
}

/// `objects/XX/REST.EXT` under `repo`.
pub fn object_path_in(repo: &Path, checksum: &str, extension: &str) -> PathBuf {
    let (prefix, rest) = checksum.split_at(checksum.len().min(2));
    repo.join("objects")
        .join(prefix)
        .join(format!("{rest}.{extension}"))
}

fn parse_checksum(text: &str, what: &str) -> Result<String> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(FixtureError::Unexpected(format!(
            "expected a 64-hex-digit checksum in {what}, found {text:?}"
        )))
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// `ostree show --print-metadata-key` prints GVariant text: `'1.0'` for a string.
fn unquote_gvariant_string(text: &str) -> String {
    text.strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .unwrap_or(text)
        .to_string()
}
