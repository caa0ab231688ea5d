//! `ferryctl prepare-drive`: drives written from a fake sysroot or a Flatpak installation
//! update other machines through Ferry, `flatpak --sideload-repo` and `ostree`, on plain
//! folders and on FAT32 and exFAT (FUSE).

mod install_support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferry_engine::event::{Event, MessageLevel};
use ferry_engine::schema::{InstallStatus, ProblemKind, ScanReport};
use ferry_tests::bins;
use ferry_tests::cmd::Output;
use ferry_tests::flatpak::{
    app_ref, appstream2_ref, greeting, locale_text, runtime_ref, AppSpec, FlatpakEnv,
    FlatpakFixture, APP_ID, BRANCH, COLLECTION_ID, REMOTE, RUNTIME_ID,
};
use ferry_tests::fusefs::{FatKind, FuseDrive};
use ferry_tests::generate::{generate_tree, pseudo_random, Bucket, GenSpec};
use ferry_tests::gpg::GpgKey;
use ferry_tests::loopdev::Mount;
use ferry_tests::ostree::{ObjectKind, OstreeRepo, RefLocation, RepoMode};
use ferry_tests::sysroot::{Sysroot, OS_COLLECTION_ID, OS_NAME, OS_REF, OS_REMOTE};
use install_support::{kill_after_progress, os_from_drive, parse_events, snapshot, Machine};
use tempfile::TempDir;

/// A scratch directory with the OS vendor's key and a sysroot at OS 1.0 in `source`, whose OS
/// the tests write to drives.
struct OsSource {
    tmp: TempDir,
    key: GpgKey,
    source: Sysroot,
}

impl OsSource {
    fn new() -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let key = GpgKey::generate(&tmp.path().join("gnupg"), "OS Vendor <os@example.org>")?;
        let source = Sysroot::create(&tmp.path().join("source"), &key)?;
        Ok(OsSource { tmp, key, source })
    }

    /// [`OsSource::new`], its sysroot upgraded to 2.0 (pulled and deployed by `ostree admin`);
    /// the 2.0 commit alongside.
    fn at_2_0() -> Result<(Self, String)> {
        let scene = Self::new()?;
        let v2 = upgrade_to_2_0(&scene.source)?;
        Ok((scene, v2))
    }

    /// An empty folder `name` in the scratch directory, to use as a drive.
    fn empty_folder(&self, name: &str) -> Result<PathBuf> {
        let folder = self.tmp.path().join(name);
        std::fs::create_dir_all(&folder)?;
        Ok(folder)
    }

    /// `ferryctl prepare-drive DRIVE --sysroot SOURCE ARGS --json`.
    fn prepare(&self, drive: &Path, args: &[&str]) -> Result<Output> {
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&drive, &"--sysroot", &self.source.path];
        all.extend(args.iter().map(|arg| arg as &dyn AsRef<std::ffi::OsStr>));
        prepare(&[], &all)
    }
}

/// `ferryctl prepare-drive ARGS --json` with the variables `vars`.
fn prepare(vars: &[(String, OsString)], args: &[&dyn AsRef<std::ffi::OsStr>]) -> Result<Output> {
    Ok(bins::ferryctl()?
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_os_str())))
        .env("LC_ALL", "C.UTF-8")
        .arg("prepare-drive")
        .args(args.iter().map(|a| a.as_ref()))
        .arg("--json")
        .output()?)
}

/// `ferryctl prepare-drive DRIVE --installation INST --app APP_ID EXTRA... --json` as the
/// installation's user, DRIVE created first when missing.
fn prepare_app(installation: &FlatpakEnv, drive: &Path, extra: &[&str]) -> Result<Output> {
    std::fs::create_dir_all(drive)?;
    let path = installation.user_installation();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&drive, &"--installation", &path, &"--app", &APP_ID];
    args.extend(extra.iter().map(|arg| arg as &dyn AsRef<std::ffi::OsStr>));
    prepare(&installation.vars(), &args)
}

/// The number of objects a successful `--json` run reports having written.
fn objects_written(output: &Output) -> Result<u64> {
    ensure!(output.success(), "prepare-drive failed:\n{output:?}");
    let events = parse_events(&output.stdout)?;
    ensure!(
        events
            .iter()
            .any(|e| matches!(e, Event::Finished { ok: true })),
        "no successful finish: {events:?}"
    );
    let text = events
        .iter()
        .find_map(|event| match event {
            Event::Message {
                level: MessageLevel::Info,
                text,
            } if text.contains("Wrote ") => Some(text.clone()),
            _ => None,
        })
        .context("no summary message")?;
    let count = text
        .split("Wrote ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no count in {text:?}"))?;
    Ok(count)
}

/// Publishes 2.0 ([`publish_2_0`]) and upgrades `sysroot` to it; returns the 2.0 commit.
fn upgrade_to_2_0(sysroot: &Sysroot) -> Result<String> {
    let v2 = publish_2_0(sysroot)?;
    sysroot.upgrade()?;
    Ok(v2)
}

/// Commits 2.0, dated after any 1.0 a test makes (those are dated now).
fn publish_2_0(sysroot: &Sysroot) -> Result<String> {
    Ok(sysroot
        .os
        .commit_version_with("2.0", |spec| spec.timestamp("2030-01-01 00:00:00"))?)
}

/// Object files under a repository's `objects/`.
fn object_files(repo: &Path) -> Result<usize> {
    Ok(OstreeRepo::open(repo).count_objects()?.values().sum())
}

