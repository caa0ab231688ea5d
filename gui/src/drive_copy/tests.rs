use super::*;

const PLAN: &str = include_str!("../../tests/data/streams/prepare-plan.jsonl");
const COPY: &str = include_str!("../../tests/data/streams/prepare-copy.jsonl");
const NO_SPACE: &str = include_str!("../../tests/data/streams/prepare-no-space.jsonl");

fn stick() -> RemovableMount {
    RemovableMount {
        mount_point: PathBuf::from("/run/media/ann/KINGSTON"),
        device: PathBuf::from("/dev/sdb"),
        filesystem: PathBuf::from("/dev/sdb1"),
        fs_type: "vfat".to_owned(),
    }
}

const FERRYCTL: &str = "/usr/bin/ferryctl";

fn exit(code: i32) -> ChildExit {
    ChildExit {
        code: Some(code),
        ..ChildExit::default()
    }
}

fn replay(flow: &mut CopyFlow, stream: &str) {
    for line in stream.lines() {
        flow.apply_line(line).expect("a version 1 line");
    }
}

/// Planned for the stick from the recorded dry run.
fn planned() -> CopyFlow {
    let mut flow = CopyFlow::new();
    flow.choose(Destination::drive(&stick()));
    assert_eq!(flow.stage, CopyStage::Planning);
    assert_eq!(
        flow.plan_args(),
        [
            "prepare-drive",
            "--json",
            "--dry-run",
            "/run/media/ann/KINGSTON"
        ]
        .map(OsString::from)
    );
    replay(&mut flow, PLAN);
    flow.child_exited(&exit(0));
    flow
}

#[test]
fn the_dry_run_lists_the_os_apps_and_runtimes_all_ticked_with_sizes() {
    let flow = planned();
    assert_eq!(flow.stage, CopyStage::Selecting);
    let listed: Vec<(String, String, bool)> = flow
        .listed()
        .map(|item| (item.title(), item.subtitle(), item.selected))
        .collect();
    assert_eq!(
        listed,
        [
            (
                "Operating System".to_owned(),
                format::size(2_450_000_000),
                true
            ),
            ("org.gnome.Maps".to_owned(), format::size(15_600_000), true),
            (
                "org.gnome.Platform".to_owned(),
                "Already on the drive".to_owned(),
                true
            ),
        ]
    );
    // AppStream data goes along and counts.
    assert_eq!(flow.selected_bytes(), 2_450_000_000 + 15_600_000 + 400_000);
    assert_eq!(
        flow.space_line(),
        format!(
            "{} to copy, {} free",
            format::size(2_466_000_000),
            format::size(15_900_000_000)
        )
    );
    assert!(flow.can_copy());
    assert_eq!(flow.title(), "Copy to KINGSTON");
}

#[test]
fn what_does_not_fit_or_nothing_ticked_cannot_be_copied() {
    let mut flow = planned();
    flow.free_bytes = Some(1_000_000_000);
    assert!(!flow.can_copy());
    assert!(
        flow.space_line().starts_with("Needs "),
        "{}",
        flow.space_line()
    );
    flow.set_selected(0, false);
    assert_eq!(flow.selected_bytes(), 15_600_000 + 400_000);
    assert!(flow.can_copy());
    flow.set_selected(1, false);
    flow.set_selected(2, false);
    assert_eq!(flow.selected_bytes(), 0);
    assert!(!flow.can_copy());
}

/// The app's own `ferryctl prepare-drive` onto the stick, naming `choice` (nothing when
/// everything is ticked).
fn copy_onto_stick(choice: &[&str]) -> Vec<OsString> {
    ["prepare-drive", "--json", "--cancel-on-stdin-eof"]
        .iter()
        .chain(choice)
        .chain(&["/run/media/ann/KINGSTON"])
        .map(OsString::from)
        .collect()
}

#[test]
fn everything_ticked_copies_everything_and_a_choice_is_named() {
    let mut flow = planned();
    assert_eq!(flow.copy_args(), copy_onto_stick(&[]));
    flow.set_selected(2, false);
    assert_eq!(
        flow.copy_args(),
        copy_onto_stick(&["--os", "--app", "app/org.gnome.Maps/x86_64/stable"])
    );
    flow.set_selected(0, false);
    flow.set_selected(2, true);
    assert_eq!(
        flow.copy_args()[3..5],
        ["--app", "app/org.gnome.Maps/x86_64/stable"].map(OsString::from)
    );
    assert_eq!(
        flow.copy_args()[5..7],
        ["--runtime", "runtime/org.gnome.Platform/x86_64/48"].map(OsString::from)
    );
}

