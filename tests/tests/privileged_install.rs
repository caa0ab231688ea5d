//! `ferryctl install` run as root on a user's behalf: through real `pkexec`, with a system
//! D-Bus, polkitd, Ferry's policy and a rule that lets the user `nobody` through the install
//! action. Whatever passes polkit must still be refused every target and source the user
//! could own, and `--allow-downgrade` needs the separate administrator action.
//! `ferryctl prepare-drive` has an action of its own and its own narrow rules, and so has
//! `ferryctl rollback`.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use ferry_engine::event::{parse_line, Event};
use ferry_engine::schema::DriveRecord;
use ferry_tests::{bins, require_root, wait_for, Tool};

const USER: &str = "nobody";
const NOBODY_UID: u32 = 65534;
const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";
const POLKIT_NAME: &str = "org.freedesktop.PolicyKit1";
/// A ref nothing offers: an allowed request gets past the checks and then fails on this.
const ABSENT_REF: &str = "app/org.example.Absent/x86_64/stable";

/// Everything the test installs or starts, removed again on drop.
struct Polkit {
    daemons: Vec<Child>,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    rule: PathBuf,
    /// Root-owned copy of ferryctl: pkexec runs only what the policy names.
    ferryctl: PathBuf,
    /// Whether the rule grants `nobody` the prepare-drive action too.
    prepare_granted: std::cell::Cell<bool>,
    /// Whether the rule grants `nobody` the rollback action too.
    rollback_granted: std::cell::Cell<bool>,
    _bin_dir: tempfile::TempDir,
}

impl Drop for Polkit {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
        for dir in self.dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        for daemon in self.daemons.iter_mut().rev() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }
}

impl Polkit {
    fn start() -> Result<Self> {
        require_root("running pkexec as another user")?;
        let bin_dir = tempfile::Builder::new()
            .prefix("ferry-pkexec-")
            .tempdir()
            .context("tempdir")?;
        std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let ferryctl = bin_dir.path().join("ferryctl");
        std::fs::copy(bins::binary("ferryctl")?, &ferryctl).context("copy ferryctl")?;
        let mut polkit = Polkit {
            daemons: Vec::new(),
            files: Vec::new(),
            dirs: Vec::new(),
            rule: PathBuf::from(format!(
                "/etc/polkit-1/rules.d/10-ferry-test-{}.rules",
                std::process::id()
            )),
            ferryctl,
            prepare_granted: std::cell::Cell::new(false),
            rollback_granted: std::cell::Cell::new(false),
            _bin_dir: bin_dir,
        };
        if !Path::new(SYSTEM_BUS).exists() {
            polkit.daemons.push(
                Command::new("dbus-daemon")
                    .args(["--system", "--nofork", "--nopidfile"])
                    .stdout(Stdio::null())
                    .spawn()
                    .context("dbus-daemon")?,
            );
            wait_for("the system bus", Duration::from_secs(10), || {
                Ok::<_, anyhow::Error>(Path::new(SYSTEM_BUS).exists())
            })?;
            polkit.files.push(PathBuf::from(SYSTEM_BUS));
        }
        let policy_in = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/polkit/io.github.ferry.Ferry.policy.in");
        let policy = std::fs::read_to_string(&policy_in)?.replace(
            ">/usr/bin/ferryctl<",
            &format!(">{}<", polkit.ferryctl.display()),
        );
        let policy_file = PathBuf::from(format!(
            "/usr/share/polkit-1/actions/io.github.ferry.Ferry.test-{}.policy",
            std::process::id()
        ));
        std::fs::write(&policy_file, policy)?;
        polkit.files.push(policy_file);
        polkit.files.push(polkit.rule.clone());
        polkit.set_downgrade_answer("NO")?;
        if !name_has_owner(POLKIT_NAME)? {
            polkit.daemons.push(
                Command::new("/usr/lib/polkit-1/polkitd")
                    .arg("--no-debug")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("polkitd")?,
            );
            wait_for("polkitd on the system bus", Duration::from_secs(10), || {
                name_has_owner(POLKIT_NAME)
            })?;
        }
        Ok(polkit)
    }