/// A machine at OS 1.0 takes 2.0 from `drive` through `ferryctl install`.
fn machine_at_1_0_installs_from(base: &Path, key: &GpgKey, drive: &Path, v2: &str) -> Result<()> {
    let target = Sysroot::create(base, key)?;
    let machine = Machine::new(base, Vec::new())?;
    let run = machine.install(&os_from_drive(&target.path, drive, &[]))?;
    ensure!(
        run.success(),
        "install from the prepared drive failed:\n{run}"
    );
    run.expect(OS_REF, InstallStatus::Installed)?;
    let default = target.default_deployment()?;
    ensure!(default.commit == v2, "default is not 2.0: {default:?}");
    ensure!(default.version.as_deref() == Some("2.0"), "{default:?}");
    Ok(())
}

fn os_drive_mirror(drive: &Path) -> Result<Option<String>> {
    OstreeRepo::open(&drive.join(".ostree/repo"))
        .read_ref(&RefLocation::Mirror {
            collection_id: OS_COLLECTION_ID.to_owned(),
            name: OS_REF.to_owned(),
        })
        .map_err(Into::into)
}

#[test]
fn os_drive_from_a_sysroot_at_2_0_updates_a_sysroot_at_1_0() -> Result<()> {
    let (scene, v2) = OsSource::at_2_0()?;
    let (tmp, key, source) = (&scene.tmp, &scene.key, &scene.source);
    let drive = tmp.path().join("drive");
    std::fs::create_dir_all(&drive)?;

    let output = prepare(&[], &[&drive, &"--sysroot", &source.path, &"--os"])?;
    ensure!(objects_written(&output)? > 0, "{output:?}");
    ensure!(os_drive_mirror(&drive)?.as_deref() == Some(v2.as_str()));
    // A complete archive repository with the publisher's signature, and nothing else.
    let repo = OstreeRepo::open(&drive.join(".ostree/repo"));
    let fsck = repo.fsck_output()?;
    ensure!(fsck.success(), "ostree fsck refused the drive:\n{fsck:?}");
    ensure!(repo.mode()? == RepoMode::Archive);
    let signatures = |repo: &OstreeRepo| -> Result<Vec<u8>> {
        Ok(std::fs::read(
            repo.object_path(&v2, ObjectKind::CommitMeta)?,
        )?)
    };
    ensure!(
        signatures(&repo)? == signatures(&source.repo())?,
        "the detached metadata was not copied byte for byte"
    );
    // The summary lists the mirror, as libostree reads it.
    let summary = repo.ostree().args(["summary", "--view"]).stdout()?;
    ensure!(
        summary.contains(OS_COLLECTION_ID) && summary.contains(OS_REF),
        "{summary}"
    );

    machine_at_1_0_installs_from(&tmp.path().join("target"), key, &drive, &v2)
}

#[test]
fn second_run_writes_only_new_objects_and_a_third_nothing() -> Result<()> {
    let scene = OsSource::new()?;
    let (tmp, source) = (&scene.tmp, &scene.source);
    let drive = scene.empty_folder("drive")?;
    let repo_path = drive.join(".ostree/repo");

    let first = objects_written(&scene.prepare(&drive, &[])?)?;
    ensure!(first as usize == object_files(&repo_path)?);
    ensure!(os_drive_mirror(&drive)?.as_deref() == Some(source.v1.as_str()));

    // What 2.0 adds, as ostree itself counts it: a repository holding 1.0 pulls 2.0.
    let v2 = upgrade_to_2_0(source)?;
    let reference = OstreeRepo::init(&tmp.path().join("reference"), RepoMode::Archive, None)?;
    reference.pull_local(&source.path.join("ostree/repo"), &[&source.v1], &[])?;
    let before = object_files(&reference.path)?;
    reference.pull_local(&source.path.join("ostree/repo"), &[&v2], &[])?;
    let added = object_files(&reference.path)? - before;

    let second = objects_written(&prepare(
        &[],
        &[&drive, &"--sysroot", &source.path, &"--keep-old"],
    )?)?;
    ensure!(
        second as usize == added,
        "the second run wrote {second} objects; 2.0 adds {added}"
    );
    ensure!(object_files(&repo_path)? == first as usize + added);
    ensure!(os_drive_mirror(&drive)?.as_deref() == Some(v2.as_str()));

    let files_before = snapshot(&drive)?;
    let third = objects_written(&scene.prepare(&drive, &[])?)?;
    ensure!(third == 0, "the third run wrote {third} objects");
    ensure!(
        snapshot(&drive)? == files_before,
        "the third run changed files on the drive"
    );
    Ok(())
}

/// Relative paths of the object files of a repository.
fn object_names(repo: &Path) -> Result<std::collections::BTreeSet<PathBuf>> {
    let objects = repo.join("objects");
    let mut names = std::collections::BTreeSet::new();
    for prefix in std::fs::read_dir(&objects)? {
        let prefix = prefix?.path();
        for entry in std::fs::read_dir(&prefix)? {
            names.insert(entry?.path().strip_prefix(&objects)?.to_path_buf());
        }
    }
    Ok(names)
}

