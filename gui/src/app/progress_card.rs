//! The card above the lists: the whole installation's progress, remaining time and Cancel
//! while it runs; then how it ended, with Restart when the system update needs one, and Go
//! Back to the Previous Version beside it (the `app.go-back` action: History, then a
//! confirmation).

use ferry_schema::event::Phase;
use relm4::adw::prelude::*;
use relm4::{adw, gtk};

use super::a11y;
use crate::format;
use crate::i18n::{ntrf, tr, trf};
use crate::model::{InstallRun, Outcome};

pub struct ProgressCard {
    /// A preferences group so it lines up with the source groups below it.
    pub root: adw::PreferencesGroup,
    spinner: gtk::Spinner,
    icon: gtk::Image,
    title: gtk::Label,
    detail: gtk::Label,
    bar: gtk::ProgressBar,
    pub cancel: gtk::Button,
    pub restart: gtk::Button,
    go_back: gtk::Button,
}

impl ProgressCard {
    pub fn new() -> Self {
        let spinner = gtk::Spinner::builder().valign(gtk::Align::Center).build();
        let icon = gtk::Image::builder()
            .pixel_size(32)
            .valign(gtk::Align::Center)
            .css_classes(["ferry-status-icon"])
            .build();
        let title = gtk::Label::builder()
            .xalign(0.0)
            .wrap(true)
            .css_classes(["title-4"])
            .build();
        let detail = gtk::Label::builder()
            .xalign(0.0)
            .wrap(true)
            .wrap_mode(gtk::pango::WrapMode::WordChar)
            .selectable(true)
            .css_classes(["dim-label"])
            .build();
        let texts = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(4)
            .hexpand(true)
            .valign(gtk::Align::Center)
            .build();
        texts.append(&title);
        texts.append(&detail);

        let cancel = gtk::Button::builder()
            .label(tr("Cancel"))
            .valign(gtk::Align::Center)
            .build();
        a11y::set_label(&cancel, &tr("Cancel the installation"));
        let restart = gtk::Button::builder()
            .label(tr("Restart"))
            .valign(gtk::Align::Center)
            .css_classes(["suggested-action"])
            .build();
        a11y::set_label(
            &restart,
            &tr("Restart the computer to finish the system update"),
        );

        let go_back = gtk::Button::builder()
            .label(tr("Go Back…"))
            .tooltip_text(tr("Go Back to the Previous Version"))
            .valign(gtk::Align::Center)
            .action_name("app.go-back")
            .build();
        a11y::set_label(&go_back, &tr("Go Back to the Previous Version"));

        let top = gtk::Box::builder().spacing(12).build();
        top.append(&spinner);
        top.append(&icon);
        top.append(&texts);
        top.append(&cancel);
        top.append(&go_back);
        top.append(&restart);

        let bar = gtk::ProgressBar::new();
        a11y::set_label(&bar, &tr("Overall progress"));

        let card = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(14)
            .css_classes(["card", "ferry-progress-card"])
            .build();
        card.append(&top);
        card.append(&bar);

        let root = adw::PreferencesGroup::new();
        root.add(&card);
        root.set_visible(false);
        Self {
            root,
            spinner,
            icon,
            title,
            detail,
            bar,
            cancel,
            restart,
            go_back,
        }
    }

    pub fn render(&self, run: Option<&InstallRun>, restart_error: Option<&str>) {
        let Some(run) = run else {
            self.root.set_visible(false);
            self.spinner.stop();
            return;
        };
        self.root.set_visible(true);
        match run.outcome() {
            None => self.render_running(run),
            Some(outcome) => self.render_outcome(outcome, restart_error),
        }
    }

    fn render_running(&self, run: &InstallRun) {
        self.spinner.set_visible(true);
        self.spinner.start();
        self.icon.set_visible(false);
        self.bar.set_visible(true);
        self.restart.set_visible(false);
        self.go_back.set_visible(false);
        self.cancel.set_visible(true);
        let count = run.planned().len() as u64;
        if run.cancel_requested() {
            self.title.set_label(&tr("Cancelling…"));
            self.detail.set_label(&tr(
                "Finishing the current step so nothing is left half-done.",
            ));
            self.cancel.set_sensitive(false);
            return;
        }
        self.cancel.set_sensitive(true);
        self.title.set_label(&ntrf(
            "Installing {n} update",
            "Installing {n} updates",
            count,
            &[],
        ));
        let overall = run.overall();
        self.bar.set_fraction(overall.fraction());
        let detail = match run.phase() {
            Some(Phase::Deploy) => {
                self.bar.set_fraction(1.0);
                trf(
                    "Downloaded; installing {done} of {total}…",
                    &[
                        ("done", &(run.finished_count() + 1).min(count as usize)),
                        ("total", &count),
                    ],
                )
            }
            Some(Phase::Scan | Phase::Resolve) | None => tr("Preparing…"),
            Some(Phase::Pull | Phase::Done) => {
                let mut parts = vec![format::bytes_of(overall.bytes_done, overall.bytes_total)];
                if overall.rate > 0 {
                    parts.push(format::rate(overall.rate));
                }
                if let Some(seconds) = overall.remaining_seconds() {
                    parts.push(format::time_left(seconds));
                }
                parts.join(" · ")
            }
        };
        self.detail.set_label(&detail);
    }

    fn render_outcome(&self, outcome: &Outcome, restart_error: Option<&str>) {
        self.spinner.stop();
        self.spinner.set_visible(false);
        self.icon.set_visible(true);
        self.bar.set_visible(false);
        self.cancel.set_visible(false);
        let (icon, class, title, detail, restart) = match outcome {
            Outcome::Done {
                restart_required: true,
                ..
            } => (
                "system-reboot-symbolic",
                "accent",
                tr("Restart to finish"),
                tr("The system update is ready. Restart the computer to start using it."),
                true,
            ),
            Outcome::Done { installed: 0, .. } => (
                "object-select-symbolic",
                "success",
                tr("Everything is up to date"),
                tr("These updates were already installed."),
                false,
            ),
            Outcome::Done { installed, .. } => (
                "object-select-symbolic",
                "success",
                tr("Updates installed"),
                ntrf(
                    "{n} update was installed.",
                    "{n} updates were installed.",
                    *installed as u64,
                    &[],
                ),
                false,
            ),
            Outcome::Cancelled => (
                "process-stop-symbolic",
                "dim",
                tr("Installation cancelled"),
                tr("What was not finished was left as it was."),
                false,
            ),
            Outcome::Failed {
                message,
                installed,
                restart_required,
            } => (
                "dialog-error-symbolic",
                "error",
                if *installed == 0 {
                    tr("Installation failed")
                } else {
                    tr("Some updates could not be installed")
                },
                // The row that failed has the checksum under its Details.
                crate::format::in_words(message).0,
                *restart_required,
            ),
        };
        self.icon.set_icon_name(Some(icon));
        for known in ["success", "error", "accent", "dim"] {
            self.icon.remove_css_class(known);
        }
        self.icon.add_css_class(class);
        self.title.set_label(&title);
        match restart_error {
            Some(error) if restart => self.detail.set_label(error),
            _ => self.detail.set_label(&detail),
        }
        self.restart.set_visible(restart);
        // An OS update was deployed: going back to the deployment before it is possible.
        self.go_back.set_visible(restart);
    }
}

impl Default for ProgressCard {
    fn default() -> Self {
        Self::new()
    }
}
