//! What to install and the exact command that installs it.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use ferry_schema::{SourceKind, TargetKind, Update};

use crate::i18n::tr;
use crate::listing::Listing;

/// A set of updates to install together, and the drives they come from.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallRequest {
    pub updates: Vec<Update>,
    /// Drive mount points, for `--from`.
    pub sources: Vec<String>,
}

impl InstallRequest {
    /// The updates with these ids, from the groups currently listed. Unknown ids are left out.
    pub fn for_ids(listing: &Listing, ids: &[String]) -> Self {
        let mut updates: Vec<Update> = Vec::new();
        let mut sources = BTreeSet::new();
        for id in ids {
            let Some((update, groups)) = listing.find_update(id) else {
                continue;
            };
            if updates.iter().any(|known| known.id == update.id) {
                continue;
            }
            updates.push(update.clone());
            // Every recorded drive holding the commit, not only the one it is listed under.
            let holders = update
                .sources
                .iter()
                .filter_map(|source| listing.drive_group(source.drive.as_deref()?));
            for group in groups.into_iter().chain(holders) {
                if let Some(drive) = &group.drive {
                    sources.insert(drive.mount.clone());
                }
            }
        }
        Self {
            updates,
            sources: sources.into_iter().collect(),
        }
    }

    /// A new app the listing offers (by its update id): `ferryctl` installs the runtimes it
    /// needs with it, so only the app is named.
    pub fn for_new_app(listing: &Listing, id: &str) -> Self {
        let Some(offered) = listing
            .available
            .iter()
            .find(|offered| offered.app.id == id)
        else {
            return Self {
                updates: Vec::new(),
                sources: Vec::new(),
            };
        };
        let sources: BTreeSet<String> = offered
            .app
            .sources
            .iter()
            .filter(|source| source.kind == SourceKind::Drive)
            .filter_map(|source| {
                listing
                    .groups
                    .iter()
                    .filter_map(|group| group.drive.as_ref())
                    .find(|drive| Path::new(&source.location).starts_with(&drive.mount))
                    .map(|drive| drive.mount.clone())
            })
            .collect();
        Self {
            updates: vec![offered.app.clone()],
            sources: sources.into_iter().collect(),
        }
    }

    /// Everything one drive offers.
    pub fn for_drive(listing: &Listing, drive_id: &str) -> Self {
        let ids: Vec<String> = listing
            .drive_group(drive_id)
            .filter(|group| group.installable())
            .map(|group| group.updates.iter().map(|u| u.id.clone()).collect())
            .unwrap_or_default();
        Self::for_ids(listing, &ids)
    }

    /// Everything listed that can be installed.
    pub fn for_all(listing: &Listing) -> Self {
        let ids: Vec<String> = listing
            .groups
            .iter()
            .filter(|group| group.installable())
            .flat_map(|group| group.updates.iter().map(|u| u.id.clone()))
            .collect();
        Self::for_ids(listing, &ids)
    }

    /// Leaves out what `done` says needs nothing more (installed by an earlier run).
    pub fn without(mut self, done: impl Fn(&str) -> bool) -> Self {
        self.updates.retain(|update| !done(&update.id));
        self
    }

    pub fn is_empty(&self) -> bool {
        self.updates.is_empty()
    }

    /// `ferryctl install` arguments, after the program name.
    pub fn ferryctl_args(&self) -> Vec<OsString> {
        // Cancel closes the child's stdin: a child running as root cannot be signalled.
        let mut args: Vec<OsString> = ["install", "--json", "--yes", "--cancel-on-stdin-eof"]
            .map(OsString::from)
            .to_vec();
        let online = self.updates.iter().any(|update| {
            update
                .sources
                .iter()
                .any(|source| source.kind != SourceKind::Drive)
        });
        if !online {
            args.push("--offline".into());
        }
        let mut sysroots = BTreeSet::new();
        let mut installations = BTreeSet::new();
        for update in &self.updates {
            match (update.target, update.installation.as_deref()) {
                // Named even when it is the booted "/": any target option narrows the targets.
                (TargetKind::Os, sysroot) => {
                    sysroots.insert(sysroot.unwrap_or("/").to_owned());
                }
                (TargetKind::Flatpak, Some(installation)) => {
                    installations.insert(installation.to_owned());
                }
                _ => {}
            }
        }
        for sysroot in sysroots {
            args.extend(["--sysroot".into(), sysroot.into()]);
        }
        for installation in installations {
            args.extend(["--installation".into(), installation.into()]);
        }
        for source in &self.sources {
            args.extend(["--from".into(), source.into()]);
        }
        let mut refs = BTreeSet::new();
        for update in &self.updates {
            if refs.insert(update.ref_name.as_str()) {
                args.push(update.ref_name.clone().into());
            }
        }
        args
    }

