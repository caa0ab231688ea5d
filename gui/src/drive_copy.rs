//! "Copy Updates to a Drive": the state of one copy, from choosing where to the drive being
//! safe to remove, built only from what `ferryctl prepare-drive --json` printed and how it
//! ended. No GTK here; the window renders [`CopyFlow`] with the wording below.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use ferry_engine::prepare::RemovableMount;
use ferry_schema::event::{parse_line, Event, MessageLevel, StreamError};
use ferry_schema::DrivePlan;
use ferry_schema::TargetKind;

use crate::format;
use crate::i18n::{ntrf, tr, trf};
use crate::install::Launch;
use crate::model::{ChildExit, Transfer};

/// Where the updates go: a mounted removable drive, or a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub path: PathBuf,
    /// The name people know it by: the drive's label (its mount point's name) or the folder's.
    pub label: String,
    /// The removable drive it is, for Remove Drive; None for a plain folder.
    pub removable: Option<RemovableMount>,
}

impl Destination {
    pub fn drive(mount: &RemovableMount) -> Self {
        Self {
            label: name_of(&mount.mount_point),
            path: mount.mount_point.clone(),
            removable: Some(mount.clone()),
        }
    }

    /// A folder, or a drive's mount point chosen as a folder: it is then a drive all the same.
    pub fn folder(path: &Path, removable: &[RemovableMount]) -> Self {
        match removable.iter().find(|mount| mount.mount_point == path) {
            Some(mount) => Self::drive(mount),
            None => Self {
                label: name_of(path),
                path: path.to_path_buf(),
                removable: None,
            },
        }
    }
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// One thing that can go on the drive, as the dry run planned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyItem {
    pub ref_name: String,
    pub target: TargetKind,
    /// The sysroot or installation (`user`, `system`, an ID) it is read from.
    pub source: String,
    /// Bytes it adds to the drive (what it shares with an item above counts there).
    pub bytes: u64,
    pub up_to_date: bool,
    pub selected: bool,
    /// The languages a locale extension goes with (`de`); empty: all it has.
    pub languages: Vec<String>,
}

impl CopyItem {
    pub fn is_os(&self) -> bool {
        self.target == TargetKind::Os
    }

    /// "Operating System", else the app or runtime ID.
    pub fn title(&self) -> String {
        if self.is_os() {
            return tr("Operating System");
        }
        self.ref_name
            .split('/')
            .nth(1)
            .unwrap_or(&self.ref_name)
            .to_owned()
    }

    /// Its size, or that the drive has it already.
    pub fn subtitle(&self) -> String {
        let state = if self.up_to_date {
            tr("Already on the drive")
        } else {
            format::size(self.bytes)
        };
        if self.languages.is_empty() {
            return state;
        }
        let languages = self.languages.join(", ");
        // Translators: {state} is a size or "Already on the drive"; {languages} are language
        // codes such as "de, fr".
        trf(
            "{state} · only {languages}",
            &[("state", &state), ("languages", &languages)],
        )
    }
}

/// Where the flow stands.
#[derive(Debug, Clone, PartialEq)]
pub enum CopyStage {
    /// Choosing the drive or folder.
    Choosing,
    /// The dry run is working out what to copy.
    Planning,
    /// Choosing what to copy, seeing whether it fits.
    Selecting,
    Copying,
    /// Written, synced and read back: safe to remove.
    Done,
    Cancelled,
    Failed(String),
}

/// One pass through the dialog.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyFlow {
    pub stage: CopyStage,
    pub destination: Option<Destination>,
    pub items: Vec<CopyItem>,
    pub free_bytes: Option<u64>,
    pub progress: Transfer,
    pub objects_done: u64,
    pub objects_total: u64,
    cancel_requested: bool,
    finished_ok: Option<bool>,
    error: Option<String>,
    /// Set after Remove Drive: Ok once powered off, or why not.
    pub removal: Option<Result<(), String>>,
    /// Runs of the copy still to start after the current one succeeds, last first.
    pending: Vec<Launch>,
    /// The current run ended well and the next may start.
    run_succeeded: bool,
}

impl Default for CopyFlow {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyFlow {
    pub fn new() -> Self {
        Self {
            stage: CopyStage::Choosing,
            destination: None,
            items: Vec::new(),
            free_bytes: None,
            progress: Transfer::default(),
            objects_done: 0,
            objects_total: 0,
            cancel_requested: false,
            finished_ok: None,
            error: None,
            removal: None,
            pending: Vec::new(),
            run_succeeded: false,
        }
    }

    /// A destination was chosen: plan for it.
    pub fn choose(&mut self, destination: Destination) {
        *self = Self {
            stage: CopyStage::Planning,
            destination: Some(destination),
            ..Self::new()
        };
    }

