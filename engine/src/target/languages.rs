//! The languages a Flatpak installation is set for, which decide what `flatpak update`
//! deploys of a locale extension installed in part: the subpaths installed (`/de`) merged
//! with those languages, as flatpak's transaction merges them. Asked of `flatpak config
//! --list`, run as the deploy runs, so flatpak's own default (from the locale, and for a
//! system installation from every user's) is the one used.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rustix::process::{Pid, Signal};

use super::FlatpakInstallation;

/// Most of `flatpak config --list`'s output read: a few short lines.
const MAX_CONFIG_OUTPUT: u64 = 64 * 1024;
/// How long `flatpak config --list` may take (it may ask AccountsService over D-Bus) before
/// it is killed and the languages are taken as unknown: listing must not hang on it.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(10);

/// Languages an installation is set for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Languages {
    /// Every language (`*all*`): locale extensions are deployed whole.
    All,
    /// These languages (`de`, `pt_BR`).
    Some(Vec<String>),
}

impl Languages {
    /// What `flatpak config --list` says for `installation`; None when flatpak cannot say.
    pub fn configured(installation: &FlatpakInstallation) -> Option<Self> {
        let mut command = Command::new("flatpak");
        command
            .envs(installation.flatpak_env())
            .arg("config")
            .args(installation.flatpak_args())
            .arg("--list");
        Self::parse(&output_within(command, CONFIG_TIMEOUT)?)
    }

    /// The `languages` line of `flatpak config --list`: `languages: de;fr`, or
    /// `languages: *unset* (default: de)`, or `*all*` for every language.
    fn parse(listing: &str) -> Option<Self> {
        let line = listing
            .lines()
            .find_map(|line| line.strip_prefix("languages: "))?;
        let (value, default) = match line.split_once(" (default: ") {
            Some((value, rest)) => (value, rest.strip_suffix(')')),
            None => (line, None),
        };
        let effective = if value == "*unset*" { default? } else { value };
        if effective == "*all*" || effective.is_empty() {
            return Some(Self::All);
        }
        let languages: Vec<String> = effective
            .split(';')
            .map(str::trim)
            .filter(|language| !language.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Self::Some(languages))
    }
}

/// What `command` prints (at most [`MAX_CONFIG_OUTPUT`] bytes) when it succeeds within
/// `timeout`; a command that takes longer is killed.
fn output_within(mut command: Command, timeout: Duration) -> Option<String> {
    command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = command.spawn().ok()?;
    let pid = Pid::from_child(&child);
    let (finished, finish) = mpsc::channel::<()>();
    // Kills a tool that takes too long, so the read below ends. The child is reaped only
    // after the watchdog is done, so its pid cannot have been reused meanwhile.
    let watchdog = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = finish.recv_timeout(timeout) {
            tracing::warn!("flatpak config --list did not answer in time; killed");
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    });
    let mut text = String::new();
    let read = child
        .stdout
        .take()
        .map(|out| out.take(MAX_CONFIG_OUTPUT).read_to_string(&mut text));
    let _ = finished.send(());
    let _ = watchdog.join();
    let status = child.wait().ok()?;
    (status.success() && matches!(read, Some(Ok(_)))).then_some(text)
}

/// The subpaths `flatpak update` deploys of a locale extension installed with `installed`
/// (`/de`) when the installation is set for `languages`: the union, sorted. Empty (the whole
/// ref) for every language; `installed` itself when the languages are unknown.
pub fn deploy_subpaths(installed: &[String], languages: Option<&Languages>) -> Vec<String> {
    match languages {
        Some(Languages::All) => Vec::new(),
        Some(Languages::Some(languages)) => {
            let mut merged: Vec<String> = installed.to_vec();
            merged.extend(languages.iter().map(|language| {
                if language.starts_with('/') {
                    language.clone()
                } else {
                    format!("/{language}")
                }
            }));
            merged.sort();
            merged.dedup();
            merged
        }
        None => installed.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_read_as_flatpak_config_lists_them() {
        let listed = |line: &str| Languages::parse(&format!("{line}\nextra-languages: *unset*\n"));
        let some = |list: &[&str]| {
            Some(Languages::Some(
                list.iter().map(|s| (*s).to_owned()).collect(),
            ))
        };
        assert_eq!(
            listed("languages: de;fr (default: en)"),
            some(&["de", "fr"])
        );
        assert_eq!(listed("languages: *unset* (default: de)"), some(&["de"]));
        assert_eq!(
            listed("languages: *unset* (default: *all*)"),
            Some(Languages::All)
        );
        assert_eq!(listed("languages: *all*"), Some(Languages::All));
        assert_eq!(Languages::parse("report-os-info: true\n"), None);
        assert_eq!(listed("languages: *unset*"), None);
    }

    #[test]
    fn a_tool_that_does_not_answer_is_killed_in_time() {
        let started = std::time::Instant::now();
        let mut slow = Command::new("sh");
        slow.args(["-c", "echo 'languages: de'; exec sleep 30"]);
        assert_eq!(output_within(slow, Duration::from_millis(300)), None);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let mut quick = Command::new("sh");
        quick.args(["-c", "echo 'languages: de'"]);
        assert_eq!(
            output_within(quick, Duration::from_secs(10)).as_deref(),
            Some("languages: de\n")
        );
    }

    #[test]
    fn the_languages_set_are_added_to_those_installed() {
        let installed = ["/de".to_owned()];
        let set = Languages::Some(vec!["fr".into(), "de".into()]);
        assert_eq!(deploy_subpaths(&installed, Some(&set)), ["/de", "/fr"]);
        assert!(deploy_subpaths(&installed, Some(&Languages::All)).is_empty());
        assert_eq!(deploy_subpaths(&installed, None), ["/de"]);
    }
}
