//! The window: updates grouped by source, per-row and overall progress, end states, and the
//! empty and problems-only states. The same component hosts the background agent, so the
//! window and the agent share one process and one app ID.

mod a11y;
mod copy_page;
mod history_page;
mod new_apps;
mod preferences;
mod progress_card;
mod restart;
mod source_group;
mod test_hook;
mod update_row;

use std::path::PathBuf;
use std::sync::Arc;

use ferry_engine::paths::Paths;
use ferry_engine::prepare::{this_machines_removable_mounts, RemovableMount};
use ferry_schema::event::StreamError;
use ferry_schema::SourceKind;
use relm4::adw::prelude::*;
use relm4::factory::FactoryVecDeque;
use relm4::gtk::{gio, glib};
use relm4::{adw, gtk, Component, ComponentParts, ComponentSender, MessageBroker};

use crate::agent::notify::{self, NotificationAction, Notifier, RESULT_KEY};
use crate::agent::DriveWatcher;
use crate::config::{self, APP_ID};
use crate::drive_copy::{self, CopyFlow, CopyStage, Destination};
use crate::i18n::{tr, trf};
use crate::install::{InstallRequest, Launch, RunnerEvent, RunningInstall};
use crate::listing::{self, Listing};
use crate::model::InstallRun;
use copy_page::CopyPage;
use history_page::{GoBack, HistoryPage, HistoryState};
use progress_card::ProgressCard;
use source_group::{problem_row, GroupInit, GroupInput, GroupOutput, SourceGroupView};

/// Messages from GApplication (command line, activation) reach the window through this.
pub static APP_BROKER: MessageBroker<AppMsg> = MessageBroker::new();

pub const STYLE: &str = include_str!("style.css");

#[derive(Debug)]
pub enum AppMsg {
    /// `ferry` or `ferry --background`, in this process or forwarded by a second one.
    CommandLine {
        background: bool,
    },
    Activate,
    DrivesChanged,
    InstallAll,
    InstallUpdate(String),
    /// Install an app this machine does not have yet, by its update id.
    InstallNewApp(String),
    InstallDrive(String),
    Cancel,
    Runner {
        serial: u64,
        event: RunnerEvent,
    },
    Restart,
    RestartFailed(String),
    Notification {
        key: String,
        action: NotificationAction,
    },
    WindowClosed,
    Quit,
    About,
    /// "Copy Updates to a Drive…": the page opens on the choice of a drive.
    CopyOpen,
    CopyChooseFolder,
    /// A drive's mount point or a folder was chosen: plan the copy to it.
    CopyTo(PathBuf),
    /// The `index`th listed item was ticked or unticked.
    CopyToggle(usize, bool),
    CopyStart,
    CopyCancel,
    CopyRunner {
        serial: u64,
        event: RunnerEvent,
    },
    CopyRemoveDrive,
    CopyRemoved(Result<(), String>),
    /// The Preferences window.
    Preferences,
    PreferencesClosed,
    /// What `ferryctl sharing status` said.
    SharingStatus(Result<ferry_engine::sharing::SharingStatus, String>),
    /// A person moved the sharing switch.
    SharingSwitch(bool),
    /// How `ferryctl sharing on|off` ended.
    SharingSwitched(Result<(), String>),
    /// Back to the choice of a drive.
    CopyBack,
    CopyClose,
    /// The History page, read from `ferryctl history --json`.
    HistoryOpen,
    /// The History page, then the confirmation to go back (after an OS update).
    HistoryOpenToGoBack,
    HistoryLoaded(Result<Vec<ferry_engine::history::HistoryEntry>, String>),
    /// "Go Back to the Previous Version": ask first.
    HistoryGoBack,
    /// The confirmation's "Go Back" response.
    HistoryGoBackConfirmed,
    /// Answers the open confirmation with "Go Back", as its button does (an action, for
    /// the desktop and tests; nothing happens without the confirmation open).
    HistoryAnswerGoBack,
    HistoryDialogClosed,
    /// How `ferryctl rollback` ended.
    HistoryWentBack(Result<(), String>),
    HistoryClose,
}

/// A listing made off the main thread, for the reload numbered `request`.
#[derive(Debug)]
pub struct ListingLoaded {
    request: u64,
    listing: Listing,
}

/// The agent's part: it keeps the application alive with no window, and notifies.
struct Agent {
    _hold: gio::ApplicationHoldGuard,
    notifier: Notifier,
}

