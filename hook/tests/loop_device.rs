//! A real block device: an ext4 image carrying `ostree create-usb` content on a loop device.
//! The hook starts before the drive is mounted and must notice the mount through the mount
//! table. Runs as root.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use ferry_tests::assert_root;
use ferry_tests::flatpak::{app_ref, AppSpec, FlatpakFixture, APP_ID, BRANCH};
use ferry_tests::loopdev::{LoopDevice, LoopImage, Mount};

/// A hook environment with `config` for a test of loop devices and mounts (root only).
fn loop_env(config: &str) -> HookEnv {
    assert_root("attaching loop devices and mounting filesystems");
    HookEnv::new(config)
}

/// `ferry-hook --device DEVICE` with fixed drives accepted, as loop devices are fixed.
fn fixed_drive_hook(env: &HookEnv, device: &Path) -> std::process::Command {
    let mut command = env.command();
    command
        .env("FERRY_ACCEPT_FIXED_DRIVES", "1")
        .arg("--device")
        .arg(device);
    command
}

/// An ext4 image labelled `label` holding `content`, attached to a loop device.
fn drive_image(dir: &Path, label: &str, content: &Path) -> (LoopDevice, String) {
    drive_image_with(dir, label, content, &[])
}

/// `ferry-hook --device DEVICE`, as udev runs it when the drive comes; required to succeed.
fn hook_added(env: &HookEnv, device: &Path) -> std::process::Output {
    let output = env.hook([Path::new("--device"), device]);
    assert!(output.status.success(), "{}", output_text(&output));
    output
}

/// `ferry-hook --remove --device DEVICE`, as udev runs it when the drive goes; required to
/// succeed.
fn hook_removed(env: &HookEnv, device: &Path) {
    let output = env.hook([Path::new("--remove"), Path::new("--device"), device]);
    assert!(output.status.success(), "{}", output_text(&output));
}

/// [`drive_image`] of a drive carrying the signed OS repository ([`usb_content`]), labelled
/// `label`, in `env`'s directory.
fn usb_drive_image(env: &HookEnv, label: &str) -> LoopDevice {
    let content = usb_content(env.dir.path());
    drive_image(env.dir.path(), label, &content).0
}

/// No drive record and no sideload link left in `env`.
fn expect_nothing_recorded(env: &HookEnv) {
    assert!(env.records().is_empty());
    assert!(env.sideload_links().is_empty());
}

/// [`drive_image`] of an empty file system labelled `label`, in `env`'s directory.
fn empty_drive_image(env: &HookEnv, label: &str) -> LoopDevice {
    let content = env.dir.path().join("empty");
    std::fs::create_dir_all(&content).unwrap();
    drive_image(env.dir.path(), label, &content).0
}

/// [`drive_image`] with more `mkfs.ext4` options (`-U UUID`).
fn drive_image_with(
    dir: &Path,
    label: &str,
    content: &Path,
    options: &[&str],
) -> (LoopDevice, String) {
    let mut mkfs_args: Vec<&OsStr> = options.iter().map(OsStr::new).collect();
    mkfs_args.extend([OsStr::new("-d"), content.as_os_str()]);
    let image =
        LoopImage::create_with(&dir.join(format!("{label}.img")), 64, label, &mkfs_args).unwrap();
    (image.attach().unwrap(), image.uuid().unwrap())
}

fn usb_content(dir: &Path) -> PathBuf {
    let content = dir.join("usb");
    signed_os_repo(dir).create_usb(&content).unwrap();
    content
}

