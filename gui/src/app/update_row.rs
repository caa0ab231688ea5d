//! One update in a source group: icon, name, "current → new", size, an "unsigned" badge,
//! and an Install button that becomes progress and then a result.

use std::path::Path;
use std::sync::Arc;

use ferry_schema::FlatpakRef;
use ferry_schema::{TargetKind, Update};
use relm4::adw::prelude::*;
use relm4::factory::{DynamicIndex, FactoryComponent, FactorySender};
use relm4::{adw, gtk};

use super::a11y;
use crate::format;
use crate::i18n::{tr, trf};
use crate::listing::display_name;
use crate::model::{InstallRun, RowStatus};

/// Icons the drive carries are small PNGs; anything bigger is not loaded.
const MAX_ICON_BYTES: u64 = 512 * 1024;

#[derive(Debug, Clone)]
pub struct RowInit {
    pub update: Update,
    /// Runtimes installed with it because it needs them; shown and sized as part of it.
    pub along: Vec<Update>,
    pub run: Option<Arc<InstallRun>>,
    /// Another installation is running, or the source cannot be installed from now.
    pub blocked: bool,
}

#[derive(Debug, Clone)]
pub enum RowInput {
    State {
        run: Option<Arc<InstallRun>>,
        blocked: bool,
    },
}

#[derive(Debug)]
pub enum RowOutput {
    Install(String),
}

pub struct UpdateRow {
    update: Update,
    along: Vec<Update>,
    name: String,
    status: Option<RowStatus>,
    /// "from KINGSTON and 2 computers nearby", once the install has fetched something.
    came_from: Option<String>,
    blocked: bool,
}

pub struct UpdateRowWidgets {
    row: adw::ActionRow,
    install: gtk::Button,
    suffix: gtk::Stack,
    progress: gtk::ProgressBar,
    progress_label: gtk::Label,
    status_icon: gtk::Image,
    status_label: gtk::Label,
    size: Option<gtk::Label>,
    failed_icon: gtk::Image,
    /// "Details": the failure as the installer said it, object checksums and all.
    details: gtk::MenuButton,
    details_text: gtk::Label,
}

impl FactoryComponent for UpdateRow {
    type ParentWidget = adw::PreferencesGroup;
    type CommandOutput = ();
    type Input = RowInput;
    type Output = RowOutput;
    type Init = RowInit;
    type Root = adw::ActionRow;
    type Widgets = UpdateRowWidgets;
    type Index = DynamicIndex;

    fn init_model(init: Self::Init, _index: &DynamicIndex, _sender: FactorySender<Self>) -> Self {
        let name = display_name(&init.update);
        let status = status_in(&init.update, &init.along, init.run.as_deref());
        let came_from = came_from_in(&init.update, init.run.as_deref());
        Self {
            update: init.update,
            along: init.along,
            name,
            status,
            came_from,
            blocked: init.blocked,
        }
    }

    fn init_root(&self) -> Self::Root {
        // Two lines: a ref standing in for an unknown app name is long, and a narrow row
        // next to a badge and a button would otherwise cut it.
        adw::ActionRow::builder().title_lines(2).build()
    }