#[test]
fn objects_of_the_old_version_are_removed_unless_kept() -> Result<()> {
    let scene = OsSource::new()?;
    let (tmp, source) = (&scene.tmp, &scene.source);
    let drive = scene.empty_folder("drive")?;
    let repo_path = drive.join(".ostree/repo");
    objects_written(&scene.prepare(&drive, &[])?)?;
    let v2 = upgrade_to_2_0(source)?;

    // The dry run plans 2.0 and changes nothing.
    let files_before = snapshot(&drive)?;
    let dry = prepare(&[], &[&drive, &"--sysroot", &source.path, &"--dry-run"])?;
    ensure!(dry.success(), "{dry:?}");
    ensure!(dry.stdout.contains("Would write"), "{}", dry.stdout);
    ensure!(
        snapshot(&drive)? == files_before,
        "the dry run changed the drive"
    );
    // Its plan, as the app reads it: 2.0 with the bytes it adds, and the object count the
    // real run then writes.
    let plan = parse_events(&dry.stdout)?
        .into_iter()
        .find_map(|event| match event {
            Event::DrivePlan(plan) => Some(plan),
            _ => None,
        })
        .context("no drive_plan event")?;
    let os = plan
        .refs
        .iter()
        .find(|carried| carried.commit == v2)
        .with_context(|| format!("2.0 is not planned: {plan:?}"))?;
    ensure!(
        !os.up_to_date && os.new_bytes > 0 && os.new_bytes <= plan.bytes_to_write,
        "{plan:?}"
    );

    let written = objects_written(&scene.prepare(&drive, &[])?)?;
    ensure!(
        written == plan.objects_to_write,
        "planned {}, wrote {written}",
        plan.objects_to_write
    );
    // Exactly what ostree itself copies for 2.0 alone.
    let reference = OstreeRepo::init(&tmp.path().join("reference"), RepoMode::Archive, None)?;
    reference.pull_local(&source.path.join("ostree/repo"), &[&v2], &[])?;
    let on_drive = object_names(&repo_path)?;
    let wanted = object_names(&reference.path)?;
    ensure!(
        on_drive == wanted,
        "left over: {:?}; missing: {:?}",
        on_drive.difference(&wanted).collect::<Vec<_>>(),
        wanted.difference(&on_drive).collect::<Vec<_>>()
    );
    let fsck = OstreeRepo::open(&repo_path).fsck_output()?;
    ensure!(fsck.success(), "{fsck:?}");
    Ok(())
}