pub struct App {
    application: gtk::Application,
    run_dir: PathBuf,
    listing: Listing,
    listing_generation: u64,
    /// Reloads asked for; results of older ones are dropped.
    listing_request: u64,
    groups: FactoryVecDeque<SourceGroupView>,
    /// The running installation, or the last one, whose results the rows keep showing.
    run: Option<Arc<InstallRun>>,
    running: Option<RunningInstall>,
    /// The caller's own updates of a request whose other part runs as root: started, without
    /// root, once that run ends.
    queued: Option<InstallRequest>,
    serial: u64,
    agent: Option<Agent>,
    _watcher: Option<DriveWatcher>,
    restart_error: Option<String>,
    /// The copy page's flow while it is open.
    copy: Option<CopyFlow>,
    copy_drives: Vec<RemovableMount>,
    copy_running: Option<RunningInstall>,
    copy_serial: u64,
    preferences: Option<preferences::Preferences>,
    /// The History page while it is open.
    history: Option<HistoryState>,
    /// The confirmation before going back, while it is open.
    go_back_dialog: Option<gtk::MessageDialog>,
    updates_page: adw::PreferencesPage,
    /// "Also on this drive", kept after the groups.
    new_apps: new_apps::NewApps,
    sender: ComponentSender<App>,
}

pub struct AppWidgets {
    install_all: gtk::Button,
    stack: gtk::Stack,
    problems_page: adw::StatusPage,
    problems_list: gtk::Box,
    problems_generation: u64,
    card: ProgressCard,
    copy_page: CopyPage,
    history_page: HistoryPage,
}

impl Component for App {
    type CommandOutput = ListingLoaded;
    type Input = AppMsg;
    type Output = ();
    /// The application the window and the agent belong to.
    type Init = gtk::Application;
    type Root = adw::ApplicationWindow;
    type Widgets = AppWidgets;

    fn init_root() -> Self::Root {
        adw::ApplicationWindow::builder()
            .title(tr("Ferry"))
            .icon_name(APP_ID)
            .default_width(760)
            .default_height(640)
            .width_request(360)
            .height_request(400)
            .hide_on_close(true)
            .build()
    }

    fn init(
        application: gtk::Application,
        window: Self::Root,
        sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let install_all = gtk::Button::builder()
            .label(tr("Install All"))
            .css_classes(["suggested-action"])
            .tooltip_text(tr("Install every update listed"))
            .visible(false)
            .build();
        install_all.connect_clicked({
            let sender = sender.clone();
            move |_| sender.input(AppMsg::InstallAll)
        });

        let menu = gio::Menu::new();
        menu.append(
            Some(&tr("Copy Updates to a Drive…")),
            Some("app.copy-updates"),
        );
        menu.append(Some(&tr("History")), Some("app.history"));
        menu.append(Some(&tr("Preferences")), Some("app.preferences"));
        menu.append(Some(&tr("About Ferry")), Some("app.about"));
        let menu_button = gtk::MenuButton::builder()
            .icon_name("open-menu-symbolic")
            .menu_model(&menu)
            .tooltip_text(tr("Main Menu"))
            .primary(true)
            .build();
        a11y::set_label(&menu_button, &tr("Main Menu"));

        let header = adw::HeaderBar::builder()
            .title_widget(&adw::WindowTitle::new(&tr("Ferry"), ""))
            .build();
        header.pack_end(&menu_button);
        header.pack_end(&install_all);

        let empty_page = adw::StatusPage::builder()
            .icon_name("media-removable-symbolic")
            .title(tr("Plug in a USB drive with updates"))
            .description(glib::markup_escape_text(&tr(
                "Ferry checks drives for system and app updates, and lists here what it can install.",
            )))
            .vexpand(true)
            .build();

        let problems_list = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(24)
            .build();
        let problems_page = adw::StatusPage::builder()
            .icon_name("dialog-warning-symbolic")
            .child(
                &adw::Clamp::builder()
                    .maximum_size(640)
                    .child(&problems_list)
                    .build(),
            )
            .vexpand(true)
            .build();

        let updates_page = adw::PreferencesPage::new();
        let card = ProgressCard::new();
        updates_page.add(&card.root);
        card.cancel.connect_clicked({
            let sender = sender.clone();
            move |_| sender.input(AppMsg::Cancel)
        });
        card.restart.connect_clicked({
            let sender = sender.clone();
            move |_| sender.input(AppMsg::Restart)
        });
        let groups = FactoryVecDeque::builder()
            .launch(updates_page.clone())
            .forward(sender.input_sender(), |output| match output {
                GroupOutput::Install(id) => AppMsg::InstallUpdate(id),
            });

        let stack = gtk::Stack::builder()
            .transition_type(gtk::StackTransitionType::Crossfade)
            .build();
        stack.add_named(&empty_page, Some("empty"));
        stack.add_named(&problems_page, Some("problems"));
        stack.add_named(&updates_page, Some("updates"));
        let copy_page = CopyPage::new();
        stack.add_named(&copy_page.root, Some("copy"));
        let history_page = HistoryPage::new();
        stack.add_named(&history_page.root, Some("history"));

        let content = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .build();
        content.append(&header);
        content.append(&stack);
        window.set_content(Some(&content));

        window.connect_close_request({
            let sender = sender.clone();
            move |_| {
                sender.input(AppMsg::WindowClosed);
                glib::Propagation::Proceed
            }
        });
        install_app_actions(&application, &sender);
        if let Some(dir) = config::test_dump_dir() {
            test_hook::install(&window, dir);
        }

        let paths = Paths::from_env();
        let run_dir = paths.run_dir.clone();
        let watcher = {
            let sender = sender.clone();
            DriveWatcher::start(paths.drives_dir(), move || {
                sender.input(AppMsg::DrivesChanged)
            })
        };
        let watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(error) => {
                tracing::error!(%error, "cannot watch for drives; the list will not follow drives plugged in later");
                None
            }
        };