    fn init_widgets(
        &mut self,
        _index: &DynamicIndex,
        row: Self::Root,
        _returned_widget: &gtk::Widget,
        sender: FactorySender<Self>,
    ) -> Self::Widgets {
        row.set_title(&gtk::glib::markup_escape_text(&self.name));
        row.add_prefix(&icon_for(&self.update));

        if !self.update.signed {
            let badge = gtk::Label::builder()
                .label(tr("Unsigned"))
                .valign(gtk::Align::Center)
                .css_classes(["ferry-badge", "warning"])
                .tooltip_text(tr(
                    "This update's source does not check signatures, so Ferry cannot tell who made it.",
                ))
                .build();
            row.add_suffix(&badge);
        }

        let bytes: u64 = std::iter::once(&self.update)
            .chain(&self.along)
            .map(|update| update.download_size)
            .sum();
        let size = (bytes > 0).then(|| {
            let size = gtk::Label::builder()
                .label(format::size(bytes))
                .valign(gtk::Align::Center)
                .css_classes(["dim-label"])
                .build();
            size.set_tooltip_text(Some(&tr("Download size")));
            row.add_suffix(&size);
            size
        });

        let install = gtk::Button::builder()
            .label(tr("Install"))
            .valign(gtk::Align::Center)
            .build();
        a11y::set_label(&install, &trf("Install {name}", &[("name", &self.name)]));
        let id = self.update.id.clone();
        install.connect_clicked(move |_| {
            sender.output(RowOutput::Install(id.clone())).ok();
        });

        let progress = gtk::ProgressBar::builder()
            .valign(gtk::Align::Center)
            .css_classes(["ferry-row-progress"])
            .build();
        a11y::set_label(
            &progress,
            &trf("Progress of {name}", &[("name", &self.name)]),
        );
        let progress_label = gtk::Label::builder()
            .css_classes(["caption", "dim-label"])
            .xalign(1.0)
            .build();
        let progress_box = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(6)
            .valign(gtk::Align::Center)
            .build();
        progress_box.append(&progress);
        progress_box.append(&progress_label);

        let status_icon = gtk::Image::builder()
            .css_classes(["ferry-status-icon"])
            .build();
        let status_label = gtk::Label::new(None);
        let status_box = gtk::Box::builder()
            .spacing(6)
            .valign(gtk::Align::Center)
            .build();
        status_box.append(&status_icon);
        status_box.append(&status_label);

        let failed_icon = gtk::Image::builder()
            .icon_name("dialog-error-symbolic")
            .valign(gtk::Align::Center)
            .css_classes(["ferry-status-icon", "error"])
            .visible(false)
            .build();
        a11y::set_label(&failed_icon, &tr("Failed"));
        row.add_suffix(&failed_icon);
        let details_text = gtk::Label::builder()
            .wrap(true)
            .selectable(true)
            .max_width_chars(60)
            .xalign(0.0)
            .build();
        let details = gtk::MenuButton::builder()
            .label(tr("Details"))
            .valign(gtk::Align::Center)
            .css_classes(["flat"])
            .popover(&gtk::Popover::builder().child(&details_text).build())
            .visible(false)
            .build();
        a11y::set_menu_button_label(
            &details,
            &trf("Details about {name}", &[("name", &self.name)]),
        );
        row.add_suffix(&details);

        let suffix = gtk::Stack::builder()
            .transition_type(gtk::StackTransitionType::Crossfade)
            .hhomogeneous(false)
            .vhomogeneous(false)
            .interpolate_size(true)
            .build();
        suffix.add_named(&install, Some("install"));
        suffix.add_named(&progress_box, Some("progress"));
        suffix.add_named(&status_box, Some("status"));
        row.add_suffix(&suffix);

        let mut widgets = UpdateRowWidgets {
            row,
            install,
            suffix,
            progress,
            progress_label,
            status_icon,
            status_label,
            size,
            failed_icon,
            details,
            details_text,
        };
        self.render(&mut widgets);
        widgets
    }

    fn update(&mut self, message: Self::Input, _sender: FactorySender<Self>) {
        match message {
            RowInput::State { run, blocked } => {
                self.status = status_in(&self.update, &self.along, run.as_deref());
                self.came_from = came_from_in(&self.update, run.as_deref());
                self.blocked = blocked;
            }
        }
    }

    fn update_view(&self, widgets: &mut Self::Widgets, _sender: FactorySender<Self>) {
        self.render(widgets);
    }
}