#[test]
fn a_run_killed_mid_write_leaves_a_repository_fsck_accepts_with_the_old_ref() -> Result<()> {
    let scene = OsSource::new()?;
    let (tmp, source) = (&scene.tmp, &scene.source);
    let drive = scene.empty_folder("drive")?;
    let repo_path = drive.join(".ostree/repo");
    objects_written(&scene.prepare(&drive, &[])?)?;
    // About 20 MB in 3,000 files: long enough a write to be killed midway.
    let payload = GenSpec {
        buckets: vec![Bucket {
            count: 3000,
            min: 1024,
            max: 12 * 1024,
        }],
        files_per_dir: 100,
        seed: 13,
    };
    generate_tree(&source.os.data.join("usr/share/payload"), &payload)?;
    let v2 = upgrade_to_2_0(source)?;

    let mut command = bins::ferryctl()?
        .arg("prepare-drive")
        .arg(&drive)
        .arg("--sysroot")
        .arg(&source.path)
        .arg("--json")
        .into_command();
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    kill_after_progress(command.spawn()?, 2, Duration::from_secs(120))?;
    let written = object_files(&repo_path)?;
    let fsck = OstreeRepo::open(&repo_path).fsck_output()?;
    ensure!(
        fsck.success(),
        "fsck refused the interrupted drive:\n{fsck:?}"
    );
    ensure!(
        os_drive_mirror(&drive)?.as_deref() == Some(source.v1.as_str()),
        "the ref moved before its commit was complete"
    );

    // The next run finishes the job without writing again what is there.
    let rest = objects_written(&scene.prepare(&drive, &[])?)?;
    ensure!(os_drive_mirror(&drive)?.as_deref() == Some(v2.as_str()));
    let reference = OstreeRepo::init(&tmp.path().join("reference"), RepoMode::Archive, None)?;
    reference.pull_local(&source.path.join("ostree/repo"), &[&source.v1], &[])?;
    let v1_objects = object_files(&reference.path)?;
    reference.pull_local(&source.path.join("ostree/repo"), &[&v2], &[])?;
    let all_objects = object_files(&reference.path)?;
    ensure!(
        written > v1_objects && rest as usize == all_objects - written,
        "killed after {written} of {all_objects} objects, then wrote {rest}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(repo_path.join("tmp"))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("ferry-"))
        .collect();
    ensure!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    Ok(())
}

#[test]
fn a_remote_without_a_collection_id_is_refused_with_the_fix() -> Result<()> {
    let scene = OsSource::new()?;
    let (tmp, source) = (&scene.tmp, &scene.source);
    source
        .repo()
        .ostree()
        .args(["config", "unset", "--group"])
        .arg(format!("remote \"{OS_REMOTE}\""))
        .arg("collection-id")
        .run()?;
    let drive = tmp.path().join("drive");
    std::fs::create_dir_all(&drive)?;

    let output = scene.prepare(&drive, &[])?;
    ensure!(
        !output.success(),
        "a remote without collection ID was carried"
    );
    ensure!(
        output.stderr.contains("has no collection ID")
            && output.stderr.contains(OS_REMOTE)
            && output.stderr.contains("collection-id"),
        "{}",
        output.stderr
    );
    ensure!(
        !drive.join(".ostree").exists(),
        "something was written to the drive"
    );
    Ok(())
}

#[test]
fn serial_a_full_drive_is_refused_before_writing() -> Result<()> {
    let scene = OsSource::new()?;
    let tmp = &scene.tmp;
    let drive = tmp.path().join("drive");
    let mount = Mount::tmpfs(&drive, "64k")?;

    let output = scene.prepare(&drive, &[])?;
    let entries = std::fs::read_dir(&drive)?.count();
    mount.unmount()?;
    ensure!(!output.success(), "a drive too small was written to");
    ensure!(
        output.stderr.contains("needs") && output.stderr.contains("free"),
        "{}",
        output.stderr
    );
    ensure!(entries == 0, "{entries} entries were created on the drive");
    Ok(())
}

#[test]
fn serial_a_read_only_drive_is_refused_with_the_reason() -> Result<()> {
    let scene = OsSource::new()?;
    let tmp = &scene.tmp;
    let drive = tmp.path().join("drive");
    let mount = Mount::new(
        Path::new("tmpfs"),
        &drive,
        Some("tmpfs"),
        &["ro", "size=8m"],
    )?;
    let output = scene.prepare(&drive, &[])?;
    mount.unmount()?;
    ensure!(!output.success(), "a read-only drive was accepted");
    ensure!(
        output.stderr.contains("Read-only file system"),
        "{}",
        output.stderr
    );
    Ok(())
}

/// A drive on `kind` prepared from a sysroot at 2.0 updates a machine at 1.0, and fsck
/// accepts it after it is mounted again.
fn os_drive_on(kind: FatKind, name: &str) -> Result<()> {
    let (scene, v2) = OsSource::at_2_0()?;
    let (tmp, key) = (&scene.tmp, &scene.key);
    let image = tmp.path().join(format!("{name}.img"));
    let mountpoint = tmp.path().join(name);
    let fuse = FuseDrive::create(kind, &image, &mountpoint, 64)?;

    let output = scene.prepare(&mountpoint, &[])?;
    let written = objects_written(&output)?;
    ensure!(written > 0);
    let again = objects_written(&scene.prepare(&mountpoint, &[])?)?;
    ensure!(again == 0, "the second run on {name} wrote {again} objects");
    fuse.unmount()?;

    let fuse = FuseDrive::create_existing(kind, &image, &mountpoint)?;
    let fsck = OstreeRepo::open(&mountpoint.join(".ostree/repo")).fsck_output()?;
    ensure!(
        fsck.success(),
        "ostree fsck refused the {name} drive:\n{fsck:?}"
    );
    machine_at_1_0_installs_from(&tmp.path().join("target"), key, &mountpoint, &v2)?;
    fuse.unmount()?;
    Ok(())
}

#[test]
fn serial_libostrees_mount_finder_pulls_from_an_exfat_drive() -> Result<()> {
    let (scene, v2) = OsSource::at_2_0()?;
    let (tmp, key) = (&scene.tmp, &scene.key);
    let target = Sysroot::create(&tmp.path().join("target"), key)?;
    // GIO shows root the mounts under /media (not those under a dot directory such as the
    // test's own /tmp/.tmpXXXX).
    let media = tempfile::Builder::new()
        .prefix("ferry-test-")
        .tempdir_in("/media")?;
    let mountpoint = media.path().join("stick");
    let fuse = FuseDrive::create(
        FatKind::Exfat,
        &tmp.path().join("stick.img"),
        &mountpoint,
        64,
    )?;
    objects_written(&scene.prepare(&mountpoint, &[])?)?;

    let found = target
        .repo()
        .ostree()
        .args(["find-remotes", "--finders=mount", "--pull"])
        .arg(OS_COLLECTION_ID)
        .arg(OS_REF)
        .output()?;
    fuse.unmount()?;
    ensure!(found.success(), "ostree find-remotes failed:\n{found:?}");
    let pulled = target.repo().rev_parse(&format!("{OS_REMOTE}:{OS_REF}"))?;
    ensure!(
        pulled == v2,
        "ostree pulled {pulled}, not 2.0 ({v2}):\n{found:?}"
    );
    Ok(())
}

/// Bytes of the files under `dir`.
fn bytes_under(dir: &Path) -> Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let entry = entry?;
            let metadata = entry.metadata()?;
            if metadata.is_dir() {
                pending.push(entry.path());
            } else {
                total += metadata.len();
            }
        }
    }
    Ok(total)
}

