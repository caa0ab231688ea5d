//! Flatpak targets, checked against real `flatpak`: a signed repository with a collection ID
//! is built with `flatpak build-export`, apps are installed with `flatpak install` into
//! isolated installations (HOME, XDG and FLATPAK variables pointed into a temporary directory,
//! as flatpak's own tests do), and what Ferry reads must
//! equal what `flatpak info` and `flatpak remotes` report.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_engine::schema::TargetKind;
use ferry_engine::target::{
    default_targets, BootState, FlatpakPaths, FlatpakScope, HostPaths, InstallationSelector,
    Target, TargetError,
};

const COLLECTION: &str = "org.example.Apps";
const APP: &str = "org.example.App";
const APP_REF: &str = "app/org.example.App/x86_64/stable";
const RUNTIME_REF: &str = "runtime/org.example.Platform/x86_64/stable";
const REMOTE: &str = "example";

/// Runs a command and returns its stdout; fails the test with its stderr otherwise.
fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// An isolated Flatpak "machine": every place flatpak reads or writes lies under `root`.
struct FlatpakMachine {
    root: PathBuf,
    env: Vec<(&'static str, PathBuf)>,
}

impl FlatpakMachine {
    fn new(root: &Path) -> Self {
        let home = root.join("home");
        let env = vec![
            ("HOME", home.clone()),
            ("XDG_DATA_HOME", home.join("share")),
            ("XDG_CACHE_HOME", home.join("cache")),
            ("XDG_CONFIG_HOME", home.join("config")),
            ("XDG_STATE_HOME", home.join("state")),
            ("XDG_RUNTIME_DIR", root.join("runtime")),
            ("FLATPAK_SYSTEM_DIR", root.join("system")),
            ("FLATPAK_SYSTEM_CACHE_DIR", root.join("system-cache")),
            ("FLATPAK_CONFIG_DIR", root.join("config")),
            ("FLATPAK_RUN_DIR", root.join("run")),
        ];
        for (_, dir) in &env {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root.join("runtime"), std::fs::Permissions::from_mode(0o700))
            .expect("chmod runtime dir");
        Self {
            root: root.to_owned(),
            env,
        }
    }

    fn var(&self, name: &str) -> Option<OsString> {
        self.env
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone().into_os_string())
    }

    /// The paths Ferry derives from this machine's environment.
    fn paths(&self) -> FlatpakPaths {
        FlatpakPaths::from_vars(|name| self.var(name))
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env_remove("FLATPAK_USER_DIR")
            .env("FLATPAK_FANCY_OUTPUT", "0")
            .envs(self.env.iter().map(|(key, value)| (key, value)));
        command
    }

    fn flatpak<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run(self.command("flatpak").args(args))
    }
}

/// A publisher: a GPG key and a signed Flatpak repository with a collection ID, holding a
/// hand-made runtime and an app that runs on it.
struct Publisher {
    machine: FlatpakMachine,
    gnupg: PathBuf,
    key_id: String,
    public_key: PathBuf,
    repo: PathBuf,
}

impl Publisher {
    fn new(root: &Path) -> Self {
        let machine = FlatpakMachine::new(&root.join("publisher"));
        let gnupg = root.join("gnupg");
        std::fs::create_dir(&gnupg).expect("mkdir");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&gnupg, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let gpg = |args: &[&str]| {
            run(Command::new("gpg")
                .env("GNUPGHOME", &gnupg)
                .args(["--batch", "--passphrase", ""])
                .args(args))
        };
        gpg(&[
            "--quick-gen-key",
            "Ferry Test <test@example.org>",
            "ed25519",
            "sign",
            "never",
        ]);
        let key_id = gpg(&["--list-keys", "--with-colons"])
            .lines()
            .find_map(|line| {
                line.strip_prefix("fpr:")
                    .map(|rest| rest.trim_matches(':').to_owned())
            })
            .expect("key fingerprint");
        let public_key = root.join("pub.gpg");
        let exported = Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--batch", "--export"])
            .output()
            .expect("gpg --export");
        std::fs::write(&public_key, exported.stdout).expect("write key");
        let publisher = Self {
            machine,
            gnupg,
            key_id,
            public_key,
            repo: root.join("repo"),
        };
        publisher.export_runtime();
        publisher.export_app("v1");
        publisher
    }