        let mut model = App {
            application,
            run_dir,
            listing: Listing::default(),
            listing_generation: 0,
            listing_request: 0,
            groups,
            run: None,
            running: None,
            queued: None,
            serial: 0,
            agent: None,
            _watcher: watcher,
            restart_error: None,
            copy: None,
            copy_drives: Vec::new(),
            copy_running: None,
            copy_serial: 0,
            preferences: None,
            history: None,
            go_back_dialog: None,
            updates_page: updates_page.clone(),
            new_apps: new_apps::NewApps::new(),
            sender: sender.clone(),
        };
        updates_page.add(&model.new_apps.group);
        // The hook's records show at once; the engine's listing follows.
        model.show_listing(listing::load_records(&model.run_dir));
        model.reload_listing(&sender);
        let widgets = AppWidgets {
            install_all,
            stack,
            problems_page,
            problems_list,
            problems_generation: u64::MAX,
            card,
            copy_page,
            history_page,
        };
        ComponentParts { model, widgets }
    }

    fn update(&mut self, message: Self::Input, sender: ComponentSender<Self>, window: &Self::Root) {
        match message {
            AppMsg::CommandLine { background: true } => self.become_agent(&sender),
            AppMsg::CommandLine { background: false } | AppMsg::Activate => window.present(),
            AppMsg::DrivesChanged => {
                self.reload_listing(&sender);
                // A drive plugged in while choosing one shows up.
                if self
                    .copy
                    .as_ref()
                    .is_some_and(|flow| flow.stage == CopyStage::Choosing)
                {
                    self.copy_drives = this_machines_removable_mounts();
                }
            }
            AppMsg::InstallAll => self.start(InstallRequest::for_all(&self.listing), &sender),
            AppMsg::InstallUpdate(id) => {
                self.start(InstallRequest::for_ids(&self.listing, &[id]), &sender)
            }
            AppMsg::InstallNewApp(id) => {
                self.start(InstallRequest::for_new_app(&self.listing, &id), &sender)
            }
            AppMsg::InstallDrive(drive) => {
                self.start(InstallRequest::for_drive(&self.listing, &drive), &sender)
            }
            AppMsg::Cancel => {
                if let (Some(running), Some(run)) = (self.running.as_mut(), self.run.as_mut()) {
                    Arc::make_mut(run).request_cancel();
                    running.cancel();
                    self.queued = None;
                    self.broadcast_run();
                }
            }
            AppMsg::Runner { serial, event } => {
                if serial == self.serial {
                    self.runner_event(event, window);
                    if self.running.is_none() {
                        if let Some(next) = self.queued.take() {
                            self.start(next, &sender);
                        }
                    }
                }
            }
            AppMsg::Restart => {
                self.restart_error = None;
                let input = sender.input_sender().clone();
                restart::request(move |error| input.emit(AppMsg::RestartFailed(error)));
            }
            AppMsg::RestartFailed(error) => self.restart_error = Some(error),
            AppMsg::Notification { key, action } => match action {
                NotificationAction::Show => window.present(),
                NotificationAction::Restart => sender.input(AppMsg::Restart),
                NotificationAction::Install => {
                    window.present();
                    if let Some(drive) = key.strip_prefix("drive:") {
                        self.start(InstallRequest::for_drive(&self.listing, drive), &sender);
                    }
                }
            },
            AppMsg::WindowClosed => self.quit_if_unneeded(window),
            AppMsg::Quit => {
                if self.agent.is_some() {
                    window.close();
                } else {
                    window.set_visible(false);
                    self.quit_if_unneeded(window);
                }
            }
            AppMsg::About => show_about(window),
            AppMsg::Preferences => match &self.preferences {
                Some(open) => open.window.present(),
                None => {
                    window.present();
                    self.preferences = Some(preferences::Preferences::open(window, &sender));
                }
            },
            AppMsg::PreferencesClosed => self.preferences = None,
            AppMsg::SharingStatus(status) => {
                if let Some(open) = &self.preferences {
                    open.show_status(status);
                }
            }
            AppMsg::SharingSwitch(on) => {
                if let Some(open) = &self.preferences {
                    open.switch_to(on, &sender);
                }
            }
            AppMsg::SharingSwitched(result) => {
                if let Some(open) = &self.preferences {
                    match result {
                        Ok(()) => open.refresh(&sender),
                        Err(error) => open.show_failure(error, &sender),
                    }
                }
            }
            AppMsg::CopyOpen => {
                window.present();
                if self.copy_running.is_none() {
                    self.copy = Some(CopyFlow::new());
                    self.copy_drives = this_machines_removable_mounts();
                }
            }
            AppMsg::CopyChooseFolder => choose_folder(window, &sender),
            AppMsg::CopyTo(path) => self.copy_plan(path, &sender),
            AppMsg::CopyToggle(index, selected) => {
                if let Some(flow) = self.copy.as_mut() {
                    flow.set_selected(index, selected);
                }
            }
            AppMsg::CopyStart => self.copy_start(&sender),
            AppMsg::CopyCancel => {
                if let (Some(flow), Some(running)) =
                    (self.copy.as_mut(), self.copy_running.as_mut())
                {
                    flow.request_cancel();
                    running.cancel();
                }
            }
            AppMsg::CopyRunner { serial, event } => {
                if serial == self.copy_serial {
                    self.copy_event(event, &sender);
                }
            }
            AppMsg::CopyRemoveDrive => {
                let removable = self
                    .copy
                    .as_ref()
                    .filter(|flow| flow.can_remove())
                    .and_then(|flow| flow.destination.as_ref()?.removable.clone());
                if let Some(removable) = removable {
                    let input = sender.input_sender().clone();
                    let spawned =
                        std::thread::Builder::new()
                            .name("power-off".into())
                            .spawn(move || {
                                input.emit(AppMsg::CopyRemoved(drive_copy::power_off(&removable)))
                            });
                    if let Err(error) = spawned {
                        sender.input(AppMsg::CopyRemoved(Err(error.to_string())));
                    }
                }
            }
            AppMsg::CopyRemoved(result) => {
                if let Some(flow) = self.copy.as_mut() {
                    flow.removal = Some(result);
                }
            }
            AppMsg::CopyBack => {
                if self.copy_running.is_none() {
                    self.copy = Some(CopyFlow::new());
                    self.copy_drives = this_machines_removable_mounts();
                }
            }
            AppMsg::CopyClose => {
                if self.copy_running.is_none() {
                    self.copy = None;
                }
            }
            AppMsg::HistoryOpen | AppMsg::HistoryOpenToGoBack => {
                window.present();
                if self.copy_running.is_none() {
                    self.copy = None;
                }
                let go_back = self.history.take().map(|h| h.go_back).unwrap_or_default();
                self.history = Some(HistoryState {
                    entries: None,
                    ask_go_back: matches!(message, AppMsg::HistoryOpenToGoBack),
                    go_back,
                });
                load_history(&sender);
            }
            AppMsg::HistoryLoaded(entries) => {
                if let Some(history) = self.history.as_mut() {
                    history.entries = Some(entries);
                    if std::mem::take(&mut history.ask_go_back) {
                        sender.input(AppMsg::HistoryGoBack);
                    }
                }
            }
            AppMsg::HistoryGoBack => {
                let offer = self
                    .history
                    .as_ref()
                    .and_then(|h| h.entries.as_ref()?.as_ref().ok())
                    .and_then(|entries| crate::history::rollback_offer(entries));
                if offer.is_some() && self.go_back_dialog.is_none() {
                    self.go_back_dialog = Some(history_page::confirm(window, offer, &sender));
                }
            }
            AppMsg::HistoryAnswerGoBack => {
                if let Some(dialog) = self.go_back_dialog.take() {
                    dialog.response(gtk::ResponseType::Accept);
                }
            }
            AppMsg::HistoryGoBackConfirmed => {
                let Some(history) = self.history.as_mut() else {
                    return;
                };
                if history.go_back == GoBack::Running {
                    return;
                }
                history.go_back = GoBack::Running;
                let elevate = !rustix::process::geteuid().is_root();
                let launch = crate::history::rollback_launch(&config::ferryctl_path(), elevate);
                let input = sender.input_sender().clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("rollback".into())
                        .spawn(move || {
                            let outcome = crate::history::run(&launch).map(drop);
                            input.emit(AppMsg::HistoryWentBack(outcome));
                        });
                if let Err(error) = spawned {
                    sender.input(AppMsg::HistoryWentBack(Err(error.to_string())));
                }
            }
            AppMsg::HistoryDialogClosed => self.go_back_dialog = None,
            AppMsg::HistoryWentBack(outcome) => {
                if let Some(history) = self.history.as_mut() {
                    let done = outcome.is_ok();
                    history.go_back = GoBack::Done(outcome);
                    if done {
                        // The rollback is in the history now.
                        load_history(&sender);
                    }
                }
            }
            AppMsg::HistoryClose => {
                if !self
                    .history
                    .as_ref()
                    .is_some_and(|h| h.go_back == GoBack::Running)
                {
                    self.history = None;
                }
            }
        }
    }

    fn update_cmd(
        &mut self,
        loaded: Self::CommandOutput,
        _sender: ComponentSender<Self>,
        _window: &Self::Root,
    ) {
        if loaded.request == self.listing_request {
            self.show_listing(loaded.listing);
        }
    }

    fn update_view(&self, widgets: &mut Self::Widgets, sender: ComponentSender<Self>) {
        let busy = self.running.is_some();
        let installable = self.has_pending();
        widgets
            .install_all
            .set_visible(installable && self.copy.is_none() && self.history.is_none());
        widgets.install_all.set_sensitive(installable && !busy);

        let page = if let Some(history) = &self.history {
            widgets.history_page.render(history, &sender);
            "history"
        } else if let Some(flow) = &self.copy {
            widgets.copy_page.render(flow, &self.copy_drives, &sender);
            "copy"
        } else if self.listing.update_count() > 0
            || !self.listing.available.is_empty()
            || self.run.is_some()
        {
            "updates"
        } else if self.listing.only_problems() {
            "problems"
        } else {
            "empty"
        };
        widgets.stack.set_visible_child_name(page);
        if page == "problems" && widgets.problems_generation != self.listing_generation {
            fill_problems(
                &widgets.problems_page,
                &widgets.problems_list,
                &self.listing,
            );
            widgets.problems_generation = self.listing_generation;
        }
        widgets
            .card
            .render(self.run.as_deref(), self.restart_error.as_deref());
        self.new_apps.follow(busy, |id| self.is_done(id));
    }
}