/// A sysroot updated from 1.1 to 2.0 (a library changed slightly, the rest as it was)
/// prepares a FAT32 drive with `--delta-from installed`: the drive gets the 2.0 commit and
/// a delta from 1.1, listed in its summary, instead of the objects: far fewer bytes than a
/// full copy. A machine still at 1.1 (a copy of the sysroot from before the update)
/// installs 2.0 from it through the delta.
#[test]
fn serial_os_delta_on_fat32_updates_a_machine_at_1_1() -> Result<()> {
    let scene = OsSource::new()?;
    let (tmp, source) = (&scene.tmp, &scene.source);
    let lib = source.os.data.join("usr/lib");
    std::fs::create_dir_all(&lib)?;
    std::fs::write(lib.join("big.bin"), pseudo_random(2 << 20, 1))?;
    let mut library = pseudo_random(128 << 10, 2);
    std::fs::write(lib.join("libexample.so"), &library)?;
    let v1_1 = source.publish("1.1")?;
    source.upgrade()?;
    let target_sysroot = tmp.path().join("target-sysroot");
    ferry_tests::cmd::Tool::new("cp")
        .arg("-a")
        .arg(&source.path)
        .arg(&target_sysroot)
        .run()?;
    for byte in library.iter_mut().step_by(1500) {
        *byte ^= 0x5a;
    }
    std::fs::write(lib.join("libexample.so"), &library)?;
    let v2 = upgrade_to_2_0(source)?;

    let full = tmp.path().join("full");
    std::fs::create_dir_all(&full)?;
    objects_written(&prepare(
        &[],
        &[&full, &"--sysroot", &source.path, &"--os"],
    )?)?;
    let full_bytes = bytes_under(&full.join(".ostree/repo/objects"))?;

    let image = tmp.path().join("fat32.img");
    let mountpoint = tmp.path().join("fat32");
    let fuse = FuseDrive::create(FatKind::Fat32, &image, &mountpoint, 64)?;
    let output = scene.prepare(&mountpoint, &["--os", "--delta-from", "installed"])?;
    objects_written(&output)?;
    let repo = mountpoint.join(".ostree/repo");
    let delta_bytes = bytes_under(&repo.join("objects"))? + bytes_under(&repo.join("deltas"))?;
    ensure!(
        delta_bytes * 4 < full_bytes,
        "the delta drive holds {delta_bytes} bytes, the full copy {full_bytes}"
    );
    let summary = OstreeRepo::open(&repo)
        .ostree()
        .args(["summary", "--view"])
        .stdout()?;
    ensure!(
        summary.contains(&format!("{v1_1}-{v2}")),
        "the summary does not list the delta: {summary}"
    );

    let machine = Machine::new(&tmp.path().join("target"), Vec::new())?;
    let run = machine.install(&os_from_drive(&target_sysroot, &mountpoint, &[]))?;
    ensure!(run.success(), "install from the delta drive failed:\n{run}");
    run.expect(OS_REF, InstallStatus::Installed)?;
    ensure!(
        run.events.iter().any(|event| matches!(
            event,
            Event::Message { text, .. } if text.starts_with("applying the static delta")
        )),
        "the delta was not applied:\n{run}"
    );
    let deployed = target_sysroot.join(format!("ostree/deploy/{OS_NAME}/deploy/{v2}.0"));
    ensure!(deployed.is_dir(), "2.0 is not deployed");

    // A run without --delta-from then puts the objects on the same drive.
    let written = objects_written(&prepare(
        &[],
        &[&mountpoint, &"--sysroot", &source.path, &"--os"],
    )?)?;
    ensure!(written > 0, "the objects were not added to the delta drive");
    let fsck = OstreeRepo::open(&repo).fsck_output()?;
    ensure!(fsck.success(), "ostree fsck refused the drive:\n{fsck:?}");
    fuse.unmount()?;
    ferry_tests::sysroot::release_immutable(&target_sysroot)?;
    Ok(())
}

#[test]
fn serial_os_drive_on_fat32_through_fuse() -> Result<()> {
    os_drive_on(FatKind::Fat32, "fat32")
}

#[test]
fn serial_os_drive_on_exfat_through_fuse() -> Result<()> {
    os_drive_on(FatKind::Exfat, "exfat")
}

/// An installation with the app v2 and its new runtime, written to a drive by
/// `prepare-drive`; the fixture's client is still at v1.
fn app_v2_drive(fixture: &FlatpakFixture, drive: &Path) -> Result<(FlatpakEnv, String)> {
    fixture.publish_runtime("v2")?;
    let v2 = fixture.publish_app(&AppSpec::new("v2").runtime_branch("v2"))?;
    let maker = fixture.peer("maker")?;
    maker.install(REMOTE, &[APP_ID], &[])?;
    // The remote's AppStream data, which the drive carries along where it is present.
    maker
        .flatpak()
        .args(["--user", "update", "--appstream", REMOTE])
        .run()?;
    ensure!(objects_written(&prepare_app(&maker, drive, &[])?)? > 0);
    Ok((maker, v2))
}

#[test]
fn apps_drive_updates_an_installation_through_ferry_with_its_runtime() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = FlatpakFixture::new(tmp.path())?;
    let drive = tmp.path().join("drive");
    let (_maker, v2) = app_v2_drive(&fixture, &drive)?;
    let repo = OstreeRepo::open(&drive.join(".ostree/repo"));
    let runtime = runtime_ref(RUNTIME_ID, "v2")?;
    for name in [app_ref(APP_ID, BRANCH)?, runtime.clone(), appstream2_ref()?] {
        let mirror = repo.read_ref(&RefLocation::Mirror {
            collection_id: COLLECTION_ID.to_owned(),
            name: name.clone(),
        })?;
        ensure!(mirror.is_some(), "{name} is not on the drive");
    }

    let machine = Machine::new(&fixture.base, fixture.client.vars())?;
    let run = machine.install(&install_support::user_app_from_drive(&drive, APP_ID))?;
    ensure!(run.success(), "install failed:\n{run}");
    run.expect(&runtime, InstallStatus::Installed)?;
    ensure!(fixture.client.installed_commit(APP_ID)? == v2);
    ensure!(fixture.client.run(APP_ID)? == greeting(&AppSpec::new("v2")));
    Ok(())
}

/// The refs mirrored on a drive, as `ostree refs --collections` lists them.
fn drive_refs(drive: &Path) -> Result<Vec<String>> {
    Ok(OstreeRepo::open(&drive.join(".ostree/repo"))
        .collection_refs()?
        .into_iter()
        .map(|(_, name)| name)
        .collect())
}

