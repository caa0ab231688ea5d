//! OSTree sysroot and plain repository targets, checked against real `ostree`: sysroots are
//! made with `ostree admin init-fs/os-init/deploy`, and what Ferry reads must equal what
//! `ostree admin status`, `ostree show` and `ostree refs` report.

use std::path::{Path, PathBuf};

use ferry_engine::object::Checksum;
use ferry_engine::schema::TargetKind;
use ferry_engine::target::{
    default_targets, BootState, FlatpakPaths, HostPaths, Target, TargetError,
};
use ferry_tests::gpg::GpgKey;
use ferry_tests::ostree::{OstreeRepo, RemoteSpec};
use ferry_tests::sysroot::{
    parse_status, release_immutable, OsRepo, OS_COLLECTION_ID as OS_COLLECTION, OS_NAME as OS,
    OS_REF,
};
use ferry_tests::Tool;

/// Runs `ostree ARGS` and returns its stdout, failing the test with its output otherwise.
fn ostree(args: &[&str]) -> String {
    Tool::new("ostree")
        .args(args)
        .stdout()
        .unwrap_or_else(|error| panic!("{error}"))
}

/// A temporary directory holding ferry-tests' OS repository and a sysroot made from it with
/// `ostree admin init-fs` and `os-init`, its remote not verifying signatures; versions are
/// deployed with [`OsFixture::deploy_version`]. Dropping it clears the immutable flag ostree
/// sets on deployments so the directory can be removed.
struct OsFixture {
    os: OsRepo,
    dir: tempfile::TempDir,
}

impl OsFixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = GpgKey::generate(&dir.path().join("gnupg"), "ExampleOS <os@example.org>")
            .unwrap_or_else(|error| panic!("{error}"));
        let os = OsRepo::create(dir.path(), &key).unwrap_or_else(|error| panic!("{error}"));
        let fixture = Self { os, dir };
        let sysroot = fixture.sysroot();
        std::fs::create_dir(&sysroot).expect("mkdir");
        ostree(&["admin", "init-fs", &sysroot.display().to_string()]);
        ostree(&[
            "admin",
            "os-init",
            &format!("--sysroot={}", sysroot.display()),
            OS,
        ]);
        let remote = RemoteSpec::file(OS, &fixture.osrepo()).collection_id(OS_COLLECTION);
        if let Err(error) = OstreeRepo::open(&fixture.sysroot_repo()).remote_add(&remote) {
            panic!("{error}");
        }
        fixture
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn osrepo(&self) -> PathBuf {
        self.os.repo.path.clone()
    }

    fn sysroot(&self) -> PathBuf {
        self.path().join("sysroot")
    }

    fn sysroot_repo(&self) -> PathBuf {
        self.sysroot().join("ostree/repo")
    }

    /// Commits a new OS version, pulls it into the sysroot and deploys it; returns the commit.
    fn deploy_version(&self, version: &str, kargs: &[&str]) -> Checksum {
        let commit = self
            .os
            .commit_version(version)
            .unwrap_or_else(|error| panic!("{error}"));
        if let Err(error) = OstreeRepo::open(&self.sysroot_repo()).pull(OS, &[OS_REF]) {
            panic!("{error}");
        }
        let deploy = Tool::new("ostree")
            .args(["admin", "deploy"])
            .arg(format!("--sysroot={}", self.sysroot().display()))
            .arg(format!("--os={OS}"))
            .args(kargs.iter().map(|karg| format!("--karg={karg}")))
            .arg(format!("{OS}:{OS_REF}"));
        if let Err(error) = deploy.run() {
            panic!("{error}");
        }
        Checksum::from_hex(&commit).expect("commit checksum")
    }

    /// `ostree admin status`: (stateroot, commit, serial) in its order.
    fn admin_status(&self) -> Vec<(String, Checksum, u32)> {
        let status = ostree(&[
            "admin",
            "status",
            &format!("--sysroot={}", self.sysroot().display()),
        ]);
        parse_status(&status)
            .unwrap_or_else(|error| panic!("{error}"))
            .into_iter()
            .map(|deployment| {
                let commit = Checksum::from_hex(&deployment.commit).expect("commit checksum");
                (deployment.os, commit, deployment.serial)
            })
            .collect()
    }

    /// The commit's date as `ostree show` prints it.
    fn show_date(&self, commit: &Checksum) -> String {
        let shown = ostree(&[
            &format!("--repo={}", self.sysroot_repo().display()),
            "show",
            &commit.to_hex(),
        ]);
        shown
            .lines()
            .find_map(|line| line.strip_prefix("Date:"))
            .expect("Date line")
            .trim()
            .to_owned()
    }

    /// A boot state with nothing booted.
    fn not_booted(&self) -> BootState {
        BootState {
            ostree_booted: self.path().join("run/ostree-booted"),
            kernel_cmdline: self.path().join("proc/cmdline"),
            staged_deployment: self.path().join("run/ostree/staged-deployment"),
            root: PathBuf::from("/"),
        }
    }

    /// A boot state saying the running system is this sysroot, booted with `cmdline`.
    fn booted_with(&self, cmdline: &str) -> BootState {
        let boot = BootState {
            root: self.sysroot(),
            ..self.not_booted()
        };
        std::fs::create_dir_all(self.path().join("run")).expect("mkdir");
        std::fs::create_dir_all(self.path().join("proc")).expect("mkdir");
        std::fs::write(&boot.ostree_booted, "").expect("write");
        std::fs::write(&boot.kernel_cmdline, cmdline).expect("write");
        boot
    }

    /// The `ostree=` argument of the bootloader entry of the deployment of `commit`.
    fn ostree_karg_of(&self, commit: &Checksum) -> String {
        let entries = self.sysroot().join("boot/loader/entries");
        for entry in std::fs::read_dir(&entries).expect("entries") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read entry");
            let options = text
                .lines()
                .find_map(|line| line.strip_prefix("options "))
                .expect("options line");
            let karg = options
                .split_whitespace()
                .find(|arg| arg.starts_with("ostree="))
                .expect("ostree= karg");
            let link = self.sysroot().join(karg.trim_start_matches("ostree=/"));
            let target = std::fs::read_link(&link).expect("boot link");
            if target.to_string_lossy().contains(&commit.to_hex()) {
                return karg.to_owned();
            }
        }
        panic!("no bootloader entry for {commit}");
    }
}