impl App {
    /// Lists again off the main thread: first offline and quick (drives only, fast), then
    /// with the remotes' servers, which may take seconds to answer.
    fn reload_listing(&mut self, sender: &ComponentSender<Self>) {
        self.listing_request += 1;
        let request = self.listing_request;
        let run_dir = self.run_dir.clone();
        sender.spawn_command(move |out| {
            let listing = listing::load_with(&run_dir, listing::options(false));
            out.emit(ListingLoaded { request, listing });
            let listing = listing::load_with(&run_dir, listing::options(true));
            out.emit(ListingLoaded { request, listing });
        });
    }

    fn show_listing(&mut self, listing: Listing) {
        if listing != self.listing || self.listing_generation == 0 {
            tracing::info!(
                sources = listing.groups.len(),
                updates = listing.update_count(),
                "listing changed"
            );
            self.listing = listing;
            self.listing_generation += 1;
            let busy = self.running.is_some();
            let mut guard = self.groups.guard();
            guard.clear();
            for group in &self.listing.groups {
                guard.push_back(GroupInit {
                    group: group.clone(),
                    run: self.run.clone(),
                    busy,
                });
            }
            drop(guard);
            // After the groups, which were just added again.
            self.updates_page.remove(&self.new_apps.group);
            self.updates_page.add(&self.new_apps.group);
            let input = self.sender.input_sender().clone();
            self.new_apps.show(&self.listing, move |id| {
                input.emit(AppMsg::InstallNewApp(id))
            });
        }
        if let Some(agent) = self.agent.as_mut() {
            agent.notifier.sync_drives(&self.listing);
        }
    }

