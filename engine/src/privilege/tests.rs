use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;
use crate::schema::DriveRecord;

/// A machine laid out under a temporary directory: a root, the default system Flatpak
/// installation, one configured in installations.d, and one recorded drive.
struct Fixture {
    _dir: tempfile::TempDir,
    base: PathBuf,
    machine: Machine,
    drive: PathBuf,
    extra_installation: PathBuf,
}

const CALLER: Caller = Caller { uid: 1000 };

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().canonicalize().expect("canonical");
    let root = base.join("root");
    let system_dir = base.join("var/lib/flatpak");
    let config_dir = base.join("etc/flatpak");
    let extra_installation = base.join("srv/extra-flatpak");
    let run_dir = base.join("run/ferry");
    let drive = base.join("media/KINGSTON");
    for made in [&root, &system_dir, &extra_installation, &drive] {
        std::fs::create_dir_all(made).expect("mkdir");
    }
    std::fs::create_dir_all(config_dir.join("installations.d")).expect("mkdir");
    std::fs::write(
        config_dir.join("installations.d/extra.conf"),
        format!(
            "[Installation \"extra\"]\nPath={}\n",
            extra_installation.display()
        ),
    )
    .expect("installation config");
    std::fs::create_dir_all(run_dir.join("drives")).expect("mkdir");
    for made in [&run_dir, &run_dir.join("drives")] {
        std::fs::set_permissions(made, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let record = DriveRecord::new("kingston-1234", drive.display().to_string());
    std::fs::write(
        run_dir.join("drives/kingston-1234.json"),
        serde_json::to_vec(&record).expect("record"),
    )
    .expect("write record");
    let machine = Machine {
        host: HostPaths {
            boot: BootState {
                root,
                ..BootState::default()
            },
            flatpak: FlatpakPaths {
                system_dir,
                user_dir: base.join("home/user/.local/share/flatpak"),
                config_dir,
            },
            os_sysroot: None,
        },
        run_dir,
        trust_roots: TrustRoots::under(&base),
        records_owner: rustix::process::geteuid().as_raw(),
    };
    Fixture {
        _dir: dir,
        base,
        machine,
        drive,
        extra_installation,
    }
}

fn request() -> Request {
    Request::default()
}

#[test]
fn only_root_with_pkexec_uid_is_a_privileged_caller() {
    assert_eq!(
        Caller::from_parts(false, Some(OsStr::new("1000"))),
        Ok(None)
    );
    assert_eq!(Caller::from_parts(true, None), Ok(None));
    assert_eq!(
        Caller::from_parts(true, Some(OsStr::new("1000"))),
        Ok(Some(Caller { uid: 1000 }))
    );
    assert!(matches!(
        Caller::from_parts(true, Some(OsStr::new("1000; rm"))),
        Err(Refusal::BadCaller { .. })
    ));
}

#[test]
fn only_the_running_sysroot_is_a_target() {
    let fx = fixture();
    let user_sysroot = fx.base.join("home/user/sysroot");
    std::fs::create_dir_all(&user_sysroot).expect("mkdir");
    let asked = Request {
        sysroot: Some(user_sysroot.clone()),
        ..request()
    };
    assert_eq!(
        validate(CALLER, &asked, &fx.machine),
        Err(Refusal::Sysroot {
            uid: 1000,
            path: user_sysroot
        })
    );

    // A link to the root is the root, and is passed on as the root itself.
    let link = fx.base.join("link-to-root");
    std::os::unix::fs::symlink(&fx.machine.host.boot.root, &link).expect("symlink");
    let asked = Request {
        sysroot: Some(link),
        ..request()
    };
    let valid = validate(CALLER, &asked, &fx.machine).expect("the root is allowed");
    assert_eq!(
        valid.sysroot.as_deref(),
        Some(fx.machine.host.boot.root.as_path())
    );
}

#[test]
fn only_system_installations_are_targets() {
    let fx = fixture();
    let user_dir = fx.base.join("home/user/flatpak");
    std::fs::create_dir_all(&user_dir).expect("mkdir");
    for refused in [
        "user".to_owned(),
        "no-such-id".to_owned(),
        user_dir.display().to_string(),
    ] {
        let asked = Request {
            installations: vec![refused.clone()],
            ..request()
        };
        assert_eq!(
            validate(CALLER, &asked, &fx.machine),
            Err(Refusal::Installation {
                uid: 1000,
                name: refused
            })
        );
    }
    let asked = Request {
        installations: vec![
            "system".into(),
            fx.machine.host.flatpak.system_dir.display().to_string(),
            "extra".into(),
            fx.extra_installation.display().to_string(),
        ],
        ..request()
    };
    let valid = validate(CALLER, &asked, &fx.machine).expect("system installations");
    assert_eq!(valid.installations, ["system", "extra"]);
}

#[test]
fn only_recorded_drives_and_urls_are_sources() {
    let fx = fixture();
    let drive = fx.drive.display().to_string();
    let url = "http://192.168.1.20:8700/repo".to_owned();
    let asked = Request {
        from: vec![drive.clone(), url.clone()],
        ..request()
    };
    let valid = validate(CALLER, &asked, &fx.machine).expect("drive and URL");
    assert_eq!(valid.from, [drive.clone(), url]);

    let user_repo = fx.base.join("home/user/repo");
    for refused in [
        user_repo.display().to_string(),
        format!("{drive}/../../home/user/repo"),
        format!("file://{drive}"),
    ] {
        let asked = Request {
            from: vec![refused.clone()],
            ..request()
        };
        assert_eq!(
            validate(CALLER, &asked, &fx.machine),
            Err(Refusal::Source {
                uid: 1000,
                source_name: refused
            })
        );
    }
}

#[test]
fn drive_records_others_can_write_are_not_believed() {
    let fx = fixture();
    let records = fx.machine.run_dir.join("drives");
    std::fs::set_permissions(&records, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let asked = Request {
        from: vec![fx.drive.display().to_string()],
        ..request()
    };
    assert_eq!(
        validate(CALLER, &asked, &fx.machine),
        Err(Refusal::Records {
            uid: 1000,
            path: records
        })
    );
}

#[test]
fn downgrades_and_unsigned_updates_need_an_administrator() {
    let record: DriveRecord =
        serde_json::from_str(include_str!("../../../gui/tests/data/drives/kingston.json"))
            .expect("record");
    let mut updates = record.updates;
    for update in &mut updates {
        update.signed = true;
    }
    assert!(admin_reasons(false, &updates).is_empty());
    updates[0].signed = false;
    assert_eq!(
        admin_reasons(true, &updates),
        [
            "--allow-downgrade".to_owned(),
            format!("unsigned {}", updates[0].ref_name)
        ]
    );
}

#[test]
fn a_process_start_time_is_read_past_a_name_with_parentheses() {
    let stat = "4242 (evil) 1 2 3) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                1000 200 18446744073709551615";
    assert_eq!(parse_start_time(stat), Some(987_654));
    assert_eq!(parse_start_time("garbage"), None);
    let own =
        ParentProcess::read(Path::new("/proc"), std::process::id() as i32).expect("own process");
    assert_eq!(own.uid, rustix::process::getuid().as_raw());
}

fn drive_request(drive: &Path) -> DriveRequest {
    DriveRequest {
        drive: drive.to_path_buf(),
        ..DriveRequest::default()
    }
}

fn removable_at(mount_point: &Path) -> Vec<RemovableMount> {
    vec![RemovableMount {
        mount_point: mount_point.to_path_buf(),
        device: PathBuf::from("/dev/sdb"),
        filesystem: PathBuf::from("/dev/sdb1"),
        fs_type: "vfat".to_owned(),
    }]
}

#[track_caller]
fn chown(path: &Path, uid: u32) {
    ferry_tests::assert_root("giving a file to another user (chown)");
    std::os::unix::fs::chown(path, Some(uid), None).expect("chown");
}

#[test]
fn a_drive_is_written_only_on_a_removable_mount_or_in_a_folder_the_caller_owns() {
    let fx = fixture();
    // Root's, like every directory the fixture made: refused unless it is a removable mount.
    let asked = drive_request(&fx.drive);
    assert_eq!(
        validate_drive(CALLER, &asked, &fx.machine, &[]),
        Err(Refusal::Destination {
            uid: 1000,
            path: fx.drive.clone()
        })
    );
    let valid = validate_drive(CALLER, &asked, &fx.machine, &removable_at(&fx.drive))
        .expect("a removable drive");
    assert_eq!(valid.drive, fx.drive);

    // Another user's folder is refused; the caller's own is accepted, by its real path.
    let folder = fx.base.join("home/user/for-stick");
    std::fs::create_dir_all(&folder).expect("mkdir");
    chown(&folder, 1001);
    assert!(matches!(
        validate_drive(CALLER, &drive_request(&folder), &fx.machine, &[]),
        Err(Refusal::Destination { .. })
    ));
    chown(&folder, CALLER.uid);
    let link = fx.base.join("link-to-folder");
    std::os::unix::fs::symlink(&folder, &link).expect("symlink");
    let valid = validate_drive(CALLER, &drive_request(&link), &fx.machine, &[])
        .expect("the caller's folder");
    assert_eq!(valid.drive, folder);

    // A missing folder, or a file, is no destination.
    for refused in [fx.base.join("home/user/missing"), fx.base.join("file")] {
        std::fs::write(fx.base.join("file"), b"x").expect("write");
        assert!(matches!(
            validate_drive(CALLER, &drive_request(&refused), &fx.machine, &[]),
            Err(Refusal::Destination { .. })
        ));
    }
}

#[test]
fn a_symlinked_repository_in_the_callers_folder_is_refused() {
    let fx = fixture();
    let folder = fx.base.join("home/user/for-stick");
    std::fs::create_dir_all(&folder).expect("mkdir");
    chown(&folder, CALLER.uid);
    // `.ostree` pointing at a directory of root's that has a `repo`.
    let elsewhere = fx.base.join("var/lib/flatpak");
    std::fs::create_dir_all(elsewhere.join("repo")).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, folder.join(".ostree")).expect("symlink");
    assert!(matches!(
        validate_drive(CALLER, &drive_request(&folder), &fx.machine, &[]),
        Err(Refusal::Destination { .. })
    ));
    std::fs::remove_file(folder.join(".ostree")).expect("rm");
    std::fs::create_dir(folder.join(".ostree")).expect("mkdir");
    std::os::unix::fs::symlink(elsewhere.join("repo"), folder.join(".ostree/repo"))
        .expect("symlink");
    assert!(matches!(
        validate_drive(CALLER, &drive_request(&folder), &fx.machine, &[]),
        Err(Refusal::Destination { .. })
    ));
    std::fs::remove_file(folder.join(".ostree/repo")).expect("rm");
    assert!(validate_drive(CALLER, &drive_request(&folder), &fx.machine, &[]).is_ok());
}

#[test]
fn a_drive_is_made_only_from_this_machines_own_repositories() {
    let fx = fixture();
    let removable = removable_at(&fx.drive);
    let user_sysroot = fx.base.join("home/user/sysroot");
    std::fs::create_dir_all(&user_sysroot).expect("mkdir");
    let asked = DriveRequest {
        sysroot: Some(user_sysroot.clone()),
        ..drive_request(&fx.drive)
    };
    assert_eq!(
        validate_drive(CALLER, &asked, &fx.machine, &removable),
        Err(Refusal::Sysroot {
            uid: 1000,
            path: user_sysroot
        })
    );
    for refused in ["user", "no-such-id"] {
        let asked = DriveRequest {
            installations: vec![refused.to_owned()],
            ..drive_request(&fx.drive)
        };
        assert!(matches!(
            validate_drive(CALLER, &asked, &fx.machine, &removable),
            Err(Refusal::Installation { .. })
        ));
    }
    let asked = DriveRequest {
        sysroot: Some(fx.machine.host.boot.root.clone()),
        installations: vec!["system".into(), "extra".into()],
        ..drive_request(&fx.drive)
    };
    let valid = validate_drive(CALLER, &asked, &fx.machine, &removable).expect("own repos");
    assert_eq!(valid.installations, ["system", "extra"]);
    assert_eq!(
        valid.sysroot.as_deref(),
        Some(fx.machine.host.boot.root.as_path())
    );
}

/// When polkit cannot be asked, the refusal says what could not be done and keeps the system
/// error as its cause, once.
#[test]
fn polkit_that_cannot_be_asked_keeps_the_system_error_as_the_cause() {
    use std::os::unix::fs::MetadataExt;
    let parent = rustix::process::getppid()
        .map(|pid| pid.as_raw_nonzero().get())
        .expect("a parent process");
    let uid = std::fs::metadata(format!("/proc/{parent}"))
        .expect("the parent in /proc")
        .uid();
    let caller = Caller { uid };
    let reasons = ["--allow-downgrade".to_owned()];
    let empty_proc = tempfile::tempdir().expect("tempdir");
    let missing = OsStr::new("/nonexistent/pkcheck");
    for (proc_dir, pkcheck, says) in [
        (
            empty_proc.path(),
            OsStr::new("pkcheck"),
            "cannot read process",
        ),
        (Path::new("/proc"), missing, "cannot run pkcheck"),
    ] {
        let refusal = ask_polkit(caller, &reasons, proc_dir, pkcheck).expect_err("refused");
        let message = refusal.to_string();
        assert!(message.contains(says), "{message}");
        let cause = std::error::Error::source(&refusal).expect("the system error as the cause");
        let cause = cause.to_string();
        assert!(!message.contains(&cause), "{message} repeats {cause}");
        let line = crate::causes::text(&refusal);
        assert_eq!(line.matches(&cause).count(), 1, "{line}");
    }
}
