//! What the hook does for each command: the steps between udev, the mount table, validation,
//! the records and the kiosk install.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use ferry_schema::{DriveInstall, DriveInstallState, DriveRecord};

use crate::device::{self, BlockDevice};
use crate::kiosk;
use crate::mountinfo::{self, MountWatcher};
use crate::reboot;
use crate::record::{drive_id, RecordStore};
use crate::selfmount::{self, Mounter};
use crate::sideload;
use crate::validate::validate;
use ferry_engine::policy::{MountMode, OnInsert, OnNearby, Policy};

pub use ferry_engine::paths::{Paths, ENV_CONFIG, ENV_RUN_DIR, ENV_SIDELOAD_DIR};

/// `1` accepts fixed disks and loop devices as if they were removable, whatever the policy.
pub const ENV_ACCEPT_FIXED: &str = "FERRY_ACCEPT_FIXED_DRIVES";

/// The state of the last install from computers nearby, in the runtime dir.
pub const NEARBY_STATE_FILE: &str = "nearby.json";

/// Writes `install` as JSON to `path`, mode 0644, through a temporary file so readers in the
/// session never see half of it.
fn write_install_state(path: &Path, install: &DriveInstall) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path.parent().context("the state file has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let json = serde_json::to_vec_pretty(install)?;
    let tmp = dir.join(format!(".nearby.json.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(&json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(error) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(error).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Everything a command needs.
#[derive(Debug, Clone)]
pub struct Hook {
    pub paths: Paths,
    pub policy: Policy,
    /// Running as a systemd unit: mount through systemd and start the kiosk install as
    /// `ferry-install@<device>.service`.
    pub systemd: bool,
    pub accept_fixed: bool,
}

impl Hook {
    /// Reads the policy (logging a bad file and using the defaults) and the environment.
    pub fn from_env(systemd: bool) -> Self {
        let paths = Paths::from_env();
        let (policy, error) = Policy::read_or_default(&paths.config);
        if let Some(error) = error {
            tracing::error!(
                "{}; using the default policy (on-insert = notify) until the file is fixed",
                ferry_engine::causes::Causes(&error)
            );
        }
        let accept_fixed = std::env::var(ENV_ACCEPT_FIXED).is_ok_and(|v| v == "1");
        Self {
            paths,
            policy,
            systemd,
            accept_fixed,
        }
    }

    fn store(&self) -> RecordStore {
        RecordStore::new(self.paths.drives_dir())
    }

    fn mounter(&self) -> Mounter {
        if self.systemd {
            Mounter::Systemd
        } else {
            Mounter::Direct
        }
    }

    /// `ferry-hook --device /dev/NAME`.
    pub fn insert_device(&self, devnode: &Path) -> Result<()> {
        if self.policy.on_insert == OnInsert::Ignore {
            tracing::info!(
                "policy says on-insert = ignore; not looking at {}",
                devnode.display()
            );
            return Ok(());
        }
        self.clean_stale();
        let device = device::probe(devnode)?;
        tracing::debug!("{device:?}");
        if !device.removable && self.policy.removable_only && !self.accept_fixed {
            tracing::debug!(
                "{} is not removable media; skipping it (removable-only = false, or {ENV_ACCEPT_FIXED}=1, accepts it)",
                devnode.display()
            );
            return Ok(());
        }
        let deadline = Instant::now() + self.policy.mount_timeout;
        let Some(mount) = self.wait_for_mount(&device, deadline)? else {
            tracing::info!(
                "{} was not mounted within {} s; nothing to do until it is",
                devnode.display(),
                self.policy.mount_timeout.as_secs()
            );
            return Ok(());
        };
        tracing::info!("{} is mounted at {}", devnode.display(), mount.display());
        let id = self.record_id(device.uuid.as_deref(), Some(devnode), &mount);
        let fs_type = device.fs_type.clone().or_else(|| {
            mountinfo::read()
                .ok()
                .and_then(|t| mountinfo::entry_at(&t, &mount).map(|e| e.fs_type.clone()))
        });
        let record = DriveRecord {
            label: device.label.clone(),
            device: Some(devnode.display().to_string()),
            fs_type,
            uuid: device.uuid.clone(),
            ..DriveRecord::new(id, mount.display().to_string())
        };
        let record = self.validate_and_record(record)?;
        self.after_record(record, Some(&device))
    }

    /// Waits for `device` to appear in the mount table, mounting it first with `mount = self`.
    fn wait_for_mount(&self, device: &BlockDevice, deadline: Instant) -> Result<Option<PathBuf>> {
        let devnum = (device.major, device.minor);
        let mut watcher = MountWatcher::open().context("cannot read the mount table")?;
        let current = watcher.table().context("cannot read the mount table")?;
        if let Some(mount) = mountinfo::mounts_of_device(
            &current,
            devnum,
            &device.devnode,
            device.fs_type.as_deref(),
        )
        .into_iter()
        .next()
        {
            return Ok(Some(mount));
        }
        if self.policy.mount == MountMode::SelfMount {
            // Named by the device, not the UUID: a drive with a copied UUID must not be
            // mounted over another's.
            let id = drive_id(None, Some(&device.devnode), Path::new(""));
            let target = self.paths.mount_dir().join(&id);
            tracing::info!(
                "mounting {} read-only on {}",
                device.devnode.display(),
                target.display()
            );
            selfmount::mount(
                self.mounter(),
                &device.devnode,
                &target,
                device.fs_type.as_deref(),
            )?;
        }
        tracing::info!(
            "waiting up to {} s for {} to be mounted",
            deadline.saturating_duration_since(Instant::now()).as_secs(),
            device.devnode.display()
        );
        let found = watcher
            .wait_until(deadline, |table| {
                mountinfo::mounts_of_device(
                    table,
                    devnum,
                    &device.devnode,
                    device.fs_type.as_deref(),
                )
                .into_iter()
                .next()
            })
            .context("cannot watch the mount table")?;
        Ok(found)
    }

    /// `ferry-hook --mount PATH`.
    pub fn insert_mount(&self, path: &Path) -> Result<()> {
        if self.policy.on_insert == OnInsert::Ignore {
            tracing::info!(
                "policy says on-insert = ignore; not looking at {}",
                path.display()
            );
            return Ok(());
        }
        self.clean_stale();
        let mount = std::fs::canonicalize(path)
            .with_context(|| format!("cannot find {}", path.display()))?;
        if !mount.is_dir() {
            bail!(
                "{} is not a directory; pass the drive's mount point",
                mount.display()
            );
        }
        let table = mountinfo::read().context("cannot read the mount table")?;
        let entry = mountinfo::entry_at(&table, &mount).cloned();
        // A real mount of a block device: udev knows its UUID and label.
        // The source string is the mounter's word; the device must also be what is mounted.
        let device = entry
            .as_ref()
            .filter(|e| e.source.starts_with("/dev/"))
            .and_then(|e| device::probe(Path::new(&e.source)).ok())
            .filter(|d| {
                mountinfo::mounts_of_device(
                    &table,
                    (d.major, d.minor),
                    &d.devnode,
                    d.fs_type.as_deref(),
                )
                .contains(&mount)
            });
        let devnode = device.as_ref().map(|d| d.devnode.clone());
        let uuid = device.as_ref().and_then(|d| d.uuid.clone());
        let id = self.record_id(uuid.as_deref(), devnode.as_deref(), &mount);
        let record = DriveRecord {
            label: device.as_ref().and_then(|d| d.label.clone()),
            device: devnode.map(|d| d.display().to_string()),
            fs_type: device
                .as_ref()
                .and_then(|d| d.fs_type.clone())
                .or_else(|| entry.map(|e| e.fs_type)),
            uuid,
            ..DriveRecord::new(id, mount.display().to_string())
        };
        let record = self.validate_and_record(record)?;
        self.after_record(record, device.as_ref())
    }

    /// The record id of a drive: by its UUID, unless another device's record already has
    /// that id (a copied or forged UUID), then by its device node or mount point, so no drive
    /// can overwrite or remove another's record.
    fn record_id(&self, uuid: Option<&str>, devnode: Option<&Path>, mount: &Path) -> String {
        let id = drive_id(uuid, devnode, mount);
        let Some(existing) = self.store().read(&id) else {
            return id;
        };
        let same_device = match devnode {
            Some(node) => existing.device.as_deref() == node.to_str(),
            None => existing.device.is_none() && Path::new(&existing.mount) == mount,
        };
        if same_device {
            return id;
        }
        tracing::warn!(
            "{} claims the filesystem UUID of drive {} ({}); recording it separately",
            devnode.unwrap_or(mount).display(),
            existing.id,
            existing.display_name()
        );
        drive_id(None, devnode, mount)
    }

    /// Validates the drive within the policy's time limit, writes the record and the
    /// sideload links.
    fn validate_and_record(&self, mut record: DriveRecord) -> Result<DriveRecord> {
        let mount = PathBuf::from(&record.mount);
        let watchdog = Watchdog::arm(
            self.policy.validation_timeout,
            format!("validating {}", mount.display()),
        );
        let started = Instant::now();
        let validation = validate(&mount, record.label.as_deref());
        drop(watchdog);
        tracing::info!(
            "{}: {} repo(s), {} update(s), {} problem(s) in {} ms",
            mount.display(),
            validation.repos.len(),
            validation.updates.len(),
            validation.problems.len(),
            started.elapsed().as_millis()
        );
        for problem in &validation.problems {
            tracing::warn!("{}: {}", problem.source, problem.reason);
        }
        record.repos = validation.repos;
        record.updates = validation.updates;
        record.problems = validation.problems;
        record.mark_sources();
        // The record first: whatever happens next, removing the drive finds and undoes it.
        record.sideload_links = sideload::link_names(&record.id, validation.sideload.len());
        let store = self.store();
        let path = store.write(&record)?;
        tracing::info!("wrote {}", path.display());
        if let Err(error) =
            sideload::link(&self.paths.sideload_dir, &record.id, &validation.sideload)
        {
            tracing::warn!("{error}; Flatpak will not see this drive by itself");
            let _ = sideload::unlink_all(&self.paths.sideload_dir, &record.id);
            record.sideload_links.clear();
            store.write(&record)?;
        }
        Ok(record)
    }

    fn after_record(&self, record: DriveRecord, device: Option<&BlockDevice>) -> Result<()> {
        if self.policy.on_insert != OnInsert::Install {
            return Ok(());
        }
        if self.systemd {
            if let Some(name) = device.and_then(|d| d.devnode.file_name()) {
                let unit = format!("ferry-install@{}.service", name.to_string_lossy());
                tracing::info!("starting {unit} for the kiosk install");
                let status = Command::new("systemctl")
                    .args(["start", "--no-block"])
                    .arg(&unit)
                    .status()
                    .context("cannot run systemctl")?;
                if !status.success() {
                    bail!("systemctl start {unit} failed ({status})");
                }
                return Ok(());
            }
        }
        self.kiosk_install(record)
    }

    /// `ferry-hook --install --device /dev/NAME`: the kiosk install of a recorded drive.
    pub fn install_device(&self, devnode: &Path) -> Result<()> {
        let devnode_text = devnode.display().to_string();
        let record = self
            .store()
            .list()?
            .into_iter()
            .find(|r| r.device.as_deref() == Some(devnode_text.as_str()))
            .with_context(|| {
                format!(
                    "no drive record for {devnode_text} in {}; the drive must be validated first",
                    self.paths.drives_dir().display()
                )
            })?;
        self.kiosk_install(record)
    }

    fn kiosk_install(&self, mut record: DriveRecord) -> Result<()> {
        let store = self.store();
        let mount = PathBuf::from(&record.mount);
        let cancel = kiosk::cancel_on_signals().context("cannot watch for SIGTERM")?;
        let mut write_error = None;
        let scope = kiosk::InstallScope::Drive {
            mount: &mount,
            sources: self.policy.kiosk_sources,
            run_dir: &self.paths.run_dir,
        };
        let install = kiosk::run_install(scope, &cancel, |install| {
            record.install = Some(install.clone());
            if let Err(error) = store.write(&record) {
                tracing::error!("{error}");
                write_error = Some(error);
            }
        });
        if let Some(error) = write_error {
            return Err(error.into());
        }
        self.after_install(
            &install,
            &format!("the kiosk install from {}", mount.display()),
        )
    }

    /// `ferry-hook --nearby` (`ferry-nearby.timer`): installs what computers nearby offer when
    /// the policy says `on-nearby = install`. Its state is kept in `nearby.json` in the
    /// runtime dir, as a drive record's `install` field is.
    pub fn nearby(&self) -> Result<()> {
        match self.policy.on_nearby {
            OnNearby::Ignore => {
                tracing::info!("policy says on-nearby = ignore; not looking for computers nearby");
                return Ok(());
            }
            OnNearby::Notify => {
                tracing::info!(
                    "policy says on-nearby = notify; the desktop app offers updates from \
                     computers nearby"
                );
                return Ok(());
            }
            OnNearby::Install => {}
        }
        let cancel = kiosk::cancel_on_signals().context("cannot watch for SIGTERM")?;
        let state_path = self.paths.run_dir.join(NEARBY_STATE_FILE);
        let mut write_error = None;
        let install = kiosk::run_install(kiosk::InstallScope::Nearby, &cancel, |install| {
            if let Err(error) = write_install_state(&state_path, install) {
                tracing::error!("{error:#}");
                write_error = Some(error);
            }
        });
        if let Some(error) = write_error {
            return Err(error);
        }
        self.after_install(&install, "the install from computers nearby")
    }

    /// Logs how an unattended install ended and restarts as the policy says.
    fn after_install(&self, install: &DriveInstall, what: &str) -> Result<()> {
        let succeeded = install.state == DriveInstallState::Succeeded;
        if succeeded {
            tracing::info!("{what} succeeded");
        } else {
            tracing::error!("{what} failed");
        }
        // An OS deployment that went in needs its restart even when an app failed.
        let decision = reboot::decide(
            self.policy.reboot_after_os_update,
            reboot::os_update_needs_restart(&install.results),
            reboot::probe_activity,
        );
        match decision {
            reboot::Decision::Restart => {
                tracing::info!("an OS update is deployed: restarting the machine");
                reboot::restart()?;
            }
            reboot::Decision::Stay(why) => tracing::info!("not restarting: {why}"),
        }
        if !succeeded {
            bail!("{what} failed");
        }
        Ok(())
    }

    /// `ferry-hook --remove --device /dev/NAME`.
    pub fn remove_device(&self, devnode: &Path) -> Result<()> {
        let devnode = devnode.display().to_string();
        self.remove_where(|r| r.device.as_deref() == Some(devnode.as_str()), &devnode)
    }

    /// `ferry-hook --remove --mount PATH`.
    pub fn remove_mount(&self, path: &Path) -> Result<()> {
        // The mount point may be gone already; compare both spellings.
        let given = path.display().to_string();
        let canonical = std::fs::canonicalize(path)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| given.clone());
        self.remove_where(|r| r.mount == given || r.mount == canonical, &given)
    }

    fn remove_where(&self, matches: impl Fn(&DriveRecord) -> bool, what: &str) -> Result<()> {
        let records: Vec<DriveRecord> = self.store().list()?.into_iter().filter(matches).collect();
        if records.is_empty() {
            tracing::info!("no drive record for {what}");
        }
        for record in records {
            self.forget(&record)?;
        }
        self.clean_stale();
        Ok(())
    }

    /// Deletes a record, its sideload links, and our own mount of it.
    fn forget(&self, record: &DriveRecord) -> Result<()> {
        sideload::unlink_all(&self.paths.sideload_dir, &record.id)?;
        self.store().remove(&record.id)?;
        let mount = Path::new(&record.mount);
        if mount.parent() == Some(self.paths.mount_dir().as_path()) {
            if let Err(error) = selfmount::unmount(self.mounter(), mount) {
                tracing::warn!("{error}");
            }
        }
        tracing::info!("forgot drive {} ({})", record.id, record.display_name());
        Ok(())
    }

    /// Forgets records whose drive is gone: the mount point no longer exists, or a drive that
    /// came from a device is no longer mounted there.
    pub fn clean_stale(&self) {
        let records = match self.store().list() {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!("{error}");
                return;
            }
        };
        if records.is_empty() {
            return;
        }
        let table = match mountinfo::read() {
            Ok(table) => table,
            Err(error) => {
                tracing::warn!("cannot read the mount table: {error}");
                return;
            }
        };
        for record in records {
            let mount = Path::new(&record.mount);
            let exists = std::fs::symlink_metadata(mount).is_ok();
            let unmounted = record.device.is_some() && !mountinfo::is_mount_point(&table, mount);
            if !exists || unmounted {
                tracing::info!("{} is gone; removing its stale record", record.mount);
                if let Err(error) = self.forget(&record) {
                    tracing::warn!("{error:#}");
                }
            }
        }
    }
}

/// Ends the process if an operation overruns its time limit. A drive that makes the scan hang
/// (a stuck device, a filesystem crafted to be slow) must not keep a root process around.
struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
}

impl Watchdog {
    fn arm(limit: Duration, what: String) -> Self {
        let (disarm, disarmed) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                tracing::error!(
                    "{what} took longer than {} s (validation-timeout-seconds); giving up",
                    limit.as_secs()
                );
                std::process::exit(3);
            }
        });
        Self {
            disarm: Some(disarm),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(disarm) = self.disarm.take() {
            let _ = disarm.send(());
        }
    }
}