impl Drop for OsFixture {
    fn drop(&mut self) {
        let _ = release_immutable(&self.sysroot());
    }
}

fn utc_date(timestamp: u64) -> String {
    Tool::new("date")
        .arg("-u")
        .arg(format!("--date=@{timestamp}"))
        .arg("+%Y-%m-%d %H:%M:%S +0000")
        .stdout()
        .unwrap_or_else(|error| panic!("{error}"))
        .trim()
        .to_owned()
}

#[test]
fn sysroot_with_one_deployment() {
    let fixture = OsFixture::new();
    let v1 = fixture.deploy_version("1.0", &["root=LABEL=ROOT", "quiet"]);

    let target = Target::os(&fixture.sysroot(), &fixture.not_booted()).expect("os target");
    assert_eq!(target.kind, TargetKind::Os);
    assert_eq!(target.installation, fixture.sysroot().display().to_string());
    assert_eq!(target.repo, fixture.sysroot_repo());
    assert_eq!(target.repo_mode, "bare");
    assert!(!target.needs_root, "root can write the sysroot repository");
    assert!(target.problems.is_empty(), "{:?}", target.problems);
    assert_eq!(target.trust.repo, fixture.sysroot_repo());

    let status = fixture.admin_status();
    assert_eq!(status.len(), 1, "{status:?}");
    assert_eq!(status[0], (OS.to_owned(), v1, 0));

    assert_eq!(target.installed.len(), 1);
    let installed = &target.installed[0];
    assert_eq!(installed.remote.as_deref(), Some(OS));
    assert_eq!(installed.collection_id.as_deref(), Some(OS_COLLECTION));
    assert_eq!(installed.ref_name, OS_REF);
    assert_eq!(installed.commit, status[0].1);
    assert_eq!(installed.version.as_deref(), Some("1.0"));
    assert_eq!(utc_date(installed.timestamp), fixture.show_date(&v1));

    let os = target.os_target().expect("OS deploy data");
    assert_eq!(os.stateroot(), OS);
    assert!(!os.booted());
    assert_eq!(os.kernel_args(), ["root=LABEL=ROOT", "quiet"]);
    assert_eq!(os.deployment().commit, v1);
    assert_eq!(
        os.deployment().refspec.as_deref(),
        Some("exampleos:exampleos/x86_64/stable")
    );
    assert!(os.deployment().origin_path().is_file());
    assert!(
        os.state.physical,
        "a sysroot on disk that is not booted is physical"
    );
    assert_eq!(target.trust.remotes_config_dir, None);
    let remote = target.remote(OS).expect("remote");
    assert_eq!(
        remote.url,
        Some(format!("file://{}", fixture.osrepo().display()))
    );
    let trust = remote.trust_config();
    assert_eq!(
        trust.options.get("gpg-verify").map(String::as_str),
        Some("false")
    );
    assert_eq!(
        trust.options.get("collection-id").map(String::as_str),
        Some(OS_COLLECTION)
    );
}

