//! The Preferences switch "Share updates with computers nearby": `ferryctl sharing status
//! --json` tells its state, and `ferryctl sharing on|off` (through pkexec and the
//! `io.github.ferry.Ferry.share-nearby` action unless the app runs as root) changes it.

use std::path::Path;

use ferry_engine::sharing::SharingStatus;

use crate::i18n::{ntrf, tr};
use crate::install::Launch;

/// The command that reads the state; it needs no privilege.
pub fn status_launch(ferryctl: &Path) -> Launch {
    Launch::ferryctl(ferryctl, &["sharing", "status", "--json"], false)
}

/// The command that switches sharing `on` or off; through pkexec when `elevate`.
pub fn switch_launch(ferryctl: &Path, on: bool, elevate: bool) -> Launch {
    Launch::ferryctl(
        ferryctl,
        &["sharing", if on { "on" } else { "off" }],
        elevate,
    )
}

/// Runs `launch` to its end; its standard output, or a sentence saying why it failed.
pub fn run(launch: &Launch) -> Result<String, String> {
    launch.run_to_end(MAX_OUTPUT)
}

/// `ferryctl sharing status --json` prints one short line.
const MAX_OUTPUT: usize = 64 * 1024;

/// Reads `ferryctl sharing status --json`'s output.
pub fn parse_status(stdout: &str) -> Result<SharingStatus, String> {
    serde_json::from_str(stdout.trim()).map_err(|error| error.to_string())
}

/// The switch row's subtitle for `status`.
pub fn describe(status: &SharingStatus) -> String {
    match (status.enabled, status.running) {
        (false, _) => tr("Off. Other computers cannot fetch updates from this one."),
        (true, Some(false)) => tr("On, but the server is not running."),
        (true, _) => ntrf(
            "On. {n} computer fetched updates from this one today.",
            "On. {n} computers fetched updates from this one today.",
            status.computers_today,
            &[],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(enabled: bool, running: Option<bool>, computers_today: u64) -> SharingStatus {
        SharingStatus {
            enabled,
            running,
            computers_today,
            bytes_today: 0,
        }
    }

    #[test]
    fn the_subtitle_says_whether_sharing_is_on_running_and_used() {
        assert!(describe(&status(false, Some(true), 4)).starts_with("Off."));
        assert_eq!(
            describe(&status(true, Some(false), 4)),
            "On, but the server is not running."
        );
        assert_eq!(
            describe(&status(true, Some(true), 3)),
            "On. 3 computers fetched updates from this one today."
        );
        assert_eq!(
            describe(&status(true, None, 1)),
            "On. 1 computer fetched updates from this one today."
        );
    }

    #[test]
    fn switching_goes_through_pkexec_with_an_absolute_path_unless_root() {
        let launch = switch_launch(Path::new("bin/ferryctl"), true, true);
        assert_eq!(launch.program, Path::new("pkexec"));
        let args: Vec<_> = launch.args.iter().map(|a| a.to_string_lossy()).collect();
        assert!(Path::new(args[0].as_ref()).is_absolute(), "{args:?}");
        assert_eq!(&args[1..], ["sharing", "on"]);
        let launch = switch_launch(Path::new("/usr/bin/ferryctl"), false, false);
        assert_eq!(launch.program, Path::new("/usr/bin/ferryctl"));
        assert_eq!(launch.args, ["sharing", "off"]);
    }

    #[test]
    fn status_is_read_from_json_and_garbage_is_an_error() {
        let read =
            parse_status(r#"{"enabled":true,"running":null,"computers_today":2,"bytes_today":10}"#)
                .expect("status");
        let mut expected = status(true, None, 2);
        expected.bytes_today = 10;
        assert_eq!(read, expected);
        assert!(parse_status("no").is_err());
    }
}