    fn become_agent(&mut self, sender: &ComponentSender<Self>) {
        if self.agent.is_some() {
            return;
        }
        tracing::info!("running in the background");
        let input = sender.input_sender().clone();
        let mut notifier =
            Notifier::new(move |key, action| input.emit(AppMsg::Notification { key, action }));
        notifier.sync_drives(&self.listing);
        self.agent = Some(Agent {
            _hold: self.application.hold(),
            notifier,
        });
    }

    fn start(&mut self, request: InstallRequest, sender: &ComponentSender<Self>) {
        let request = request.without(|id| self.is_done(id));
        if self.running.is_some() {
            tracing::info!("an installation is already running");
            return;
        }
        if request.is_empty() {
            tracing::info!("nothing to install");
            return;
        }
        if let Some(agent) = self.agent.as_mut() {
            for source in &request.sources {
                for group in &self.listing.groups {
                    if group
                        .drive
                        .as_ref()
                        .is_some_and(|drive| &drive.mount == source)
                    {
                        agent.notifier.settle(&group.key);
                    }
                }
            }
            agent.notifier.withdraw(RESULT_KEY);
        }
        // Root is given only what it accepts on a user's behalf (the system's own targets);
        // the user's own installations follow without root.
        let (request, elevate) = if request.needs_root() {
            let (as_root, own) = request.split_for_root();
            if as_root.is_empty() {
                (own, false)
            } else {
                self.queued = Some(own).filter(|own| !own.is_empty());
                (as_root, true)
            }
        } else {
            (request, false)
        };
        let ferryctl = config::ferryctl_path();
        let launch = request.launch(&ferryctl, elevate);
        self.serial += 1;
        let serial = self.serial;
        let input = sender.input_sender().clone();
        let mut run = InstallRun::after(self.run.as_deref(), &request.updates);
        match RunningInstall::spawn(&launch, move |event| {
            input.emit(AppMsg::Runner { serial, event })
        }) {
            Ok(running) => self.running = Some(running),
            Err(error) => {
                tracing::error!(program = %launch.program.display(), %error, "cannot start the installer");
                run.failed_to_start(trf(
                    "Ferry could not start its installer {program} ({error}). Reinstall Ferry, or ask your administrator.",
                    &[("program", &launch.program.display()), ("error", &error)],
                ));
            }
        }
        self.run = Some(Arc::new(run));
        self.restart_error = None;
        self.broadcast_run();
        if self.running.is_none() {
            self.finished();
        }
    }