#[test]
fn a_runtime_goes_alone_and_a_ref_installed_in_part_stays_behind() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = FlatpakFixture::new(tmp.path())?;
    let installation = fixture.client.user_installation();
    let runtime = runtime_ref(RUNTIME_ID, BRANCH)?;
    let app = app_ref(APP_ID, BRANCH)?;

    let runtime_drive = tmp.path().join("runtime-drive");
    std::fs::create_dir_all(&runtime_drive)?;
    let output = prepare(
        &fixture.client.vars(),
        &[
            &runtime_drive,
            &"--installation",
            &installation,
            &"--runtime",
            &RUNTIME_ID,
        ],
    )?;
    objects_written(&output)?;
    let carried = drive_refs(&runtime_drive)?;
    ensure!(
        carried.contains(&runtime) && !carried.contains(&app),
        "{carried:?}"
    );

    // The runtime's commit as if only some of its subdirectories were installed.
    let repo = fixture.client.user_repo();
    let commit = fixture.client.installed_commit(&runtime)?;
    std::fs::create_dir_all(repo.path.join("state"))?;
    std::fs::write(repo.path.join(format!("state/{commit}.commitpartial")), "")?;
    let app_drive = tmp.path().join("app-drive");
    std::fs::create_dir_all(&app_drive)?;
    let output = prepare(
        &fixture.client.vars(),
        &[
            &app_drive,
            &"--installation",
            &installation,
            &"--app",
            &APP_ID,
        ],
    )?;
    objects_written(&output)?;
    let carried = drive_refs(&app_drive)?;
    ensure!(
        carried.contains(&app) && !carried.contains(&runtime),
        "{carried:?}"
    );
    ensure!(
        output.stdout.contains("installed only in part") && output.stdout.contains(&runtime),
        "no warning about the partial runtime:\n{}",
        output.stdout
    );
    let fsck = OstreeRepo::open(&app_drive.join(".ostree/repo")).fsck_output()?;
    ensure!(fsck.success(), "{fsck:?}");
    Ok(())
}

/// Whether the drive holds directory `path` of `commit` with its listing (`ostree ls`).
fn drive_lists(drive: &Path, commit: &str, path: &str) -> Result<bool> {
    Ok(OstreeRepo::open(&drive.join(".ostree/repo"))
        .ostree()
        .args(["ls", commit, path])
        .output()?
        .success())
}

/// A locale extension installed with some languages goes on the drive with those languages,
/// marked partial as `flatpak` leaves it. It updates an installation with the same languages
/// through Ferry and through `flatpak --sideload-repo`; `--locale` narrows a whole one.
#[test]
fn a_locale_extension_installed_in_part_goes_with_its_languages() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = FlatpakFixture::new(tmp.path())?;
    let (locale, _) = fixture.repo.publish_locale(APP_ID, "v1", &["de", "fr"])?;
    // German speakers: flatpak's update deploys the languages installed plus those
    // configured (all of them when none is, as under LANG=C).
    fixture.client.install_languages(REMOTE, &locale, &["de"])?;
    let french = fixture.peer("french")?;
    french.install_languages(REMOTE, &locale, &["fr"])?;
    // German installed, French configured since: flatpak's update deploys both.
    let bilingual = fixture.peer("bilingual")?;
    bilingual.install(REMOTE, &[&locale], &["--subpath=/de"])?;
    bilingual.set_languages("de;fr")?;
    let sideloader = fixture.peer("sideloader")?;
    sideloader.install(REMOTE, &[APP_ID], &[])?;
    sideloader.install_languages(REMOTE, &locale, &["de"])?;

    let (_, v2) = fixture.repo.publish_locale(APP_ID, "v2", &["de", "fr"])?;
    let maker = fixture.peer("maker")?;
    maker.install(REMOTE, &[APP_ID], &[])?;
    maker.install_languages(REMOTE, &locale, &["de"])?;
    let drive = tmp.path().join("drive");
    let output = prepare_app(&maker, &drive, &[])?;
    objects_written(&output)?;
    ensure!(
        drive_refs(&drive)?.contains(&locale),
        "{locale} is not on the drive:\n{}",
        output.stdout
    );
    ensure!(
        output.stdout.contains("with only /de"),
        "no word of the languages carried:\n{}",
        output.stdout
    );
    let planned = parse_events(&output.stdout)?
        .into_iter()
        .find_map(|event| match event {
            Event::DrivePlan(plan) => plan.refs.into_iter().find(|r| r.ref_name == locale),
            _ => None,
        })
        .context("the plan does not list the locale extension")?;
    ensure!(planned.subpaths == ["/de"], "{planned:?}");
    let drive_repo = drive.join(".ostree/repo");
    ensure!(
        drive_repo
            .join(format!("state/{v2}.commitpartial"))
            .exists(),
        "the locale commit on the drive is not marked partial"
    );
    ensure!(drive_lists(&drive, &v2, "/files/de")?);
    ensure!(!drive_lists(&drive, &v2, "/files/fr")?);
    let fsck = OstreeRepo::open(&drive_repo).fsck_output()?;
    ensure!(fsck.success(), "{fsck:?}");
    // The hook's scan lists it, as partial.
    let scanned = bins::ferryctl()?
        .arg("scan")
        .arg("--json")
        .arg(&drive)
        .stdout()?;
    let report: ScanReport = serde_json::from_str(&scanned).context("scan --json output")?;
    let listed = report
        .repos
        .iter()
        .flat_map(|repo| &repo.refs)
        .find(|r| r.ref_name == locale)
        .with_context(|| format!("{locale} not in {report:?}"))?;
    ensure!(listed.partial && listed.commit.to_hex() == v2, "{listed:?}");
    let human = bins::ferryctl()?
        .env("LC_ALL", "C.UTF-8")
        .arg("scan")
        .arg(&drive)
        .stdout()?;
    ensure!(
        human.contains(&format!("{} (in part)", &v2[..10])),
        "{human}"
    );

    // An installation with another language finds the drive lacks it, and says so.
    let elsewhere = Machine::new(&tmp.path().join("elsewhere"), french.vars())?;
    let run = elsewhere.install(&install_support::user_updates_from_drive(&drive))?;
    let refused = run.problem_of(&locale)?;
    ensure!(
        refused.kind == ProblemKind::PartialCommit && refused.reason.contains("/fr"),
        "{refused:?}"
    );
    ensure!(french.installed_commit(&locale)? != v2);

    // Through Ferry: the languages installed are updated, and only those.
    let machine = Machine::new(&fixture.base, fixture.client.vars())?;
    let run = machine.install(&install_support::user_updates_from_drive(&drive))?;
    ensure!(run.success(), "install failed:\n{run}");
    let problems = run.problems();
    ensure!(problems.is_empty(), "the plan found problems: {problems:?}");
    run.expect(&locale, InstallStatus::Installed)?;
    ensure!(fixture.client.installed_commit(&locale)? == v2);
    let deployed = |language| fixture.client.deployed_locale_text(APP_ID, language);
    ensure!(deployed("de")? == Some(locale_text("de", "v2")));
    ensure!(
        deployed("fr")?.is_none(),
        "a language not installed was deployed"
    );
    // Only the parts were pulled, and the commit stays partial, as flatpak leaves it.
    let client_repo = fixture.client.user_repo();
    let lists = |path: &str| -> Result<bool> {
        Ok(client_repo
            .ostree()
            .args(["ls", &v2, path])
            .output()?
            .success())
    };
    ensure!(lists("/files/de")? && !lists("/files/fr")?);
    ensure!(client_repo
        .path
        .join(format!("state/{v2}.commitpartial"))
        .exists());

    // Through `flatpak --sideload-repo`, with the remote's server gone.
    sideloader.set_remote_url(REMOTE, "file:///nonexistent")?;
    let sideload = format!("--sideload-repo={}", drive_repo.display());
    sideloader.update(&[&sideload])?;
    ensure!(sideloader.installed_commit(&locale)? == v2);

    // `--locale` carries one language of a locale extension installed whole.
    let whole = fixture.peer("whole")?;
    whole.install(REMOTE, &[APP_ID], &[])?;
    whole.install(REMOTE, &[&locale], &[])?;
    let french = tmp.path().join("french");
    objects_written(&prepare_app(&whole, &french, &["--locale", "fr"])?)?;
    ensure!(drive_lists(&french, &v2, "/files/fr")?);
    ensure!(!drive_lists(&french, &v2, "/files/de")?);
    let fsck = OstreeRepo::open(&french.join(".ostree/repo")).fsck_output()?;
    ensure!(fsck.success(), "{fsck:?}");

    // Ferry pulls the languages flatpak will deploy: those installed and those configured.
    let everything = tmp.path().join("everything");
    objects_written(&prepare_app(&whole, &everything, &[])?)?;
    let machine = Machine::new(&tmp.path().join("bilingual-machine"), bilingual.vars())?;
    let run = machine.install(&install_support::user_updates_from_drive(&everything))?;
    ensure!(run.success(), "install failed:\n{run}");
    run.expect(&locale, InstallStatus::Installed)?;
    for language in ["de", "fr"] {
        let deployed = bilingual.deployed_locale_text(APP_ID, language)?;
        ensure!(
            deployed == Some(locale_text(language, "v2")),
            "{language}: {deployed:?}"
        );
    }
    Ok(())
}

