//! "Also on this drive": apps the drives offer that this machine does not have, each with
//! its name, summary, icon, size (with the runtimes it needs) and an Install button.

use ferry_engine::schema::AvailableApp;
use relm4::adw;
use relm4::adw::prelude::*;
use relm4::gtk;

use super::a11y;
use super::update_row::icon_for;
use crate::format;
use crate::i18n::{ntrf, tr, trf};
use crate::listing::{display_name, Listing};

/// The section and the rows it shows now.
pub struct NewApps {
    pub group: adw::PreferencesGroup,
    /// Each row with its app's update id, Install button and name.
    rows: Vec<(gtk::Widget, String, gtk::Button, String)>,
}

impl NewApps {
    pub fn new() -> Self {
        let group = adw::PreferencesGroup::builder()
            .title(tr("Also on this drive"))
            .visible(false)
            .build();
        Self {
            group,
            rows: Vec::new(),
        }
    }

    /// Shows `listing`'s new apps; `install` is called with an app's update id.
    pub fn show(&mut self, listing: &Listing, install: impl Fn(String) + Clone + 'static) {
        for (row, _, _, _) in self.rows.drain(..) {
            self.group.remove(&row);
        }
        for offered in &listing.available {
            let (row, button) = app_row(offered, install.clone());
            self.group.add(&row);
            self.rows.push((
                row.upcast(),
                offered.app.id.clone(),
                button,
                display_name(&offered.app),
            ));
        }
        let unknown = listing.unknown_available;
        let description = (unknown > 0).then(|| {
            ntrf(
                "{n} app from sources this computer does not know",
                "{n} apps from sources this computer does not know",
                unknown,
                &[],
            )
        });
        self.group.set_description(description.as_deref());
        self.group
            .set_visible(!listing.available.is_empty() || unknown > 0);
    }

    /// Install buttons follow the installation: usable when nothing runs, "Installed" once
    /// their app is.
    pub fn follow(&self, busy: bool, done: impl Fn(&str) -> bool) {
        for (_, id, button, name) in &self.rows {
            let name: [(&str, &dyn std::fmt::Display); 1] = [("name", name)];
            if done(id) {
                a11y::set_button_label(
                    button,
                    &tr("Installed"),
                    &trf("{name} is installed", &name),
                );
                button.set_sensitive(false);
            } else {
                a11y::set_button_label(button, &tr("Install"), &trf("Install {name}", &name));
                button.set_sensitive(!busy);
            }
        }
    }
}

fn app_row(
    offered: &AvailableApp,
    install: impl Fn(String) + 'static,
) -> (adw::ActionRow, gtk::Button) {
    let app = &offered.app;
    let name = display_name(app);
    let summary = app
        .app
        .as_ref()
        .and_then(|info| info.summary.clone())
        .unwrap_or_default();
    let row = adw::ActionRow::builder()
        .title(gtk::glib::markup_escape_text(&name).as_str())
        .subtitle(gtk::glib::markup_escape_text(&summary).as_str())
        .build();
    row.add_prefix(&icon_for(app));
    let size = gtk::Label::builder()
        .label(format::size(offered.download_size))
        .css_classes(["dim-label", "numeric"])
        .build();
    row.add_suffix(&size);
    let button = gtk::Button::builder()
        .label(tr("Install"))
        .valign(gtk::Align::Center)
        .build();
    a11y::set_label(&button, &trf("Install {name}", &[("name", &name)]));
    let id = app.id.clone();
    button.connect_clicked(move |_| install(id.clone()));
    row.add_suffix(&button);
    (row, button)
}
