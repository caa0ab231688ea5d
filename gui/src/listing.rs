//! What can be installed, grouped by where it comes from.
//!
//! This is the one place the app learns about updates. [`load`] reads the drive records the
//! hook writes under `$FERRY_RUN_DIR/drives`, then asks the engine's resolver in-process, as
//! `ferryctl list` does (read-only: installations are world-readable), for this machine's
//! OS, system and per-user installations against those drives and the remotes' own servers.
//! Every update appears once, under its preferred (first) source: each drive by label, then
//! computers nearby, then the Internet. A drive this user cannot read counts with what the
//! hook recorded for it; the engine decides which offer of an update wins, and this module
//! only places what it returns. [`load_records`] is the instant, records-only view shown first.

use std::path::Path;

use ferry_engine::resolve::sources;
use ferry_engine::target::HostPaths;
use ferry_engine::trust::TrustRoots;
use ferry_schema::{
    AvailableApp, DriveInstallState, DriveRecord, Problem, ProblemKind, SourceInfo, SourceKind,
    TargetKind, Update, UpdateList,
};

pub use ferry_engine::resolve::sources::GatherOptions as LoadOptions;

use crate::i18n::tr;

/// One place updates come from, as the window shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceGroup {
    /// Stable within a run: `drive:<record id>`, [`NEARBY_KEY`] or [`INTERNET_KEY`].
    pub key: String,
    pub kind: SourceKind,
    /// A drive label, a host name, or "Internet".
    pub title: String,
    pub drive: Option<DriveInfo>,
    pub updates: Vec<Update>,
    pub problems: Vec<Problem>,
}

/// The drive a group comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct DriveInfo {
    pub id: String,
    /// The mount point, handed to `ferryctl install --from`.
    pub mount: String,
    pub device: Option<String>,
    /// The system is installing from this drive on its own (kiosk policy).
    pub installing_by_system: bool,
}

impl SourceGroup {
    pub fn drive_id(&self) -> Option<&str> {
        self.drive.as_ref().map(|drive| drive.id.as_str())
    }

    /// The updates shown on their own, each with the runtimes that come along only because
    /// it needs them (runtimes in its `needs`, which are not installed yet).
    pub fn shown(&self) -> Vec<(&Update, Vec<&Update>)> {
        let comes_with = |runtime: &Update, app: &Update| {
            app.target == runtime.target
                && app.installation == runtime.installation
                && app.needs.contains(&runtime.ref_name)
        };
        self.updates
            .iter()
            .filter(|update| !self.updates.iter().any(|app| comes_with(update, app)))
            .map(|update| {
                let along = self
                    .updates
                    .iter()
                    .filter(|runtime| comes_with(runtime, update))
                    .collect();
                (update, along)
            })
            .collect()
    }

    /// Updates a person can start installing from here.
    pub fn installable(&self) -> bool {
        !self.updates.is_empty()
            && !self
                .drive
                .as_ref()
                .is_some_and(|drive| drive.installing_by_system)
    }
}

/// Key of the group of updates from computers nearby.
pub const NEARBY_KEY: &str = "nearby";
/// Key of the group of updates from the remotes' own servers.
pub const INTERNET_KEY: &str = "internet";

/// Every source, drives first (by label), then computers nearby, then the Internet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub groups: Vec<SourceGroup>,
    /// Problems of no source, such as installations that could not be read. Logged; those of
    /// a drive, a computer nearby or a server are in its group.
    pub problems: Vec<Problem>,
    /// Apps the drives offer that this machine does not have ("Also on this drive").
    pub available: Vec<AvailableApp>,
    /// Apps on the drives from collections no remote here knows.
    pub unknown_available: u64,
}