    /// The rule: the install action is granted to `nobody`; the administrator action gets
    /// `answer`.
    fn set_downgrade_answer(&self, answer: &str) -> Result<()> {
        let prepare = if self.prepare_granted.get() {
            "YES"
        } else {
            "NOT_HANDLED"
        };
        let rollback = if self.rollback_granted.get() {
            "YES"
        } else {
            "NOT_HANDLED"
        };
        let rule = format!(
            "polkit.addRule(function(action, subject) {{\n\
             if (subject.user != \"{USER}\") return polkit.Result.NOT_HANDLED;\n\
             if (action.id == \"io.github.ferry.Ferry.install\") return polkit.Result.YES;\n\
             if (action.id == \"io.github.ferry.Ferry.install-downgrade\") return polkit.Result.{answer};\n\
             if (action.id == \"io.github.ferry.Ferry.prepare-drive\") return polkit.Result.{prepare};\n\
             if (action.id == \"io.github.ferry.Ferry.rollback\") return polkit.Result.{rollback};\n\
             }});\n"
        );
        std::fs::write(&self.rule, rule)?;
        Ok(())
    }

    /// `pkexec ferryctl`, run by `nobody` from a shell of theirs, so that pkexec's parent
    /// (polkit's subject) is the user's: runuser's own process stays root.
    fn pkexec_ferryctl(&self) -> Tool {
        Tool::new("runuser")
            .args([
                "-u",
                USER,
                "--",
                "/bin/sh",
                "-c",
                "\"$0\" \"$@\"; exit $?",
                "pkexec",
            ])
            .arg(&self.ferryctl)
    }

    /// `pkexec ferryctl install --json --yes --offline ARGS…` run by `nobody`: its last error
    /// message, after checking it finished with ok false.
    fn install_as_user(&self, args: &[&OsStr]) -> Result<String> {
        let output = self
            .pkexec_ferryctl()
            .args(["install", "--json", "--yes", "--offline"])
            .args(args)
            .current_dir("/")
            .output()?;
        ensure!(!output.success(), "the install succeeded: {output:?}");
        ensure!(
            output.code() == Some(1),
            "pkexec did not run ferryctl (exit code {:?}): {}",
            output.code(),
            output.stderr
        );
        let mut error = None;
        let mut finished = None;
        for line in output.stdout.lines() {
            match parse_line(line) {
                Ok(Event::Message { text, .. }) => error = Some(text),
                Ok(Event::Finished { ok }) => finished = Some(ok),
                _ => {}
            }
        }
        ensure!(finished == Some(false), "no failed finish: {output:?}");
        error.with_context(|| format!("no error message: {output:?}"))
    }
}

impl Polkit {
    /// `pkexec ferryctl prepare-drive --json ARGS…` run by `nobody`: the exit code and the
    /// last message of the event stream (empty when there was none).
    fn prepare_as_user(&self, args: &[&OsStr]) -> Result<(Option<i32>, String)> {
        let output = self
            .pkexec_ferryctl()
            .args(["prepare-drive", "--json"])
            .args(args)
            .current_dir("/")
            .output()?;
        let message = output
            .stdout
            .lines()
            .rev()
            .find_map(|line| match parse_line(line) {
                Ok(Event::Message { text, .. }) => Some(text),
                _ => None,
            })
            .unwrap_or_default();
        Ok((output.code(), message))
    }

    /// `pkexec ferryctl rollback ARGS…` run by `nobody`: the exit code and stderr.
    fn rollback_as_user(&self, args: &[&OsStr]) -> Result<(Option<i32>, String)> {
        let output = self
            .pkexec_ferryctl()
            .arg("rollback")
            .args(args)
            .current_dir("/")
            .output()?;
        Ok((output.code(), output.stderr))
    }
}

/// Runs `pkexec_run` again until pkexec no longer refuses (exit 127) under the rule polkitd
/// had loaded before; its last exit code and message.
fn once_the_rule_is_loaded(
    mut pkexec_run: impl FnMut() -> Result<(Option<i32>, String)>,
) -> Result<(Option<i32>, String)> {
    let mut last = (None, String::new());
    wait_for(
        "polkitd to load the changed rule",
        Duration::from_secs(20),
        || {
            last = pkexec_run()?;
            Ok::<_, anyhow::Error>(last.0 != Some(127))
        },
    )
    .with_context(|| format!("still: {last:?}"))?;
    Ok(last)
}

fn name_has_owner(name: &str) -> Result<bool> {
    let output = Tool::new("dbus-send")
        .args([
            "--system",
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.NameHasOwner",
        ])
        .arg(format!("string:{name}"))
        .output()?;
    Ok(output.success() && output.stdout.contains("boolean true"))
}

/// A drive record in the real `/run/ferry/drives`, removed on drop with the directories it
/// made.
struct RecordedDrive {
    mount: tempfile::TempDir,
    record: PathBuf,
    made: Vec<PathBuf>,
}