    /// `ferryctl prepare-drive` arguments for the dry run: everything, to list it all.
    pub fn plan_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = ["prepare-drive", "--json", "--dry-run"]
            .map(OsString::from)
            .to_vec();
        if let Some(destination) = &self.destination {
            args.push(destination.path.clone().into_os_string());
        }
        args
    }

    /// `ferryctl prepare-drive` arguments for the copy of what is ticked. Everything ticked
    /// is asked as everything, so the run carries what the plan showed.
    pub fn copy_args(&self) -> Vec<OsString> {
        let listed: Vec<&CopyItem> = self.listed().collect();
        if listed.iter().all(|item| item.selected) {
            return self.run_args(&[], &[]);
        }
        let selected: Vec<&CopyItem> = listed.into_iter().filter(|i| i.selected).collect();
        self.run_args(&[], &selected)
    }

    /// `prepare-drive --json --cancel-on-stdin-eof PLACES SELECTION DRIVE`.
    fn run_args(&self, places: &[OsString], selected: &[&CopyItem]) -> Vec<OsString> {
        let mut args: Vec<OsString> = ["prepare-drive", "--json", "--cancel-on-stdin-eof"]
            .map(OsString::from)
            .to_vec();
        args.extend(places.iter().cloned());
        for item in selected {
            if item.is_os() {
                args.push("--os".into());
            } else if item.ref_name.starts_with("runtime/") {
                args.extend(["--runtime".into(), item.ref_name.clone().into()]);
            } else {
                args.extend(["--app".into(), item.ref_name.clone().into()]);
            }
        }
        if let Some(destination) = &self.destination {
            args.push(destination.path.clone().into_os_string());
        }
        args
    }

    /// The runs that copy what is ticked: one as this user, or, when the OS needs root, one
    /// through pkexec (action `io.github.ferry.Ferry.prepare-drive`) for the OS and the
    /// system's apps (root reads no one's own installation), then one as this user for the
    /// apps installed only for them.
    pub fn copy_launches(&self, ferryctl: &Path, running_as_root: bool) -> Vec<Launch> {
        if !self.needs_root(running_as_root) {
            return vec![Launch {
                program: ferryctl.to_path_buf(),
                args: self.copy_args(),
                elevated: false,
            }];
        }
        let (own, system): (Vec<&CopyItem>, Vec<&CopyItem>) = self
            .listed()
            .filter(|item| item.selected)
            .partition(|item| !item.is_os() && item.source == "user");
        let mut places: Vec<OsString> = Vec::new();
        for item in &system {
            let option = if item.is_os() {
                "--sysroot"
            } else {
                "--installation"
            };
            let place = [OsString::from(option), OsString::from(&item.source)];
            if !places.chunks(2).any(|pair| pair == place) {
                places.extend(place);
            }
        }
        // pkexec matches the policy's program by its absolute path.
        let mut elevated_args = vec![crate::install::request::absolute(ferryctl).into_os_string()];
        elevated_args.extend(self.run_args(&places, &system));
        let mut launches = vec![Launch {
            program: PathBuf::from("pkexec"),
            args: elevated_args,
            elevated: true,
        }];
        if !own.is_empty() {
            launches.push(Launch {
                program: ferryctl.to_path_buf(),
                args: self.run_args(&["--installation".into(), "user".into()], &own),
                elevated: false,
            });
        }
        launches
    }

    /// Reading the OS's objects needs root: bare objects keep their modes.
    pub fn needs_root(&self, running_as_root: bool) -> bool {
        !running_as_root && self.listed().any(|item| item.selected && item.is_os())
    }

    /// What a person chooses from: the OS, apps and runtimes. Metadata refs (AppStream,
    /// `ostree-metadata`) go along with them.
    pub fn listed(&self) -> impl Iterator<Item = &CopyItem> {
        self.items.iter().filter(|item| is_listed(item))
    }

    /// Ticks or unticks the `index`th listed item.
    pub fn set_selected(&mut self, index: usize, selected: bool) {
        if let Some(item) = self
            .items
            .iter_mut()
            .filter(|item| is_listed(item))
            .nth(index)
        {
            item.selected = selected;
        }
    }

    /// Bytes of what is ticked, with the metadata that goes along.
    pub fn selected_bytes(&self) -> u64 {
        let any = self.listed().any(|item| item.selected);
        self.items
            .iter()
            .filter(|item| if is_listed(item) { item.selected } else { any })
            .fold(0u64, |sum, item| sum.saturating_add(item.bytes))
    }

    pub fn fits(&self) -> bool {
        self.free_bytes
            .is_none_or(|free| self.selected_bytes() <= free)
    }

    pub fn can_copy(&self) -> bool {
        self.stage == CopyStage::Selecting && self.listed().any(|item| item.selected) && self.fits()
    }