impl Listing {
    pub fn update_count(&self) -> usize {
        self.groups.iter().map(|group| group.updates.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Sources exist but none offers anything installable: only problems.
    pub fn only_problems(&self) -> bool {
        !self.groups.is_empty() && self.groups.iter().all(|group| group.updates.is_empty())
    }

    pub fn group(&self, key: &str) -> Option<&SourceGroup> {
        self.groups.iter().find(|group| group.key == key)
    }

    pub fn drive_group(&self, drive_id: &str) -> Option<&SourceGroup> {
        self.groups
            .iter()
            .find(|group| group.drive_id() == Some(drive_id))
    }

    /// The update with this id and every group offering it.
    pub fn find_update(&self, id: &str) -> Option<(&Update, Vec<&SourceGroup>)> {
        let mut found = None;
        let mut groups = Vec::new();
        for group in &self.groups {
            if let Some(update) = group.updates.iter().find(|update| update.id == id) {
                found.get_or_insert(update);
                groups.push(group);
            }
        }
        found.map(|update| (update, groups))
    }
}

/// What the app lists with: every source when `online`, else drives only and quick; this
/// machine's keys, and this person's icon cache.
pub fn options(online: bool) -> LoadOptions {
    let roots = TrustRoots::from_env();
    let options = if online {
        LoadOptions::online(roots)
    } else {
        LoadOptions::offline_quick(roots)
    };
    options.with_icon_cache(sources::user_icon_cache())
}

/// Reads the current listing, asking the remotes' own servers too (this may take up to
/// [`sources::UPSTREAM_TIMEOUT`]; call it off the main thread). Unreadable records are logged
/// and left out; a record the hook is still writing appears with the next change of the
/// directory.
pub fn load(run_dir: &Path) -> Listing {
    load_with(run_dir, options(true))
}

/// [`load`], offline or quick as `options` say.
pub fn load_with(run_dir: &Path, options: LoadOptions) -> Listing {
    load_for(&HostPaths::from_env(), run_dir, options)
}

/// [`load_with`] for the machine `host` describes.
pub fn load_for(host: &HostPaths, run_dir: &Path, options: LoadOptions) -> Listing {
    let records = read_drive_records(run_dir);
    let machine = sources::list_machine(host, &records, options);
    group(records, machine.list)
}

/// The drive records alone, as the hook wrote them: instant, for a first view.
pub fn load_records(run_dir: &Path) -> Listing {
    from_records(read_drive_records(run_dir))
}

/// Groups drive records for display.
pub fn from_records(records: Vec<DriveRecord>) -> Listing {
    sorted(
        records.into_iter().map(group_for_record).collect(),
        Vec::new(),
    )
}

/// Places the engine's listing: each update under its preferred (first) source, each problem
/// under the source it was met on. A recorded drive is known by its record ID; the engine
/// already chose between a drive's record and what it read ([`sources::list_machine`]).
pub fn group(records: Vec<DriveRecord>, list: UpdateList) -> Listing {
    let (available, unknown_available) = (list.available, list.unknown_available);
    let mut groups: Vec<SourceGroup> = records
        .into_iter()
        .map(|record| SourceGroup {
            updates: Vec::new(),
            problems: Vec::new(),
            ..group_for_record(record)
        })
        .collect();
    let mut nearby = remote_group(NEARBY_KEY, SourceKind::Lan, tr("Computers nearby"));
    let mut internet = remote_group(INTERNET_KEY, SourceKind::Upstream, tr("Internet"));
    for update in list.updates {
        let Some(first) = update.sources.first() else {
            tracing::warn!(id = %update.id, "an update without a source; leaving it out");
            continue;
        };
        match first.kind {
            SourceKind::Lan => nearby.updates.push(update),
            SourceKind::Upstream => internet.updates.push(update),
            SourceKind::Drive => {
                let first = first.clone();
                drive_group(&mut groups, &first).updates.push(update);
            }
        }
    }
    let mut problems = Vec::new();
    for problem in list.problems {
        let Some(origin) = &problem.origin else {
            problems.push(problem);
            continue;
        };
        match origin.kind {
            SourceKind::Lan => nearby.problems.push(problem),
            SourceKind::Upstream => internet.problems.push(problem),
            SourceKind::Drive => match groups
                .iter_mut()
                .find(|group| group.drive_id().is_some() && group.drive_id() == problem.drive())
            {
                Some(group) => group.problems.push(problem),
                None => problems.push(problem),
            },
        }
    }
    for group in &mut groups {
        sort_updates(&mut group.updates);
    }
    for mut remote in [nearby, internet] {
        if worth_showing(&remote) {
            sort_updates(&mut remote.updates);
            groups.push(remote);
        } else {
            for problem in &remote.problems {
                tracing::info!(source = %problem.source, reason = %problem.reason, "source unavailable");
            }
        }
    }
    for problem in &problems {
        tracing::info!(source = %problem.source, reason = %problem.reason, "listing problem");
    }
    Listing {
        available,
        unknown_available,
        ..sorted(groups, problems)
    }
}

/// The group of the drive `source` is on: its record's, else one of its own, named by the
/// source (a drive the hook has not recorded).
fn drive_group<'a>(groups: &'a mut Vec<SourceGroup>, source: &SourceInfo) -> &'a mut SourceGroup {
    let key = match &source.drive {
        Some(id) => format!("drive:{id}"),
        None => format!("drive:{}", source.location),
    };
    let at = match groups.iter().position(|group| group.key == key) {
        Some(at) => at,
        None => {
            groups.push(SourceGroup {
                key,
                kind: SourceKind::Drive,
                title: source.label.clone().unwrap_or(source.location.clone()),
                drive: Some(DriveInfo {
                    id: source.location.clone(),
                    mount: source.location.clone(),
                    device: None,
                    installing_by_system: false,
                }),
                updates: Vec::new(),
                problems: Vec::new(),
            });
            groups.len() - 1
        }
    };
    &mut groups[at]
}

