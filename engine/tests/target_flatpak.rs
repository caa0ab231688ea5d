//! Flatpak targets, checked against real `flatpak`: a signed repository with a collection ID
//! is built with `flatpak build-export`, apps are installed with `flatpak install` into
//! isolated installations (HOME, XDG and FLATPAK variables pointed into a temporary directory,
//! as flatpak's own tests do), and what Ferry reads must
//! equal what `flatpak info` and `flatpak remotes` report.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use ferry_engine::schema::TargetKind;
use ferry_engine::target::{
    default_targets, BootState, FlatpakPaths, FlatpakScope, HostPaths, InstallationSelector,
    Target, TargetError,
};
use ferry_tests::flatpak::{AppSpec, FlatpakEnv, FlatpakRepo, BRANCH};
use ferry_tests::gpg::GpgKey;
use ferry_tests::Tool;

use ferry_tests::flatpak::{APP_ID as APP, COLLECTION_ID as COLLECTION, REMOTE};

const APP_REF: &str = "app/org.example.App/x86_64/stable";
const RUNTIME_REF: &str = "runtime/org.example.Platform/x86_64/stable";

/// Runs a tool and returns its stdout, failing the test with its output otherwise.
fn run(tool: Tool) -> String {
    tool.stdout().unwrap_or_else(|error| panic!("{error}"))
}

/// An isolated Flatpak "machine" (ferry-tests' [`FlatpakEnv`]: every place flatpak reads or
/// writes lies under its root), and the paths Ferry derives from its environment.
struct FlatpakMachine {
    env: FlatpakEnv,
    root: PathBuf,
}

impl FlatpakMachine {
    fn new(root: &Path) -> Self {
        let env = FlatpakEnv::new(root).unwrap_or_else(|error| panic!("{error}"));
        Self {
            root: env.root.clone(),
            env,
        }
    }

    /// The paths Ferry derives from this machine's environment.
    fn paths(&self) -> FlatpakPaths {
        let vars = self.env.vars();
        FlatpakPaths::from_vars(|name| {
            vars.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    }

    fn command(&self, program: &str) -> Tool {
        self.env.command(program).env_remove("FLATPAK_USER_DIR")
    }

    fn flatpak<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run(self.command("flatpak").args(args))
    }
}

/// A publisher: ferry-tests' signed [`FlatpakRepo`] with a collection ID, holding the
/// hand-made runtime and app v1.
struct Publisher {
    flatpak: FlatpakRepo,
    public_key: PathBuf,
    repo: PathBuf,
}

impl Publisher {
    fn new(root: &Path) -> Self {
        let key = GpgKey::generate(&root.join("gnupg"), "Ferry Test <test@example.org>")
            .unwrap_or_else(|error| panic!("{error}"));
        let repo = root.join("repo");
        let flatpak = FlatpakRepo::new(&repo, &root.join("publisher"), COLLECTION, &key)
            .unwrap_or_else(|error| panic!("{error}"));
        let publisher = Self {
            public_key: key.public_keyring.clone(),
            flatpak,
            repo,
        };
        if let Err(error) = publisher.flatpak.publish_runtime(BRANCH) {
            panic!("{error}");
        }
        publisher.export_app("v1");
        publisher
    }

    fn export_app(&self, version: &str) {
        if let Err(error) = self.flatpak.publish_app(&AppSpec::new(version)) {
            panic!("{error}");
        }
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

/// Checks a target's installed refs against `flatpak info` run with the target's own
/// options and environment, which the deploy step will use.
fn assert_matches_flatpak_info(machine: &FlatpakMachine, target: &Target) {
    let installation = target.flatpak_installation().expect("a Flatpak target");
    for installed in &target.installed {
        let command = machine
            .command("flatpak")
            .args(installation.flatpak_args())
            .envs(installation.flatpak_env())
            .args(["info", "--show-commit", &installed.ref_name]);
        assert_eq!(
            run(command).trim(),
            installed.commit.to_hex(),
            "{}",
            installed.ref_name
        );

        let command = machine
            .command("flatpak")
            .args(installation.flatpak_args())
            .envs(installation.flatpak_env())
            .args(["info", "--show-origin", &installed.ref_name]);
        assert_eq!(Some(run(command).trim()), installed.remote.as_deref());

        let shown = run(Tool::new("ostree")
            .arg(format!("--repo={}", target.repo.display()))
            .args(["show", &installed.commit.to_hex()]));
        let date = shown
            .lines()
            .find_map(|line| line.strip_prefix("Date:"))
            .expect("Date line")
            .trim()
            .to_owned();
        let ours = run(Tool::new("date")
            .arg("-u")
            .arg(format!("--date=@{}", installed.timestamp))
            .arg("+%Y-%m-%d %H:%M:%S +0000"));
        assert_eq!(ours.trim(), date, "timestamp of {}", installed.ref_name);
    }
}

/// `flatpak remotes` of an installation: (name, collection ID).
fn flatpak_remotes(machine: &FlatpakMachine, args: &[OsString]) -> Vec<(String, Option<String>)> {
    let command = machine
        .command("flatpak")
        .args(args)
        .args(["remotes", "--columns=name,collection"]);
    run(command)
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
    let mode = run(Tool::new("ostree")
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
        // flatpak build-export records the version of the app's metainfo release; the runtime
        // has none.
        let expected = (installed.ref_name == APP_REF).then_some("v1");
        assert_eq!(
            installed.version.as_deref(),
            expected,
            "{}",
            installed.ref_name
        );
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
    // Entries Flatpak ignores are reported; they do not hide the good ones. The second
    // "extra" names the same directory: flatpak keeps whichever file it reads first (in
    // directory order), and either must leave the test inside its temporary directory.
    std::fs::write(
        installations_d.join("zz-broken.conf"),
        format!(
            "[Installation noquotes]\nPath={}\n[Installation \"extra\"]\nPath={}\n",
            machine.root.join("nowhere").display(),
            extra_dir.display()
        ),
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
        "highest priority first, user last; errors: {:?}",
        found
            .errors
            .iter()
            .map(|e| ferry_engine::causes::text(e))
            .collect::<Vec<_>>()
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