    /// "1.2 GB to copy, 14.9 GB free", or what does not fit.
    pub fn space_line(&self) -> String {
        let needed = format::size(self.selected_bytes());
        match self.free_bytes {
            None => trf("{needed} to copy", &[("needed", &needed)]),
            Some(free) if self.fits() => trf(
                "{needed} to copy, {free} free",
                &[("needed", &needed), ("free", &format::size(free))],
            ),
            Some(free) => trf(
                "Needs {needed}, but only {free} is free. Untick something, or use a larger drive.",
                &[("needed", &needed), ("free", &format::size(free))],
            ),
        }
    }

    /// The copy is starting: returns its first run and keeps the others.
    pub fn start_copy(&mut self, ferryctl: &Path, running_as_root: bool) -> Option<Launch> {
        self.pending = self.copy_launches(ferryctl, running_as_root);
        self.pending.reverse();
        self.begin_run();
        self.pending.pop()
    }

    /// The next run of the copy, once the one before succeeded.
    pub fn next_run(&mut self) -> Option<Launch> {
        if self.stage != CopyStage::Copying || self.cancel_requested || !self.run_succeeded {
            return None;
        }
        let next = self.pending.pop()?;
        self.begin_run();
        Some(next)
    }

    fn begin_run(&mut self) {
        self.stage = CopyStage::Copying;
        self.run_succeeded = false;
        self.progress = Transfer::default();
        self.objects_done = 0;
        self.objects_total = 0;
        self.cancel_requested = false;
        self.finished_ok = None;
        self.error = None;
    }