#[test]
fn default_deployment_follows_admin_status_and_booted_follows_the_kernel_command_line() {
    let fixture = OsFixture::new();
    let v1 = fixture.deploy_version("1.0", &["root=LABEL=ROOT"]);
    let v2 = fixture.deploy_version("2.0", &[]);

    let status = fixture.admin_status();
    assert_eq!(status.len(), 2, "{status:?}");
    assert_eq!(status[0].1, v2, "ostree lists the new deployment first");

    // Not booted: the default deployment is the first `ostree admin status` lists.
    let target = Target::os(&fixture.sysroot(), &fixture.not_booted()).expect("os target");
    let os = target.os_target().expect("OS deploy data");
    let ours: Vec<_> = os
        .state
        .deployments
        .iter()
        .map(|d| (d.stateroot.clone(), d.commit, d.deploy_serial))
        .collect();
    assert_eq!(ours, status);
    assert_eq!(target.installed[0].commit, v2);
    assert_eq!(target.installed[0].version.as_deref(), Some("2.0"));
    assert_eq!(
        os.kernel_args(),
        ["root=LABEL=ROOT"],
        "ostree keeps the kargs"
    );

    // Booted into the older deployment: that one is current, the newer one is pending.
    let karg_v1 = fixture.ostree_karg_of(&v1);
    let boot = fixture.booted_with(&format!("BOOT_IMAGE=/vmlinuz rw {karg_v1} quiet\n"));
    let target = Target::os(&fixture.sysroot(), &boot).expect("booted os target");
    let os = target.os_target().expect("OS deploy data");
    assert!(os.booted());
    assert!(!os.state.physical);
    assert_eq!(os.deployment().commit, v1);
    assert!(os.deployment().booted);
    assert_eq!(os.state.deployments[0].commit, v2);
    assert!(!os.state.deployments[0].booted);
    assert_eq!(target.installed[0].commit, v1);
    assert_eq!(target.installed[0].version.as_deref(), Some("1.0"));
    assert_eq!(
        target.trust.remotes_config_dir,
        Some(fixture.sysroot().join("etc/ostree/remotes.d"))
    );

    // The same deployment named through the other boot version (as after a bootloader swap,
    // when that link no longer exists) is found by its boot checksum and serial.
    let current = karg_v1
        .strip_prefix("ostree=/ostree/boot.")
        .expect("boot link");
    let (version, rest) = current.split_once('/').expect("boot version");
    let other = if version == "0" { "1" } else { "0" };
    assert!(!fixture
        .sysroot()
        .join(format!("ostree/boot.{other}"))
        .exists());
    let boot = fixture.booted_with(&format!("ostree=/ostree/boot.{other}/{rest}"));
    let target = Target::os(&fixture.sysroot(), &boot).expect("booted os target");
    assert_eq!(target.installed[0].commit, v1);

    // A marker while some other root is running does not make this sysroot booted.
    let boot = BootState {
        root: PathBuf::from("/"),
        ..boot
    };
    let target = Target::os(&fixture.sysroot(), &boot).expect("os target");
    assert!(!target.os_target().expect("OS").booted());
    assert_eq!(target.installed[0].commit, v2);

    // Booted, with a command line naming no deployment of this sysroot: an error that says so.
    let boot = fixture.booted_with("ostree=/ostree/boot.0/exampleos/0000/7");
    let error = Target::os(&fixture.sysroot(), &boot).expect_err("no booted deployment");
    assert!(
        matches!(error, TargetError::BootedDeploymentMissing { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("ostree-booted"), "{error}");
}

#[test]
fn default_targets_include_the_booted_os_only_when_booted() {
    let fixture = OsFixture::new();
    let v1 = fixture.deploy_version("1.0", &[]);
    let empty = tempfile::tempdir().expect("temp dir");
    let flatpak = FlatpakPaths {
        system_dir: empty.path().join("system"),
        user_dir: empty.path().join("user"),
        config_dir: empty.path().join("config"),
    };

    let host = HostPaths {
        boot: BootState {
            root: fixture.sysroot(),
            ..fixture.not_booted()
        },
        flatpak: flatpak.clone(),
        os_sysroot: None,
    };
    let found = default_targets(&host);
    assert!(
        found.targets.is_empty(),
        "nothing is booted and no Flatpak installation exists"
    );
    assert!(found.errors.is_empty(), "{:?}", found.errors);

    let karg = fixture.ostree_karg_of(&v1);
    let host = HostPaths {
        boot: fixture.booted_with(&karg),
        flatpak,
        os_sysroot: None,
    };
    let found = default_targets(&host);
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    assert_eq!(found.targets.len(), 1);
    assert_eq!(found.targets[0].kind, TargetKind::Os);
    assert_eq!(found.targets[0].installed[0].commit, v1);
}

#[test]
fn ostree_sysroot_names_the_os_of_default_targets_when_not_booted() {
    let fixture = OsFixture::new();
    let v1 = fixture.deploy_version("1.0", &[]);
    let empty = tempfile::tempdir().expect("temp dir");
    let sysroot = fixture.sysroot();
    let vars = |name: &str| match name {
        "OSTREE_SYSROOT" => Some(sysroot.clone().into_os_string()),
        "HOME" | "FLATPAK_SYSTEM_DIR" | "FLATPAK_CONFIG_DIR" => {
            Some(empty.path().join(name).into_os_string())
        }
        _ => None,
    };
    let host = HostPaths {
        // Nothing is booted: only OSTREE_SYSROOT brings the OS in.
        boot: fixture.not_booted(),
        ..HostPaths::from_vars(vars)
    };
    assert_eq!(host.os_sysroot.as_deref(), Some(sysroot.as_path()));
    let found = default_targets(&host);
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    assert_eq!(found.targets.len(), 1, "{:?}", found.targets);
    let target = &found.targets[0];
    assert_eq!(target.kind, TargetKind::Os);
    assert_eq!(target.installation, sysroot.display().to_string());
    assert_eq!(target.installed[0].commit, v1);
    // Deployed as `ostree admin deploy --sysroot` would, not staged for a running system.
    assert!(!target.os_target().expect("OS target").booted());
    // ostree admin agrees on which deployment is the default one.
    let status = ostree(&[
        "admin",
        "status",
        &format!("--sysroot={}", sysroot.display()),
    ]);
    assert!(status.contains(&v1.to_string()), "{status}");

    // An empty OSTREE_SYSROOT is ignored, as libostree ignores it.
    let host = HostPaths {
        boot: fixture.not_booted(),
        ..HostPaths::from_vars(|name| match name {
            "OSTREE_SYSROOT" => Some("".into()),
            _ => vars(name),
        })
    };
    assert_eq!(host.os_sysroot, None);
    assert!(default_targets(&host).targets.is_empty());

    // A sysroot that is not one is reported, not skipped.
    let host = HostPaths {
        boot: fixture.not_booted(),
        ..HostPaths::from_vars(|name| match name {
            "OSTREE_SYSROOT" => Some(empty.path().as_os_str().to_owned()),
            _ => vars(name),
        })
    };
    let found = default_targets(&host);
    assert!(found.targets.is_empty());
    assert!(
        matches!(found.errors[..], [TargetError::NotASysroot { .. }]),
        "{:?}",
        found.errors
    );
}

#[test]
fn errors_name_the_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let error = Target::os(dir.path(), &BootState::default()).expect_err("not a sysroot");
    assert!(matches!(error, TargetError::NotASysroot { .. }));
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string()),
        "{error}"
    );

    // An initialised sysroot without deployments.
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir(&sysroot).expect("mkdir");
    ostree(&["admin", "init-fs", &sysroot.display().to_string()]);
    let error = Target::os(&sysroot, &BootState::default()).expect_err("no deployment");
    assert!(matches!(error, TargetError::NoDeployment { .. }), "{error}");
    assert!(error.to_string().contains("ostree admin deploy"), "{error}");

    let error = Target::repo(dir.path()).expect_err("not a repo");
    assert!(matches!(error, TargetError::NotARepository { .. }));
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string()),
        "{error}"
    );
}

