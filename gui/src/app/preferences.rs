//! The Preferences window: "Share updates with computers nearby" ([`crate::sharing`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use ferry_engine::sharing::SharingStatus;
use relm4::adw::prelude::*;
use relm4::gtk::glib;
use relm4::{adw, gtk, ComponentSender};

use super::{a11y, test_hook, App, AppMsg};
use crate::config;
use crate::i18n::tr;
use crate::sharing;

/// The open window and its one switch.
pub struct Preferences {
    pub window: adw::PreferencesWindow,
    row: adw::ActionRow,
    switch: gtk::Switch,
    /// Set while the app moves the switch itself, so that is not taken for a person's click.
    updating: Rc<Cell<bool>>,
    /// Why the last switch failed, shown in place of the state once it has been read again.
    failure: RefCell<Option<String>>,
}

impl Preferences {
    pub fn open(parent: &adw::ApplicationWindow, sender: &ComponentSender<App>) -> Self {
        let window = adw::PreferencesWindow::builder()
            .transient_for(parent)
            .modal(true)
            .title(tr("Preferences"))
            .search_enabled(false)
            .default_width(560)
            .default_height(360)
            .build();
        let page = adw::PreferencesPage::new();
        let group = adw::PreferencesGroup::builder()
            .title(tr("Computers Nearby"))
            .description(tr("Computers on this network can fetch the updates this computer has installed. Everything they fetch is checked against their own keys."))
            .build();
        let switch = gtk::Switch::builder()
            .valign(gtk::Align::Center)
            .sensitive(false)
            .build();
        let row = adw::ActionRow::builder()
            .title(tr("Share updates with computers nearby"))
            .subtitle(tr("Checking…"))
            .activatable_widget(&switch)
            .build();
        row.add_suffix(&switch);
        a11y::set_label(&switch, &tr("Share updates with computers nearby"));
        group.add(&row);
        page.add(&group);
        window.add(&page);

        let updating = Rc::new(Cell::new(false));
        switch.connect_state_set({
            let sender = sender.clone();
            let updating = updating.clone();
            move |_, wanted| {
                if !updating.get() {
                    sender.input(AppMsg::SharingSwitch(wanted));
                }
                glib::Propagation::Proceed
            }
        });
        window.connect_close_request({
            let sender = sender.clone();
            move |_| {
                sender.input(AppMsg::PreferencesClosed);
                glib::Propagation::Proceed
            }
        });
        if let Some(dir) = config::test_dump_dir() {
            test_hook::install(&window, dir.join("preferences"));
        }
        window.present();
        let preferences = Self {
            window,
            row,
            switch,
            updating,
            failure: RefCell::new(None),
        };
        preferences.refresh(sender);
        preferences
    }

    /// Reads the state again, off the main thread.
    pub fn refresh(&self, sender: &ComponentSender<App>) {
        let input = sender.input_sender().clone();
        let launch = sharing::status_launch(&config::ferryctl_path());
        spawn("sharing-status", move || {
            let status = sharing::run(&launch).and_then(|out| sharing::parse_status(&out));
            input.emit(AppMsg::SharingStatus(status));
        });
    }

    /// Shows what `ferryctl sharing status` said.
    pub fn show_status(&self, status: Result<SharingStatus, String>) {
        match status {
            Ok(status) => {
                self.set_switch(status.enabled);
                self.switch.set_sensitive(true);
                let text = match self.failure.take() {
                    Some(failure) => failure,
                    None => sharing::describe(&status),
                };
                self.row.set_subtitle(&text);
            }
            Err(error) => {
                self.switch.set_sensitive(false);
                self.row.set_subtitle(&error);
            }
        }
    }

    /// A person moved the switch: ask `ferryctl sharing on|off`, then read the state again.
    pub fn switch_to(&self, on: bool, sender: &ComponentSender<App>) {
        self.switch.set_sensitive(false);
        self.row.set_subtitle(&if on {
            tr("Turning sharing on…")
        } else {
            tr("Turning sharing off…")
        });
        let elevate = !rustix::process::geteuid().is_root();
        let launch = sharing::switch_launch(&config::ferryctl_path(), on, elevate);
        let input = sender.input_sender().clone();
        spawn("sharing-switch", move || {
            input.emit(AppMsg::SharingSwitched(sharing::run(&launch).map(drop)));
        });
    }

    /// The switch went wrong: say why, and show the state as it is.
    pub fn show_failure(&self, error: String, sender: &ComponentSender<App>) {
        self.failure.replace(Some(error));
        self.refresh(sender);
    }

    fn set_switch(&self, on: bool) {
        self.updating.set(true);
        self.switch.set_active(on);
        self.switch.set_state(on);
        self.updating.set(false);
    }
}

/// Runs `work` on a thread of its own; a failure to start one is logged.
fn spawn(name: &str, work: impl FnOnce() + Send + 'static) {
    if let Err(error) = std::thread::Builder::new().name(name.into()).spawn(work) {
        tracing::warn!(%error, "cannot start a thread for {name}");
    }
}