#[test]
fn serial_notices_the_mount_records_the_drive_links_it_and_forgets_it_on_removal() {
    let env = loop_env("[policy]\nmount-timeout-seconds = 60\n");
    // This machine has app v1 from a signed remote; the stick carries v2.
    let fixture = FlatpakFixture::new(&env.dir.path().join("flatpak")).unwrap();
    let v2 = fixture.publish_app(&AppSpec::new("v2")).unwrap();
    let content = env.dir.path().join("usb");
    let written = fixture
        .drive_from_peer("peer", &content, &[APP_ID])
        .unwrap();
    let (device, uuid) = drive_image(env.dir.path(), "FERRYTEST", &written.root);
    let mut rule = RuntimeUdevRule::install(&udev_rule_source(), "90-ferry-test-loop.rules");
    let properties = rule.test_add(&device);
    let wants: Vec<&str> = properties
        .iter()
        .filter(|(k, _)| k == "SYSTEMD_WANTS")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        wants
            .iter()
            .any(|v| v.contains(&format!("ferry-hook@{}.service", device.kernel_name()))),
        "the rule did not want ferry-hook@{}.service: {properties:?}",
        device.kernel_name()
    );

    let mut command = fixed_drive_hook(&env, &device.device);
    command.envs(fixture.client.vars());
    let mut hook = Background::spawn(command);
    hook.wait_for_line("to be mounted", Duration::from_secs(30));
    assert!(
        env.records().is_empty(),
        "a record before the drive was mounted"
    );

    let mount_point = env.dir.path().join("media/FERRYTEST");
    let mounted = device
        .mount(&mount_point, &["ro", "nosuid", "nodev"])
        .unwrap();
    let (ok, log) = hook.wait(Duration::from_secs(60));
    assert!(ok, "the hook failed:\n{log}");

    let records = env.records();
    assert_eq!(records.len(), 1, "{records:?}\n{log}");
    let record = &records[0];
    assert_eq!(record.id, uuid.to_ascii_lowercase());
    assert_eq!(record.uuid.as_deref(), Some(uuid.as_str()));
    assert_eq!(record.label.as_deref(), Some("FERRYTEST"));
    assert_eq!(record.fs_type.as_deref(), Some("ext4"));
    assert_eq!(
        record.device.as_deref(),
        Some(device.device.to_str().unwrap())
    );
    assert_eq!(Path::new(&record.mount), mounted.target);
    let repo_path = mounted.target.join(".ostree/repo");
    assert_eq!(record.repos.len(), 1, "{record:?}");
    assert_eq!(Path::new(&record.repos[0].path), repo_path);

    let app = app_ref(APP_ID, BRANCH).unwrap();
    let update = record
        .updates
        .iter()
        .find(|u| u.ref_name == app)
        .unwrap_or_else(|| panic!("no update of {app}: {record:#?}\n{log}"));
    assert_eq!(update.commit.to_hex(), v2);
    assert_eq!(
        update.current_commit.map(|c| c.to_hex()),
        Some(fixture.app_v1.clone())
    );
    assert_eq!(update.sources[0].location, repo_path.display().to_string());
    assert_eq!(update.sources[0].label.as_deref(), Some("FERRYTEST"));

    let link_name = format!("ferry-{}-0", record.id);
    assert_eq!(record.sideload_links, vec![link_name.clone()]);
    assert_eq!(env.sideload_links(), vec![(link_name, repo_path)]);

    hook_removed(&env, &device.device);
    expect_nothing_recorded(&env);
}

#[test]
fn serial_mounts_the_drive_itself_with_mount_self_and_unmounts_it_on_removal() {
    let env = loop_env("mount = self\nremovable-only = false\nmount-timeout-seconds = 30\n");
    let device = usb_drive_image(&env, "KIOSKSTICK");

    let output = hook_added(&env, &device.device);
    let records = env.records();
    assert_eq!(records.len(), 1, "{}", output_text(&output));
    let mount = PathBuf::from(&records[0].mount);
    assert_eq!(mount.parent(), Some(env.run_dir.join("mnt").as_path()));
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = table
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(mount.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} is not mounted:\n{table}", mount.display()));
    for option in ["ro", "nosuid", "nodev", "noexec"] {
        let options = line.split(' ').nth(5).unwrap();
        assert!(
            options.split(',').any(|o| o == option),
            "{option} missing: {line}"
        );
    }
    assert_eq!(records[0].repos.len(), 1, "{:?}", records[0]);
    // Nothing installed here follows org.example.Os: no update, so no link.
    assert!(records[0].updates.is_empty());
    assert!(env.sideload_links().is_empty());

    hook_removed(&env, &device.device);
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!table.contains(mount.to_str().unwrap()), "still mounted");
    assert!(!mount.exists());
    expect_nothing_recorded(&env);
}