impl RecordedDrive {
    fn new() -> Result<Self> {
        let mount = tempfile::Builder::new()
            .prefix("ferry-test-drive-")
            .tempdir()?;
        let mut made = Vec::new();
        for dir in ["/run/ferry", "/run/ferry/drives"] {
            if !Path::new(dir).exists() {
                std::fs::create_dir(dir)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
                made.push(PathBuf::from(dir));
            }
        }
        let id = format!("ferry-privileged-test-{}", std::process::id());
        let record = PathBuf::from(format!("/run/ferry/drives/{id}.json"));
        let contents = DriveRecord::new(id, mount.path().display().to_string());
        std::fs::write(&record, serde_json::to_vec(&contents)?)?;
        Ok(Self {
            mount,
            record,
            made,
        })
    }
}

impl Drop for RecordedDrive {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.record);
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A directory `nobody` owns.
fn owned_by_user(parent: &Path, name: &str) -> Result<PathBuf> {
    let dir = parent.join(name);
    std::fs::create_dir_all(dir.join("ostree/repo"))?;
    for made in [&dir, &dir.join("ostree"), &dir.join("ostree/repo")] {
        chown(made, Some(NOBODY_UID), Some(NOBODY_UID))?;
    }
    Ok(dir)
}

fn os(text: &str) -> OsString {
    OsString::from(text)
}

fn refused(message: &str, option: &str) -> bool {
    message.starts_with(&format!("refused as root for user {NOBODY_UID}: {option}"))
}

#[test]
fn serial_a_user_through_pkexec_cannot_point_root_at_what_they_own() -> Result<()> {
    let polkit = Polkit::start()?;
    let drive = RecordedDrive::new()?;
    let scratch = tempfile::tempdir()?;
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))?;
    let user_dir = owned_by_user(scratch.path(), "mine")?;
    let user_path = user_dir.as_os_str();
    let drive_mount = drive.mount.path().as_os_str();

    for (args, option) in [
        (vec![os("--sysroot"), user_path.into(), os(ABSENT_REF)], "--sysroot"),
        (vec![os("--installation"), os("user"), os(ABSENT_REF)], "--installation user"),
        (vec![os("--installation"), user_path.into(), os(ABSENT_REF)], "--installation"),
        (vec![os("--installation"), os("system"), os("--from"), user_path.into(), os(ABSENT_REF)], "--from"),
        (vec![os("--installation"), os("system"), os("--allow-downgrade"), os(ABSENT_REF)], "--allow-downgrade needs an administrator (io.github.ferry.Ferry.install-downgrade): polkit said no"),
    ] {
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let message = polkit.install_as_user(&args)?;
        ensure!(refused(&message, option), "{args:?} was not refused for {option}: {message}");
    }

    // The system installation from a recorded drive passes, and fails only later: nothing
    // offers the ref.
    let allowed = [
        os("--installation"),
        os("system"),
        os("--from"),
        drive_mount.into(),
        os(ABSENT_REF),
    ];
    let args: Vec<&OsStr> = allowed.iter().map(OsString::as_os_str).collect();
    let message = polkit.install_as_user(&args)?;
    ensure!(
        message.starts_with(&format!("no update of {ABSENT_REF} is offered")),
        "the allowed request failed otherwise: {message}"
    );

    // Once polkit grants the administrator action, --allow-downgrade passes too.
    polkit.set_downgrade_answer("YES")?;
    let mut downgrade = allowed.to_vec();
    downgrade.insert(0, os("--allow-downgrade"));
    let args: Vec<&OsStr> = downgrade.iter().map(OsString::as_os_str).collect();
    let mut last = String::new();
    let waited = wait_for(
        "polkitd to load the changed rule",
        Duration::from_secs(20),
        || {
            let message = polkit.install_as_user(&args)?;
            last = message.clone();
            ensure!(
                message.starts_with("no update of") || refused(&message, "--allow-downgrade"),
                "unexpected failure: {message}"
            );
            Ok::<_, anyhow::Error>(message.starts_with("no update of"))
        },
    );
    waited.with_context(|| format!("still: {last}"))?;
    Ok(())
}