    fn runner_event(&mut self, event: RunnerEvent, window: &adw::ApplicationWindow) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let run = Arc::make_mut(run);
        match event {
            RunnerEvent::Line(line) => {
                if let Err(StreamError::Version { found }) = run.apply_line(&line) {
                    tracing::error!(
                        found,
                        "the installer's event stream has another version; stopping it"
                    );
                    if let Some(running) = self.running.as_mut() {
                        running.stop();
                    }
                }
            }
            RunnerEvent::LineTooLong => {
                tracing::warn!("skipped an overlong line of the installer's output")
            }
            RunnerEvent::Exited(exit) => {
                run.child_exited(&exit);
                self.running = None;
                self.finished();
                self.broadcast_run();
                self.quit_if_unneeded(window);
                return;
            }
        }
        self.broadcast_run();
    }

    /// Runs the dry run for `path`, to list what can go there.
    fn copy_plan(&mut self, path: PathBuf, sender: &ComponentSender<Self>) {
        if self.copy_running.is_some() {
            return;
        }
        let mut flow = CopyFlow::new();
        flow.choose(Destination::folder(&path, &self.copy_drives));
        let launch = Launch {
            program: config::ferryctl_path(),
            args: flow.plan_args(),
            elevated: false,
        };
        self.copy = Some(flow);
        self.copy_spawn(&launch, sender);
    }

    fn copy_start(&mut self, sender: &ComponentSender<Self>) {
        let Some(flow) = self.copy.as_mut() else {
            return;
        };
        if self.copy_running.is_some() || !flow.can_copy() {
            return;
        }
        let launch = flow.start_copy(
            &config::ferryctl_path(),
            rustix::process::geteuid().is_root(),
        );
        if let Some(launch) = launch {
            self.copy_spawn(&launch, sender);
        }
    }

    fn copy_spawn(&mut self, launch: &Launch, sender: &ComponentSender<Self>) {
        self.copy_serial += 1;
        let serial = self.copy_serial;
        let input = sender.input_sender().clone();
        match RunningInstall::spawn(launch, move |event| {
            input.emit(AppMsg::CopyRunner { serial, event })
        }) {
            Ok(running) => self.copy_running = Some(running),
            Err(error) => {
                tracing::error!(program = %launch.program.display(), %error, "cannot start ferryctl prepare-drive");
                if let Some(flow) = self.copy.as_mut() {
                    flow.failed_to_start(trf(
                        "Ferry could not start {program} ({error}). Reinstall Ferry, or ask your administrator.",
                        &[("program", &launch.program.display()), ("error", &error)],
                    ));
                }
            }
        }
    }

    fn copy_event(&mut self, event: RunnerEvent, sender: &ComponentSender<Self>) {
        let Some(flow) = self.copy.as_mut() else {
            return;
        };
        match event {
            RunnerEvent::Line(line) => {
                if let Err(StreamError::Version { found }) = flow.apply_line(&line) {
                    tracing::error!(
                        found,
                        "prepare-drive's event stream has another version; stopping it"
                    );
                    if let Some(running) = self.copy_running.as_mut() {
                        running.stop();
                    }
                }
            }
            RunnerEvent::LineTooLong => tracing::warn!("skipped an overlong line of prepare-drive"),
            RunnerEvent::Exited(exit) => {
                flow.child_exited(&exit);
                self.copy_running = None;
                if flow.stage == CopyStage::Done {
                    tracing::info!("the drive is written and read back");
                }
                // The apps installed only for this user follow the run as root.
                if let Some(next) = flow.next_run() {
                    self.copy_spawn(&next, sender);
                }
            }
        }
    }

    fn is_done(&self, id: &str) -> bool {
        self.run.as_ref().is_some_and(|run| run.is_done(id))
    }

    /// Whether anything listed is left to install.
    fn has_pending(&self) -> bool {
        self.listing
            .groups
            .iter()
            .filter(|group| group.installable())
            .flat_map(|group| &group.updates)
            .any(|update| !self.is_done(&update.id))
    }

    /// Tells a person who may not be looking how the installation ended.
    fn finished(&mut self) {
        let (Some(agent), Some(outcome)) = (
            self.agent.as_mut(),
            self.run.as_ref().and_then(|run| run.outcome()),
        ) else {
            return;
        };
        if let Some(mut content) = notify::for_outcome(outcome) {
            content.fingerprint = format!("{}:{}", self.serial, content.fingerprint);
            agent.notifier.show(RESULT_KEY, &content);
        }
    }

    fn broadcast_run(&self) {
        self.groups.broadcast(GroupInput::State {
            run: self.run.clone(),
            busy: self.running.is_some(),
        });
    }

    /// Without the agent, the app ends when its window is closed and nothing is running.
    fn quit_if_unneeded(&self, window: &adw::ApplicationWindow) {
        if self.agent.is_none() && self.running.is_none() && !window.is_visible() {
            self.application.quit();
        }
    }
}