/// Whether a remote group is worth showing: it offers updates, or something it offered was
/// refused. A server that did not answer is no news on its own (the machine may be offline),
/// nor is a computer nearby busy sharing with others (it is listed once it answers).
fn worth_showing(group: &SourceGroup) -> bool {
    !group.updates.is_empty()
        || group
            .problems
            .iter()
            .any(|problem| !matches!(problem.kind, ProblemKind::Unavailable | ProblemKind::Busy))
}

fn remote_group(key: &str, kind: SourceKind, title: String) -> SourceGroup {
    SourceGroup {
        key: key.to_owned(),
        kind,
        title,
        drive: None,
        updates: Vec::new(),
        problems: Vec::new(),
    }
}

fn sorted(mut groups: Vec<SourceGroup>, problems: Vec<Problem>) -> Listing {
    // Sources with something to install first; those with only problems after them.
    groups.sort_by(|a, b| {
        let key = |g: &SourceGroup| {
            (
                g.updates.is_empty(),
                g.kind,
                g.title.to_lowercase(),
                g.key.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Listing {
        groups,
        problems,
        ..Listing::default()
    }
}

/// The operating system first, then apps by name, as GNOME Software orders them.
fn sort_updates(updates: &mut [Update]) {
    updates.sort_by_key(|update| {
        (
            update.target != TargetKind::Os,
            display_name(update).to_lowercase(),
        )
    });
}

fn group_for_record(record: DriveRecord) -> SourceGroup {
    let title = record.display_name().to_owned();
    let installing_by_system = record
        .install
        .as_ref()
        .is_some_and(|install| install.state == DriveInstallState::Running);
    let mut updates = record.updates;
    sort_updates(&mut updates);
    SourceGroup {
        key: format!("drive:{}", record.id),
        kind: SourceKind::Drive,
        title,
        drive: Some(DriveInfo {
            id: record.id,
            mount: record.mount,
            device: record.device,
            installing_by_system,
        }),
        updates,
        problems: record.problems,
    }
}

/// The name a person knows an update by ([`Update::display_name`]).
pub fn display_name(update: &Update) -> String {
    update.display_name(&tr("Operating System"))
}

/// The drive records under `run_dir` ([`sources::drive_records`]); those that cannot be
/// read are logged and skipped.
pub fn read_drive_records(run_dir: &Path) -> Vec<DriveRecord> {
    let (records, problems) = sources::drive_records(run_dir);
    for problem in problems {
        tracing::warn!(path = %problem.source, "skipping drive record: {}", problem.reason);
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const KINGSTON: &str = include_str!("../tests/data/drives/kingston.json");
    const BROKEN_STICK: &str = include_str!("../tests/data/drives/broken-stick.json");

    fn write(dir: &Path, name: &str, text: &str) {
        fs::write(dir.join(name), text).expect("write test record");
    }

    #[test]
    fn a_runtime_an_app_needs_is_shown_with_that_app() {
        let record: DriveRecord = serde_json::from_str(KINGSTON).expect("record");
        let mut group = from_records(vec![record]).groups.remove(0);
        let app = group
            .updates
            .iter()
            .position(|u| u.ref_name.starts_with("app/"))
            .expect("an app");
        let mut runtime = group.updates[app].clone();
        runtime.id = "runtime-id".to_owned();
        runtime.ref_name = "runtime/org.example.Platform/x86_64/24.08".to_owned();
        runtime.current_commit = None;
        group.updates.push(runtime.clone());
        let count = group.updates.len();
        assert_eq!(
            group.shown().len(),
            count,
            "a runtime nothing needs has a row"
        );

        group.updates[app].needs.push(runtime.ref_name.clone());
        let shown = group.shown();
        assert_eq!(shown.len(), count - 1);
        let (_, along) = shown
            .iter()
            .find(|(update, _)| update.id == group.updates[app].id)
            .expect("the app's row");
        assert_eq!(along.len(), 1);
        assert_eq!(along[0].id, "runtime-id");

        // A runtime of another installation does not come with this app.
        let last = group.updates.len() - 1;
        group.updates[last].installation = Some("elsewhere".to_owned());
        assert_eq!(group.shown().len(), count);
    }

    #[test]
    fn groups_drives_by_label_with_the_os_first() {
        let run = tempfile::tempdir().expect("tempdir");
        let drives = run.path().join("drives");
        fs::create_dir(&drives).expect("mkdir");
        write(&drives, "kingston.json", KINGSTON);
        write(&drives, "broken.json", BROKEN_STICK);
        let listing = load_records(run.path());
        let titles: Vec<&str> = listing.groups.iter().map(|g| g.title.as_str()).collect();
        assert_eq!(titles, ["KINGSTON", "BROKEN STICK"]);
        let kingston = listing
            .drive_group("kingston-1234")
            .expect("kingston group");
        let names: Vec<String> = kingston.updates.iter().map(display_name).collect();
        assert_eq!(
            names,
            ["Operating System", "GNOME Text Editor", "org.example.Tool"]
        );
        assert!(kingston.installable());
        assert_eq!(listing.update_count(), 3);
        assert!(!listing.only_problems());
        let broken = listing.drive_group("broken-5678").expect("broken group");
        assert!(broken.updates.is_empty());
        assert_eq!(broken.problems.len(), 2);
    }

    #[test]
    fn skips_temporary_foreign_and_future_records() {
        let run = tempfile::tempdir().expect("tempdir");
        let drives = run.path().join("drives");
        fs::create_dir(&drives).expect("mkdir");
        write(&drives, ".kingston.json.tmp", KINGSTON);
        write(&drives, "notes.txt", "hello");
        write(&drives, "garbage.json", "{not json");
        write(
            &drives,
            "future.json",
            &BROKEN_STICK.replacen("\"v\": 1", "\"v\": 2", 1),
        );
        let listing = load_records(run.path());
        assert!(listing.is_empty(), "{listing:?}");
    }

    #[test]
    fn a_missing_runtime_dir_is_an_empty_listing() {
        let listing = load_records(Path::new("/nonexistent/ferry-run"));
        assert!(listing.is_empty());
    }

    #[test]
    fn only_problems_when_no_drive_offers_updates() {
        let record: DriveRecord = serde_json::from_str(BROKEN_STICK).expect("record");
        let listing = from_records(vec![record]);
        assert!(listing.only_problems());
    }

    /// A machine with nothing installed, under `base`.
    fn empty_host(base: &Path) -> HostPaths {
        let base = base.to_path_buf();
        HostPaths::from_vars(move |name| match name {
            "HOME" => Some(base.join("home").into_os_string()),
            "FLATPAK_USER_DIR" => Some(base.join("flatpak-user").into_os_string()),
            "FLATPAK_SYSTEM_DIR" => Some(base.join("flatpak-system").into_os_string()),
            "FLATPAK_CONFIG_DIR" => Some(base.join("flatpak-config").into_os_string()),
            _ => None,
        })
    }

    #[test]
    fn a_drive_the_engine_cannot_read_keeps_what_the_hook_recorded() {
        let run = tempfile::tempdir().expect("tempdir");
        let drives = run.path().join("drives");
        fs::create_dir(&drives).expect("mkdir");
        write(&drives, "kingston.json", KINGSTON);
        write(&drives, "broken.json", BROKEN_STICK);
        let offline = options(false);
        let listing = load_for(&empty_host(run.path()), run.path(), offline);
        let records = load_records(run.path());
        // /media/user/KINGSTON is not mounted here: the records stand, with their problems
        // and nothing added about the missing mount.
        assert_eq!(listing.groups, records.groups);
    }

    /// A record of the drive at `mount`, as the hook writes it.
    fn record_of(id: &str, label: &str, mount: &Path) -> DriveRecord {
        DriveRecord {
            label: Some(label.to_owned()),
            device: Some("/dev/sdz1".to_owned()),
            ..DriveRecord::new(id, mount.display().to_string())
        }
    }

    /// Real flatpak, a drive written by `flatpak create-usb` and the remote's server: each
    /// update is listed once, under its preferred source.
    #[test]
    fn per_user_updates_come_from_the_drive_or_the_internet_once() {
        use ferry_tests::flatpak::{app_ref, AppSpec, FlatpakFixture, BRANCH, REMOTE};
        use ferry_tests::http::StaticServer;

        let tmp = tempfile::tempdir().expect("tempdir");
        let fixture = FlatpakFixture::new(tmp.path()).expect("flatpak scene");
        let v2 = fixture
            .publish_app(&AppSpec::new("v2"))
            .expect("publish v2");
        let drive = fixture
            .drive_from_peer(
                "peer",
                &tmp.path().join("stick"),
                &[ferry_tests::flatpak::APP_ID],
            )
            .expect("drive");
        let server = StaticServer::serve(&fixture.repo.repo.path).expect("server");
        fixture
            .client
            .set_remote_url(REMOTE, &server.url)
            .expect("remote-modify");
        let run = tempfile::tempdir().expect("tempdir");
        let drives = run.path().join("drives");
        fs::create_dir(&drives).expect("mkdir");
        let record = record_of("stick-1", "KINGSTON", &drive.root);
        write(
            &drives,
            "stick-1.json",
            &serde_json::to_string(&record).expect("json"),
        );
        let vars = fixture.client.vars();
        let user_dir = fixture.client.user_installation();
        let host = HostPaths::from_vars(|name| {
            if name == "FLATPAK_USER_DIR" {
                return Some(user_dir.clone().into_os_string());
            }
            vars.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        });
        let app = app_ref(ferry_tests::flatpak::APP_ID, BRANCH).expect("ref");

        // Drive and server hold the same v2: once, under the drive, which keeps its record's
        // identity.
        let listing = load_for(&host, run.path(), options(true));
        assert_eq!(listing.groups.len(), 1, "{listing:#?}");
        let stick = listing.drive_group("stick-1").expect("the drive's group");
        assert_eq!(stick.title, "KINGSTON");
        let drive_info = stick.drive.as_ref().expect("drive info");
        assert_eq!(drive_info.device.as_deref(), Some("/dev/sdz1"));
        assert_eq!(Path::new(&drive_info.mount), drive.root.as_path());
        let ids: Vec<&str> = stick.updates.iter().map(|u| u.ref_name.as_str()).collect();
        assert_eq!(ids, [app.as_str()], "{listing:#?}");
        assert_eq!(stick.updates[0].commit.to_hex(), v2);
        assert_eq!(stick.updates[0].sources.len(), 2, "{:#?}", stick.updates[0]);
        assert!(listing.group(INTERNET_KEY).is_none());

        // The server has a newer one: it moves to "Internet"; the drive has nothing newer.
        let v3 = fixture
            .publish_app(&AppSpec::new("v3"))
            .expect("publish v3");
        let listing = load_for(&host, run.path(), options(true));
        let internet = listing.group(INTERNET_KEY).expect("an Internet group");
        assert_eq!(internet.title, "Internet");
        assert_eq!(internet.kind, SourceKind::Upstream);
        assert!(internet.drive.is_none());
        assert_eq!(internet.updates.len(), 1, "{listing:#?}");
        assert_eq!(internet.updates[0].ref_name, app);
        assert_eq!(internet.updates[0].commit.to_hex(), v3);
        let stick = listing.drive_group("stick-1").expect("the drive's group");
        assert!(stick.updates.is_empty(), "{listing:#?}");
        assert_eq!(listing.update_count(), 1);

        // Offline, the drive's v2 is what there is.
        let offline = options(false);
        let listing = load_for(&host, run.path(), offline);
        assert!(listing.group(INTERNET_KEY).is_none(), "{listing:#?}");
        let stick = listing.drive_group("stick-1").expect("the drive's group");
        assert_eq!(stick.updates.len(), 1, "{listing:#?}");
        assert_eq!(stick.updates[0].commit.to_hex(), v2);
    }

    #[test]
    fn problems_go_to_the_source_they_were_met_on() {
        let server = SourceInfo::new(SourceKind::Upstream, "https://dl.example.org/repo", None);
        let peer = SourceInfo::new(
            SourceKind::Lan,
            "http://192.0.2.7:8080/",
            Some("classroom-1".to_owned()),
        );
        let on = |kind, origin: &SourceInfo| {
            Problem::on_source(kind, origin, None, format!("{} said no", origin.name()))
        };
        let installation = Problem::about(
            ProblemKind::Unreadable,
            "/var/lib/flatpak",
            None,
            "cannot read it".to_owned(),
        );
        let offline = UpdateList {
            updates: Vec::new(),
            problems: vec![
                on(ProblemKind::Unavailable, &server),
                on(ProblemKind::Unavailable, &peer),
                installation.clone(),
            ],
            ..UpdateList::default()
        };
        // A computer nearby busy sharing with others is no news either.
        let mut busy = offline.clone();
        busy.problems[1].kind = ProblemKind::Busy;
        let listing = group(Vec::new(), busy);
        assert!(listing.is_empty(), "{listing:#?}");
        // Nobody answered: no news, so the empty state rather than a page of problems.
        let listing = group(Vec::new(), offline.clone());
        assert!(listing.is_empty(), "{listing:#?}");
        assert_eq!(listing.problems, std::slice::from_ref(&installation));

        // The server answered with a commit signed by a key this machine does not trust, and
        // the peer offered an older commit: each under its own group, by kind, not by name.
        let mut refused = offline;
        refused.problems[0].kind = ProblemKind::UntrustedSignature;
        refused.problems[1].kind = ProblemKind::Downgrade;
        let listing = group(Vec::new(), refused);
        assert_eq!(listing.groups.len(), 2, "{listing:#?}");
        let internet = listing.group(INTERNET_KEY).expect("an Internet group");
        assert_eq!(internet.problems.len(), 1);
        assert_eq!(internet.problems[0].origin.as_deref(), Some(&server));
        let nearby = listing.group(NEARBY_KEY).expect("a nearby group");
        assert_eq!(nearby.problems[0].origin.as_deref(), Some(&peer));
        assert!(listing.only_problems());
        assert_eq!(listing.problems, [installation]);

        // A drive's problem goes to its record's group by ID, wherever its repository lies;
        // one of a drive the hook never recorded is the listing's own.
        let record: DriveRecord = serde_json::from_str(KINGSTON).expect("record");
        let elsewhere = SourceInfo {
            drive: Some(record.id.clone()),
            ..SourceInfo::new(
                SourceKind::Drive,
                "/somewhere/else",
                Some("KINGSTON".into()),
            )
        };
        let unrecorded = SourceInfo::new(SourceKind::Drive, "/media/user/KINGSTON", None);
        let list = UpdateList {
            updates: Vec::new(),
            problems: vec![
                on(ProblemKind::Corrupt, &elsewhere),
                on(ProblemKind::Corrupt, &unrecorded),
            ],
            ..UpdateList::default()
        };
        let listing = group(vec![record], list);
        let kingston = listing.drive_group("kingston-1234").expect("the drive");
        assert_eq!(kingston.problems.len(), 1, "{listing:#?}");
        assert_eq!(kingston.problems[0].origin.as_deref(), Some(&elsewhere));
        assert_eq!(listing.problems.len(), 1);
    }

    #[test]
    fn finds_an_update_and_its_sources() {
        let record: DriveRecord = serde_json::from_str(KINGSTON).expect("record");
        let listing = from_records(vec![record]);
        let id = "flatpak:user:app/org.gnome.TextEditor/x86_64/stable";
        let (update, groups) = listing.find_update(id).expect("found");
        assert_eq!(update.ref_name, "app/org.gnome.TextEditor/x86_64/stable");
        assert_eq!(groups.len(), 1);
        assert_eq!(
            groups[0].drive.as_ref().map(|d| d.mount.as_str()),
            Some("/media/user/KINGSTON")
        );
    }
}
