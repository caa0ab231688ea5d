//! `make install` into a DESTDIR puts every file in its place, each passes the check of the
//! tool that will read it, and `make uninstall` takes them all away again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use ferry_tests::assert_root;
use ferry_tests::loopdev::LoopImage;
use ferry_tests::Tool;

/// The binaries built next to this test's `ferry-hook`: `ferryctl` and `ferry` are there
/// after a workspace build (scripts/test.sh), not after `cargo test -p ferry-hook`.
fn user_binaries() -> Vec<&'static str> {
    let dir = Path::new(env!("CARGO_BIN_EXE_ferry-hook"))
        .parent()
        .unwrap();
    ["ferryctl", "ferry"]
        .into_iter()
        .filter(|b| dir.join(b).is_file())
        .collect()
}

/// Runs `make TARGET` in the repository with the binaries this test was built with.
fn make(target: &str, vars: &[(&str, &Path)], build: &Path) -> String {
    let hook = Path::new(env!("CARGO_BIN_EXE_ferry-hook"));
    let mut command = Tool::new("make")
        .arg("-C")
        .arg(repo_root())
        .arg(target)
        .arg(format!("TARGET_DIR={}", hook.parent().unwrap().display()))
        .arg(format!("USER_BINARIES={}", user_binaries().join(" ")))
        .arg(format!("BUILDDIR={}", build.display()));
    for (name, value) in vars {
        command = command.arg(format!("{name}={}", value.display()));
    }
    command.stdout().unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn files_in(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

fn check_tool(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} rejected the file:\n{}",
        output_text(&output)
    );
}

#[test]
fn install_puts_every_file_in_place_and_each_one_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    let build = tmp.path().join("build");
    make(
        "install",
        &[("DESTDIR", &dest), ("PREFIX", Path::new("/usr"))],
        &build,
    );

    for path in [
        "usr/libexec/ferry-hook",
        "usr/lib/udev/rules.d/90-ferry.rules",
        "usr/lib/systemd/system/ferry-hook@.service",
        "usr/lib/systemd/system/ferry-install@.service",
        "usr/lib/tmpfiles.d/ferry.conf",
        "etc/ferry/ferry.conf",
        "usr/share/man/man8/ferry-hook.8",
        "usr/share/man/man5/ferry.conf.5",
    ] {
        assert!(dest.join(path).is_file(), "{path} was not installed");
    }
    for binary in user_binaries() {
        assert!(
            dest.join("usr/bin").join(binary).is_file(),
            "{binary} was not installed"
        );
    }
    if user_binaries().contains(&"ferryctl") {
        for path in [
            "usr/share/man/man1/ferryctl.1",
            "usr/share/man/man1/ferryctl-install.1",
            "usr/share/bash-completion/completions/ferryctl",
            "usr/share/zsh/site-functions/_ferryctl",
            "usr/share/fish/vendor_completions.d/ferryctl.fish",
        ] {
            assert!(dest.join(path).is_file(), "{path} was not installed");
        }
    }
    // Each manual page renders without a warning from man's formatter.
    for page in files_under(&dest.join("usr/share/man")) {
        let output = Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&page)
            .env("MANWIDTH", "80")
            .output()
            .unwrap_or_else(|e| panic!("cannot run man: {e}"));
        let warnings = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && warnings.trim().is_empty(),
            "{} does not render cleanly:\n{warnings}",
            page.display()
        );
    }
    let unit =
        std::fs::read_to_string(dest.join("usr/lib/systemd/system/ferry-hook@.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/libexec/ferry-hook "),
        "{unit}"
    );

    // The desktop app's files: each kind must be there, and each must validate.
    let share = dest.join("usr/share");
    let service =
        std::fs::read_to_string(share.join("dbus-1/services/io.github.ferry.Ferry.service"))
            .expect("the D-Bus activation file is installed");
    assert!(
        service.contains("Exec=/usr/bin/ferry --gapplication-service") && !service.contains('@'),
        "{service}"
    );
    let desktop = std::fs::read_to_string(share.join("applications/io.github.ferry.Ferry.desktop"))
        .expect("the app desktop file is installed");
    assert!(
        desktop.lines().any(|line| line == "DBusActivatable=true"),
        "{desktop}"
    );
    let kinds: [(&str, PathBuf, &str); 7] = [
        ("app desktop file", share.join("applications"), ".desktop"),
        (
            "autostart desktop file",
            dest.join("etc/xdg/autostart"),
            ".desktop",
        ),
        (
            "AppStream metainfo",
            share.join("metainfo"),
            ".metainfo.xml",
        ),
        ("polkit policy", share.join("polkit-1/actions"), ".policy"),
        (
            "scalable icon",
            share.join("icons/hicolor/scalable/apps"),
            ".svg",
        ),
        (
            "symbolic icon",
            share.join("icons/hicolor/symbolic/apps"),
            "-symbolic.svg",
        ),
        (
            "compiled translation",
            share.join("locale"),
            "/LC_MESSAGES/ferry.mo",
        ),
    ];
    let mut missing = Vec::new();
    for (what, dir, suffix) in &kinds {
        if files_in(dir, suffix).is_empty() {
            missing.push(format!("{what} (*{suffix} in {})", dir.display()));
        }
    }
    for desktop in files_in(&share.join("applications"), ".desktop")
        .into_iter()
        .chain(files_in(&dest.join("etc/xdg/autostart"), ".desktop"))
    {
        check_tool(Command::new("desktop-file-validate").arg(&desktop));
    }
    for metainfo in files_in(&share.join("metainfo"), ".metainfo.xml") {
        check_tool(
            Command::new("appstreamcli")
                .args(["validate", "--no-net"])
                .arg(&metainfo),
        );
    }
    for policy in files_in(&share.join("polkit-1/actions"), ".policy") {
        check_tool(Command::new("xmllint").arg("--noout").arg(&policy));
    }
    for mo in files_in(&share.join("locale"), ".mo") {
        check_tool(Command::new("msgunfmt").arg(&mo).arg("-o").arg("/dev/null"));
    }
    assert!(
        missing.is_empty(),
        "make install installed no {}; data/ must provide them",
        missing.join(", no ")
    );

    make(
        "uninstall",
        &[("DESTDIR", &dest), ("PREFIX", Path::new("/usr"))],
        &build,
    );
    let left = files_under(&dest);
    assert!(left.is_empty(), "make uninstall left {left:?}");
}