/// Root with `PKEXEC_UID` set, without pkexec: the environment's overrides are ignored, so
/// a drive recorded only in `FERRY_RUN_DIR` is not a recorded drive.
#[test]
fn pkexec_uid_set_as_root_ignores_ferry_run_dir() -> Result<()> {
    require_root("a privileged run")?;
    let run_dir = tempfile::tempdir()?;
    std::fs::set_permissions(run_dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let user_repo = tempfile::tempdir()?;
    std::fs::create_dir(run_dir.path().join("drives"))?;
    let record = DriveRecord::new("planted", user_repo.path().display().to_string());
    std::fs::write(
        run_dir.path().join("drives/planted.json"),
        serde_json::to_vec(&record)?,
    )?;
    let output = bins::ferryctl()?
        .args([
            "install",
            "--json",
            "--yes",
            "--offline",
            "--installation",
            "system",
            "--from",
        ])
        .arg(user_repo.path())
        .arg(ABSENT_REF)
        .env("PKEXEC_UID", NOBODY_UID.to_string())
        .env("FERRY_RUN_DIR", run_dir.path())
        .output()?;
    ensure!(
        output
            .stdout
            .contains("refused as root for user 65534: --from"),
        "not refused: {output:?}"
    );
    Ok(())
}

/// pkexec picks the prepare-drive action for `ferryctl prepare-drive` (granting installs does
/// not grant it), and root then writes only to a folder the user owns (or a removable drive)
/// and reads only this machine's own repositories.
#[test]
fn serial_prepare_drive_through_pkexec_has_its_own_action_and_narrow_rules() -> Result<()> {
    let polkit = Polkit::start()?;
    let scratch = tempfile::tempdir()?;
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))?;
    let user_dir = owned_by_user(scratch.path(), "mine")?;
    let roots_dir = scratch.path().join("roots");
    std::fs::create_dir(&roots_dir)?;
    std::fs::set_permissions(&roots_dir, std::fs::Permissions::from_mode(0o755))?;

    // Only the install action is granted: pkexec refuses (127) before ferryctl runs.
    let (code, message) = polkit.prepare_as_user(&[user_dir.as_os_str()])?;
    ensure!(
        code == Some(127) && message.is_empty(),
        "prepare-drive ran under the install action: exit {code:?}, {message}"
    );

    polkit.prepare_granted.set(true);
    polkit.set_downgrade_answer("NO")?;
    let destination_refused = format!(
        "refused as root for user {NOBODY_UID}: {} is neither a mounted removable drive nor a \
         folder user {NOBODY_UID} owns",
        roots_dir.display()
    );
    let last = once_the_rule_is_loaded(|| polkit.prepare_as_user(&[roots_dir.as_os_str()]))?;
    ensure!(
        last == (Some(1), destination_refused.clone()),
        "a folder of root's was not refused: {last:?}"
    );

    for (args, option) in [
        (
            vec![
                user_dir.clone().into_os_string(),
                os("--sysroot"),
                user_dir.clone().into_os_string(),
            ],
            "--sysroot",
        ),
        (
            vec![
                user_dir.clone().into_os_string(),
                os("--installation"),
                os("user"),
            ],
            "--installation user",
        ),
    ] {
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let (code, message) = polkit.prepare_as_user(&args)?;
        ensure!(
            code == Some(1) && refused(&message, option),
            "{args:?} was not refused for {option}: {code:?} {message}"
        );
    }

    // The user's own folder and the system installation pass the checks; what happens then
    // depends on this machine, but it is no refusal.
    let (_, message) = polkit.prepare_as_user(&[
        user_dir.as_os_str(),
        OsStr::new("--installation"),
        OsStr::new("system"),
        OsStr::new("--dry-run"),
    ])?;
    ensure!(
        !message.starts_with("refused as root"),
        "the user's own folder was refused: {message}"
    );
    Ok(())
}

/// pkexec picks the rollback action for `ferryctl rollback` (granting installs does not grant
/// it), and root then acts on the running system's sysroot `/` only.
#[test]
fn serial_rollback_through_pkexec_has_its_own_action_and_acts_on_root_only() -> Result<()> {
    let polkit = Polkit::start()?;
    let scratch = tempfile::tempdir()?;
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))?;
    let sysroot = owned_by_user(scratch.path(), "sysroot")?;
    let args = [
        OsStr::new("--sysroot"),
        sysroot.as_os_str(),
        OsStr::new("--yes"),
    ];

    // Only the install action is granted: pkexec refuses (127) before ferryctl runs.
    let (code, said) = polkit.rollback_as_user(&args)?;
    ensure!(
        code == Some(127),
        "rollback ran under the install action: exit {code:?}, {said}"
    );

    polkit.rollback_granted.set(true);
    polkit.set_downgrade_answer("NO")?;
    let last = once_the_rule_is_loaded(|| polkit.rollback_as_user(&args))?;
    let refusal = format!(
        "refused as root for user {NOBODY_UID}: --sysroot {} is not the running system's \
         sysroot /",
        sysroot.display()
    );
    ensure!(
        last.0 == Some(1) && last.1.contains(&refusal),
        "a sysroot of the user's was not refused: {last:?}"
    );
    Ok(())
}

