//! `reboot-after-os-update`: whether the kiosk restarts once an OS update is deployed, and the
//! restart itself.
//!
//! `when-idle` asks logind: `loginctl list-sessions` for the sessions, then `loginctl
//! show-session` for their class, state and idle hint. A user session that is not idle means
//! someone is using the machine. When logind cannot be asked, nobody can tell, so the machine
//! is not restarted: the update then completes at the next boot.

use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};
use ferry_schema::{InstallResult, InstallStatus};

use ferry_engine::policy::RebootPolicy;

pub use ferry_engine::deploy::ENV_REBOOT_COMMAND;
/// loginctl's answer is a few lines per session; anything past this is not read.
const MAX_LOGINCTL_OUTPUT: usize = 1024 * 1024;
/// More sessions than this are not looked at one by one: the machine is in use.
const MAX_SESSIONS: usize = 256;

/// Whether any update of `results` was installed and needs a restart to take effect.
pub fn os_update_needs_restart(results: &[InstallResult]) -> bool {
    results
        .iter()
        .any(|r| r.status == InstallStatus::Installed && r.restart_required)
}

/// One logind session, as `loginctl show-session` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    pub id: String,
    /// `user`, `greeter`, `lock-screen`, `background`...
    pub class: Option<String>,
    /// `online`, `active` or `closing`.
    pub state: Option<String>,
    pub idle_hint: Option<bool>,
}

impl Session {
    /// A person's session that is open and not idle. Greeters, lock screens and background
    /// sessions (cron, systemd user managers) are nobody at the machine; a session whose idle
    /// state is unknown counts as in use.
    pub fn in_use(&self) -> bool {
        let person = self.class.as_deref().is_none_or(|c| c == "user");
        let open = self.state.as_deref() != Some("closing");
        person && open && self.idle_hint != Some(true)
    }
}

/// Whether someone is using the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    Idle,
    /// The IDs of the sessions in use.
    InUse(Vec<String>),
    /// logind could not be asked; why.
    Unknown(String),
}

/// What to do after an install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Restart,
    /// Why not.
    Stay(String),
}

/// The session IDs in `loginctl list-sessions --no-legend` output (the first column).
pub fn parse_session_ids(list: &str) -> Vec<String> {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|id| {
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_owned)
        .take(MAX_SESSIONS)
        .collect()
}

/// The sessions in `loginctl show-session ID... --property=Id --property=Class
/// --property=State --property=IdleHint` output: `Key=value` lines, one block per session,
/// blocks separated by an empty line.
pub fn parse_sessions(show: &str) -> Vec<Session> {
    let mut sessions: Vec<Session> = Vec::new();
    let mut current: Option<Session> = None;
    for line in show.lines().map(str::trim) {
        if line.is_empty() {
            sessions.extend(current.take());
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key == "Id" && current.as_ref().is_some_and(|s| !s.id.is_empty()) {
            sessions.extend(current.take());
        }
        let session = current.get_or_insert_with(Session::default);
        match key {
            "Id" => session.id = value.to_owned(),
            "Class" => session.class = Some(value.to_owned()),
            "State" => session.state = Some(value.to_owned()),
            "IdleHint" => session.idle_hint = Some(value == "yes"),
            _ => {}
        }
    }
    sessions.extend(current);
    sessions.truncate(MAX_SESSIONS);
    sessions
}

/// Idle when no session is in use.
pub fn activity_of(sessions: &[Session]) -> Activity {
    let in_use: Vec<String> = sessions
        .iter()
        .filter(|s| s.in_use())
        .map(|s| s.id.clone())
        .collect();
    if in_use.is_empty() {
        Activity::Idle
    } else {
        Activity::InUse(in_use)
    }
}

/// Asks logind whether anyone is using the machine.
pub fn probe_activity() -> Activity {
    let list = match loginctl(&["list-sessions", "--no-legend"]) {
        Ok(list) => list,
        Err(error) => return Activity::Unknown(ferry_engine::causes::text(error.as_ref())),
    };
    let ids = parse_session_ids(&list);
    if ids.is_empty() {
        return Activity::Idle;
    }
    let mut args: Vec<&str> = vec!["show-session"];
    args.extend(ids.iter().map(String::as_str));
    args.extend([
        "--property=Id",
        "--property=Class",
        "--property=State",
        "--property=IdleHint",
    ]);
    match loginctl(&args) {
        Ok(show) => {
            let sessions = parse_sessions(&show);
            if sessions.len() < ids.len() {
                // A session that ended in between is not listed; one logind did not describe
                // is not known to be idle.
                let described: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
                tracing::debug!("loginctl described {described:?} of {ids:?}");
            }
            activity_of(&sessions)
        }
        Err(error) => Activity::Unknown(ferry_engine::causes::text(error.as_ref())),
    }
}

fn loginctl(args: &[&str]) -> Result<String> {
    let output = Command::new("loginctl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run loginctl")?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "loginctl {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            output.status,
            stderr.trim()
        );
    }
    let mut stdout = output.stdout;
    stdout.truncate(MAX_LOGINCTL_OUTPUT);
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// Whether to restart after an install, given the policy, whether an installed update needs
/// a restart, and (asked only for `when-idle`) whether anyone is using the machine.
pub fn decide(
    policy: RebootPolicy,
    restart_needed: bool,
    activity: impl FnOnce() -> Activity,
) -> Decision {
    if !restart_needed {
        return Decision::Stay("no installed update needs a restart".into());
    }
    match policy {
        RebootPolicy::Never => Decision::Stay(
            "reboot-after-os-update = never; the update takes effect at the next boot".into(),
        ),
        RebootPolicy::Always => Decision::Restart,
        RebootPolicy::WhenIdle => match activity() {
            Activity::Idle => Decision::Restart,
            Activity::InUse(sessions) => Decision::Stay(format!(
                "session(s) {} in use; the update takes effect at the next boot",
                sessions.join(", ")
            )),
            Activity::Unknown(why) => Decision::Stay(format!(
                "cannot tell whether anyone is using the machine ({why}); the update takes \
                 effect at the next boot"
            )),
        },
    }
}

/// Restarts the machine ([`ferry_engine::deploy::reboot`], the one restart path).
pub fn restart() -> Result<()> {
    ferry_engine::deploy::reboot()
        .context("cannot restart the machine; restart it to complete the update")
}