#[test]
fn installed_units_pass_systemd_analyze_and_are_hardened() {
    assert_root("systemd-tmpfiles giving the runtime folders their owners");
    // Installed under a real prefix (no DESTDIR) so the units' ExecStart= paths exist.
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("usr");
    let etc = tmp.path().join("etc");
    make(
        "install",
        &[("PREFIX", &prefix), ("SYSCONFDIR", &etc)],
        &tmp.path().join("build"),
    );
    let unit_dir = prefix.join("lib/systemd/system");
    let unit = std::fs::read_to_string(unit_dir.join("ferry-hook@.service")).unwrap();
    assert!(
        unit.contains(&format!(
            "ExecStart={}/libexec/ferry-hook ",
            prefix.display()
        )),
        "{unit}"
    );
    // Empty last element: systemd's own unit directories come after ours.
    let unit_path = format!("{}:", unit_dir.display());
    let instances = ["ferry-hook@sdb1.service", "ferry-install@sdb1.service"];
    let output = Command::new("systemd-analyze")
        .env("SYSTEMD_UNIT_PATH", &unit_path)
        .args(["verify", "--man=no"])
        .args(instances)
        .output()
        .unwrap();
    // verify exits 0 on ignored lines too; anything it prints is a problem.
    assert!(
        output.status.success() && output.stderr.is_empty() && output.stdout.is_empty(),
        "systemd-analyze verify:\n{}",
        output_text(&output)
    );

    for (instance, limit) in [(instances[0], 2.0), (instances[1], 5.0)] {
        let output = Command::new("systemd-analyze")
            .env("SYSTEMD_UNIT_PATH", &unit_path)
            .args(["security", "--offline=yes", "--no-pager", instance])
            .output()
            .unwrap();
        let text = output_text(&output);
        let exposure: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
        assert!(
            exposure <= limit,
            "{instance}: exposure {exposure} > {limit}\n{text}"
        );
    }
    for (setting, expected) in [
        ("ProtectSystem", "strict"),
        ("PrivateNetwork", "yes"),
        ("NoNewPrivileges", "yes"),
        ("BindsTo", "dev-%i.device"),
        ("MemoryMax", "128M"),
        ("TasksMax", "64"),
    ] {
        assert!(
            unit.lines().any(|l| l == format!("{setting}={expected}")),
            "ferry-hook@.service lacks {setting}={expected}"
        );
    }

    // tmpfiles.d: the runtime directories come out as the hook needs them.
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    Tool::new("systemd-tmpfiles")
        .arg("--create")
        .arg(format!("--root={}", root.display()))
        .arg(prefix.join("lib/tmpfiles.d/ferry.conf"))
        .run()
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for (dir, mode) in [
        ("run/ferry", 0o755),
        ("run/ferry/drives", 0o755),
        ("run/ferry/mnt", 0o755),
        ("run/flatpak/sideload-repos", 0o777),
    ] {
        let meta = std::fs::metadata(root.join(dir))
            .unwrap_or_else(|e| panic!("tmpfiles did not create /{dir}: {e}"));
        assert!(meta.is_dir());
        assert_eq!(meta.permissions().mode() & 0o777, mode, "/{dir}");
    }
    Tool::new("make")
        .arg("-C")
        .arg(repo_root())
        .arg("uninstall")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("SYSCONFDIR={}", etc.display()))
        .arg(format!("USER_BINARIES={}", user_binaries().join(" ")))
        .run()
        .unwrap();
}

#[test]
fn serial_the_installed_udev_rule_wants_the_hook_for_filesystems_only() {
    assert_root("attaching loop devices and mounting filesystems");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("dest");
    make(
        "install",
        &[("DESTDIR", &dest), ("PREFIX", Path::new("/usr"))],
        &tmp.path().join("build"),
    );
    let installed = dest.join("usr/lib/udev/rules.d/90-ferry.rules");
    let with_fs = LoopImage::create(&tmp.path().join("fs.img"), 16, "WITHFS").unwrap();
    let without_fs = LoopImage::unformatted(&tmp.path().join("raw.img"), 16).unwrap();
    let fs_device = with_fs.attach().unwrap();
    let raw_device = without_fs.attach().unwrap();
    let mut rule = RuntimeUdevRule::install(&installed, "90-ferry-test-install.rules");

    let wants = |properties: &[(String, String)]| -> String {
        properties
            .iter()
            .filter(|(k, _)| k == "SYSTEMD_WANTS")
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let properties = rule.test_add(&fs_device);
    let expected = format!("ferry-hook@{}.service", fs_device.kernel_name());
    assert!(wants(&properties).contains(&expected), "{properties:?}");
    assert!(
        properties
            .iter()
            .any(|(k, v)| k == "TAGS" && v.contains(":systemd:")),
        "{properties:?}"
    );
    let properties = rule.test_add(&raw_device);
    assert!(
        !wants(&properties).contains("ferry-hook@"),
        "a device without a filesystem wants the hook: {properties:?}"
    );
}