/// A language the installation is set for after its locale extension was installed in part
/// is an update of its own, at the same version, as `flatpak update` makes it: listed as
/// adding that language, pulled from a drive holding it and deployed beside the others.
/// Set for every language, it gets the rest of the ref the same way.
#[test]
fn a_language_set_since_the_install_is_added_from_a_drive() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = FlatpakFixture::new(tmp.path())?;
    let (locale, v1) = fixture
        .repo
        .publish_locale(APP_ID, "v1", &["de", "fr", "es"])?;
    let client = &fixture.client;
    client.install_languages(REMOTE, &locale, &["de"])?;
    let maker = fixture.peer("maker")?;
    maker.install(REMOTE, &[APP_ID], &[])?;
    maker.install(REMOTE, &[&locale], &[])?;
    let drive = tmp.path().join("drive");
    objects_written(&prepare_app(&maker, &drive, &[])?)?;

    let machine = Machine::new(&fixture.base, client.vars())?;
    let from_drive = install_support::user_updates_from_drive(&drive);
    // An install from the drive that leaves the locale extension alone.
    let nothing_for_locale = |why: &str| -> Result<()> {
        let run = machine.install(&from_drive)?;
        ensure!(run.success(), "{run}");
        ensure!(
            run.results().iter().all(|r| r.ref_name != locale),
            "{locale} {why}:\n{run}"
        );
        Ok(())
    };
    // The locale extension's update as `list` shows it (`--installation user --from DRIVE`).
    let listed_update = || -> Result<ferry_engine::schema::Update> {
        let listed = machine.list(&from_drive[..4])?;
        listed
            .updates
            .into_iter()
            .find(|update| update.ref_name == locale)
            .with_context(|| format!("{locale} is not listed"))
    };
    // An install from the drive after which `languages` are deployed, still at v1.
    let install_deploys = |languages: &[&str]| -> Result<()> {
        let run = machine.install(&from_drive)?;
        ensure!(run.success(), "{run}");
        run.expect(&locale, InstallStatus::Installed)?;
        for language in languages {
            let deployed = client.deployed_locale_text(APP_ID, language)?;
            ensure!(
                deployed == Some(locale_text(language, "v1")),
                "{language}: {deployed:?}"
            );
        }
        ensure!(client.installed_commit(&locale)? == v1);
        Ok(())
    };
    nothing_for_locale("with no language to add")?;

    client.set_languages("de;fr")?;
    let update = listed_update()?;
    ensure!(
        update.commit.to_hex() == v1
            && update.current_commit == Some(update.commit)
            && update.adds_subpaths == ["/fr"],
        "{update:?}"
    );
    install_deploys(&["de", "fr"])?;
    ensure!(client.deployed_locale_text(APP_ID, "es")?.is_none());
    nothing_for_locale("again")?;

    // Every language: the rest of the ref, deployed whole as flatpak's update would.
    client.set_languages("*all*")?;
    let update = listed_update()?;
    ensure!(
        update.current_commit == Some(update.commit) && update.adds_every_language(),
        "{update:?}"
    );
    install_deploys(&["de", "fr", "es"])?;
    ensure!(!client
        .user_repo()
        .path
        .join(format!("state/{v1}.commitpartial"))
        .exists());
    nothing_for_locale("once whole")?;
    client.user_repo().fsck()?;
    Ok(())
}