fn install_app_actions(app: &gtk::Application, sender: &ComponentSender<App>) {
    let quit = gio::SimpleAction::new("quit", None);
    quit.connect_activate({
        let sender = sender.clone();
        move |_, _| sender.input(AppMsg::Quit)
    });
    app.add_action(&quit);
    let about = gio::SimpleAction::new("about", None);
    about.connect_activate({
        let sender = sender.clone();
        move |_, _| sender.input(AppMsg::About)
    });
    app.add_action(&about);
    // Exported on D-Bus with the application, so the desktop (and tests) can start them.
    let install_all = gio::SimpleAction::new("install-all", None);
    install_all.connect_activate({
        let sender = sender.clone();
        move |_, _| sender.input(AppMsg::InstallAll)
    });
    app.add_action(&install_all);
    let install_new_app = gio::SimpleAction::new("install-new-app", Some(glib::VariantTy::STRING));
    install_new_app.connect_activate({
        let sender = sender.clone();
        move |_, id| {
            if let Some(id) = id.and_then(|id| id.str()) {
                sender.input(AppMsg::InstallNewApp(id.to_owned()));
            }
        }
    });
    app.add_action(&install_new_app);
    let install_drive = gio::SimpleAction::new("install-drive", Some(glib::VariantTy::STRING));
    install_drive.connect_activate({
        let sender = sender.clone();
        move |_, drive| {
            if let Some(drive) = drive.and_then(|drive| drive.str()) {
                sender.input(AppMsg::InstallDrive(drive.to_owned()));
            }
        }
    });
    app.add_action(&install_drive);
    let cancel = gio::SimpleAction::new("cancel", None);
    cancel.connect_activate({
        let sender = sender.clone();
        move |_, _| sender.input(AppMsg::Cancel)
    });
    app.add_action(&cancel);
    // The copy page's steps, as actions too, so the desktop and tests can drive them.
    for (name, message) in [
        ("copy-updates", (|| AppMsg::CopyOpen) as fn() -> AppMsg),
        ("preferences", || AppMsg::Preferences),
        ("history", || AppMsg::HistoryOpen),
        ("go-back", || AppMsg::HistoryOpenToGoBack),
        ("go-back-answer", || AppMsg::HistoryAnswerGoBack),
        ("copy-start", || AppMsg::CopyStart),
        ("copy-cancel", || AppMsg::CopyCancel),
    ] {
        let action = gio::SimpleAction::new(name, None);
        let sender = sender.clone();
        action.connect_activate(move |_, _| sender.input(message()));
        app.add_action(&action);
    }
    let copy_to = gio::SimpleAction::new("copy-to", Some(glib::VariantTy::STRING));
    copy_to.connect_activate({
        let sender = sender.clone();
        move |_, path| {
            if let Some(path) = path.and_then(|path| path.str()) {
                sender.input(AppMsg::CopyTo(PathBuf::from(path)));
            }
        }
    });
    app.add_action(&copy_to);
    // The Preferences switch, for the desktop and tests (the window must be open).
    let share_nearby = gio::SimpleAction::new("share-nearby", Some(glib::VariantTy::BOOLEAN));
    share_nearby.connect_activate({
        let sender = sender.clone();
        move |_, on| {
            if let Some(on) = on.and_then(|on| on.get::<bool>()) {
                sender.input(AppMsg::SharingSwitch(on));
            }
        }
    });
    app.add_action(&share_nearby);
    app.set_accels_for_action("app.quit", &["<Control>q"]);
    app.set_accels_for_action("app.preferences", &["<Control>comma"]);
    app.set_accels_for_action("window.close", &["<Control>w"]);
}