/// A Flatpak installation listed in `/etc/flatpak/installations.d`, as an administrator adds
/// one, so that a run as root may read it; the file is removed on drop.
struct ConfiguredInstallation {
    id: String,
    conf: PathBuf,
}

impl ConfiguredInstallation {
    fn new(path: &Path) -> Result<Self> {
        let id = format!("ferry-test-{}", std::process::id());
        let dir = Path::new("/etc/flatpak/installations.d");
        std::fs::create_dir_all(dir)?;
        let conf = dir.join(format!("{id}.conf"));
        std::fs::write(
            &conf,
            format!(
                "[Installation \"{id}\"]\nPath={}\nStorageType=harddisk\n",
                path.display()
            ),
        )?;
        Ok(Self { id, conf })
    }
}

impl Drop for ConfiguredInstallation {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.conf);
    }
}

/// Every entry under `dir` whose owner is not `uid`.
fn not_owned_by(dir: &Path, uid: u32) -> Result<Vec<PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    let mut others = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry?;
        if entry.metadata()?.uid() != uid {
            others.push(entry.into_path());
        }
    }
    Ok(others)
}

/// The app's way to copy a machine's updates to a folder: root writes what only it may read,
/// then the user's own run adds the apps only they have. Root's files in the user's folder
/// must be the user's by then, or that second run cannot write.
#[test]
fn serial_what_root_writes_in_a_users_folder_is_theirs_for_their_own_run() -> Result<()> {
    use ferry_tests::flatpak::{app_ref, runtime_ref, FlatpakFixture, APP_ID, BRANCH, RUNTIME_ID};
    use ferry_tests::ostree::OstreeRepo;

    require_root("running ferryctl as root for a user, then as that user")?;
    let scratch = tempfile::tempdir()?;
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))?;
    let fixture = FlatpakFixture::new(&scratch.path().join("flatpak"))?;
    // The user's own installation (flatpak keeps it to its owner), which an administrator
    // also listed as a system one.
    let installation = fixture.client.user_installation();
    Tool::new("chown")
        .args(["-R", &format!("{NOBODY_UID}:{NOBODY_UID}")])
        .arg(&installation)
        .run()?;
    let system = ConfiguredInstallation::new(&installation)?;
    let folder = scratch.path().join("for-stick");
    std::fs::create_dir(&folder)?;
    chown(&folder, Some(NOBODY_UID), Some(NOBODY_UID))?;
    let runtime = runtime_ref(RUNTIME_ID, BRANCH)?;

    // Root, for the user (what pkexec leaves): the runtime, from the configured installation.
    let as_root = bins::ferryctl()?
        .args(["prepare-drive", "--json"])
        .arg(&folder)
        .args(["--installation", &system.id, "--runtime", &runtime])
        .env("PKEXEC_UID", NOBODY_UID.to_string())
        .current_dir("/")
        .output()?;
    ensure!(as_root.success(), "the run as root failed: {as_root:?}");
    let others = not_owned_by(&folder, NOBODY_UID)?;
    ensure!(others.is_empty(), "left to others: {others:?}");

    // The user: the app, from the same installation read as a folder of theirs.
    let as_user = Tool::new("setpriv")
        .args([
            format!("--reuid={NOBODY_UID}"),
            format!("--regid={NOBODY_UID}"),
            "--clear-groups".to_owned(),
            "--".to_owned(),
        ])
        .arg(bins::binary("ferryctl")?)
        .args(["prepare-drive", "--json"])
        .arg(&folder)
        .arg("--installation")
        .arg(&installation)
        .args(["--app", APP_ID])
        .envs(fixture.client.vars())
        .current_dir("/")
        .output()?;
    ensure!(as_user.success(), "the user's own run failed: {as_user:?}");

    let drive = OstreeRepo::open(&folder.join(".ostree/repo"));
    let refs: Vec<String> = drive
        .collection_refs()?
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    for wanted in [app_ref(APP_ID, BRANCH)?, runtime] {
        ensure!(
            refs.contains(&wanted),
            "{wanted} is not on the drive: {refs:?}"
        );
    }
    let fsck = drive.fsck_output()?;
    ensure!(fsck.success(), "{fsck:?}");
    Ok(())
}