    /// The part `ferryctl` accepts when run as root for a user (the running system's OS and
    /// the system Flatpak installations; see `ferry_engine::privilege`), and the rest.
    pub fn split_for_root(self) -> (Self, Self) {
        let (as_root, own): (Vec<Update>, Vec<Update>) =
            self.updates.into_iter().partition(root_accepts);
        let as_root = Self {
            updates: as_root,
            sources: self.sources.clone(),
        };
        let own = Self {
            updates: own,
            sources: self.sources,
        };
        (as_root, own)
    }

    /// Whether any target of this request is out of reach of the current user.
    pub fn needs_root(&self) -> bool {
        if rustix::process::geteuid().is_root() {
            return false;
        }
        self.updates.iter().any(update_needs_root)
    }

    /// The command to run: `ferryctl` itself, or `pkexec` with its absolute path so polkit
    /// applies the `io.github.ferry.Ferry.install` action.
    pub fn launch(&self, ferryctl: &Path, elevate: bool) -> Launch {
        let args = self.ferryctl_args();
        if elevate {
            let mut pkexec_args: Vec<OsString> = vec![absolute(ferryctl).into_os_string()];
            pkexec_args.extend(args);
            Launch {
                program: PathBuf::from("pkexec"),
                args: pkexec_args,
                elevated: true,
            }
        } else {
            Launch {
                program: ferryctl.to_path_buf(),
                args,
                elevated: false,
            }
        }
    }
}

/// A program and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub elevated: bool,
}

impl Launch {
    /// `ferryctl ARGS`, or through pkexec (with the absolute path its policy names) when
    /// `elevate`.
    pub fn ferryctl(ferryctl: &Path, args: &[&str], elevate: bool) -> Launch {
        let args = args.iter().map(OsString::from);
        if elevate {
            Launch {
                program: PathBuf::from("pkexec"),
                args: std::iter::once(absolute(ferryctl).into_os_string())
                    .chain(args)
                    .collect(),
                elevated: true,
            }
        } else {
            Launch {
                program: ferryctl.to_path_buf(),
                args: args.collect(),
                elevated: false,
            }
        }
    }