/// A remote ref file that holds no checksum: the error names the file and keeps why as its
/// cause, once.
#[test]
fn a_remote_ref_that_is_not_a_checksum_names_the_file_and_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = dir.path().join("plain");
    let repo_arg = format!("--repo={}", repo.display());
    ostree(&["init", "--mode=bare-user", &repo_arg]);
    let ref_file = repo.join("refs/remotes/origin/os/x86_64/stable");
    std::fs::create_dir_all(ref_file.parent().expect("ref dir")).expect("mkdir");
    std::fs::write(&ref_file, "not a checksum\n").expect("write the ref");
    let error = Target::repo(&repo).expect_err("a ref that is not a checksum");
    assert!(matches!(error, TargetError::NotACommit { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&ref_file.display().to_string()),
        "{message}"
    );
    let cause = std::error::Error::source(&error)
        .expect("why, as the cause")
        .to_string();
    assert!(cause.contains("hex digits"), "{cause}");
    let line = ferry_engine::causes::text(&error);
    assert_eq!(line.matches("hex digits").count(), 1, "{line}");
}

#[test]
fn plain_repo_lists_remote_refs_with_collection_ids() {
    let fixture = OsFixture::new();
    let v1 = fixture.deploy_version("1.0", &[]);
    let repo = fixture.path().join("plain");
    let repo_arg = format!("--repo={}", repo.display());
    ostree(&["init", "--mode=bare-user", &repo_arg]);
    let source = format!("file://{}", fixture.osrepo().display());
    ostree(&[
        &repo_arg,
        "remote",
        "add",
        "--no-gpg-verify",
        &format!("--collection-id={OS_COLLECTION}"),
        "os",
        &source,
    ]);
    ostree(&[
        &repo_arg,
        "remote",
        "add",
        "--no-gpg-verify",
        "nocollection",
        &source,
    ]);
    let osrepo = fixture.osrepo().display().to_string();
    ostree(&[&repo_arg, "pull-local", "--remote=os", &osrepo, OS_REF]);
    ostree(&[
        &repo_arg,
        "pull-local",
        "--remote=nocollection",
        &osrepo,
        OS_REF,
    ]);
    // A local branch is not a remote ref.
    ostree(&[&repo_arg, "refs", "--create=local/branch", &v1.to_hex()]);

    let target = Target::repo(&repo).expect("repo target");
    assert_eq!(target.kind, TargetKind::Repo);
    assert_eq!(target.repo_mode, "bare-user");
    assert!(target.problems.is_empty(), "{:?}", target.problems);

    let mut listed: Vec<String> = ostree(&[&repo_arg, "refs"])
        .lines()
        .filter(|line| line.contains(':'))
        .map(str::to_owned)
        .collect();
    listed.sort();
    let ours: Vec<String> = target
        .installed
        .iter()
        .map(|r| format!("{}:{}", r.remote.as_deref().unwrap_or_default(), r.ref_name))
        .collect();
    assert_eq!(ours, listed);

    for installed in &target.installed {
        let name = format!(
            "{}:{}",
            installed.remote.as_deref().unwrap_or_default(),
            installed.ref_name
        );
        let rev = ostree(&[&repo_arg, "rev-parse", &name]);
        assert_eq!(installed.commit.to_hex(), rev.trim());
        assert_eq!(installed.version.as_deref(), Some("1.0"));
        assert_eq!(
            utc_date(installed.timestamp),
            fixture.show_date(&installed.commit)
        );
    }
    let with_collection = target
        .installed_ref(Some(OS_COLLECTION), OS_REF)
        .expect("os ref");
    assert_eq!(with_collection.remote.as_deref(), Some("os"));
    let without = target
        .installed
        .iter()
        .find(|r| r.remote.as_deref() == Some("nocollection"))
        .expect("nocollection ref");
    assert_eq!(without.collection_id, None);
}