#[test]
fn only_copying_the_os_needs_root_through_pkexec() {
    let mut flow = planned();
    assert!(flow.needs_root(false));
    assert!(!flow.needs_root(true));
    let launches = flow.copy_launches(Path::new(FERRYCTL), false);
    assert_eq!(launches.len(), 1);
    assert_eq!(launches[0].program, PathBuf::from("pkexec"));
    assert!(launches[0].elevated);
    // Root is told exactly where to read and what.
    assert_eq!(
        launches[0].args,
        [
            "/usr/bin/ferryctl",
            "prepare-drive",
            "--json",
            "--cancel-on-stdin-eof",
            "--sysroot",
            "/",
            "--installation",
            "system",
            "--os",
            "--app",
            "app/org.gnome.Maps/x86_64/stable",
            "--runtime",
            "runtime/org.gnome.Platform/x86_64/48",
            "/run/media/ann/KINGSTON"
        ]
        .map(OsString::from)
    );
    flow.set_selected(0, false);
    let launches = flow.copy_launches(Path::new(FERRYCTL), false);
    assert_eq!(launches.len(), 1);
    assert_eq!(launches[0].program, PathBuf::from(FERRYCTL));
    assert!(!launches[0].elevated);
}

#[test]
fn apps_of_the_users_own_follow_the_run_as_root_in_a_run_of_their_own() {
    let mut flow = planned();
    for item in &mut flow.items {
        if item.ref_name.starts_with("app/") {
            item.source = "user".to_owned();
        }
    }
    let first = flow
        .start_copy(Path::new(FERRYCTL), false)
        .expect("a first run");
    assert!(first.elevated);
    assert!(
        !first
            .args
            .iter()
            .any(|arg| arg == "app/org.gnome.Maps/x86_64/stable"),
        "{:?}",
        first.args
    );
    assert!(flow.next_run().is_none(), "not before the first ends");
    replay(&mut flow, COPY);
    flow.child_exited(&exit(0));
    assert_eq!(flow.stage, CopyStage::Copying);
    let second = flow.next_run().expect("the user's run");
    assert!(!second.elevated);
    assert_eq!(
        second.args,
        [
            "prepare-drive",
            "--json",
            "--cancel-on-stdin-eof",
            "--installation",
            "user",
            "--app",
            "app/org.gnome.Maps/x86_64/stable",
            "/run/media/ann/KINGSTON"
        ]
        .map(OsString::from)
    );
    assert_eq!(flow.progress, Transfer::default());
    replay(&mut flow, COPY);
    flow.child_exited(&exit(0));
    assert_eq!(flow.stage, CopyStage::Done);
    assert!(flow.next_run().is_none());

    // A failed or cancelled first run has no second.
    let mut flow = planned();
    for item in &mut flow.items {
        item.source = if item.is_os() {
            "/".into()
        } else {
            "user".into()
        };
    }
    flow.start_copy(Path::new(FERRYCTL), false);
    flow.child_exited(&exit(1));
    assert!(matches!(flow.stage, CopyStage::Failed(_)));
    assert!(flow.next_run().is_none());
}

#[test]
fn a_copy_shows_bytes_items_rate_and_time_left_then_safe_to_remove() {
    let mut flow = planned();
    flow.start_copy(Path::new(FERRYCTL), true);
    let lines: Vec<&str> = COPY.lines().collect();
    for line in &lines[..5] {
        flow.apply_line(line).expect("line");
    }
    assert_eq!(flow.stage, CopyStage::Copying);
    assert_eq!(flow.title(), "Copying to KINGSTON");
    assert_eq!(
        flow.progress_line(),
        format!(
            "{} of {} · 21800 of 52000 items · {}/s",
            format::size(1_030_000_000),
            format::size(2_466_000_000),
            format::size(31_000_000)
        )
    );
    assert_eq!(flow.time_left().as_deref(), Some("Less than a minute left"));
    // The copy's own plan does not undo the ticks.
    flow.set_selected(2, false);
    for line in &lines[5..] {
        flow.apply_line(line).expect("line");
    }
    assert_eq!(flow.listed().filter(|item| item.selected).count(), 2);
    assert!(!flow.can_remove(), "not before the child has exited");
    flow.child_exited(&exit(0));
    assert_eq!(flow.stage, CopyStage::Done);
    assert_eq!(flow.title(), "Safe to Remove");
    assert!(flow.can_remove());
    flow.removal = Some(Ok(()));
    assert!(!flow.can_remove());
    assert_eq!(flow.description(), "You can now unplug KINGSTON.");
}