impl UpdateRow {
    fn render(&self, widgets: &mut UpdateRowWidgets) {
        let mut details: Option<String> = None;
        let mut subtitle = subtitle_of(&self.update, &self.along);
        // Where it came from gets a line of its own.
        let came_from = self
            .came_from
            .as_ref()
            .filter(|_| !matches!(self.status, Some(RowStatus::Failed(_))));
        widgets
            .row
            .set_subtitle_lines(if came_from.is_some() { 3 } else { 2 });

        let status = self.status.as_ref();
        let (page, retry) = match status {
            None => ("install", false),
            Some(RowStatus::Failed(_) | RowStatus::Cancelled) => ("install", true),
            Some(
                RowStatus::Waiting
                | RowStatus::Downloading(_)
                | RowStatus::Downloaded
                | RowStatus::Deploying,
            ) => ("progress", false),
            Some(_) => ("status", false),
        };
        // Only the page shown is visible: GTK lists a stack's hidden pages to screen readers
        // too ("Install" on a row that is installed).
        for name in ["install", "progress", "status"] {
            if let Some(child) = widgets.suffix.child_by_name(name) {
                child.set_visible(name == page);
            }
        }
        widgets.suffix.set_visible_child_name(page);
        // While it downloads, the progress says how much; afterwards the size is history.
        if let Some(size) = &widgets.size {
            size.set_visible(page == "install");
        }
        let name: [(&str, &dyn std::fmt::Display); 1] = [("name", &self.name)];
        if retry {
            a11y::set_button_label(
                &widgets.install,
                &tr("Try Again"),
                &trf("Try installing {name} again", &name),
            );
        } else {
            a11y::set_button_label(
                &widgets.install,
                &tr("Install"),
                &trf("Install {name}", &name),
            );
        }
        widgets.install.set_sensitive(!self.blocked);

        match status {
            Some(RowStatus::Waiting) => {
                widgets.progress.set_fraction(0.0);
                widgets.progress_label.set_label(&tr("Waiting"));
            }
            Some(RowStatus::Downloading(transfer)) => {
                widgets.progress.set_fraction(transfer.fraction());
                let mut text = format::bytes_of(transfer.bytes_done, transfer.bytes_total);
                if transfer.rate > 0 {
                    text = format!("{text} · {}", format::rate(transfer.rate));
                }
                widgets.progress_label.set_label(&text);
            }
            Some(RowStatus::Downloaded) => {
                widgets.progress.set_fraction(1.0);
                widgets.progress_label.set_label(&tr("Downloaded"));
            }
            Some(RowStatus::Deploying) => {
                widgets.progress.set_fraction(1.0);
                widgets.progress_label.set_label(&tr("Installing…"));
            }
            Some(RowStatus::Installed {
                restart_required: true,
            }) => set_status(
                widgets,
                "system-reboot-symbolic",
                "accent",
                &tr("Restart to finish"),
            ),
            Some(RowStatus::Installed { .. }) => set_status(
                widgets,
                "object-select-symbolic",
                "success",
                &tr("Installed"),
            ),
            Some(RowStatus::UpToDate) => set_status(
                widgets,
                "object-select-symbolic",
                "success",
                &tr("Up to date"),
            ),
            Some(RowStatus::Skipped(reason)) => {
                set_status(
                    widgets,
                    "action-unavailable-symbolic",
                    "dim",
                    &tr("Skipped"),
                );
                if let Some(reason) = reason {
                    subtitle = reason.clone();
                }
            }
            Some(RowStatus::Failed(message)) => {
                let (words, full) = format::in_words(message);
                subtitle = words;
                details = full;
            }
            Some(RowStatus::Cancelled) => {
                // Translators: a row's subtitle after the person cancelled its installation.
                subtitle = trf("Cancelled · {subtitle}", &[("subtitle", &subtitle)]);
            }
            None => {}
        }
        if let Some(came_from) = came_from {
            subtitle = format!("{subtitle}\n{came_from}");
        }
        widgets
            .row
            .set_subtitle(&gtk::glib::markup_escape_text(&subtitle));
        widgets
            .failed_icon
            .set_visible(matches!(status, Some(RowStatus::Failed(_))));
        widgets.details.set_visible(details.is_some());
        widgets
            .details_text
            .set_label(details.as_deref().unwrap_or_default());
    }
}

/// The row's second line: the versions (or the commit's subject), the languages added, and
/// the runtimes installed along.
fn subtitle_of(update: &Update, along: &[Update]) -> String {
    let versions =
        format::version_change(update.current_version.as_deref(), update.version.as_deref());
    let mut subtitle = match (update.target, versions) {
        (TargetKind::Os, Some(versions)) => {
            // Translators: subtitle of the operating system's row.
            trf("System update · {versions}", &[("versions", &versions)])
        }
        (TargetKind::Os, None) => tr("System update"),
        (_, Some(versions)) => versions,
        (_, None) => update.subject.clone(),
    };
    let languages = if update.adds_every_language() {
        // Translators: what an update of translations installed for some languages adds,
        // as in "Adds every language".
        tr("every language")
    } else {
        update.added_languages().join(", ")
    };
    if !languages.is_empty() {
        subtitle = if update.current_commit == Some(update.commit) {
            // Translators: {languages} are language codes such as "de, fr": translations
            // installed for some languages only get the languages set since.
            trf("Adds {languages}", &[("languages", &languages)])
        } else {
            // Translators: {languages} are language codes such as "de, fr", added with a
            // new version to translations installed for some languages only.
            trf(
                "{subtitle} · adds {languages}",
                &[("subtitle", &subtitle), ("languages", &languages)],
            )
        };
    }
    if !along.is_empty() {
        let runtimes: Vec<String> = along.iter().map(display_name).collect();
        // Translators: {runtimes} is one or more runtime names, such as "org.gnome.Platform 45".
        subtitle = trf(
            "{subtitle} · with {runtimes}",
            &[("subtitle", &subtitle), ("runtimes", &runtimes.join(", "))],
        );
    }
    subtitle
}

