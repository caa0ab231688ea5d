//! The window's "Copy Updates to a Drive" page: it shows a [`CopyFlow`] as it stands,
//! rebuilt whenever the flow changes. The wording and the decisions are in
//! [`crate::drive_copy`]; this only lays them out and sends the clicks back.

use std::path::PathBuf;

use ferry_engine::prepare::RemovableMount;
use relm4::adw::prelude::*;
use relm4::gtk::glib;
use relm4::{adw, gtk, ComponentSender};

use super::{App, AppMsg, StatePage};
use crate::drive_copy::{CopyFlow, CopyStage};
use crate::i18n::tr;

/// What the page shows: the flow and the drives it offers.
pub type CopyPage = StatePage<(CopyFlow, Vec<RemovableMount>)>;

impl CopyPage {
    pub fn render(
        &mut self,
        flow: &CopyFlow,
        drives: &[RemovableMount],
        sender: &ComponentSender<App>,
    ) {
        let Some(content) = self.relayout(&(flow.clone(), drives.to_vec())) else {
            return;
        };
        let icon = match &flow.stage {
            CopyStage::Done => "emblem-ok-symbolic",
            CopyStage::Failed(_) => "dialog-warning-symbolic",
            _ => "media-removable-symbolic",
        };
        let description = match flow.stage {
            CopyStage::Selecting => flow.space_line(),
            _ => flow.description(),
        };
        let page = adw::StatusPage::builder()
            .icon_name(icon)
            .title(flow.title())
            .description(glib::markup_escape_text(&description))
            .vexpand(true)
            .build();
        let body = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(24)
            .build();
        let buttons = gtk::Box::builder()
            .orientation(gtk::Orientation::Horizontal)
            .spacing(12)
            .halign(gtk::Align::Center)
            .build();
        match &flow.stage {
            CopyStage::Choosing => {
                body.append(&drive_list(drives, sender));
                buttons.append(&button(&tr("Close"), AppMsg::CopyClose, sender));
                buttons.append(&button(
                    &tr("Choose a Folder…"),
                    AppMsg::CopyChooseFolder,
                    sender,
                ));
            }
            CopyStage::Planning => {
                let spinner = gtk::Spinner::builder()
                    .spinning(true)
                    .width_request(32)
                    .height_request(32)
                    .build();
                body.append(&spinner);
                buttons.append(&button(&tr("Back"), AppMsg::CopyBack, sender));
            }
            CopyStage::Selecting => {
                body.append(&item_list(flow, sender));
                buttons.append(&button(&tr("Back"), AppMsg::CopyBack, sender));
                let copy = button(&tr("Copy"), AppMsg::CopyStart, sender);
                copy.add_css_class("suggested-action");
                copy.set_sensitive(flow.can_copy());
                buttons.append(&copy);
            }
            CopyStage::Copying => {
                let bar = gtk::ProgressBar::builder()
                    .fraction(flow.progress.fraction())
                    .build();
                body.append(&bar);
                if let Some(left) = flow.time_left() {
                    body.append(&gtk::Label::builder().label(left).build());
                }
                let cancel = button(&tr("Cancel"), AppMsg::CopyCancel, sender);
                cancel.set_sensitive(!flow.cancel_requested());
                buttons.append(&cancel);
            }
            CopyStage::Done => {
                let remove = button(&tr("Remove Drive"), AppMsg::CopyRemoveDrive, sender);
                remove.add_css_class("suggested-action");
                remove.set_sensitive(flow.can_remove());
                buttons.append(&button(&tr("Close"), AppMsg::CopyClose, sender));
                buttons.append(&remove);
            }
            CopyStage::Cancelled | CopyStage::Failed(_) => {
                buttons.append(&button(&tr("Back"), AppMsg::CopyBack, sender));
                buttons.append(&button(&tr("Close"), AppMsg::CopyClose, sender));
            }
        }
        body.append(&buttons);
        page.set_child(Some(
            &adw::Clamp::builder().maximum_size(560).child(&body).build(),
        ));
        content.append(&page);
    }
}

fn button(label: &str, message: AppMsg, sender: &ComponentSender<App>) -> gtk::Button {
    let button = gtk::Button::builder()
        .label(label)
        .css_classes(["pill"])
        .build();
    let sender = sender.clone();
    let message = std::cell::Cell::new(Some(message));
    // Each page is rebuilt before a second click could matter, but a message is sent once.
    button.connect_clicked(move |_| {
        if let Some(message) = message.take() {
            sender.input(message);
        }
    });
    button
}

/// The mounted removable drives, each a row to choose.
fn drive_list(drives: &[RemovableMount], sender: &ComponentSender<App>) -> adw::PreferencesGroup {
    let group = adw::PreferencesGroup::builder().title(tr("Drives")).build();
    if drives.is_empty() {
        group.add(
            &adw::ActionRow::builder()
                .title(tr("No USB drive is plugged in"))
                .subtitle(tr("Plug one in, or choose a folder."))
                .build(),
        );
    }
    for drive in drives {
        let row = adw::ActionRow::builder()
            .title(
                drive
                    .mount_point
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
            .subtitle(drive.mount_point.display().to_string())
            .activatable(true)
            .build();
        row.add_prefix(&gtk::Image::from_icon_name("media-removable-symbolic"));
        row.add_suffix(&gtk::Image::from_icon_name("go-next-symbolic"));
        let path: PathBuf = drive.mount_point.clone();
        let sender = sender.clone();
        row.connect_activated(move |_| sender.input(AppMsg::CopyTo(path.clone())));
        group.add(&row);
    }
    group
}

/// The OS, apps and runtimes the dry run planned, each with a tick and its size.
fn item_list(flow: &CopyFlow, sender: &ComponentSender<App>) -> adw::PreferencesGroup {
    let group = adw::PreferencesGroup::builder()
        .title(tr("What to Copy"))
        .build();
    for (index, item) in flow.listed().enumerate() {
        let check = gtk::CheckButton::builder()
            .active(item.selected)
            .valign(gtk::Align::Center)
            .build();
        let row = adw::ActionRow::builder()
            .title(item.title())
            .subtitle(item.subtitle())
            .activatable_widget(&check)
            .build();
        row.add_prefix(&check);
        let sender = sender.clone();
        check.connect_toggled(move |check| {
            sender.input(AppMsg::CopyToggle(index, check.is_active()))
        });
        group.add(&row);
    }
    group
}
