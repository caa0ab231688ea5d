//! The window's History page: what was installed, when and from where
//! ([`crate::history`]), and after an OS update "Go Back to the Previous Version", behind a
//! confirmation.

use ferry_engine::history::HistoryEntry;
use relm4::adw::prelude::*;
use relm4::gtk::glib;
use relm4::{adw, gtk, ComponentSender};

use super::{a11y, test_hook, App, AppMsg, StatePage};
use crate::config;
use crate::history;
use crate::i18n::{tr, trf};

/// Where going back stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GoBack {
    #[default]
    Idle,
    Running,
    Done(Result<(), String>),
}

/// The page's state while it is open.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryState {
    /// None while `ferryctl history` runs.
    pub entries: Option<Result<Vec<HistoryEntry>, String>>,
    pub go_back: GoBack,
    /// Ask to go back as soon as the entries are read (the update card's button).
    pub ask_go_back: bool,
}

pub type HistoryPage = StatePage<HistoryState>;

impl HistoryPage {
    pub fn render(&mut self, state: &HistoryState, sender: &ComponentSender<App>) {
        let Some(content) = self.relayout(state) else {
            return;
        };
        let body = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(24)
            .margin_top(24)
            .margin_bottom(24)
            .margin_start(12)
            .margin_end(12)
            .build();
        match &state.entries {
            None => {
                let spinner = gtk::Spinner::builder()
                    .spinning(true)
                    .width_request(32)
                    .height_request(32)
                    .build();
                a11y::set_label(&spinner, &tr("Reading the history…"));
                body.append(&spinner);
            }
            Some(Err(error)) => body.append(
                &adw::StatusPage::builder()
                    .icon_name("dialog-warning-symbolic")
                    .title(tr("The history cannot be read"))
                    .description(glib::markup_escape_text(error))
                    .build(),
            ),
            Some(Ok(entries)) if entries.is_empty() => body.append(
                &adw::StatusPage::builder()
                    .icon_name("document-open-recent-symbolic")
                    .title(tr("Nothing installed yet"))
                    .description(glib::markup_escape_text(&tr(
                        "Updates Ferry installs are listed here, with when and from where.",
                    )))
                    .build(),
            ),
            Some(Ok(entries)) => {
                if let Some(offer) = history::rollback_offer(entries) {
                    body.append(&go_back_group(offer, &state.go_back, sender));
                }
                body.append(&entry_list(entries));
            }
        }
        let close = gtk::Button::builder()
            .label(tr("Back"))
            .css_classes(["pill"])
            .halign(gtk::Align::Center)
            .build();
        close.connect_clicked({
            let sender = sender.clone();
            move |_| sender.input(AppMsg::HistoryClose)
        });
        body.append(&close);
        content.append(&adw::Clamp::builder().maximum_size(640).child(&body).build());
    }
}

/// The newest OS update, and the button that goes back from it.
fn go_back_group(
    offer: &HistoryEntry,
    go_back: &GoBack,
    sender: &ComponentSender<App>,
) -> adw::PreferencesGroup {
    let group = adw::PreferencesGroup::builder()
        .title(tr("Operating System"))
        .build();
    let from = offer
        .from_version
        .clone()
        .unwrap_or_else(|| tr("the previous version"));
    let to = offer
        .to_version
        .clone()
        .unwrap_or_else(|| tr("the new version"));
    let subtitle = match go_back {
        GoBack::Idle => trf(
            "If something does not work since the update, you can go back to {from}.",
            &[("from", &from)],
        ),
        GoBack::Running => tr("Going back…"),
        GoBack::Done(Ok(())) => trf(
            "{from} is the default again. Restart the computer to use it.",
            &[("from", &from)],
        ),
        GoBack::Done(Err(error)) => error.clone(),
    };
    let row = adw::ActionRow::builder()
        .title(trf("Version {to} is installed", &[("to", &to)]))
        .subtitle(subtitle)
        .build();
    if !matches!(go_back, GoBack::Done(Ok(()))) {
        let button = gtk::Button::builder()
            .label(tr("Go Back to the Previous Version"))
            .css_classes(["destructive-action"])
            .valign(gtk::Align::Center)
            .sensitive(*go_back != GoBack::Running)
            .build();
        let sender = sender.clone();
        button.connect_clicked(move |_| sender.input(AppMsg::HistoryGoBack));
        row.add_suffix(&button);
    }
    group.add(&row);
    group
}

/// Every entry, newest first.
fn entry_list(entries: &[HistoryEntry]) -> adw::PreferencesGroup {
    let group = adw::PreferencesGroup::builder()
        .title(tr("Installed Updates"))
        .build();
    for entry in entries {
        let when = history::when(entry);
        let summary = history::summary(entry);
        let subtitle = if when.is_empty() {
            summary
        } else {
            // Translators: a history row's subtitle: when, then what happened.
            trf(
                "{when} — {summary}",
                &[("when", &when), ("summary", &summary)],
            )
        };
        let row = adw::ActionRow::builder()
            .title(history::title(entry))
            .subtitle(subtitle)
            .build();
        if let Some(detail) = &entry.detail {
            row.set_tooltip_text(Some(detail));
        }
        group.add(&row);
    }
    group
}

/// Asks before going back; `AppMsg::HistoryGoBackConfirmed` when the person agrees.
pub fn confirm(
    window: &adw::ApplicationWindow,
    offer: Option<&HistoryEntry>,
    sender: &ComponentSender<App>,
) -> gtk::MessageDialog {
    let from = offer
        .and_then(|o| o.from_version.clone())
        .unwrap_or_else(|| tr("the previous version"));
    let dialog = gtk::MessageDialog::builder()
        .transient_for(window)
        .modal(true)
        .message_type(gtk::MessageType::Question)
        .buttons(gtk::ButtonsType::None)
        .text(tr("Go back to the previous version?"))
        .secondary_text(trf(
            "The computer starts {from} from the next restart. The newer version is kept, and the next update installs it again.",
            &[("from", &from)],
        ))
        .build();
    dialog.add_button(&tr("Cancel"), gtk::ResponseType::Cancel);
    let go = dialog.add_button(&tr("Go Back"), gtk::ResponseType::Accept);
    go.add_css_class("destructive-action");
    dialog.set_default_response(gtk::ResponseType::Cancel);
    dialog.connect_response({
        let sender = sender.clone();
        move |dialog, response| {
            if response == gtk::ResponseType::Accept {
                sender.input(AppMsg::HistoryGoBackConfirmed);
            }
            sender.input(AppMsg::HistoryDialogClosed);
            dialog.close();
        }
    });
    if let Some(dir) = config::test_dump_dir() {
        test_hook::install(&dialog, dir.join("confirm"));
    }
    dialog.present();
    dialog
}
