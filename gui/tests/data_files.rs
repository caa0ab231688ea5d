//! The desktop files, AppStream metainfo, polkit policy and icons, checked with the same tools
//! distributions use: desktop-file-validate, appstreamcli and xmllint.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|error| {
        panic!("cannot run {command:?}: {error}; run scripts/install-deps.sh")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

/// The translated files, as a system install gets them.
fn merged() -> tempfile::TempDir {
    let out = tempfile::tempdir().expect("tempdir");
    run(Command::new(repo().join("scripts/i18n.sh"))
        .arg("merge")
        .arg(out.path()));
    out
}

#[test]
fn desktop_files_validate_and_are_translated() {
    let out = merged();
    let app = out
        .path()
        .join("applications/io.github.ferry.Ferry.desktop");
    let agent = out
        .path()
        .join("autostart/io.github.ferry.Ferry.Agent.desktop");
    let report = run(Command::new("desktop-file-validate").arg(&app).arg(&agent));
    assert!(!report.contains("error"), "{report}");

    let app_text = std::fs::read_to_string(&app).expect("app desktop file");
    assert!(app_text.contains("\nExec=ferry\n"), "{app_text}");
    assert!(
        app_text.contains("\nIcon=io.github.ferry.Ferry\n"),
        "{app_text}"
    );
    assert!(
        app_text.contains(
            "Comment[de]=System- und App-Aktualisierungen von USB-Datenträgern installieren"
        ),
        "{app_text}"
    );
    let agent_text = std::fs::read_to_string(&agent).expect("agent desktop file");
    for line in [
        "Exec=ferry --background",
        "NoDisplay=true",
        "X-GNOME-Autostart-enabled=true",
    ] {
        assert!(
            agent_text.lines().any(|l| l == line),
            "{line} missing:\n{agent_text}"
        );
    }
    assert!(
        agent_text.contains("Name[de]=Ferry-Hintergrunddienst"),
        "{agent_text}"
    );
}

#[test]
fn metainfo_validates_offline_with_screenshots_and_translations() {
    let out = merged();
    let metainfo = out
        .path()
        .join("metainfo/io.github.ferry.Ferry.metainfo.xml");
    let report = run(Command::new("appstreamcli")
        .arg("validate")
        .arg("--no-net")
        .arg(&metainfo));
    assert!(report.contains("Validation was successful"), "{report}");
    let text = std::fs::read_to_string(&metainfo).expect("metainfo");
    assert_eq!(
        text.matches("<screenshot").count() - text.matches("<screenshots").count(),
        2
    );
    assert!(
        text.contains("<launchable type=\"desktop-id\">io.github.ferry.Ferry.desktop</launchable>")
    );
    assert!(
        text.contains("xml:lang=\"de\""),
        "no German in the metainfo"
    );
    // The screenshots it names are the ones kept in the repository.
    for name in ["updates.png", "installing.png"] {
        assert!(
            text.contains(&format!("/data/screenshots/{name}")),
            "{name} not referenced"
        );
        let local = repo().join("data/screenshots").join(name);
        assert!(local.is_file(), "{} is missing", local.display());
    }
}

#[test]
fn polkit_policy_is_valid_and_names_the_installed_ferryctl() {
    let out = tempfile::tempdir().expect("tempdir");
    run(Command::new(repo().join("scripts/i18n.sh"))
        .arg("merge")
        .arg(out.path())
        .env("BINDIR", "/opt/ferry/bin"));
    let policy = out.path().join("polkit/io.github.ferry.Ferry.policy");
    let mut xmllint = Command::new("xmllint");
    xmllint.args(["--noout", "--nonet"]);
    let dtd = Path::new("/usr/share/polkit-1/policyconfig-1.dtd");
    if dtd.is_file() {
        xmllint.arg("--dtdvalid").arg(dtd);
    }
    run(xmllint.arg(&policy));
    let text = std::fs::read_to_string(&policy).expect("policy");
    assert!(text.contains("<action id=\"io.github.ferry.Ferry.install\">"));
    assert!(text.contains("<allow_active>auth_admin_keep</allow_active>"));
    // Downgrades and unsigned updates: an administrator every time, never kept.
    let downgrade = text
        .split("<action id=\"io.github.ferry.Ferry.install-downgrade\">")
        .nth(1)
        .expect("the downgrade action");
    let downgrade = &downgrade[..downgrade.find("</action>").expect("end of action")];
    for session in ["any", "inactive", "active"] {
        assert!(
            downgrade.contains(&format!("<allow_{session}>auth_admin</allow_{session}>")),
            "{downgrade}"
        );
    }
    assert!(
        text.contains("<annotate key=\"org.freedesktop.policykit.exec.path\">/opt/ferry/bin/ferryctl</annotate>"),
        "{text}"
    );
    assert!(
        text.contains("<message xml:lang=\"de\">"),
        "no German message"
    );

    let default = merged();
    let text = std::fs::read_to_string(default.path().join("polkit/io.github.ferry.Ferry.policy"))
        .expect("policy");
    assert!(text.contains(">/usr/bin/ferryctl</annotate>"));
}

#[test]
fn icons_are_well_formed_svg_of_the_right_size() {
    let icons = repo().join("data/icons/hicolor");
    for (path, size) in [
        ("scalable/apps/io.github.ferry.Ferry.svg", "128"),
        ("symbolic/apps/io.github.ferry.Ferry-symbolic.svg", "16"),
    ] {
        let file = icons.join(path);
        run(Command::new("xmllint")
            .args(["--noout", "--nonet"])
            .arg(&file));
        let text = std::fs::read_to_string(&file).expect("icon");
        assert!(
            text.contains(&format!("width=\"{size}\" height=\"{size}\"")),
            "{path} is not {size}×{size}"
        );
    }
}

#[test]
fn dbus_service_activates_the_app_in_service_mode() {
    let service = repo().join("data/dbus-1/services/io.github.ferry.Ferry.service");
    let text = std::fs::read_to_string(&service).expect("D-Bus service file");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "[D-BUS Service]",
            "Name=io.github.ferry.Ferry",
            "Exec=@bindir@/ferry --gapplication-service",
        ],
        "{text}"
    );
    // The name is the app ID the binary registers, so the desktop file may say so.
    let desktop = repo().join("data/applications/io.github.ferry.Ferry.desktop.in");
    let desktop = std::fs::read_to_string(desktop).expect("app desktop file");
    assert!(
        desktop.lines().any(|line| line == "DBusActivatable=true"),
        "{desktop}"
    );
    assert_eq!(ferry_gui::config::APP_ID, "io.github.ferry.Ferry");
    // The binary understands the option the service starts it with (GApplication's own).
    let help = run(Command::new(env!("CARGO_BIN_EXE_ferry")).arg("--help-gapplication"));
    assert!(help.contains("--gapplication-service"), "{help}");
}