    fn signing_args(&self) -> [String; 2] {
        [
            format!("--gpg-sign={}", self.key_id),
            format!("--gpg-homedir={}", self.gnupg.display()),
        ]
    }

    fn export(&self, dir: &Path, runtime: bool) {
        let mut command = self.machine.command("flatpak");
        command.arg("build-export");
        if runtime {
            command.arg("--runtime");
        }
        command
            .arg(format!("--collection-id={COLLECTION}"))
            .args(self.signing_args())
            .args(["--no-update-summary", "--disable-sandbox"])
            .arg(&self.repo)
            .arg(dir)
            .arg("stable");
        run(&mut command);
    }

    fn export_runtime(&self) {
        let dir = self.machine.root.join("runtime-build");
        std::fs::create_dir_all(dir.join("usr/bin")).expect("mkdir");
        std::fs::create_dir_all(dir.join("files")).expect("mkdir");
        std::fs::write(
            dir.join("metadata"),
            "[Runtime]\nname=org.example.Platform\nruntime=org.example.Platform/x86_64/stable\n\
             sdk=org.example.Platform/x86_64/stable\n",
        )
        .expect("write");
        std::fs::write(dir.join("usr/bin/tool"), "a tool\n").expect("write");
        self.export(&dir, true);
    }

    fn export_app(&self, version: &str) {
        let dir = self.machine.root.join("app-build");
        let first = !dir.exists();
        std::fs::create_dir_all(dir.join("files/bin")).expect("mkdir");
        std::fs::write(
            dir.join("files/bin/hello.sh"),
            format!("#!/bin/sh\necho \"Hello from {APP} {version}\"\n"),
        )
        .expect("write");
        if first {
            std::fs::write(
                dir.join("metadata"),
                format!(
                    "[Application]\nname={APP}\nruntime=org.example.Platform/x86_64/stable\n\
                     sdk=org.example.Platform/x86_64/stable\n"
                ),
            )
            .expect("write");
            // Finishing is done once; later versions only change files.
            run(self
                .machine
                .command("flatpak")
                .args(["build-finish", "--command=hello.sh"])
                .arg(&dir));
        }
        self.export(&dir, false);
        run(self
            .machine
            .command("flatpak")
            .arg("build-update-repo")
            .args(self.signing_args())
            .arg(&self.repo));
    }

    /// Adds the publisher's repository as remote `example` to an installation of `machine`
    /// (`scope` is `--user`, `--system` or `--installation=ID`).
    fn add_remote(&self, machine: &FlatpakMachine, scope: &str) {
        machine.flatpak([
            scope,
            "remote-add",
            &format!("--gpg-import={}", self.public_key.display()),
            REMOTE,
            &format!("file://{}", self.repo.display()),
        ]);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.gnupg)
            .args(["--kill", "all"])
            .status();
    }
}

/// Checks a target's installed refs against `flatpak info` run with the target's own
/// options and environment, which the deploy step will use.
fn assert_matches_flatpak_info(machine: &FlatpakMachine, target: &Target) {
    let installation = target.flatpak_installation().expect("a Flatpak target");
    for installed in &target.installed {
        let mut command = machine.command("flatpak");
        command
            .args(installation.flatpak_args())
            .envs(installation.flatpak_env())
            .args(["info", "--show-commit", &installed.ref_name]);
        assert_eq!(
            run(&mut command).trim(),
            installed.commit.to_hex(),
            "{}",
            installed.ref_name
        );

        let mut command = machine.command("flatpak");
        command
            .args(installation.flatpak_args())
            .envs(installation.flatpak_env())
            .args(["info", "--show-origin", &installed.ref_name]);
        assert_eq!(Some(run(&mut command).trim()), installed.remote.as_deref());

        let shown = run(Command::new("ostree")
            .arg(format!("--repo={}", target.repo.display()))
            .args(["show", &installed.commit.to_hex()]));
        let date = shown
            .lines()
            .find_map(|line| line.strip_prefix("Date:"))
            .expect("Date line")
            .trim()
            .to_owned();
        let ours = run(Command::new("date")
            .arg("-u")
            .arg(format!("--date=@{}", installed.timestamp))
            .arg("+%Y-%m-%d %H:%M:%S +0000"));
        assert_eq!(ours.trim(), date, "timestamp of {}", installed.ref_name);
    }
}

