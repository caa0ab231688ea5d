//! `ferry` opens the window; `ferry --background` runs the agent that notifies about drives
//! with updates. Both are one GApplication (`io.github.ferry.Ferry`): a second start hands
//! its command line to the running instance.

// What a drive, peer or file supplies is never unwrapped; tests may.
#![deny(clippy::unwrap_used)]

use relm4::adw::prelude::*;
use relm4::gtk::{gio, glib};
use relm4::{adw, Component, ComponentController};

use ferry_gui::app::{App, AppMsg, APP_BROKER, STYLE};
use ferry_gui::config::APP_ID;
use ferry_gui::i18n::{self, tr};

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() -> glib::ExitCode {
    i18n::init();
    init_logging();

    let app = adw::Application::builder()
        .application_id(APP_ID)
        .flags(gio::ApplicationFlags::HANDLES_COMMAND_LINE)
        .build();
    app.add_main_option(
        "background",
        glib::Char::from(b'b'),
        glib::OptionFlags::NONE,
        glib::OptionArg::None,
        &tr("Run in the background and notify about drives with updates"),
        None,
    );
    app.add_main_option(
        "version",
        glib::Char::from(0),
        glib::OptionFlags::NONE,
        glib::OptionArg::None,
        &tr("Print the version and exit"),
        None,
    );
    app.connect_handle_local_options(|_, options| {
        if options.contains("version") {
            println!("ferry {}", ferry_gui::config::VERSION);
            return std::ops::ControlFlow::Break(glib::ExitCode::SUCCESS);
        }
        std::ops::ControlFlow::Continue(())
    });
    app.connect_command_line(|_, command_line| {
        let background = command_line.options_dict().contains("background");
        APP_BROKER.send(AppMsg::CommandLine { background });
        glib::ExitCode::SUCCESS
    });
    app.connect_activate(|_| APP_BROKER.send(AppMsg::Activate));
    // Only the primary instance starts up; a second `ferry` hands its command line over and
    // exits without building anything.
    app.connect_startup(|app| {
        relm4::set_global_css(STYLE);
        let mut window = App::builder()
            .launch_with_broker(app.clone().upcast(), &APP_BROKER)
            .detach();
        app.add_window(window.widget());
        window.detach_runtime();
    });
    app.run()
}