    /// Runs to the end; its standard output (at most `max_output` bytes), or a sentence
    /// saying why it failed: pkexec's refusals in words, else the child's last stderr line.
    pub fn run_to_end(&self, max_output: usize) -> Result<String, String> {
        let output = std::process::Command::new(&self.program)
            .args(&self.args)
            .output()
            .map_err(|error| format!("{}: {error}", self.program.display()))?;
        if output.status.success() {
            if output.stdout.len() > max_output {
                return Err(tr("ferryctl said more than can be shown."));
            }
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        if self.elevated {
            match output.status.code() {
                Some(126) => return Err(tr("Authentication was cancelled; nothing was changed.")),
                Some(127) => {
                    return Err(tr(
                        "You are not allowed to change this. Ask an administrator.",
                    ))
                }
                _ => {}
            }
        }
        let said = String::from_utf8_lossy(&output.stderr);
        Err(said
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(|line| line.strip_prefix("error: ").unwrap_or(line).to_owned())
            .unwrap_or_else(|| tr("ferryctl failed without saying why.")))
    }
}

pub(crate) fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::env::current_dir()
        .map(|dir| dir.join(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Whether a privileged `ferryctl` installs into this update's target: the sysroot `/`, or a
/// system Flatpak installation named by `system` or its ID, never `user` or a directory.
fn root_accepts(update: &Update) -> bool {
    match (update.target, update.installation.as_deref()) {
        (TargetKind::Os, sysroot) => sysroot.is_none_or(|sysroot| sysroot == "/"),
        (TargetKind::Flatpak, None) => true,
        (TargetKind::Flatpak, Some(name)) => name != "user" && !name.contains('/'),
        (TargetKind::Repo, _) => false,
    }
}

fn update_needs_root(update: &Update) -> bool {
    let target_dir = match (update.target, update.installation.as_deref()) {
        (TargetKind::Flatpak, Some("user")) => return false,
        // `system`, an installation ID of installations.d, or a directory: found as the
        // engine's target model finds them; one it does not know is taken to need root.
        (TargetKind::Flatpak, label) => match flatpak_installation_dir(label) {
            Some(dir) => dir,
            None => return true,
        },
        (TargetKind::Os, sysroot) => {
            let sysroot = PathBuf::from(sysroot.unwrap_or("/"));
            let repo = sysroot.join("ostree/repo");
            if repo.exists() {
                repo
            } else {
                sysroot
            }
        }
        (_, Some(path)) => PathBuf::from(path),
        (TargetKind::Repo, None) => return false,
    };
    !writable(&target_dir)
}

/// The directory of the Flatpak installation an update names (`None`: the default system
/// one), as the engine resolves `user`, `system`, IDs and directories.
fn flatpak_installation_dir(label: Option<&str>) -> Option<PathBuf> {
    use ferry_engine::target::flatpak::{system_installations, user_installation};
    let paths = ferry_engine::target::HostPaths::from_env().flatpak;
    let label = label.unwrap_or("system");
    let (mut installations, _) = system_installations(&paths);
    installations.push(user_installation(&paths));
    installations
        .into_iter()
        .find(|installation| installation.label() == label)
        .map(|installation| installation.path)
        .or_else(|| Path::new(label).is_absolute().then(|| PathBuf::from(label)))
}

fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing;
    use ferry_schema::DriveRecord;

    fn kingston() -> Listing {
        let record: DriveRecord =
            serde_json::from_str(include_str!("../../tests/data/drives/kingston.json"))
                .expect("record");
        listing::from_records(vec![record])
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_drive_installs_every_ref_from_its_mount() {
        let request = InstallRequest::for_drive(&kingston(), "kingston-1234");
        assert_eq!(request.updates.len(), 3);
        // The UI test expects the same arguments when the notification's Install is used.
        let expected = include_str!("../../tests/data/drives/kingston-install-all.args");
        assert_eq!(
            strings(&request.ferryctl_args()),
            expected.lines().collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_recorded_drive_holding_the_commit_is_a_source() {
        let kingston: DriveRecord =
            serde_json::from_str(include_str!("../../tests/data/drives/kingston.json"))
                .expect("record");
        let sandisk = DriveRecord {
            label: Some("SANDISK".to_owned()),
            ..DriveRecord::new("sandisk-1", "/media/user/SANDISK")
        };
        let mut update = kingston.updates[0].clone();
        let mut on_sandisk = sandisk.source_info();
        on_sandisk.location = "/media/user/SANDISK/.ostree/repo".to_owned();
        update.sources[0].drive = Some(kingston.id.clone());
        update.sources.push(on_sandisk);
        let id = update.id.clone();
        let list = ferry_schema::UpdateList {
            updates: vec![update],
            problems: Vec::new(),
            ..ferry_schema::UpdateList::default()
        };
        let listing = listing::group(vec![kingston, sandisk], list);
        assert_eq!(
            listing.find_update(&id).map(|(_, groups)| groups.len()),
            Some(1),
            "listed once, under its preferred drive"
        );
        let request = InstallRequest::for_ids(&listing, &[id]);
        assert_eq!(
            request.sources,
            ["/media/user/KINGSTON", "/media/user/SANDISK"]
        );
    }

    #[test]
    fn one_row_installs_one_ref() {
        let id = "flatpak:user:app/org.example.Tool/x86_64/stable".to_owned();
        let request = InstallRequest::for_ids(&kingston(), &[id, "no-such-update".into()]);
        assert_eq!(request.updates.len(), 1);
        let args = strings(&request.ferryctl_args());
        assert_eq!(
            args.last().map(String::as_str),
            Some("app/org.example.Tool/x86_64/stable")
        );
        assert!(!args.iter().any(|arg| arg == "exampleos/x86_64/stable"));
    }

    #[test]
    fn a_sysroot_other_than_the_booted_one_is_passed() {
        let mut listing = kingston();
        listing.groups[0].updates[0].installation = Some("/tmp/demo/sysroot".into());
        let request = InstallRequest::for_all(&listing);
        let args = strings(&request.ferryctl_args());
        let at = args
            .iter()
            .position(|arg| arg == "--sysroot")
            .expect("--sysroot");
        assert_eq!(args[at + 1], "/tmp/demo/sysroot");
    }

    #[test]
    fn elevation_goes_through_pkexec_with_an_absolute_path() {
        let request = InstallRequest::for_all(&kingston());
        let launch = request.launch(Path::new("/usr/bin/ferryctl"), true);
        assert_eq!(launch.program, PathBuf::from("pkexec"));
        assert_eq!(launch.args[0], OsString::from("/usr/bin/ferryctl"));
        assert_eq!(launch.args[1], OsString::from("install"));
        assert!(launch.elevated);
        let direct = request.launch(Path::new("/usr/bin/ferryctl"), false);
        assert_eq!(direct.program, PathBuf::from("/usr/bin/ferryctl"));
        assert_eq!(direct.args[0], OsString::from("install"));
    }

    #[test]
    fn root_is_given_only_the_systems_own_targets() {
        let mut listing = kingston();
        let other_sysroot = Update {
            id: "os:/tmp/demo/sysroot:exampleos/x86_64/stable".into(),
            installation: Some("/tmp/demo/sysroot".into()),
            ..listing.groups[0].updates[0].clone()
        };
        listing.groups[0].updates.push(other_sysroot);
        let (as_root, own) = InstallRequest::for_all(&listing).split_for_root();
        let args = strings(&as_root.ferryctl_args());
        assert!(
            args.windows(2).any(|pair| pair == ["--sysroot", "/"]),
            "{args:?}"
        );
        assert!(
            !args
                .iter()
                .any(|arg| arg == "user" || arg.starts_with("/tmp")),
            "{args:?}"
        );
        assert!(
            args.iter().any(|arg| arg == "exampleos/x86_64/stable"),
            "{args:?}"
        );
        let own_args = strings(&own.ferryctl_args());
        assert!(
            own_args
                .windows(2)
                .any(|pair| pair == ["--installation", "user"]),
            "{own_args:?}"
        );
        assert!(
            own_args
                .windows(2)
                .any(|pair| pair == ["--sysroot", "/tmp/demo/sysroot"]),
            "{own_args:?}"
        );
        assert_eq!(
            as_root.updates.len() + own.updates.len(),
            listing.groups[0].updates.len()
        );
    }

    #[test]
    fn an_installation_id_is_found_through_installations_d_not_taken_as_a_path() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("config");
        let extra = dir.path().join("extra-installation");
        std::fs::create_dir_all(config.join("installations.d")).expect("mkdir");
        std::fs::create_dir_all(&extra).expect("mkdir");
        std::fs::write(
            config.join("installations.d/extra.conf"),
            format!("[Installation \"extra\"]\nPath={}\n", extra.display()),
        )
        .expect("write");
        // Only this process reads it; every test runs in its own process.
        std::env::set_var("FLATPAK_CONFIG_DIR", &config);
        let app = |installation: &str| Update {
            target: TargetKind::Flatpak,
            installation: Some(installation.into()),
            ..kingston().groups[0].updates[0].clone()
        };
        assert_eq!(
            flatpak_installation_dir(Some("extra")),
            Some(extra.clone()),
            "the ID names the configured directory"
        );
        // A directory this test made is writable: no root needed for it.
        assert!(!update_needs_root(&app("extra")));
        // An ID nobody configured is not a relative path here: it is taken to need root.
        assert_eq!(flatpak_installation_dir(Some("nowhere")), None);
        assert!(update_needs_root(&app("nowhere")));
    }

    #[test]
    fn what_an_earlier_run_installed_is_left_out() {
        let request = InstallRequest::for_all(&kingston()).without(|id| id.starts_with("os:"));
        let args = strings(&request.ferryctl_args());
        assert!(
            !args.iter().any(|arg| arg == "exampleos/x86_64/stable"),
            "{args:?}"
        );
        assert!(!args.iter().any(|arg| arg == "--sysroot"), "{args:?}");
        assert_eq!(request.updates.len(), 2);
    }

    #[test]
    fn per_user_installations_never_need_root() {
        let mut listing = kingston();
        listing.groups[0]
            .updates
            .retain(|u| u.installation.as_deref() == Some("user"));
        assert!(!InstallRequest::for_all(&listing).needs_root());
    }

    #[test]
    fn a_writable_sysroot_does_not_need_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut listing = kingston();
        listing.groups[0].updates[0].installation = Some(dir.path().display().to_string());
        listing.groups[0].updates.truncate(1);
        assert!(!InstallRequest::for_all(&listing).needs_root());
    }
}