/// `flatpak remotes` of an installation: (name, collection ID).
fn flatpak_remotes(machine: &FlatpakMachine, args: &[OsString]) -> Vec<(String, Option<String>)> {
    let mut command = machine.command("flatpak");
    command
        .args(args)
        .args(["remotes", "--columns=name,collection"]);
    run(&mut command)
        .lines()
        .filter_map(|line| {
            let mut columns = line.split('\t');
            let name = columns.next()?.trim().to_owned();
            let collection = columns
                .next()
                .map(str::trim)
                .filter(|c| !c.is_empty() && *c != "-")
                .map(str::to_owned);
            Some((name, collection))
        })
        .collect()
}

#[test]
fn user_installation_lists_app_and_runtime_with_origin_and_collection() {
    let dir = tempfile::tempdir().expect("temp dir");
    let publisher = Publisher::new(dir.path());
    let machine = FlatpakMachine::new(&dir.path().join("client"));
    publisher.add_remote(&machine, "--user");
    machine.flatpak(["--user", "install", "-y", "--noninteractive", REMOTE, APP]);
    machine.flatpak([
        "--user",
        "remote-modify",
        &format!("--collection-id={COLLECTION}"),
        REMOTE,
    ]);

    let paths = machine.paths();
    assert_eq!(paths.user_dir, machine.root.join("home/share/flatpak"));
    let target =
        Target::flatpak_selected(&InstallationSelector::User, &paths).expect("user target");
    assert_eq!(target.kind, TargetKind::Flatpak);
    assert_eq!(target.installation, "user");
    assert_eq!(target.repo, paths.user_dir.join("repo"));
    let mode = run(Command::new("ostree")
        .arg(format!("--repo={}", target.repo.display()))
        .args(["config", "get", "core.mode"]));
    assert_eq!(target.repo_mode, mode.trim());
    assert_eq!(target.repo_mode, "bare-user-only");
    assert!(!target.needs_root);
    assert!(target.problems.is_empty(), "{:?}", target.problems);
    assert_eq!(target.trust.repo, target.repo);
    assert_eq!(target.trust.remotes_config_dir, None);

    let names: Vec<&str> = target
        .installed
        .iter()
        .map(|r| r.ref_name.as_str())
        .collect();
    assert_eq!(names, [APP_REF, RUNTIME_REF]);
    assert_matches_flatpak_info(&machine, &target);

    let remotes = flatpak_remotes(&machine, &["--user".into()]);
    assert_eq!(remotes, [(REMOTE.to_owned(), Some(COLLECTION.to_owned()))]);
    for installed in &target.installed {
        assert_eq!(installed.remote.as_deref(), Some(REMOTE));
        assert_eq!(installed.collection_id.as_deref(), Some(COLLECTION));
        assert_eq!(installed.version, None, "flatpak commits carry no version");
        assert!(installed.subpaths.is_empty());
    }
    let app = target
        .installed_ref(Some(COLLECTION), APP_REF)
        .expect("app");
    assert_eq!(app.runtime.as_deref(), Some(RUNTIME_REF));
    let remote = target.remote(REMOTE).expect("remote");
    assert_eq!(
        remote.url,
        Some(format!("file://{}", publisher.repo.display()))
    );
    assert!(!remote.disabled);
    let trust = remote.trust_config();
    assert_eq!(trust.name, REMOTE);
    assert_eq!(
        trust.options.get("gpg-verify").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        trust.options.get("gpg-verify-summary").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        trust.options.get("collection-id").map(String::as_str),
        Some(COLLECTION)
    );

    let installation = target.flatpak_installation().expect("installation");
    assert_eq!(installation.scope, FlatpakScope::User);
    assert_eq!(installation.flatpak_args(), [OsString::from("--user")]);

    // A newer app version, once installed, is what the target reports.
    publisher.export_app("v2");
    machine.flatpak(["--user", "update", "-y", "--noninteractive"]);
    let updated =
        Target::flatpak_selected(&InstallationSelector::User, &paths).expect("user target");
    let new_app = updated
        .installed_ref(Some(COLLECTION), APP_REF)
        .expect("app");
    assert_ne!(new_app.commit, app.commit);
    assert!(new_app.timestamp >= app.timestamp);
    assert_matches_flatpak_info(&machine, &updated);
}

