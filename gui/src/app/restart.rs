//! Restarting the computer the way the desktop does it: through the session manager, which
//! asks about unsaved work, else through logind, which asks polkit.

use relm4::gtk::prelude::*;
use relm4::gtk::{gio, glib};

use crate::i18n::trf;

/// Asks for a restart; `on_error` gets a sentence for the person if neither way works.
pub fn request(on_error: impl FnOnce(String) + 'static) {
    match gio::bus_get_sync(gio::BusType::Session, gio::Cancellable::NONE) {
        Ok(session) => session.call(
            Some("org.gnome.SessionManager"),
            "/org/gnome/SessionManager",
            "org.gnome.SessionManager",
            "Reboot",
            None,
            None,
            gio::DBusCallFlags::NONE,
            -1,
            gio::Cancellable::NONE,
            move |result| {
                if let Err(error) = result {
                    tracing::info!(%error, "the session manager cannot restart; asking logind");
                    through_logind(on_error);
                }
            },
        ),
        Err(error) => {
            tracing::info!(%error, "no session bus; asking logind to restart");
            through_logind(on_error);
        }
    }
}

fn through_logind(on_error: impl FnOnce(String) + 'static) {
    let explain = |error: glib::Error| {
        trf(
            "Ferry could not restart the computer ({error}). Restart it from the system menu.",
            &[("error", &error.message())],
        )
    };
    let system = match gio::bus_get_sync(gio::BusType::System, gio::Cancellable::NONE) {
        Ok(system) => system,
        Err(error) => return on_error(explain(error)),
    };
    let interactive = (true,).to_variant();
    system.call(
        Some("org.freedesktop.login1"),
        "/org/freedesktop/login1",
        "org.freedesktop.login1.Manager",
        "Reboot",
        Some(&interactive),
        None,
        gio::DBusCallFlags::ALLOW_INTERACTIVE_AUTHORIZATION,
        -1,
        gio::Cancellable::NONE,
        move |result| {
            if let Err(error) = result {
                on_error(explain(error));
            }
        },
    );
}