/// A page that scrolls up and down, never sideways: a column laid out from the state `S` it
/// shows, and laid out again only when that state changes.
struct StatePage<S> {
    root: gtk::ScrolledWindow,
    content: gtk::Box,
    shown: Option<S>,
}

impl<S: PartialEq + Clone> StatePage<S> {
    fn new() -> Self {
        let content = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .vexpand(true)
            .build();
        let root = gtk::ScrolledWindow::builder()
            .hscrollbar_policy(gtk::PolicyType::Never)
            .vexpand(true)
            .child(&content)
            .build();
        Self {
            root,
            content,
            shown: None,
        }
    }

    /// The emptied column to lay `state` out in, or None when the page already shows it.
    fn relayout(&mut self, state: &S) -> Option<gtk::Box> {
        if self.shown.as_ref() == Some(state) {
            return None;
        }
        self.shown = Some(state.clone());
        while let Some(child) = self.content.first_child() {
            self.content.remove(&child);
        }
        Some(self.content.clone())
    }
}

/// A folder to copy the updates to.
fn choose_folder(window: &adw::ApplicationWindow, sender: &ComponentSender<App>) {
    let chooser = gtk::FileChooserNative::builder()
        .title(tr("Choose a Folder"))
        .action(gtk::FileChooserAction::SelectFolder)
        .accept_label(tr("Choose"))
        .modal(true)
        .transient_for(window)
        .build();
    let sender = sender.clone();
    chooser.connect_response(move |chooser, response| {
        if response == gtk::ResponseType::Accept {
            if let Some(path) = chooser.file().and_then(|file| file.path()) {
                sender.input(AppMsg::CopyTo(path));
            }
        }
        chooser.destroy();
    });
    chooser.show();
}

/// Reads `ferryctl history --json` off the main thread.
fn load_history(sender: &ComponentSender<App>) {
    let input = sender.input_sender().clone();
    let launch = crate::history::list_launch(&config::ferryctl_path());
    let spawned = std::thread::Builder::new()
        .name("history".into())
        .spawn(move || {
            let entries = crate::history::run(&launch).and_then(|out| crate::history::parse(&out));
            input.emit(AppMsg::HistoryLoaded(entries));
        });
    if let Err(error) = spawned {
        sender.input(AppMsg::HistoryLoaded(Err(error.to_string())));
    }
}

fn show_about(window: &adw::ApplicationWindow) {
    gtk::AboutDialog::builder()
        .transient_for(window)
        .modal(true)
        .program_name(tr("Ferry"))
        .logo_icon_name(APP_ID)
        .version(config::VERSION)
        .comments(tr("Install system and app updates from USB drives"))
        .website("https://github.com/ferry-updates/ferry")
        .license_type(gtk::License::Gpl30)
        .build()
        .present();
}

/// The problems-only state: every drive and why nothing on it can be installed.
fn fill_problems(page: &adw::StatusPage, list: &gtk::Box, listing: &Listing) {
    while let Some(child) = list.first_child() {
        list.remove(&child);
    }
    let groups: Vec<_> = listing
        .groups
        .iter()
        .filter(|group| !group.problems.is_empty())
        .collect();
    let only_drives = groups.iter().all(|group| group.kind == SourceKind::Drive);
    let title = match groups.as_slice() {
        [only] if only_drives => trf(
            "Nothing can be installed from {label}",
            &[("label", &only.title)],
        ),
        _ if only_drives => tr("Nothing can be installed from these drives"),
        _ => tr("No update can be installed"),
    };
    page.set_title(&title);
    page.set_description(Some(&glib::markup_escape_text(&tr(
        "Ferry found updates, but checking them showed problems:",
    ))));
    for group in groups {
        let box_group = adw::PreferencesGroup::new();
        if listing.groups.len() > 1 {
            box_group.set_title(&glib::markup_escape_text(&group.title));
        }
        for problem in &group.problems {
            box_group.add(&problem_row(problem));
        }
        list.append(&box_group);
    }
}