    /// Applies one line of the child's output. Lines of another stream version are refused.
    pub fn apply_line(&mut self, line: &str) -> Result<(), StreamError> {
        let event = match parse_line(line) {
            Ok(event) => event,
            Err(StreamError::Malformed(error)) => {
                tracing::warn!(%error, "skipping an event line");
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        self.apply(event);
        Ok(())
    }

    pub fn apply(&mut self, event: Event) {
        match event {
            Event::DrivePlan(plan) => self.take_plan(&plan),
            Event::Progress {
                objects_done,
                objects_total,
                bytes_done,
                bytes_total,
                rate,
                eta_seconds,
                ..
            } => {
                self.objects_done = objects_done;
                self.objects_total = objects_total;
                self.progress = Transfer {
                    bytes_done,
                    bytes_total,
                    rate,
                    eta_seconds,
                };
            }
            Event::Message {
                level: MessageLevel::Error,
                text,
            } => self.error = Some(text),
            Event::Finished { ok } => self.finished_ok = Some(ok),
            _ => {}
        }
    }

    /// Keeps the ticks of a plan seen before (the copy's own plan follows the dry run's).
    fn take_plan(&mut self, plan: &DrivePlan) {
        self.free_bytes = plan.free_bytes;
        if self.stage != CopyStage::Planning {
            return;
        }
        self.items = plan
            .refs
            .iter()
            .map(|carried| CopyItem {
                ref_name: carried.ref_name.clone(),
                target: carried.target,
                source: carried.source.clone(),
                bytes: carried.new_bytes,
                up_to_date: carried.up_to_date,
                selected: true,
                languages: carried
                    .subpaths
                    .iter()
                    .map(|subpath| subpath.trim_start_matches('/').to_owned())
                    .collect(),
            })
            .collect();
    }

    /// Cancel was pressed; the child is being stopped.
    pub fn request_cancel(&mut self) {
        if self.stage == CopyStage::Copying {
            self.cancel_requested = true;
        }
    }

    /// The child is gone: decide how this stage ended.
    pub fn child_exited(&mut self, exit: &ChildExit) {
        let ok = exit.success() && self.finished_ok == Some(true);
        self.run_succeeded = ok;
        let failure = || self.error.clone().unwrap_or_else(|| copy_failure(exit));
        self.stage = match &self.stage {
            CopyStage::Planning if ok && self.listed().next().is_some() => CopyStage::Selecting,
            CopyStage::Planning if ok => CopyStage::Failed(tr(
                "This computer has no system or apps that can be copied to a drive.",
            )),
            CopyStage::Planning => CopyStage::Failed(failure()),
            CopyStage::Copying if ok && !self.pending.is_empty() => CopyStage::Copying,
            CopyStage::Copying if ok => CopyStage::Done,
            CopyStage::Copying if self.cancel_requested => CopyStage::Cancelled,
            CopyStage::Copying => CopyStage::Failed(failure()),
            other => other.clone(),
        };
    }

    /// The child could not be started.
    pub fn failed_to_start(&mut self, message: String) {
        self.pending.clear();
        self.stage = CopyStage::Failed(message);
    }

    /// The title of the current stage.
    pub fn title(&self) -> String {
        let label = self.label();
        match &self.stage {
            CopyStage::Choosing => tr("Copy Updates to a Drive"),
            CopyStage::Planning => trf("Checking what to copy to {label}…", &[("label", &label)]),
            CopyStage::Selecting => trf("Copy to {label}", &[("label", &label)]),
            CopyStage::Copying if self.cancel_requested => tr("Cancelling…"),
            CopyStage::Copying => trf("Copying to {label}", &[("label", &label)]),
            CopyStage::Done if self.is_drive() => tr("Safe to Remove"),
            CopyStage::Done => tr("Updates Copied"),
            CopyStage::Cancelled => tr("Copying Cancelled"),
            CopyStage::Failed(_) => tr("Copying Failed"),
        }
    }

    /// The line under the title.
    pub fn description(&self) -> String {
        let label = self.label();
        match &self.stage {
            CopyStage::Choosing => tr(
                "Choose a USB drive or a folder. Other computers with Ferry can then install this computer's system and app updates from it.",
            ),
            CopyStage::Planning | CopyStage::Selecting => String::new(),
            CopyStage::Copying => self.progress_line(),
            CopyStage::Done => match &self.removal {
                Some(Ok(())) => trf("You can now unplug {label}.", &[("label", &label)]),
                Some(Err(error)) => trf(
                    "{label} could not be powered off: {error}",
                    &[("label", &label), ("error", error)],
                ),
                None if self.is_drive() => trf(
                    "Everything was written to {label} and read back. Remove the drive before you unplug it.",
                    &[("label", &label)],
                ),
                None => trf(
                    "Everything was written to {label} and read back.",
                    &[("label", &label)],
                ),
            },
            CopyStage::Cancelled => trf(
                "What was written so far stays on {label}; the next copy goes on from there.",
                &[("label", &label)],
            ),
            CopyStage::Failed(message) => message.clone(),
        }
    }

    /// "1.2 GB of 3.4 GB · 1,200 of 5,000 items · 25.0 MB/s".
    pub fn progress_line(&self) -> String {
        let mut parts = vec![format::bytes_of(
            self.progress.bytes_done,
            self.progress.bytes_total,
        )];
        if self.objects_total > 0 {
            parts.push(ntrf(
                "{done} of {n} item",
                "{done} of {n} items",
                self.objects_total,
                &[("done", &self.objects_done)],
            ));
        }
        if self.progress.rate > 0 {
            parts.push(format::rate(self.progress.rate));
        }
        parts.join(" · ")
    }

    /// Time left, when known.
    pub fn time_left(&self) -> Option<String> {
        self.progress.remaining_seconds().map(format::time_left)
    }

    /// Remove Drive works only for a removable block device, once, after the copy.
    pub fn can_remove(&self) -> bool {
        self.stage == CopyStage::Done && self.is_drive() && self.removal.is_none()
    }

    pub fn cancel_requested(&self) -> bool {
        self.cancel_requested
    }

    fn is_drive(&self) -> bool {
        self.destination
            .as_ref()
            .is_some_and(|destination| destination.removable.is_some())
    }

    fn label(&self) -> String {
        self.destination
            .as_ref()
            .map(|destination| destination.label.clone())
            .unwrap_or_default()
    }
}

fn is_listed(item: &CopyItem) -> bool {
    item.is_os() || item.ref_name.starts_with("app/") || item.ref_name.starts_with("runtime/")
}

/// Why the child ended without a word of its own.
fn copy_failure(exit: &ChildExit) -> String {
    if exit.elevated {
        match exit.code {
            Some(126) => return tr("Authentication was cancelled, so nothing was copied."),
            Some(127) => {
                return tr(
                    "You are not allowed to copy this computer's system to a drive. Ask an administrator.",
                )
            }
            _ => {}
        }
    }
    exit.stderr_tail
        .iter()
        .rev()
        .map(|line| line.trim())
        .find(|line| !line.is_empty())
        .map(|line| line.strip_prefix("error: ").unwrap_or(line).to_owned())
        .unwrap_or_else(|| tr("The copy stopped unexpectedly."))
}

/// Unmounts the drive's filesystem and powers the drive off through udisks
/// (`udisksctl unmount`, then `udisksctl power-off`), so it can be pulled out. Returns why
/// not, in udisks' words.
pub fn power_off(mount: &RemovableMount) -> Result<(), String> {
    udisksctl(&["unmount", "--block-device"], &mount.filesystem)?;
    udisksctl(&["power-off", "--block-device"], &mount.device)
}

fn udisksctl(args: &[&str], device: &Path) -> Result<(), String> {
    let output = std::process::Command::new("udisksctl")
        .args(args)
        .arg(device)
        .output()
        .map_err(|error| error.to_string())?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    Err(said
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("udisksctl failed")
        .trim()
        .to_owned())
}

#[cfg(test)]
mod tests;
