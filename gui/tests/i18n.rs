//! Translations: the template is current, the German catalogue is complete and compiles, and
//! the app really speaks German with it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn i18n(args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(repo().join("scripts/i18n.sh"))
        .args(args)
        .output()
        .expect("run scripts/i18n.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "scripts/i18n.sh {args:?} failed:\n{text}"
    );
    text
}

/// The template without the line that changes on every run.
fn without_creation_date(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with("\"POT-Creation-Date:"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn potfiles_lists_every_file_with_translatable_strings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = dir.path().join("POTFILES");
    i18n(&["potfiles".as_ref(), fresh.as_os_str()]);
    let committed = fs::read_to_string(repo().join("po/POTFILES")).expect("po/POTFILES");
    assert_eq!(
        fs::read_to_string(&fresh).expect("fresh POTFILES"),
        committed,
        "po/POTFILES is stale: run scripts/i18n.sh potfiles, then scripts/i18n.sh pot"
    );
}

#[test]
fn the_template_is_current() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = dir.path().join("ferry.pot");
    i18n(&["pot".as_ref(), fresh.as_os_str()]);
    let committed = fs::read_to_string(repo().join("po/ferry.pot")).expect("po/ferry.pot");
    let fresh = fs::read_to_string(&fresh).expect("fresh template");
    assert!(
        fresh.contains("msgid \"Updates on {label}\""),
        "extraction found nothing"
    );
    assert!(
        without_creation_date(&fresh) == without_creation_date(&committed),
        "po/ferry.pot is stale: run scripts/i18n.sh pot && scripts/i18n.sh update, then translate"
    );
}

#[test]
fn every_language_is_complete_and_covers_the_template() {
    let report = i18n(&["check".as_ref()]);
    assert!(report.contains("de: "), "{report}");
    // Every message of the template is in the German catalogue.
    let template = fs::read_to_string(repo().join("po/ferry.pot")).expect("template");
    let german = fs::read_to_string(repo().join("po/de.po")).expect("German");
    for line in template
        .lines()
        .filter(|line| line.starts_with("msgid \"") && *line != "msgid \"\"")
    {
        assert!(
            german.contains(line),
            "po/de.po lacks {line}: run scripts/i18n.sh update"
        );
    }
}

#[test]
fn the_app_speaks_german_with_the_compiled_catalogue() {
    let dir = tempfile::tempdir().expect("tempdir");
    i18n(&["compile".as_ref(), dir.path().as_os_str()]);
    assert!(dir.path().join("de/LC_MESSAGES/ferry.mo").is_file());
    let help = |language: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("--help")
            .env("FERRY_LOCALEDIR", dir.path())
            .env("LANGUAGE", language)
            .env("LANG", "C.UTF-8")
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .output()
            .expect("run ferry --help");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let german = help("de");
    assert!(
        german.contains(
            "Im Hintergrund laufen und über Datenträger mit Aktualisierungen benachrichtigen"
        ),
        "{german}"
    );
    let english = help("en");
    assert!(
        english.contains("Run in the background and notify about drives with updates"),
        "{english}"
    );
}