#[test]
fn configured_system_and_user_installations_are_found_by_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let publisher = Publisher::new(dir.path());
    let machine = FlatpakMachine::new(&dir.path().join("client"));
    let extra_dir = machine.root.join("extra-installation");
    let installations_d = machine.root.join("config/installations.d");
    std::fs::create_dir_all(&installations_d).expect("mkdir");
    std::fs::write(
        installations_d.join("extra.conf"),
        format!(
            "[Installation \"extra\"]\nPath={}\nDisplayName=Extra apps\nPriority=5\n",
            extra_dir.display()
        ),
    )
    .expect("write");
    // Entries Flatpak ignores are reported; they do not hide the good ones.
    std::fs::write(
        installations_d.join("zz-broken.conf"),
        "[Installation noquotes]\nPath=/nowhere\n[Installation \"extra\"]\nPath=/elsewhere\n",
    )
    .expect("write");
    std::fs::write(installations_d.join("ignored.txt"), "not a config").expect("write");

    // The third installation holds the app (and so its runtime), the system one only a remote,
    // the user one only the runtime.
    publisher.add_remote(&machine, "--installation=extra");
    machine.flatpak([
        "--installation=extra",
        "install",
        "-y",
        "--noninteractive",
        REMOTE,
        APP,
    ]);
    machine.flatpak([
        "--installation=extra",
        "remote-modify",
        &format!("--collection-id={COLLECTION}"),
        REMOTE,
    ]);
    publisher.add_remote(&machine, "--system");
    publisher.add_remote(&machine, "--user");
    machine.flatpak([
        "--user",
        "install",
        "-y",
        "--noninteractive",
        REMOTE,
        "org.example.Platform",
    ]);

    let host = HostPaths {
        boot: BootState {
            ostree_booted: machine.root.join("no-ostree-booted"),
            ..BootState::default()
        },
        flatpak: machine.paths(),
        os_sysroot: None,
    };
    let found = default_targets(&host);
    let labels: Vec<&str> = found
        .targets
        .iter()
        .map(|t| t.installation.as_str())
        .collect();
    assert_eq!(
        labels,
        ["extra", "system", "user"],
        "highest priority first, user last"
    );
    assert!(found.targets.iter().all(|t| t.kind == TargetKind::Flatpak));
    let reasons: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("noquotes")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("defined twice")),
        "{reasons:?}"
    );

    let extra = &found.targets[0];
    assert_eq!(extra.repo, extra_dir.join("repo"));
    let names: Vec<&str> = extra
        .installed
        .iter()
        .map(|r| r.ref_name.as_str())
        .collect();
    assert_eq!(names, [APP_REF, RUNTIME_REF]);
    assert!(extra
        .installed
        .iter()
        .all(|r| r.collection_id.as_deref() == Some(COLLECTION)));
    let installation = extra.flatpak_installation().expect("installation");
    assert_eq!(
        installation.flatpak_args(),
        [OsString::from("--installation=extra")]
    );
    assert!(matches!(
        &installation.scope,
        FlatpakScope::Configured { id, display_name, priority: 5 }
            if id == "extra" && display_name.as_deref() == Some("Extra apps")
    ));
    assert_eq!(
        flatpak_remotes(&machine, &installation.flatpak_args()),
        [(REMOTE.to_owned(), Some(COLLECTION.to_owned()))]
    );

    let system = &found.targets[1];
    assert_eq!(system.repo, machine.root.join("system/repo"));
    assert!(system.installed.is_empty());
    assert_eq!(
        system.remote(REMOTE).and_then(|r| r.collection_id.clone()),
        None
    );
    assert_eq!(
        flatpak_remotes(&machine, &["--system".into()]),
        [(REMOTE.to_owned(), None)]
    );

    let user = &found.targets[2];
    let names: Vec<&str> = user.installed.iter().map(|r| r.ref_name.as_str()).collect();
    assert_eq!(names, [RUNTIME_REF]);
    assert_eq!(
        user.installed[0].collection_id, None,
        "the user remote has no collection ID"
    );

    for target in &found.targets {
        assert!(target.problems.is_empty(), "{:?}", target.problems);
        assert_matches_flatpak_info(&machine, target);
    }

    // --installation by ID, and by a directory that is a configured installation.
    let paths = machine.paths();
    let by_id = Target::flatpak_selected(&InstallationSelector::parse("extra"), &paths)
        .expect("extra by ID");
    assert_eq!(by_id.installed, extra.installed);
    let by_dir = Target::flatpak_selected(
        &InstallationSelector::parse(&extra_dir.display().to_string()),
        &paths,
    )
    .expect("extra by directory");
    assert_eq!(by_dir.installation, "extra");
    let error = Target::flatpak_selected(&InstallationSelector::parse("missing"), &paths)
        .expect_err("unknown installation");
    assert!(
        matches!(error, TargetError::UnknownInstallation { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("installations.d"), "{error}");
}

#[test]
fn an_unconfigured_directory_is_addressed_through_flatpak_user_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    let publisher = Publisher::new(dir.path());
    let machine = FlatpakMachine::new(&dir.path().join("client"));
    let loose = machine.root.join("loose");
    std::fs::create_dir(&loose).expect("mkdir");
    // Installs into the loose directory the way Ferry's deploy step will address it.
    for args in [
        vec![
            "--user".to_owned(),
            "remote-add".to_owned(),
            format!("--gpg-import={}", publisher.public_key.display()),
            format!("--collection-id={COLLECTION}"),
            REMOTE.to_owned(),
            format!("file://{}", publisher.repo.display()),
        ],
        ["--user", "install", "-y", "--noninteractive", REMOTE, APP]
            .map(str::to_owned)
            .to_vec(),
    ] {
        run(machine
            .command("flatpak")
            .env("FLATPAK_USER_DIR", &loose)
            .args(args));
    }

    let target = Target::flatpak_selected(
        &InstallationSelector::parse(&loose.display().to_string()),
        &machine.paths(),
    )
    .expect("loose installation");
    assert_eq!(target.installation, loose.display().to_string());
    let installation = target.flatpak_installation().expect("installation");
    assert_eq!(installation.scope, FlatpakScope::Directory);
    assert_eq!(
        installation.flatpak_env(),
        [(
            OsString::from("FLATPAK_USER_DIR"),
            loose.clone().into_os_string()
        )]
    );
    assert_eq!(target.installed.len(), 2);
    assert!(target
        .installed
        .iter()
        .all(|r| r.collection_id.as_deref() == Some(COLLECTION)));
    assert_matches_flatpak_info(&machine, &target);

    // The user installation of the same machine does not exist yet.
    let error = Target::flatpak_selected(&InstallationSelector::User, &machine.paths())
        .expect_err("no user installation");
    assert!(
        matches!(error, TargetError::NotAnInstallation { .. }),
        "{error}"
    );
}
