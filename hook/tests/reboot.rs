//! `reboot-after-os-update`: the decision, from loginctl's own output formats, for each policy.

use std::cell::Cell;

use ferry_engine::policy::RebootPolicy;
use ferry_hook::reboot::{
    activity_of, decide, os_update_needs_restart, parse_session_ids, parse_sessions, Activity,
    Decision, Session,
};

/// `loginctl list-sessions --no-legend` with a person on tty2 and the display manager's
/// greeter (systemd 252's columns: SESSION UID USER SEAT TTY).
const LIST: &str = "      3 1000 alice seat0 tty2 \n     c1  114 Debian-gdm seat0 tty1 \n";

/// `loginctl show-session 3 c1 --property=Id --property=Class --property=State
/// --property=IdleHint`: one block per session.
fn show(alice_idle: &str) -> String {
    format!(
        "Id=3\nClass=user\nState=active\nIdleHint={alice_idle}\n\nId=c1\nClass=greeter\nState=online\nIdleHint=no\n"
    )
}

#[test]
fn sessions_are_parsed_from_loginctl_output() {
    assert_eq!(parse_session_ids(LIST), ["3", "c1"]);
    assert!(parse_session_ids("").is_empty());
    let sessions = parse_sessions(&show("no"));
    assert_eq!(
        sessions,
        [
            Session {
                id: "3".into(),
                class: Some("user".into()),
                state: Some("active".into()),
                idle_hint: Some(false),
            },
            Session {
                id: "c1".into(),
                class: Some("greeter".into()),
                state: Some("online".into()),
                idle_hint: Some(false),
            },
        ]
    );
    // Without the separating empty line, each Id= starts a session.
    let joined = show("no").replace("\n\n", "\n");
    assert_eq!(parse_sessions(&joined), sessions);
}

#[test]
fn only_a_persons_open_session_that_is_not_idle_is_in_use() {
    assert_eq!(
        activity_of(&parse_sessions(&show("no"))),
        Activity::InUse(vec!["3".into()])
    );
    // The person went idle; the greeter never counts.
    assert_eq!(activity_of(&parse_sessions(&show("yes"))), Activity::Idle);
    let closing = show("no").replace("State=active", "State=closing");
    assert_eq!(activity_of(&parse_sessions(&closing)), Activity::Idle);
    assert_eq!(activity_of(&[]), Activity::Idle);
    // Unknown idleness is someone there.
    let unknown = show("no").replace("IdleHint=no\n\n", "\n");
    assert_eq!(
        activity_of(&parse_sessions(&unknown)),
        Activity::InUse(vec!["3".into()])
    );
}

#[test]
fn each_policy_decides_as_it_says() {
    let in_use = || activity_of(&parse_sessions(&show("no")));
    let idle = || activity_of(&parse_sessions(&show("yes")));

    // never: not even when nobody is there.
    assert!(matches!(
        decide(RebootPolicy::Never, true, idle),
        Decision::Stay(_)
    ));
    // always: even with someone there.
    assert_eq!(
        decide(RebootPolicy::Always, true, in_use),
        Decision::Restart
    );
    // when-idle: only when nobody is.
    assert_eq!(
        decide(RebootPolicy::WhenIdle, true, idle),
        Decision::Restart
    );
    match decide(RebootPolicy::WhenIdle, true, in_use) {
        Decision::Stay(why) => assert!(why.contains("session(s) 3 in use"), "{why}"),
        Decision::Restart => panic!("restarted while session 3 is in use"),
    }
    // logind unreachable: nobody can tell, so no restart.
    assert!(matches!(
        decide(RebootPolicy::WhenIdle, true, || Activity::Unknown(
            "loginctl failed".into()
        )),
        Decision::Stay(_)
    ));
    // No OS update: no restart, and logind is not even asked.
    let asked = Cell::new(false);
    for policy in [
        RebootPolicy::Never,
        RebootPolicy::WhenIdle,
        RebootPolicy::Always,
    ] {
        let decision = decide(policy, false, || {
            asked.set(true);
            Activity::Idle
        });
        assert!(matches!(decision, Decision::Stay(_)), "{policy:?}");
    }
    assert!(!asked.get());
}

#[test]
fn only_an_installed_update_that_needs_it_asks_for_a_restart() {
    use ferry_schema::{InstallResult, InstallStatus, TargetKind};
    let result = |status, restart_required| InstallResult {
        update: "os:/:exampleos:exampleos/x86_64/stable".into(),
        ref_name: "exampleos/x86_64/stable".into(),
        target: TargetKind::Os,
        status,
        message: None,
        restart_required,
        sources: Vec::new(),
    };
    assert!(os_update_needs_restart(&[result(
        InstallStatus::Installed,
        true
    )]));
    assert!(!os_update_needs_restart(&[result(
        InstallStatus::Installed,
        false
    )]));
    assert!(!os_update_needs_restart(&[result(
        InstallStatus::Failed,
        true
    )]));
    assert!(!os_update_needs_restart(&[]));
}