#[test]
fn a_folder_is_copied_to_but_cannot_be_removed() {
    let mut flow = CopyFlow::new();
    flow.choose(Destination::folder(
        Path::new("/home/ann/for-bob"),
        &[stick()],
    ));
    replay(&mut flow, PLAN);
    flow.child_exited(&exit(0));
    flow.start_copy(Path::new(FERRYCTL), true);
    replay(&mut flow, COPY);
    flow.child_exited(&exit(0));
    assert_eq!(flow.stage, CopyStage::Done);
    assert_eq!(flow.title(), "Updates Copied");
    assert!(!flow.can_remove());
    // A drive's mount point chosen as a folder is the drive.
    let chosen = Destination::folder(Path::new("/run/media/ann/KINGSTON"), &[stick()]);
    assert_eq!(chosen.removable, Some(stick()));
}

#[test]
fn cancel_errors_and_pkexec_refusals_end_the_copy_with_their_words() {
    let mut flow = planned();
    flow.start_copy(Path::new(FERRYCTL), true);
    flow.request_cancel();
    assert_eq!(flow.title(), "Cancelling…");
    flow.child_exited(&exit(1));
    assert_eq!(flow.stage, CopyStage::Cancelled);

    let mut flow = planned();
    flow.start_copy(Path::new(FERRYCTL), true);
    replay(&mut flow, NO_SPACE);
    flow.child_exited(&exit(1));
    assert_eq!(
        flow.stage,
        CopyStage::Failed("the drive needs 2.5 GB, 1.0 GB free".to_owned())
    );
    assert_eq!(flow.description(), "the drive needs 2.5 GB, 1.0 GB free");

    let mut flow = planned();
    flow.start_copy(Path::new(FERRYCTL), true);
    flow.child_exited(&ChildExit {
        code: Some(126),
        elevated: true,
        ..ChildExit::default()
    });
    assert_eq!(
        flow.stage,
        CopyStage::Failed("Authentication was cancelled, so nothing was copied.".to_owned())
    );

    // A dry run that ends well without a plan is no choice at all.
    let mut flow = CopyFlow::new();
    flow.choose(Destination::drive(&stick()));
    flow.apply_line(r#"{"v":1,"event":"finished","ok":true}"#)
        .expect("line");
    flow.child_exited(&exit(0));
    assert!(matches!(flow.stage, CopyStage::Failed(_)));
    // Another stream version is refused.
    assert!(matches!(
        flow.apply_line(r#"{"v":2,"event":"finished","ok":true}"#),
        Err(StreamError::Version { found: 2 })
    ));
}

#[test]
fn a_locale_extension_in_part_shows_its_languages() {
    let mut flow = CopyFlow::new();
    flow.choose(Destination::drive(&stick()));
    let plan = r#"{"v":1,"event":"drive_plan","repo":"DRIVE/.ostree/repo","refs":[{"collection_id":"org.gnome.Maps","ref":"runtime/org.gnome.Maps.Locale/x86_64/stable","commit":"ca8aeca7c6e4c5ffdd2a96d98b32c1365141440223a439b7231d84d1234a0699","target":"flatpak","source":"system","up_to_date":false,"new_bytes":120000,"subpaths":["/de","/fr"]}],"objects_to_write":9,"bytes_to_write":131072,"free_bytes":15900000000}"#;
    flow.apply_line(plan).expect("a version 1 line");
    let item = flow
        .listed()
        .next()
        .expect("the locale extension is listed");
    assert_eq!(item.languages, ["de", "fr"]);
    assert_eq!(
        item.subtitle(),
        format!("{} · only de, fr", format::size(120_000))
    );
}