/// A locale extension carried in part is marked so on FAT32 (through FUSE) too; the drive
/// stays fsck-clean, and a second run writes nothing.
#[test]
fn serial_a_locale_extension_in_part_on_fat32_through_fuse() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = FlatpakFixture::new(tmp.path())?;
    let (locale, commit) = fixture.repo.publish_locale(APP_ID, "v1", &["de", "fr"])?;
    fixture
        .client
        .install(REMOTE, &[&locale], &["--subpath=/de"])?;
    let image = tmp.path().join("fat32.img");
    let mountpoint = tmp.path().join("fat32");
    let fuse = FuseDrive::create(FatKind::Fat32, &image, &mountpoint, 64)?;
    ensure!(objects_written(&prepare_app(&fixture.client, &mountpoint, &[])?)? > 0);
    let again = objects_written(&prepare_app(&fixture.client, &mountpoint, &[])?)?;
    ensure!(again == 0, "the second run wrote {again} objects");
    fuse.unmount()?;

    let fuse = FuseDrive::create_existing(FatKind::Fat32, &image, &mountpoint)?;
    let repo = mountpoint.join(".ostree/repo");
    ensure!(repo.join(format!("state/{commit}.commitpartial")).exists());
    ensure!(drive_lists(&mountpoint, &commit, "/files/de")?);
    ensure!(!drive_lists(&mountpoint, &commit, "/files/fr")?);
    let fsck = OstreeRepo::open(&repo).fsck_output()?;
    ensure!(fsck.success(), "ostree fsck refused the drive:\n{fsck:?}");
    fuse.unmount()?;
    Ok(())
}

#[test]
fn apps_drive_updates_an_installation_through_flatpak_sideload() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let fixture = FlatpakFixture::new(tmp.path())?;
    let drive = tmp.path().join("drive");
    let (_maker, v2) = app_v2_drive(&fixture, &drive)?;
    // The remote's server is gone: only the drive can deliver.
    fixture
        .client
        .set_remote_url(REMOTE, "file:///nonexistent")?;
    let sideload = format!("--sideload-repo={}", drive.join(".ostree/repo").display());
    fixture.client.update(&[&sideload])?;
    ensure!(fixture.client.installed_commit(APP_ID)? == v2);
    ensure!(fixture.client.run(APP_ID)? == greeting(&AppSpec::new("v2")));
    let listed = runtime_ref(RUNTIME_ID, "v2")?
        .trim_start_matches("runtime/")
        .to_owned();
    let installed = fixture.client.installed_refs()?;
    ensure!(installed.contains(&listed), "{installed:?}");
    Ok(())
}

/// A run as root writes a user's folder through the directory pinned at the check: the user
/// swapping the folder's name for a link to root's directory afterwards changes nothing.
#[test]
fn a_pinned_drive_is_written_where_it_was_checked() -> Result<()> {
    use ferry_engine::cancel::CancelToken;
    use ferry_engine::event::SilentReporter;
    use ferry_engine::prepare::{prepare_drive, PrepareRequest, Selection};
    use ferry_engine::privilege::{pin_drive, Caller};
    use ferry_engine::target::{BootState, Target};

    ferry_tests::require_root("pinning a mount")?;
    let tmp = tempfile::tempdir()?;
    let base = tmp.path().canonicalize()?;
    let key = GpgKey::generate(&base.join("gnupg"), "OS Vendor <os@example.org>")?;
    let source = Sysroot::create(&base.join("source"), &key)?;
    let caller = Caller { uid: 1000 };
    let folder = base.join("for-stick");
    std::fs::create_dir(&folder)?;
    std::os::unix::fs::chown(&folder, Some(caller.uid), None)?;
    let pinned = pin_drive(caller, &folder, &[])?;

    let roots = base.join("roots");
    std::fs::create_dir(&roots)?;
    std::fs::rename(&folder, base.join("moved"))?;
    std::os::unix::fs::symlink(&roots, &folder)?;

    let targets = [Target::os(&source.path, &BootState::default())?];
    let request = PrepareRequest {
        drive: pinned.path(),
        selection: Selection::default(),
        dry_run: false,
        threads: 0,
        keep_old: false,
        delta_from: None,
    };
    let outcome = prepare_drive(&targets, &request, &SilentReporter, &CancelToken::new())?;
    ensure!(outcome.objects_written > 0 && outcome.refs_written == 1);
    ensure!(
        std::fs::read_dir(&roots)?.next().is_none(),
        "root's directory was written"
    );
    let fsck = OstreeRepo::open(&base.join("moved/.ostree/repo")).fsck_output()?;
    ensure!(fsck.success(), "{fsck:?}");
    Ok(())
}