fn set_status(widgets: &UpdateRowWidgets, icon: &str, class: &str, text: &str) {
    widgets.status_icon.set_icon_name(Some(icon));
    for known in ["success", "error", "accent", "dim"] {
        widgets.status_icon.remove_css_class(known);
    }
    widgets.status_icon.add_css_class(class);
    widgets.status_label.set_label(text);
}

/// The row's status in `run`; while the update waits for a runtime that comes with it, the
/// runtime's progress.
fn status_in(update: &Update, along: &[Update], run: Option<&InstallRun>) -> Option<RowStatus> {
    let run = run?;
    let own = run.status(&update.id).cloned();
    if !matches!(own, Some(RowStatus::Waiting)) {
        return own;
    }
    along
        .iter()
        .filter_map(|runtime| run.status(&runtime.id))
        .find(|status| {
            matches!(
                status,
                RowStatus::Downloading(_) | RowStatus::Downloaded | RowStatus::Deploying
            )
        })
        .cloned()
        .or(own)
}

/// Where `update` came from in `run` ([`format::came_from`]).
fn came_from_in(update: &Update, run: Option<&InstallRun>) -> Option<String> {
    format::came_from(run?.sources(&update.id))
}

/// The app's own icon when the icon theme has it (installed Flatpaks export theirs), else the
/// small icon the drive carries, else a generic one.
pub(super) fn icon_for(update: &Update) -> gtk::Image {
    let image = gtk::Image::builder().pixel_size(32).build();
    a11y::set_label(&image, &display_name(update));
    if update.target == TargetKind::Os {
        image.set_icon_name(Some("computer"));
        return image;
    }
    let app_id = FlatpakRef::parse(&update.ref_name)
        .map(|parsed| parsed.id)
        .unwrap_or_default();
    let theme_has = |name: &str| {
        gtk::gdk::Display::default()
            .map(|display| gtk::IconTheme::for_display(&display).has_icon(name))
            .unwrap_or(false)
    };
    if !app_id.is_empty() && theme_has(app_id) {
        image.set_icon_name(Some(app_id));
        return image;
    }
    if let Some(path) = update
        .app
        .as_ref()
        .and_then(|app| app.icon.as_deref())
        .map(Path::new)
        .filter(|path| small_png(path))
    {
        image.set_from_file(Some(path));
        return image;
    }
    image.set_icon_name(Some("application-x-executable"));
    image
}

fn small_png(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "png")
        && std::fs::symlink_metadata(path)
            .is_ok_and(|meta| meta.is_file() && meta.len() <= MAX_ICON_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listing::from_records;
    use ferry_schema::DriveRecord;

    const KINGSTON: &str = include_str!("../../tests/data/drives/kingston.json");

    /// An app's update from the Kingston drive, made into one of its locale extension's that
    /// adds `subpaths`, at the same commit when `same_commit`.
    fn locale_update(subpaths: &[&str], same_commit: bool) -> Update {
        let record: DriveRecord = serde_json::from_str(KINGSTON).expect("record");
        let group = from_records(vec![record]).groups.remove(0);
        let mut update = group
            .updates
            .into_iter()
            .find(|u| u.ref_name.starts_with("app/"))
            .expect("an app");
        update.ref_name = "runtime/org.example.App.Locale/x86_64/stable".to_owned();
        update.app = None;
        update.needs.clear();
        update.adds_subpaths = subpaths.iter().map(|s| (*s).to_owned()).collect();
        if same_commit {
            update.current_commit = Some(update.commit);
            update.current_version = update.version.clone();
        }
        update
    }

    #[test]
    fn a_translation_update_says_which_languages_it_adds() {
        assert_eq!(
            subtitle_of(&locale_update(&["/fr", "/pt_BR"], true), &[]),
            "Adds fr, pt_BR"
        );
        assert_eq!(
            subtitle_of(&locale_update(&["/"], true), &[]),
            "Adds every language"
        );
        let newer = locale_update(&["/"], false);
        let versions = subtitle_of(&locale_update(&[], false), &[]);
        assert_eq!(
            subtitle_of(&newer, &[]),
            format!("{versions} · adds every language")
        );
    }
}
