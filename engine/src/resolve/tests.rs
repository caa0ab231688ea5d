//! Resolver tests over repositories built in Rust: ed25519-signed commits written with the
//! engine's own writer, drives opened as [`DriveSource`]s, and an "upstream" that is a local
//! repository presented under a URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use tempfile::TempDir;

use super::*;
use crate::object::metadata::{COLLECTION_BINDING_KEY, ED25519_SIGNATURES_KEY, REF_BINDING_KEY};
use crate::object::test_trees::{write_file, write_meta, write_tree};
use crate::object::{
    ContentHasher, DirTree, FileHeader, Metadata, MetadataValue, ObjectId, ObjectKind, ObjectSize,
};
use crate::repo::{RefLocation, RepoMode};
use crate::source::{DriveSource, FetchedArchive, FetchedContent, Interrupt, OfferedRef};
use crate::target::DeployTarget;
use crate::trust::Destination;

const COLLECTION: &str = "org.example.Os";
const REF: &str = "os/x86_64/stable";
const REMOTE: &str = "origin";
const URL: &str = "https://updates.example.org/repo";

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A commit to write: its ref, time, files (path → bytes) and extra metadata.
struct Spec<'a> {
    ref_name: &'a str,
    collection: &'a str,
    timestamp: u64,
    version: &'a str,
    files: Vec<(&'a str, Vec<u8>)>,
    metadata: Vec<(&'a str, MetadataValue)>,
    sizes: bool,
    key: Option<&'a SigningKey>,
}

impl<'a> Spec<'a> {
    fn new(version: &'a str, timestamp: u64) -> Self {
        Self {
            ref_name: REF,
            collection: COLLECTION,
            timestamp,
            version,
            files: vec![
                ("version", version.as_bytes().to_vec()),
                ("shared", b"the same in every version".to_vec()),
            ],
            metadata: Vec::new(),
            sizes: false,
            key: None,
        }
    }
}

/// Writes a commit (signed when the spec has a key) and returns its checksum. With
/// `spec.sizes`, `ostree.sizes` lists every file with its length as archived size.
fn write_commit(repo: &Repo, spec: &Spec<'_>) -> Checksum {
    let (root_tree, root_meta) = write_tree(repo, &spec.files);
    let mut metadata = Metadata::new();
    metadata
        .insert_str("version", spec.version)
        .expect("version");
    metadata
        .insert_str_array(REF_BINDING_KEY, &[spec.ref_name])
        .expect("ref binding");
    metadata
        .insert_str(COLLECTION_BINDING_KEY, spec.collection)
        .expect("collection binding");
    for (key, value) in &spec.metadata {
        metadata.insert(key, value.clone()).expect("metadata");
    }
    if spec.sizes {
        let entries: Vec<Vec<u8>> = spec
            .files
            .iter()
            .map(|(_, bytes)| {
                let header = FileHeader::regular(0, 0, 0o644, bytes.len() as u64);
                ObjectSize {
                    checksum: ContentHasher::checksum(&header, bytes).expect("checksum"),
                    archived: 1000 + bytes.len() as u64,
                    unpacked: bytes.len() as u64,
                    kind: ObjectKind::File,
                }
                .to_entry()
            })
            .collect();
        metadata
            .insert_byte_arrays(crate::object::metadata::SIZES_KEY, &entries)
            .expect("sizes");
    }
    let commit = Commit {
        metadata,
        parent: None,
        related: Vec::new(),
        subject: format!("Release {}", spec.version),
        body: format!("What changed in {}", spec.version),
        timestamp: spec.timestamp,
        root_tree,
        root_meta,
    };
    let bytes = commit.to_bytes().expect("commit");
    let checksum = write_meta(repo, ObjectKind::Commit, &bytes);
    if let Some(key) = spec.key {
        let mut signatures = Metadata::new();
        signatures
            .insert_byte_arrays(ED25519_SIGNATURES_KEY, &[key.sign(&bytes).to_bytes()])
            .expect("signature");
        repo.write_commitmeta(&checksum, &signatures.to_bytes().expect("commitmeta"))
            .expect("write commitmeta");
    }
    checksum
}

/// A drive: an archive repository under `dir/NAME/.ostree/repo` with `spec` mirrored.
fn drive(dir: &Path, name: &str, specs: &[Spec<'_>]) -> (PathBuf, Vec<Checksum>) {
    let path = dir.join(name).join(".ostree/repo");
    let repo = Repo::init(&path, RepoMode::Archive, None).expect("init drive");
    let commits = specs
        .iter()
        .map(|spec| {
            let commit = write_commit(&repo, spec);
            repo.write_ref(
                &RefLocation::mirror(spec.collection, spec.ref_name),
                &commit,
            )
            .expect("mirror ref");
            commit
        })
        .collect();
    (path, commits)
}

/// A local repository presented as the remote's upstream server at [`URL`].
struct Upstream {
    inner: DriveSource,
    info: SourceInfo,
}

impl Upstream {
    fn open(path: &Path) -> Self {
        Self {
            inner: DriveSource::open(path, None).expect("open upstream"),
            info: SourceInfo::new(SourceKind::Upstream, URL, Some(REMOTE.to_owned())),
        }
    }
}

impl Source for Upstream {
    fn info(&self) -> &SourceInfo {
        &self.info
    }
    fn rank(&self) -> SourceRank {
        SourceRank {
            kind: SourceKind::Upstream,
            summary_timestamp: Some(u64::MAX),
        }
    }
    fn refs(&self) -> Result<Vec<OfferedRef>, FetchError> {
        self.inner.refs()
    }
    fn fetch_metadata(
        &self,
        kind: ObjectKind,
        checksum: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<Vec<u8>, FetchError> {
        self.inner.fetch_metadata(kind, checksum, interrupt)
    }
    fn fetch_commitmeta(
        &self,
        commit: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        self.inner.fetch_commitmeta(commit, interrupt)
    }
    fn fetch_content(
        &self,
        checksum: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<FetchedContent, FetchError> {
        self.inner.fetch_content(checksum, interrupt)
    }
    fn commit_is_complete(&self, commit: &Checksum) -> Result<bool, FetchError> {
        self.inner.commit_is_complete(commit)
    }
    fn fetch_archived_content(
        &self,
        checksum: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<Option<FetchedArchive>, FetchError> {
        self.inner.fetch_archived_content(checksum, interrupt)
    }
}

/// The machine: a target repository with v1 of [`REF`] from remote [`REMOTE`] (collection
/// [`COLLECTION`], ed25519 key `key(1)` trusted), and trust roots with no system keys.
struct Machine {
    dir: TempDir,
    repo: PathBuf,
    installed: Checksum,
    installed_time: u64,
    options: ResolveOptions,
}

impl Machine {
    fn new() -> Self {
        let dir = TempDir::new().expect("temp dir");
        let repo = dir.path().join("machine/repo");
        let target_repo = Repo::init(&repo, RepoMode::Archive, None).expect("init target");
        let installed_time = 1_700_000_000;
        let installed = write_commit(
            &target_repo,
            &Spec {
                key: Some(&key(1)),
                ..Spec::new("1.0", installed_time)
            },
        );
        let roots = dir.path().join("no-system-keys");
        std::fs::create_dir_all(&roots).expect("roots");
        let options = ResolveOptions {
            trust_roots: TrustRoots {
                global_gpg_keyring_dir: roots.clone(),
                ed25519_dirs: vec![roots],
            },
            ..ResolveOptions::default()
        };
        Self {
            dir,
            repo,
            installed,
            installed_time,
            options,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remote(&self, url: Option<&str>) -> Remote {
        let mut options = BTreeMap::new();
        options.insert("collection-id".to_owned(), COLLECTION.to_owned());
        options.insert("gpg-verify".to_owned(), "false".to_owned());
        options.insert("sign-verify".to_owned(), "true".to_owned());
        options.insert(
            "verification-ed25519-key".to_owned(),
            STANDARD.encode(key(1).verifying_key().to_bytes()),
        );
        if let Some(url) = url {
            options.insert("url".to_owned(), url.to_owned());
        }
        Remote {
            name: REMOTE.to_owned(),
            collection_id: Some(COLLECTION.to_owned()),
            url: url.map(str::to_owned),
            disabled: false,
            defined_in: self.repo.join("config"),
            options,
        }
    }

    fn target(&self, kind: TargetKind, installed: Vec<InstalledRef>) -> Target {
        Target {
            kind,
            installation: "test".to_owned(),
            repo: self.repo.clone(),
            repo_mode: "archive".to_owned(),
            remotes: vec![self.remote(Some(URL))],
            installed,
            problems: Vec::new(),
            trust: Destination::plain(self.repo.clone()),
            needs_root: false,
            deploy: DeployTarget::Repo,
        }
    }

    /// A drive under this machine's directory ([`drive`]).
    fn drive(&self, name: &str, specs: &[Spec<'_>]) -> (PathBuf, Vec<Checksum>) {
        drive(self.path(), name, specs)
    }

    /// [`Machine::installed_ref`] under another ref name.
    fn installed_as(&self, ref_name: &str) -> InstalledRef {
        InstalledRef {
            ref_name: ref_name.to_owned(),
            ..self.installed_ref()
        }
    }

    fn installed_ref(&self) -> InstalledRef {
        InstalledRef {
            remote: Some(REMOTE.to_owned()),
            collection_id: Some(COLLECTION.to_owned()),
            ref_name: REF.to_owned(),
            commit: self.installed,
            timestamp: self.installed_time,
            version: Some("1.0".to_owned()),
            subpaths: Vec::new(),
            deploy_subpaths: Vec::new(),
            runtime: None,
        }
    }

    fn os_target(&self) -> Target {
        self.target(TargetKind::Repo, vec![self.installed_ref()])
    }

    fn resolve(&self, target: &Target, sources: Vec<Arc<dyn Source>>) -> UpdateList {
        resolve(std::slice::from_ref(target), &sources, &self.options)
    }
}

fn open(path: &Path, label: &str) -> Arc<dyn Source> {
    Arc::new(DriveSource::open(path, Some(label.to_owned())).expect("open drive"))
}

fn signed<'a>(version: &'a str, timestamp: u64, signer: &'a SigningKey) -> Spec<'a> {
    Spec {
        key: Some(signer),
        ..Spec::new(version, timestamp)
    }
}

fn locations(update: &Update) -> Vec<String> {
    update.sources.iter().map(|s| s.location.clone()).collect()
}

fn problem_kinds(list: &UpdateList) -> Vec<ProblemKind> {
    list.problems.iter().map(|p| p.kind).collect()
}

#[test]
fn the_newest_commit_wins_with_only_the_sources_holding_it() {
    let machine = Machine::new();
    let signer = key(1);
    let (a, _) = machine.drive("a", &[signed("2.0", 1_700_000_100, &signer)]);
    let (b, b_commits) = machine.drive("b", &[signed("3.0", 1_700_000_200, &signer)]);
    let (c, _) = machine.drive("c", &[signed("3.0", 1_700_000_200, &signer)]);
    let target = machine.os_target();
    let list = machine.resolve(&target, vec![open(&a, "A"), open(&b, "B"), open(&c, "C")]);
    assert_eq!(list.problems, vec![], "{:#?}", list.problems);
    assert_eq!(list.updates.len(), 1);
    let update = &list.updates[0];
    assert_eq!(update.commit, b_commits[0], "both drives hold the same v3");
    assert_eq!(update.version.as_deref(), Some("3.0"));
    assert_eq!(update.current_version.as_deref(), Some("1.0"));
    assert_eq!(update.current_commit, Some(machine.installed));
    assert_eq!(update.timestamp, 1_700_000_200);
    assert_eq!(update.subject, "Release 3.0");
    assert_eq!(update.body, "What changed in 3.0");
    assert!(update.signed);
    assert_eq!(update.id, format!("repo:test:{REF}"));
    assert_eq!(
        locations(update),
        vec![b.display().to_string(), c.display().to_string()]
    );
    assert_eq!(update.sources[0].label.as_deref(), Some("B"));
}

#[test]
fn a_drive_beats_upstream_on_a_tie_and_is_kept_when_upstream_is_newer() {
    let machine = Machine::new();
    let signer = key(1);
    let (drive_path, drive_commits) =
        machine.drive("stick", &[signed("3.0", 1_700_000_300, &signer)]);
    let (same_path, _) = machine.drive("server-same", &[signed("3.0", 1_700_000_300, &signer)]);
    let target = machine.os_target();

    let list = machine.resolve(
        &target,
        vec![
            Arc::new(Upstream::open(&same_path)),
            open(&drive_path, "STICK"),
        ],
    );
    assert_eq!(list.updates.len(), 1, "{:#?}", list.problems);
    assert_eq!(list.updates[0].commit, drive_commits[0]);
    assert_eq!(
        locations(&list.updates[0]),
        vec![drive_path.display().to_string(), URL.to_owned()],
        "the drive is preferred"
    );
    assert_eq!(list.updates[0].sources[1].kind, SourceKind::Upstream);

    let (newer_path, newer_commits) =
        machine.drive("server-newer", &[signed("4.0", 1_700_000_400, &signer)]);
    let list = machine.resolve(
        &target,
        vec![
            open(&drive_path, "STICK"),
            Arc::new(Upstream::open(&newer_path)),
        ],
    );
    assert_eq!(list.updates.len(), 1);
    assert_eq!(list.updates[0].commit, newer_commits[0]);
    assert_eq!(list.updates[0].version.as_deref(), Some("4.0"));
    assert_eq!(locations(&list.updates[0]), vec![URL.to_owned()]);
}

#[test]
fn a_drive_holding_the_winning_commit_without_a_ref_is_still_a_source() {
    let machine = Machine::new();
    let signer = key(1);
    let (server, commits) = machine.drive("server", &[signed("4.0", 1_700_000_400, &signer)]);
    // The stick carries v4's objects, but its ref still points at v3.
    let (stick, _) = machine.drive("stick", &[signed("3.0", 1_700_000_300, &signer)]);
    let stick_repo = Repo::open(&stick).expect("open stick");
    write_commit(&stick_repo, &signed("4.0", 1_700_000_400, &signer));
    let list = machine.resolve(
        &machine.os_target(),
        vec![Arc::new(Upstream::open(&server)), open(&stick, "STICK")],
    );
    assert_eq!(list.updates.len(), 1, "{:#?}", list.problems);
    assert_eq!(list.updates[0].commit, commits[0]);
    assert_eq!(
        locations(&list.updates[0]),
        vec![stick.display().to_string(), URL.to_owned()]
    );
}

#[test]
fn upstream_only_counts_for_remotes_with_its_url() {
    let machine = Machine::new();
    let (server, _) = machine.drive("server", &[signed("4.0", 1_700_000_400, &key(1))]);
    let mut target = machine.os_target();
    target.remotes = vec![machine.remote(Some("https://elsewhere.example.org/"))];
    let list = machine.resolve(&target, vec![Arc::new(Upstream::open(&server))]);
    assert!(list.updates.is_empty(), "{:#?}", list.updates);
}

#[test]
fn rejected_candidates_are_problems_with_their_reason() {
    let machine = Machine::new();
    let stranger = key(9);
    let trusted = key(1);
    let (untrusted, _) = machine.drive("untrusted", &[signed("2.0", 1_700_000_100, &stranger)]);
    let (unsigned, _) = machine.drive("unsigned", &[Spec::new("2.0", 1_700_000_100)]);
    let (older, _) = machine.drive("older", &[signed("0.9", 1_699_000_000, &trusted)]);
    let (partial, partial_commits) =
        machine.drive("partial", &[signed("2.0", 1_700_000_100, &trusted)]);
    Repo::open(&partial)
        .expect("open")
        .mark_partial(&partial_commits[0])
        .expect("mark partial");
    let (bound, _) = machine.drive(
        "bound",
        &[Spec {
            collection: "org.example.Other",
            ..signed("2.0", 1_700_000_100, &trusted)
        }],
    );
    // The commit says it belongs to org.example.Other, but the drive lists it under ours.
    let bound_repo = Repo::open(&bound).expect("open");
    let bound_commit = bound_repo
        .resolve_ref(&RefLocation::mirror("org.example.Other", REF))
        .expect("ref")
        .expect("present");
    bound_repo
        .write_ref(&RefLocation::mirror(COLLECTION, REF), &bound_commit)
        .expect("mirror under our collection");
    let (unknown, _) = machine.drive(
        "unknown",
        &[Spec {
            collection: "org.example.Unknown",
            ..signed("2.0", 1_700_000_100, &trusted)
        }],
    );

    let target = machine.os_target();
    let list = machine.resolve(
        &target,
        vec![
            open(&untrusted, "UNTRUSTED"),
            open(&unsigned, "UNSIGNED"),
            open(&older, "OLDER"),
            open(&partial, "PARTIAL"),
            open(&bound, "BOUND"),
            open(&unknown, "UNKNOWN"),
        ],
    );
    assert!(list.updates.is_empty(), "{:#?}", list.updates);
    let find = |kind: ProblemKind, label: &str| {
        list.problems
            .iter()
            .find(|p| p.kind == kind && p.source.starts_with(label))
            .unwrap_or_else(|| panic!("no {kind:?} problem for {label}: {:#?}", list.problems))
    };
    let untrusted = find(ProblemKind::UntrustedSignature, "UNTRUSTED");
    assert_eq!(untrusted.ref_name.as_deref(), Some(REF));
    assert!(untrusted.reason.contains("trusts"), "{}", untrusted.reason);
    find(ProblemKind::UnsignedCommit, "UNSIGNED");
    let older = find(ProblemKind::Downgrade, "OLDER");
    assert!(
        older.reason.contains("older than the installed version"),
        "{}",
        older.reason
    );
    let partial = find(ProblemKind::PartialCommit, "PARTIAL");
    assert!(
        partial.reason.contains("commitpartial"),
        "{}",
        partial.reason
    );
    find(ProblemKind::BindingMismatch, "BOUND");
    let unknown = find(ProblemKind::UnknownCollection, "UNKNOWN");
    assert!(
        unknown
            .reason
            .contains("has collection ID org.example.Unknown: add the remote first"),
        "{}",
        unknown.reason
    );
    // The drive with a binding mismatch also holds the other collection, unknown here.
    assert_eq!(
        problem_kinds(&list)
            .iter()
            .filter(|k| **k == ProblemKind::UnknownCollection)
            .count(),
        2,
        "{:#?}",
        list.problems
    );

    // A collection known elsewhere on the machine is not reported.
    let mut options = machine.options.clone();
    options
        .known_collections
        .insert("org.example.Unknown".to_owned());
    let drives: Vec<Arc<dyn Source>> = vec![open(&unknown_path(&machine), "UNKNOWN")];
    let list = resolve(std::slice::from_ref(&target), &drives, &options);
    assert_eq!(list.problems, vec![]);
}

fn unknown_path(machine: &Machine) -> PathBuf {
    machine.path().join("unknown/.ostree/repo")
}

#[test]
fn a_damaged_commit_object_is_refused() {
    let machine = Machine::new();
    let (path, commits) = machine.drive("damaged", &[signed("2.0", 1_700_000_100, &key(1))]);
    let repo = Repo::open(&path).expect("open");
    let object = repo.object_path(ObjectId::new(commits[0], ObjectKind::Commit));
    let mut bytes = std::fs::read(&object).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&object, bytes).expect("tamper");
    let list = machine.resolve(&machine.os_target(), vec![open(&path, "DAMAGED")]);
    assert!(list.updates.is_empty());
    assert_eq!(
        problem_kinds(&list),
        vec![ProblemKind::Corrupt],
        "{:#?}",
        list.problems
    );
    assert!(list.problems[0].reason.contains("damaged"));
}

#[test]
fn download_size_counts_only_objects_missing_locally() {
    let machine = Machine::new();
    let signer = key(1);
    let with_sizes = Spec {
        sizes: true,
        ..signed("2.0", 1_700_000_100, &signer)
    };
    let (path, commits) = machine.drive("sizes", &[with_sizes]);
    let list = machine.resolve(&machine.os_target(), vec![open(&path, "S")]);
    assert_eq!(list.updates.len(), 1, "{:#?}", list.problems);
    let commit_len = Repo::open(&path)
        .expect("open")
        .read_metadata(ObjectKind::Commit, &commits[0])
        .expect("commit")
        .len() as u64;
    // `shared` is present in the machine's repository already; `version` is not.
    assert_eq!(list.updates[0].download_size, commit_len + 1000 + 3);

    // Without ostree.sizes the tree is walked: the commit, the new root dirtree and the
    // new file as archived on the drive.
    let (walked, walked_commits) = machine.drive("walk", &[signed("2.0", 1_700_000_100, &signer)]);
    let drive_repo = Repo::open(&walked).expect("open");
    let commit = drive_repo.read_commit(&walked_commits[0]).expect("commit");
    let tree_len = drive_repo
        .read_metadata(ObjectKind::DirTree, &commit.root_tree)
        .expect("tree")
        .len() as u64;
    let version_file = write_file(
        &Repo::init(&machine.path().join("scratch"), RepoMode::Archive, None).expect("init"),
        b"2.0",
    );
    let filez_len =
        std::fs::metadata(drive_repo.object_path(ObjectId::new(version_file, ObjectKind::File)))
            .expect("filez")
            .len();
    let commit_len = drive_repo
        .read_metadata(ObjectKind::Commit, &walked_commits[0])
        .expect("commit")
        .len() as u64;
    let list = machine.resolve(&machine.os_target(), vec![open(&walked, "W")]);
    assert_eq!(
        list.updates[0].download_size,
        commit_len + tree_len + filez_len
    );

    // Quick listings do not walk: the commit alone is counted.
    let mut quick = machine.options.clone();
    quick.quick = true;
    let drives: Vec<Arc<dyn Source>> = vec![open(&walked, "W")];
    let list = resolve(std::slice::from_ref(&machine.os_target()), &drives, &quick);
    assert_eq!(list.updates[0].download_size, commit_len);
}

const APP: &str = "app/org.example.App/x86_64/stable";
const RUNTIME: &str = "runtime/org.example.Platform/x86_64/stable";
const NEXT_RUNTIME: &str = "runtime/org.example.Platform/x86_64/next";

/// [`NEXT_RUNTIME`], version "next", signed by `signer`.
fn next_runtime_spec(timestamp: u64, signer: &SigningKey) -> Spec<'_> {
    Spec {
        ref_name: NEXT_RUNTIME,
        ..signed("next", timestamp, signer)
    }
}

fn app_spec<'a>(
    version: &'a str,
    timestamp: u64,
    runtime: &str,
    signer: &'a SigningKey,
) -> Spec<'a> {
    let metadata = format!(
        "[Application]\nname=org.example.App\nruntime={}\n",
        runtime.trim_start_matches("runtime/")
    );
    Spec {
        ref_name: APP,
        metadata: vec![(
            flatpak::XA_METADATA_KEY,
            MetadataValue::string(&metadata).expect("xa.metadata"),
        )],
        ..signed(version, timestamp, signer)
    }
}

#[test]
fn a_missing_runtime_is_listed_and_needed() {
    let machine = Machine::new();
    let signer = key(1);
    let installed_app = machine.installed_as(APP);
    let installed_runtime = machine.installed_as(RUNTIME);
    let target = machine.target(TargetKind::Flatpak, vec![installed_app, installed_runtime]);
    let (path, commits) = machine.drive(
        "apps",
        &[
            app_spec("2.0", 1_700_000_100, NEXT_RUNTIME, &signer),
            next_runtime_spec(1_700_000_050, &signer),
        ],
    );
    let list = machine.resolve(&target, vec![open(&path, "APPS")]);
    assert_eq!(list.problems, vec![]);
    assert_eq!(list.updates.len(), 2, "{:#?}", list.updates);
    let app = &list.updates[0];
    assert_eq!(app.ref_name, APP);
    assert_eq!(app.needs, vec![NEXT_RUNTIME.to_owned()]);
    let runtime = &list.updates[1];
    assert_eq!(runtime.ref_name, NEXT_RUNTIME);
    assert_eq!(runtime.commit, commits[1]);
    assert_eq!(runtime.current_commit, None);
    assert_eq!(runtime.current_version, None);
    assert_eq!(runtime.id, format!("flatpak:test:{NEXT_RUNTIME}"));

    // Without the runtime anywhere the app still says what it needs, and why it cannot come.
    let (lonely, _) = machine.drive(
        "lonely",
        &[app_spec("2.0", 1_700_000_100, NEXT_RUNTIME, &signer)],
    );
    let list = machine.resolve(&target, vec![open(&lonely, "LONELY")]);
    assert_eq!(list.updates.len(), 1);
    assert_eq!(list.updates[0].needs, vec![NEXT_RUNTIME.to_owned()]);
    assert_eq!(problem_kinds(&list), vec![ProblemKind::Unavailable]);
    assert_eq!(list.problems[0].ref_name.as_deref(), Some(NEXT_RUNTIME));

    // A runtime already installed is not needed.
    let (same_runtime, _) =
        machine.drive("same", &[app_spec("2.0", 1_700_000_100, RUNTIME, &signer)]);
    let list = machine.resolve(&target, vec![open(&same_runtime, "SAME")]);
    assert_eq!(list.updates.len(), 1);
    assert!(list.updates[0].needs.is_empty());
}

#[test]
fn apps_not_installed_are_offered_with_their_missing_runtime_and_unknown_ones_counted() {
    let mut machine = Machine::new();
    let signer = key(1);
    let installed_runtime = machine.installed_as(RUNTIME);
    let target = machine.target(TargetKind::Flatpak, vec![installed_runtime]);
    let foreign_app = Spec {
        ref_name: "app/org.other.Game/x86_64/stable",
        collection: "org.other.Apps",
        ..Spec::new("1.0", 1_700_000_100)
    };
    let (path, commits) = machine.drive(
        "apps",
        &[
            app_spec("2.0", 1_700_000_100, NEXT_RUNTIME, &signer),
            next_runtime_spec(1_700_000_050, &signer),
            foreign_app,
        ],
    );

    // Only when asked for.
    let list = machine.resolve(&target, vec![open(&path, "APPS")]);
    assert!(list.available.is_empty());
    assert_eq!(list.unknown_available, 0);

    machine.options.available = true;
    let list = machine.resolve(&target, vec![open(&path, "APPS")]);
    // The runtime only a new app needs is not an update of what is installed.
    assert!(list.updates.is_empty(), "{:#?}", list.updates);
    assert_eq!(list.unknown_available, 1);
    assert_eq!(list.available.len(), 1, "{:#?}", list.available);
    let offered = &list.available[0];
    assert_eq!(offered.app.ref_name, APP);
    assert_eq!(offered.app.commit, commits[0]);
    assert_eq!(offered.app.current_commit, None);
    assert_eq!(offered.app.needs, vec![NEXT_RUNTIME.to_owned()]);
    assert_eq!(offered.runtimes.len(), 1);
    assert_eq!(offered.runtimes[0].commit, commits[1]);
    assert_eq!(
        offered.download_size,
        offered.app.download_size + offered.runtimes[0].download_size
    );
    assert!(offered.runtimes[0].download_size > 0);

    // Without its runtime anywhere the app is not offered, and the problem says why.
    let (lonely, _) = machine.drive(
        "lonely",
        &[app_spec("2.0", 1_700_000_100, NEXT_RUNTIME, &signer)],
    );
    let list = machine.resolve(&target, vec![open(&lonely, "LONELY")]);
    assert!(list.available.is_empty());
    assert_eq!(problem_kinds(&list), vec![ProblemKind::Unavailable]);
    assert!(
        list.problems[0].reason.contains("an app a drive offers"),
        "{}",
        list.problems[0].reason
    );

    // Signed by a key the remote does not trust: refused, not offered.
    let (forged, _) = machine.drive(
        "forged",
        &[app_spec("2.0", 1_700_000_100, RUNTIME, &key(9))],
    );
    let list = machine.resolve(&target, vec![open(&forged, "FORGED")]);
    assert!(list.available.is_empty());
    assert_eq!(list.problems.len(), 1, "{:#?}", list.problems);
    assert_eq!(list.problems[0].ref_name.as_deref(), Some(APP));
}

#[test]
fn a_missing_runtime_from_a_drive_must_be_as_new_as_what_upstream_offers() {
    let machine = Machine::new();
    let signer = key(1);
    let installed_app = machine.installed_as(APP);
    let target = machine.target(TargetKind::Flatpak, vec![installed_app]);
    let (apps, drive_commits) = machine.drive(
        "apps",
        &[
            app_spec("2.0", 1_700_000_100, NEXT_RUNTIME, &signer),
            next_runtime_spec(1_700_000_050, &signer),
        ],
    );
    let runtime_on = |name: &str, timestamp: u64, signer: &SigningKey| {
        let (path, _) = machine.drive(name, &[next_runtime_spec(timestamp, signer)]);
        Arc::new(Upstream::open(&path)) as Arc<dyn Source>
    };

    // Upstream offers an older runtime: the drive's is newer, and taken.
    let older = runtime_on("older", 1_700_000_010, &signer);
    let list = machine.resolve(&target, vec![open(&apps, "APPS"), older]);
    assert_eq!(list.problems, vec![]);
    let runtime = list
        .updates
        .iter()
        .find(|u| u.ref_name == NEXT_RUNTIME)
        .expect("the runtime is listed");
    assert_eq!(runtime.commit, drive_commits[1]);

    // Upstream's only runtime fails the checks: nothing shows the drive's is current.
    let forged = runtime_on("forged", 1_700_000_090, &key(9));
    let list = machine.resolve(&target, vec![open(&apps, "APPS"), forged]);
    assert!(
        list.updates.iter().all(|u| u.ref_name != NEXT_RUNTIME),
        "{:#?}",
        list.updates
    );
    assert_eq!(list.updates[0].needs, vec![NEXT_RUNTIME.to_owned()]);
    let refusal = list
        .problems
        .iter()
        .find(|p| p.source.contains("APPS"))
        .expect("the drive's runtime is refused");
    assert_eq!(refusal.kind, ProblemKind::Unavailable);
    assert_eq!(refusal.ref_name.as_deref(), Some(NEXT_RUNTIME));
    assert!(
        refusal.reason.contains(URL) && refusal.reason.contains("--offline"),
        "{}",
        refusal.reason
    );
}

#[test]
fn apps_get_their_name_summary_and_icon_from_verified_appstream() {
    let machine = Machine::new();
    let signer = key(1);
    let target = machine.target(
        TargetKind::Flatpak,
        vec![machine.installed_as(APP), machine.installed_as(RUNTIME)],
    );
    let xml = br#"<?xml version="1.0"?>
<components version="0.8" origin="flatpak">
  <component type="desktop">
    <id>org.example.App.desktop</id>
    <name>Example Greeter</name>
    <summary>Prints a greeting</summary>
    <bundle type="flatpak">app/org.example.App/x86_64/stable</bundle>
  </component>
</components>"#;
    let icon = b"\x89PNG not really, but bytes".to_vec();
    let appstream = |signer| Spec {
        ref_name: "appstream2/x86_64",
        files: vec![
            ("appstream.xml", xml.to_vec()),
            ("icons/64x64/org.example.App.png", icon.clone()),
        ],
        ..signed("appstream", 1_700_000_090, signer)
    };
    let (path, _) = machine.drive(
        "apps",
        &[
            app_spec("2.0", 1_700_000_100, RUNTIME, &signer),
            appstream(&signer),
        ],
    );
    let mut options = machine.options.clone();
    options.icon_cache = Some(machine.path().join("icons"));
    let drives: Vec<Arc<dyn Source>> = vec![open(&path, "APPS")];
    let list = resolve(std::slice::from_ref(&target), &drives, &options);
    assert_eq!(list.problems, vec![]);
    let app = list.updates[0].app.clone().expect("app info");
    assert_eq!(app.name.as_deref(), Some("Example Greeter"));
    assert_eq!(app.summary.as_deref(), Some("Prints a greeting"));
    let cached = app.icon.expect("an icon");
    assert!(cached.starts_with(&machine.path().join("icons").display().to_string()));
    assert_eq!(std::fs::read(&cached).expect("icon copy"), icon);

    // AppStream signed by a key the remote does not trust is not used, and says so.
    let stranger = key(9);
    let (path, _) = machine.drive(
        "strange",
        &[
            app_spec("2.0", 1_700_000_100, RUNTIME, &signer),
            appstream(&stranger),
        ],
    );
    let list = machine.resolve(&target, vec![open(&path, "STRANGE")]);
    assert_eq!(list.updates.len(), 1);
    assert_eq!(list.updates[0].app, None);
    assert_eq!(problem_kinds(&list), vec![ProblemKind::UntrustedSignature]);
    assert_eq!(
        list.problems[0].ref_name.as_deref(),
        Some("appstream2/x86_64")
    );
}

#[test]
fn computers_nearby_are_looked_for_only_for_refs_bound_to_a_collection() {
    let machine = Machine::new();
    let bound = machine.target(TargetKind::Repo, vec![machine.installed_ref()]);
    assert!(super::sources::peers_could_offer(std::slice::from_ref(
        &bound
    )));
    let mut unbound_ref = machine.installed_ref();
    unbound_ref.collection_id = None;
    let unbound = machine.target(TargetKind::Repo, vec![unbound_ref]);
    assert!(!super::sources::peers_could_offer(std::slice::from_ref(
        &unbound
    )));
    assert!(super::sources::peers_could_offer(&[unbound, bound]));
    assert!(!super::sources::peers_could_offer(&[]));
}

/// An update of `id` to a commit named by `digit`, made at `timestamp`, offered by `sources`.
fn offer(id: &str, digit: char, timestamp: u64, sources: &[&SourceInfo]) -> Update {
    Update {
        id: id.to_owned(),
        target: TargetKind::Os,
        installation: None,
        remote: REMOTE.to_owned(),
        collection_id: Some(COLLECTION.to_owned()),
        ref_name: REF.to_owned(),
        current_commit: None,
        commit: Checksum::from_hex(&digit.to_string().repeat(64)).expect("checksum"),
        current_version: None,
        version: None,
        timestamp,
        subject: String::new(),
        body: String::new(),
        download_size: 0,
        signed: true,
        sources: sources.iter().map(|s| (*s).clone()).collect(),
        needs: Vec::new(),
        adds_subpaths: Vec::new(),
        app: None,
    }
}

#[test]
fn recorded_drives_nobody_could_read_compete_by_the_one_rule() {
    let mut stick = DriveRecord::new("stick", "/media/k");
    stick.label = Some("KINGSTON".to_owned());
    let on_stick = SourceInfo::new(SourceKind::Drive, "/media/k/.ostree/repo", None);
    stick.updates = vec![
        offer("newer", 'a', 20, &[&on_stick]),
        offer("tie", 'b', 10, &[&on_stick]),
        offer("older", 'c', 5, &[&on_stick]),
        offer("same", 'd', 10, &[&on_stick]),
        offer("only-here", 'e', 1, &[&on_stick]),
    ];
    stick.problems = vec![Problem::about(
        ProblemKind::Corrupt,
        "/media/k/.ostree/repo",
        None,
        "recorded by the hook".to_owned(),
    )];
    stick.mark_sources();
    let server = SourceInfo::new(SourceKind::Upstream, URL, None);
    let listed = UpdateList {
        updates: vec![
            offer("newer", '1', 10, &[&server]),
            offer("tie", '2', 10, &[&server]),
            offer("older", '3', 10, &[&server]),
            offer("same", 'd', 10, &[&server]),
        ],
        problems: vec![Problem::on_source(
            ProblemKind::Unreadable,
            &stick.source_info(),
            None,
            "permission denied".to_owned(),
        )],
        ..UpdateList::default()
    };

    let mut list = listed.clone();
    add_recorded(
        &mut list,
        std::slice::from_ref(&stick),
        std::slice::from_ref(&server),
    );
    let by_id = |id: &str| list.updates.iter().find(|u| u.id == id).expect("listed");
    let kinds = |update: &Update| -> Vec<SourceKind> {
        update.sources.iter().map(|source| source.kind).collect()
    };
    // The newer commit wins; on a tie the drive does; the same commit keeps both sources.
    assert_eq!(by_id("newer").timestamp, 20);
    assert_eq!(kinds(by_id("newer")), [SourceKind::Drive]);
    assert_eq!(by_id("tie").commit.to_hex(), "b".repeat(64));
    assert_eq!(by_id("older").commit.to_hex(), "3".repeat(64));
    assert_eq!(kinds(by_id("older")), [SourceKind::Upstream]);
    assert_eq!(
        kinds(by_id("same")),
        [SourceKind::Drive, SourceKind::Upstream]
    );
    assert_eq!(by_id("same").sources[0].drive.as_deref(), Some("stick"));
    assert_eq!(by_id("only-here").commit.to_hex(), "e".repeat(64));
    assert_eq!(list.updates.len(), 5);
    // The record speaks for the drive: its problems replace the failure to read it.
    assert_eq!(list.problems.len(), 1, "{:#?}", list.problems);
    assert_eq!(list.problems[0].reason, "recorded by the hook");
    assert_eq!(list.problems[0].drive(), Some("stick"));

    // A drive the listing read is left as the listing found it.
    let mut list = listed.clone();
    let read = SourceInfo {
        drive: Some("stick".to_owned()),
        ..on_stick
    };
    add_recorded(&mut list, &[stick], &[read]);
    assert_eq!(list, listed);
}

/// A drive holding a commit in part (some languages of a locale extension, marked partial)
/// serves an installation of those parts, and no other: not one of another language, nor
/// one of the whole ref.
#[test]
fn a_commit_held_in_part_serves_only_installations_of_those_parts() {
    let machine = Machine::new();
    let trusted = key(1);
    let spec = Spec {
        files: vec![
            ("metadata", b"[Runtime]\n".to_vec()),
            ("files/de/messages", b"de".to_vec()),
            ("files/fr/messages", b"fr".to_vec()),
        ],
        ..signed("2.0", 1_700_000_100, &trusted)
    };
    let (path, commits) = machine.drive("languages", &[spec]);
    let drive = Repo::open(&path).expect("open");
    drive.mark_partial(&commits[0]).expect("mark partial");
    // French's listing is not on the drive.
    let listing = |tree: Checksum| {
        let bytes = drive
            .read_metadata(ObjectKind::DirTree, &tree)
            .expect("dirtree");
        DirTree::parse(&bytes).expect("parse")
    };
    let child = |tree: Checksum, name: &str| {
        listing(tree)
            .dirs
            .iter()
            .find(|dir| dir.name == name)
            .map(|dir| dir.tree)
            .expect("subdirectory")
    };
    let root = drive.read_commit(&commits[0]).expect("commit").root_tree;
    let files = child(root, "files");
    let french = child(files, "fr");
    std::fs::remove_file(drive.object_path(ObjectId::new(french, ObjectKind::DirTree)))
        .expect("remove the French listing");

    let with = |subpaths: &[&str]| {
        let subpaths: Vec<String> = subpaths.iter().map(|s| (*s).to_owned()).collect();
        let installed = InstalledRef {
            deploy_subpaths: subpaths.clone(),
            subpaths,
            ..machine.installed_ref()
        };
        let target = machine.target(TargetKind::Repo, vec![installed]);
        machine.resolve(&target, vec![open(&path, "LANGUAGES")])
    };
    let german = with(&["/de"]);
    assert_eq!(german.updates.len(), 1, "{:#?}", german.problems);
    assert_eq!(german.updates[0].commit, commits[0]);
    for (refused, why) in [(with(&["/fr"]), "/fr"), (with(&[]), "commitpartial")] {
        assert!(refused.updates.is_empty(), "{:#?}", refused.updates);
        let problem = refused
            .problems
            .iter()
            .find(|p| p.kind == ProblemKind::PartialCommit)
            .unwrap_or_else(|| panic!("no partial-commit problem: {:#?}", refused.problems));
        assert!(problem.reason.contains(why), "{}", problem.reason);
    }

    // A listing on the way to German that does not hash to its name, or that is larger than
    // any such listing, is not read as holding German.
    let files_listing = drive.object_path(ObjectId::new(files, ObjectKind::DirTree));
    let original = std::fs::read(&files_listing).expect("read the listing");
    let mut altered = original.clone();
    altered[0] ^= 1;
    for hostile in [altered, vec![0u8; 9 * 1024 * 1024]] {
        std::fs::write(&files_listing, &hostile).expect("replace the listing");
        let refused = with(&["/de"]);
        assert!(refused.updates.is_empty(), "{:#?}", refused.updates);
        assert!(
            refused
                .problems
                .iter()
                .any(|p| p.kind == ProblemKind::PartialCommit && p.reason.contains("/de")),
            "{:#?}",
            refused.problems
        );
    }
    std::fs::write(&files_listing, &original).expect("restore the listing");
    assert_eq!(with(&["/de"]).updates.len(), 1);
}