#[test]
fn serial_skips_fixed_disks_quietly_unless_told_otherwise() {
    let env = loop_env("mount-timeout-seconds = 1\n");
    let device = empty_drive_image(&env, "FIXED");
    let output = hook_added(&env, &device.device);
    let text = output_text(&output);
    assert!(text.contains("not removable media"), "{text}");
    assert!(!text.contains("to be mounted"), "{text}");
    assert!(env.records().is_empty());
}

#[test]
fn serial_gives_up_quietly_when_nobody_mounts_the_drive() {
    let env = loop_env("mount-timeout-seconds = 1\n");
    let device = empty_drive_image(&env, "NOMOUNT");
    let mut command = fixed_drive_hook(&env, &device.device);
    let started = std::time::Instant::now();
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", output_text(&output));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(output_text(&output).contains("was not mounted within 1 s"));
    assert!(env.records().is_empty());
}

#[test]
fn serial_a_mount_that_only_names_the_device_is_not_taken_for_it() {
    let env = loop_env("mount-timeout-seconds = 1\n");
    let device = usb_drive_image(&env, "NAMEDONLY");
    // tmpfs takes any source name: this mount claims to be the loop device.
    let point = env.dir.path().join("media/NAMEDONLY");
    let mounted = Mount::new(&device.device, &point, Some("tmpfs"), &["size=1M"]).unwrap();
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.contains(&format!(" {} tmpfs {} ", "-", device.device.display()))),
        "the tmpfs does not name {}:\n{table}",
        device.device.display()
    );

    let mut command = fixed_drive_hook(&env, &device.device);
    let output = command.output().unwrap();
    let text = output_text(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("was not mounted within 1 s"), "{text}");
    assert!(env.records().is_empty(), "{text}");

    // Named by its mount point, it is a plain directory drive: no device, no UUID.
    let output = env.hook([Path::new("--mount"), &mounted.target]);
    assert!(output.status.success(), "{}", output_text(&output));
    let records = env.records();
    assert_eq!(records.len(), 1, "{}", output_text(&output));
    assert_eq!(records[0].device, None, "{:?}", records[0]);
    assert_eq!(records[0].uuid, None, "{:?}", records[0]);
    drop(mounted);
}

#[test]
fn serial_a_drive_with_a_copied_uuid_neither_overwrites_nor_removes_the_other() {
    let env = loop_env("mount-timeout-seconds = 5\n");
    let content = usb_content(env.dir.path());
    let uuid = "0b6c3a53-5d0e-4a8f-9a0e-3b2f7c1d9e44";
    let (first, _) = drive_image_with(env.dir.path(), "FIRST", &content, &["-U", uuid]);
    let (second, _) = drive_image_with(env.dir.path(), "SECOND", &content, &["-U", uuid]);
    let mut rule = RuntimeUdevRule::install(&udev_rule_source(), "90-ferry-test-uuid.rules");
    rule.test_add(&first);
    rule.test_add(&second);
    let first_mount = first
        .mount(
            &env.dir.path().join("media/FIRST"),
            &["ro", "nosuid", "nodev"],
        )
        .unwrap();
    let second_mount = second
        .mount(
            &env.dir.path().join("media/SECOND"),
            &["ro", "nosuid", "nodev"],
        )
        .unwrap();
    let insert = |device: &LoopDevice| {
        let mut command = fixed_drive_hook(&env, &device.device);
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", output_text(&output));
    };

    insert(&first);
    let records = env.records();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].id, uuid);
    assert_eq!(records[0].uuid.as_deref(), Some(uuid), "{records:?}");
    insert(&second);
    let records = env.records();
    assert_eq!(records.len(), 2, "{records:?}");
    let of = |device: &LoopDevice| {
        env.records()
            .into_iter()
            .find(|r| r.device.as_deref() == device.device.to_str())
            .unwrap_or_else(|| panic!("no record of {}", device.device.display()))
    };
    let first_record = of(&first);
    assert_eq!(first_record.id, uuid);
    assert_eq!(Path::new(&first_record.mount), first_mount.target);
    assert_ne!(of(&second).id, uuid);
    assert_eq!(Path::new(&of(&second).mount), second_mount.target);

    // Removing the second drive leaves the first one's record alone.
    hook_removed(&env, &second.device);
    assert_eq!(env.records(), vec![first_record]);
    drop(second_mount);
    drop(first_mount);
}
