//! UI tests: the real `ferry` binary under Xvfb, on a private D-Bus session bus, with dunst as
//! the notification server. A fake `ferryctl` (tests/data/fake-ferryctl.sh) replays recorded
//! event streams. The window's test hook (`FERRY_TEST_DUMP_DIR`) writes its widget tree and a
//! rendering after every visible change; the tests wait on those files with inotify, assert on
//! the tree, and keep the renderings as screenshots in target/screenshots/. The
//! `accessibility` scenario reads the window as a screen reader does, over AT-SPI
//! (tests/atspi_support).
//!
//! Run with `cargo test -p ferry --test ui`. Without a display it starts itself again under
//! `xvfb-run` and `dbus-run-session`. `FERRY_UI_KEEP=1` keeps the scratch directory (logs,
//! every frame) for a look afterwards.

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use ferry_tests::cmd::wait_for;
use ferry_tests::flatpak::{AppSpec, FlatpakFixture, APP_NAME, REMOTE};

/// The app a drive offers that the machine does not have.
const NEW_APP_ID: &str = "org.example.Notes";
const NEW_APP_NAME: &str = "Example Notes";
use ferry_tests::http::StaticServer;
use inotify::{Inotify, WatchMask};
use rustix::event::{PollFd, PollFlags, Timespec};

mod atspi_support;
mod session_support;

use atspi_support::{A11yBus, Tree, STATE_FOCUSABLE, STATE_FOCUSED, STATE_SENSITIVE};

use session_support::{gdbus_call, gdbus_wait, stdout_of};

const SESSION_MARK: &str = "FERRY_UI_SESSION";
const DEADLINE: Duration = Duration::from_secs(60);
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

type Scenario = fn(&Session) -> Result<()>;

/// Every scenario, each a test of its own as test runners list it: (test name, what it
/// shows, the scenario).
const SCENARIOS: [(&str, &str, Scenario); 15] = [
    (
        "empty_then_drive",
        "empty state, then a drive appears",
        empty_then_drive,
    ),
    (
        "runtime_with_its_app",
        "a runtime that comes with its app",
        runtime_with_its_app,
    ),
    (
        "a_language_to_add",
        "translations that get a language set since",
        a_language_to_add,
    ),
    (
        "agent_notifies_and_installs",
        "agent: notification, Install through D-Bus, progress, restart",
        agent_notifies_and_installs,
    ),
    (
        "failures",
        "failures: engine message, dead child, unknown stream",
        failures,
    ),
    ("problems_only", "drive with only problems", problems_only),
    ("german_and_cancel", "German, and cancel", german_and_cancel),
    (
        "agent_problems_and_withdrawal",
        "agent: a drive with only problems, and its removal",
        agent_problems_and_withdrawal,
    ),
    (
        "internet_update_of_a_per_user_app",
        "a per-user app's update from the Internet",
        internet_update_of_a_per_user_app,
    ),
    (
        "copy_updates_to_a_drive",
        "copy updates to a drive: choose, copying, done",
        copy_updates_to_a_drive,
    ),
    (
        "new_app_from_a_drive",
        "also on this drive: a new app with its runtime, installed",
        new_app_from_a_drive,
    ),
    (
        "accessibility",
        "accessibility: the AT-SPI tree in each state, and Install through it",
        accessibility,
    ),
    ("dbus_activation", "D-Bus activation", dbus_activation),
    (
        "preferences_share_nearby",
        "preferences: share updates with computers nearby",
        preferences_share_nearby,
    ),
    (
        "history_and_go_back",
        "history page, then going back to the previous OS version",
        history_and_go_back,
    ),
];

/// The scenarios to run in the session, by test name, passed from the outer process.
const SELECTED: &str = "FERRY_UI_SCENARIOS";

fn main() -> ExitCode {
    // Speak the test harness protocol that `cargo test` and `cargo nextest` use: listing,
    // filters, and `--ignored` (no scenario is ignored).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ignored = args.iter().any(|arg| arg == "--ignored");
    if args.iter().any(|arg| arg == "--list") {
        if !ignored {
            for (name, _, _) in SCENARIOS {
                println!("{name}: test");
            }
        }
        return ExitCode::SUCCESS;
    }
    if ignored {
        return ExitCode::SUCCESS;
    }
    if std::env::var_os(SESSION_MARK).is_none() {
        let exact = args.iter().any(|arg| arg == "--exact");
        let filters: Vec<&String> = args.iter().filter(|arg| !arg.starts_with('-')).collect();
        let selected: Vec<&str> = SCENARIOS
            .iter()
            .map(|(name, _, _)| *name)
            .filter(|name| {
                filters.is_empty()
                    || filters.iter().any(|filter| {
                        if exact {
                            filter.as_str() == *name
                        } else {
                            name.contains(filter.as_str())
                        }
                    })
            })
            .collect();
        if selected.is_empty() {
            return ExitCode::SUCCESS;
        }
        // The window lists online too, which browses for computers nearby: keep that
        // multicast off the host's links. Everything the session starts inherits this.
        if let Err(error) = ferry_tests::http::isolate_network() {
            eprintln!("ui: {error}");
            return ExitCode::FAILURE;
        }
        return run_in_session(&selected.join(","));
    }
    let selected = std::env::var(SELECTED).unwrap_or_default();
    let session = match Session::start() {
        Ok(session) => session,
        Err(error) => {
            eprintln!("ui: cannot set up the test session: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = 0;
    // In the listed order: D-Bus activation last, as a failure could leave the activated
    // app running, owning the name.
    for (name, what, scenario) in SCENARIOS {
        if !selected.split(',').any(|chosen| chosen == name) {
            continue;
        }
        eprintln!("ui: {what} ...");
        match scenario(&session) {
            Ok(()) => eprintln!("ui: {what}: ok"),
            Err(error) => {
                failed += 1;
                eprintln!("ui: {what}: FAILED: {error:#}");
            }
        }
    }
    eprintln!("ui: screenshots in {}", screenshots_dir().display());
    if std::env::var_os("FERRY_UI_KEEP").is_some() {
        let kept = session.root.path().to_path_buf();
        std::mem::forget(session);
        eprintln!("ui: kept {} (FERRY_UI_KEEP)", kept.display());
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("ui: {failed} scenario(s) failed");
        ExitCode::FAILURE
    }
}

/// Starts this binary again inside Xvfb and a private session bus.
fn run_in_session(selected: &str) -> ExitCode {
    for tool in [
        "xvfb-run",
        "dbus-run-session",
        "dunst",
        "dunstctl",
        "dbus-monitor",
        "gdbus",
        "import",
    ] {
        if which(tool).is_none() {
            eprintln!("ui: {tool} is missing; run scripts/install-deps.sh");
            return ExitCode::FAILURE;
        }
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("ui: cannot find this test binary: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The D-Bus service file, rewritten the way `make install` does, where the session bus
    // looks for services: activation starts this build's `ferry`.
    let services = match install_dbus_service() {
        Ok(services) => services,
        Err(error) => {
            eprintln!("ui: cannot install the D-Bus service file: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let mut bus_data_dirs = services.path().as_os_str().to_owned();
    bus_data_dirs.push(":/usr/local/share:/usr/share");
    let status = Command::new("xvfb-run")
        .args([
            "--auto-servernum",
            "--server-args=-screen 0 1280x900x24 -nolisten tcp",
        ])
        .arg("dbus-run-session")
        .arg("--")
        .arg(exe)
        .env(SESSION_MARK, "1")
        .env(SELECTED, selected)
        .env("XDG_DATA_DIRS", bus_data_dirs)
        .status();
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("ui: the session ended with {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("ui: cannot start xvfb-run: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `DIR/dbus-1/services/io.github.ferry.Ferry.service` with `@bindir@` replaced by the
/// directory of the `ferry` under test.
fn install_dbus_service() -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let name = "io.github.ferry.Ferry.service";
    let template = fs::read_to_string(repo_root().join("data/dbus-1/services").join(name))?;
    let bindir = Path::new(FERRY)
        .parent()
        .context("the ferry binary has no directory")?;
    let services = dir.path().join("dbus-1/services");
    fs::create_dir_all(&services)?;
    fs::write(
        services.join(name),
        template.replace("@bindir@", &bindir.display().to_string()),
    )?;
    Ok(dir)
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    })
}

fn repo_root() -> PathBuf {
    Path::new(MANIFEST_DIR).join("..")
}

fn data(name: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join("tests/data").join(name)
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    target.join("screenshots")
}

/// Kills a child when dropped, so a failing scenario never leaves the next one a running app.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The session-wide pieces: dunst, a bus monitor, compiled translations, GTK settings.
struct Session {
    root: tempfile::TempDir,
    locale_dir: PathBuf,
    monitor_log: PathBuf,
    pick_log: PathBuf,
    _dunst: Guard,
    _monitor: Guard,
}

impl Session {
    fn start() -> Result<Self> {
        let root = tempfile::tempdir()?;
        let locale_dir = root.path().join("locale");
        stdout_of(
            Command::new(repo_root().join("scripts/i18n.sh"))
                .arg("compile")
                .arg(&locale_dir),
        )?;

        // Animations off: every frame the hook records is a settled one.
        let gtk_dir = root.path().join("config/gtk-4.0");
        fs::create_dir_all(&gtk_dir)?;
        fs::write(
            gtk_dir.join("settings.ini"),
            "[Settings]\ngtk-font-name=Cantarell 11\ngtk-icon-theme-name=Adwaita\ngtk-enable-animations=false\n",
        )?;

        let monitor_log = root.path().join("dbus-monitor.log");
        let monitor = Command::new("dbus-monitor")
            .args(["--session", "interface='org.freedesktop.Notifications'"])
            .stdout(fs::File::create(&monitor_log)?)
            .stderr(Stdio::null())
            .spawn()
            .context("starting dbus-monitor")?;
        let monitor = Guard(monitor);

        let pick_log = root.path().join("dunst-menu.log");
        let dunstrc = root.path().join("dunstrc");
        fs::write(
            &dunstrc,
            format!(
                "[global]\n    font = Cantarell 11\n    width = 380\n    origin = top-right\n    offset = 16x16\n    \
                 frame_width = 1\n    frame_color = \"#d5d5d5\"\n    corner_radius = 12\n    padding = 12\n    \
                 horizontal_padding = 14\n    icon_position = left\n    min_icon_size = 48\n    max_icon_size = 48\n    \
                 icon_path = {}\n    \
                 format = \"<b>%s</b>\\n%b\"\n    dmenu = {}\n\n\
                 [urgency_low]\n    background = \"#ffffff\"\n    foreground = \"#241f31\"\n    timeout = 0\n\n\
                 [urgency_normal]\n    background = \"#ffffff\"\n    foreground = \"#241f31\"\n    timeout = 0\n",
                repo_root().join("data/icons/hicolor/scalable/apps").display(),
                data("pick-install.sh").display()
            ),
        )?;
        let dunst = Command::new("dunst")
            .arg("-config")
            .arg(&dunstrc)
            .env("PICK_LOG", &pick_log)
            .env("XDG_DATA_DIRS", data_dirs())
            .stdout(Stdio::null())
            .stderr(fs::File::create(root.path().join("dunst.log"))?)
            .spawn()
            .context("starting dunst")?;
        let dunst = Guard(dunst);
        stdout_of(Command::new("gdbus").args([
            "wait",
            "--session",
            "--timeout",
            "30",
            "org.freedesktop.Notifications",
        ]))
        .context("dunst did not take the notification bus name")?;
        fs::create_dir_all(screenshots_dir())?;
        Ok(Self {
            root,
            locale_dir,
            monitor_log,
            pick_log,
            _dunst: dunst,
            _monitor: monitor,
        })
    }

    fn monitor_text(&self) -> String {
        fs::read_to_string(&self.monitor_log).unwrap_or_default()
    }

    /// Waits until the bus monitor has seen something satisfying `check`.
    fn wait_for_bus(&self, what: &str, check: impl Fn(&str) -> bool) -> Result<()> {
        wait_for_file(&self.monitor_log, what, |text| check(text).then_some(()))
    }
}

fn data_dirs() -> OsString {
    let mut dirs = repo_root().join("data").into_os_string();
    dirs.push(":/usr/local/share:/usr/share");
    dirs
}

/// One scenario's world: a runtime dir with drive records, the fake ferryctl's settings, and
/// the window's dump dir.
#[derive(Clone)]
struct World<'a> {
    session: &'a Session,
    dir: PathBuf,
    drives: PathBuf,
    dump: PathBuf,
    ctl_config: PathBuf,
    ctl_args: PathBuf,
    gate: PathBuf,
    language: Option<&'a str>,
    /// What the app sees of the machine: HOME and the Flatpak directories.
    machine: Vec<(String, OsString)>,
}

impl<'a> World<'a> {
    fn new(session: &'a Session, name: &str) -> Result<Self> {
        let dir = session.root.path().join(name);
        let world = Self {
            session,
            drives: dir.join("run/drives"),
            dump: dir.join("dump"),
            ctl_config: dir.join("fake-ferryctl.conf"),
            ctl_args: dir.join("ferryctl-args"),
            gate: dir.join("gate"),
            machine: Vec::new(),
            dir,
            language: None,
        };
        fs::create_dir_all(&world.dir)?;
        // An empty machine of its own: nothing installed, so nothing from the Internet.
        let mut machine = Vec::new();
        for (name, sub) in [
            ("HOME", "home"),
            ("FLATPAK_USER_DIR", "flatpak-user"),
            ("FLATPAK_SYSTEM_DIR", "flatpak-system"),
            ("FLATPAK_CONFIG_DIR", "flatpak-config"),
            ("XDG_CACHE_HOME", "cache"),
        ] {
            let path = world.dir.join("machine").join(sub);
            fs::create_dir_all(&path)?;
            machine.push((name.to_owned(), path.into_os_string()));
        }
        let mut world = world;
        world.machine = machine;
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &world.gate,
            rustix::fs::Mode::from_raw_mode(0o600),
        )?;
        world.fake_ctl("install-all-ok.jsonl", None, &[])?;
        Ok(world)
    }

    /// What the fake ferryctl does on its next run.
    fn fake_ctl(
        &self,
        stream: &str,
        pause_after: Option<usize>,
        extra: &[(&str, &str)],
    ) -> Result<()> {
        let mut config = format!(
            "FAKE_CTL_ARGS='{}'\nFAKE_CTL_STREAM='{}'\nFAKE_CTL_GATE='{}'\n",
            self.ctl_args.display(),
            data(&format!("streams/{stream}")).display(),
            self.gate.display()
        );
        if let Some(lines) = pause_after {
            config.push_str(&format!("FAKE_CTL_PAUSE_AFTER={lines}\n"));
        }
        for (key, value) in extra {
            config.push_str(&format!("{key}={value}\n"));
        }
        fs::write(&self.ctl_config, config)?;
        Ok(())
    }

    fn add_drive(&self, name: &str) -> Result<()> {
        self.add_record(name, &fs::read_to_string(data(&format!("drives/{name}")))?)
    }

    /// Writes a drive record as the hook does: a temporary file renamed into place.
    fn add_record(&self, name: &str, text: &str) -> Result<()> {
        fs::create_dir_all(&self.drives)?;
        let temporary = self.drives.join(format!(".{name}.tmp"));
        fs::write(&temporary, text)?;
        fs::rename(&temporary, self.drives.join(name))?;
        Ok(())
    }

    fn remove_drive(&self, name: &str) -> Result<()> {
        fs::remove_file(self.drives.join(name))?;
        Ok(())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(FERRY);
        command
            .args(args)
            .env("FERRY_RUN_DIR", self.drives.parent().unwrap_or(&self.dir))
            .env("FERRY_CTL", data("fake-ferryctl.sh"))
            .env("FAKE_CTL_CONFIG", &self.ctl_config)
            .env("FERRY_TEST_DUMP_DIR", &self.dump)
            .env("FERRY_LOCALEDIR", &self.session.locale_dir)
            .env("FERRY_LOG", "info")
            .env("GDK_BACKEND", "x11")
            // Registered on the accessibility bus, whatever the caller's environment says.
            .env("GTK_A11Y", "atspi")
            .env("XDG_CONFIG_HOME", self.session.root.path().join("config"))
            .env("XDG_DATA_DIRS", data_dirs())
            .env("LANG", "C.UTF-8")
            .env_remove("OSTREE_SYSROOT")
            .env_remove("XDG_DATA_HOME")
            .envs(self.machine.iter().map(|(name, value)| (name, value)))
            .env_remove("LC_ALL")
            .env_remove("LC_MESSAGES")
            .stdout(Stdio::null())
            .stderr(
                fs::File::options()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("ferry.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            );
        match self.language {
            Some(language) => command.env("LANGUAGE", language),
            None => command.env_remove("LANGUAGE"),
        };
        command
    }

    fn start(&self, args: &[&str]) -> Result<Guard> {
        let child = self.command(args).spawn().context("starting ferry")?;
        Ok(Guard(child))
    }

    /// Starts the app (or hands the command line to the running one) and waits for that
    /// process to be done with it.
    fn run_remote(&self, args: &[&str]) -> Result<()> {
        let status = self.command(args).status().context("starting ferry")?;
        ensure!(status.success(), "ferry {args:?} ended with {status}");
        Ok(())
    }

    fn wait_for_app_on_bus(&self) -> Result<()> {
        stdout_of(&mut gdbus_wait("io.github.ferry.Ferry"))
            .context("the app did not register on the session bus")?;
        Ok(())
    }

    /// Activates one of the app's actions the way the desktop does, over D-Bus.
    fn activate(&self, action: &str) -> Result<()> {
        self.activate_with_parameter(action, "[]")
    }

    /// Activates an action that takes a boolean, over D-Bus.
    fn activate_with_bool(&self, action: &str, value: bool) -> Result<()> {
        self.activate_with_parameter(action, &format!("[<{value}>]"))
    }

    /// Activates an action that takes a string, as the desktop does, over D-Bus.
    fn activate_with(&self, action: &str, value: &str) -> Result<()> {
        let parameter = format!("[<'{}'>]", value.replace('\\', "\\\\").replace('\'', "\\'"));
        self.activate_with_parameter(action, &parameter)
    }

    /// `org.gtk.Actions.Activate(action, parameter, {})` on the app, over D-Bus.
    fn activate_with_parameter(&self, action: &str, parameter: &str) -> Result<()> {
        stdout_of(&mut gdbus_call(
            "io.github.ferry.Ferry",
            "/io/github/ferry/Ferry",
            "org.gtk.Actions.Activate",
            &[action, parameter, "{}"],
        ))?;
        Ok(())
    }

    /// Runs the app as the Flatpak fixture's client machine, with the session's GTK settings
    /// and runtime dir, its per-user installation given as `FLATPAK_USER_DIR`.
    fn use_flatpak_client(&mut self, fixture: &FlatpakFixture) {
        self.machine = fixture
            .client
            .vars()
            .into_iter()
            .filter(|(name, _)| !matches!(name.as_str(), "XDG_CONFIG_HOME" | "XDG_RUNTIME_DIR"))
            .collect();
        self.machine.push((
            "FLATPAK_USER_DIR".to_owned(),
            fixture.client.user_installation().into_os_string(),
        ));
    }

    /// Opens the preferences once the app is on the bus; the world to watch them in.
    fn open_preferences(&self) -> Result<World<'a>> {
        self.wait_for_app_on_bus()?;
        self.activate("preferences")?;
        Ok(World {
            dump: self.dump.join("preferences"),
            ..self.clone()
        })
    }

    /// Requires the second `ferryctl install` run to have asked only for the tool app, whose
    /// update failed (no OS); `complaint` says what asked for more.
    fn ensure_second_run_asked_only_for_the_tool(&self, complaint: &str) -> Result<()> {
        let args = fs::read_to_string(&self.ctl_args)?;
        let second_run = args.split("--\n").nth(1).unwrap_or_default();
        ensure!(
            second_run.lines().last() == Some("app/org.example.Tool/x86_64/stable")
                && !second_run.contains("exampleos"),
            "{complaint}:\n{second_run}"
        );
        Ok(())
    }

    fn release_gate(&self) -> Result<()> {
        let mut gate = fs::OpenOptions::new().write(true).open(&self.gate)?;
        gate.write_all(b"go\n")?;
        Ok(())
    }

    /// Waits for a painted frame whose widget tree satisfies `check`; returns it.
    fn wait_for_frame(&self, what: &str, check: impl Fn(&str) -> bool) -> Result<Frame> {
        fs::create_dir_all(&self.dump)?;
        let latest = self.dump.join("latest");
        let dump = self.dump.clone();
        let mut last_text = String::new();
        let found = wait_for_file(&latest, what, |sequence| {
            let sequence = sequence.trim();
            let text = fs::read_to_string(dump.join(format!("frame-{sequence}.txt"))).ok()?;
            if check(&text) {
                Some(Frame {
                    text,
                    png: dump.join(format!("frame-{sequence}.png")),
                })
            } else {
                last_text = text;
                None
            }
        });
        found.with_context(|| format!("the last frame was:\n{last_text}"))
    }
}

struct Frame {
    text: String,
    png: PathBuf,
}

impl Frame {
    fn save(&self, name: &str) -> Result<()> {
        let target = screenshots_dir().join(format!("{name}.png"));
        fs::copy(&self.png, &target).with_context(|| format!("saving {}", target.display()))?;
        let size = fs::metadata(&target)?.len();
        ensure!(
            size > 10_000,
            "{} is only {size} bytes: the window drew nothing?",
            target.display()
        );
        Ok(())
    }

    fn has(&self, needle: &str) -> bool {
        self.text.contains(needle)
    }

    fn expect(&self, needles: &[&str]) -> Result<()> {
        for needle in needles {
            ensure!(
                self.has(needle),
                "missing {needle:?} in the window:\n{}",
                self.text
            );
        }
        Ok(())
    }

    fn expect_not(&self, needles: &[&str]) -> Result<()> {
        for needle in needles {
            ensure!(
                !self.has(needle),
                "unexpected {needle:?} in the window:\n{}",
                self.text
            );
        }
        Ok(())
    }
}

/// Waits, with inotify on its directory, until `path` exists and `check` accepts its text.
fn wait_for_file<T>(
    path: &Path,
    what: &str,
    mut check: impl FnMut(&str) -> Option<T>,
) -> Result<T> {
    let dir = path.parent().context("a path without a directory")?;
    fs::create_dir_all(dir)?;
    let inotify = Inotify::init()?;
    inotify.watches().add(
        dir,
        WatchMask::MODIFY | WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::CREATE,
    )?;
    let mut buffer = vec![0; 64 * 1024];
    let deadline = Instant::now() + DEADLINE;
    let mut inotify = inotify;
    loop {
        if let Ok(text) = fs::read_to_string(path) {
            if let Some(found) = check(&text) {
                return Ok(found);
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "timed out after {DEADLINE:?} waiting for {what} ({})",
                path.display()
            );
        }
        let timeout = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(&inotify, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(error) => bail!("poll: {error}"),
        }
        // Drain; the next round re-reads the file.
        while let Ok(events) = inotify.read_events(&mut buffer) {
            if events.count() == 0 {
                break;
            }
        }
    }
}

fn install_executable_bits() -> Result<()> {
    for script in ["fake-ferryctl.sh", "pick-install.sh"] {
        let path = data(script);
        let mut permissions = fs::metadata(&path)?.permissions();
        if permissions.mode() & 0o111 == 0 {
            permissions.set_mode(0o755);
            fs::set_permissions(&path, permissions)?;
        }
    }
    Ok(())
}

fn empty_then_drive(session: &Session) -> Result<()> {
    install_executable_bits()?;
    let world = World::new(session, "empty")?;
    // No runtime dir at all yet: the app watches the nearest existing parent.
    let _app = world.start(&[])?;
    let empty = world.wait_for_frame("the empty state", |text| {
        text.contains("StatusPage title=\"Plug in a USB drive with updates\"")
    })?;
    empty.expect_not(&["Button \"Install All\""])?;
    empty.save("empty")?;

    world.add_drive("kingston.json")?;
    let updates = world.wait_for_frame("the drive's updates", |text| {
        text.contains("Group title=\"KINGSTON\"")
    })?;
    updates.expect(&[
        "Group title=\"KINGSTON\" description=\"USB drive · 3 updates · 260.8\u{a0}MB\"",
        "Row title=\"Operating System\" subtitle=\"System update · 41.2 → 42.0\"",
        "Row title=\"GNOME Text Editor\" subtitle=\"45.1 → 46.0\"",
        "Row title=\"org.example.Tool\" subtitle=\"1.0 → 1.1\"",
        "Label \"Unsigned\"",
        "Label \"245.1\u{a0}MB\"",
        "Button \"Install All\" sensitive=true",
    ])?;
    ensure!(
        updates
            .text
            .matches("Button \"Install\" sensitive=true")
            .count()
            == 3,
        "three rows with an Install button:\n{}",
        updates.text
    );
    Ok(())
}

/// Records KINGSTON's listing with one more Flatpak update, `ref_name`, made from the Text
/// Editor's (not installed, no version, no AppStream data) and then `shaped`, which may
/// change the Text Editor's update too; then starts the app and waits for the drive's group.
fn kingston_with_one_more<'s>(
    world: &World<'s>,
    ref_name: &str,
    shaped: impl FnOnce(&mut serde_json::Value, &mut serde_json::Value),
) -> Result<(Guard, Frame)> {
    let mut record: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(data("drives/kingston.json"))?)?;
    let updates = record["updates"]
        .as_array_mut()
        .context("the record's updates")?;
    let editor = updates
        .iter()
        .position(|update| update["ref"] == "app/org.gnome.TextEditor/x86_64/stable")
        .context("the Text Editor's update")?;
    let mut added = updates[editor].clone();
    added["id"] = format!("flatpak:user:{ref_name}").into();
    added["ref"] = ref_name.into();
    for key in ["current_commit", "current_version", "version", "app"] {
        added[key] = serde_json::Value::Null;
    }
    shaped(&mut added, &mut updates[editor]);
    updates.push(added);
    world.add_record("kingston.json", &serde_json::to_string(&record)?)?;

    let app = world.start(&[])?;
    let frame = world.wait_for_frame("the drive's updates", |text| {
        text.contains("Group title=\"KINGSTON\"")
    })?;
    Ok((app, frame))
}

/// The Text Editor's translations, installed in German only, get French and Brazilian
/// Portuguese: the installation was set for them since. The same version, so the row says
/// only what it adds.
fn a_language_to_add(session: &Session) -> Result<()> {
    let world = World::new(session, "languages")?;
    let locale_ref = "runtime/org.gnome.TextEditor.Locale/x86_64/stable";
    let (_app, frame) = kingston_with_one_more(&world, locale_ref, |locale, editor| {
        locale["current_commit"] = editor["current_commit"].clone();
        locale["commit"] = editor["current_commit"].clone();
        locale["download_size"] = 120_000.into();
        locale["adds_subpaths"] = serde_json::json!(["/fr", "/pt_BR"]);
    })?;
    frame.expect(&[
        "Row title=\"org.gnome.TextEditor.Locale stable\" subtitle=\"Adds fr, pt_BR\"",
    ])?;
    frame.save("languages")?;
    Ok(())
}

/// The Text Editor's update needs a runtime that is not installed: one row, sized with it.
fn runtime_with_its_app(session: &Session) -> Result<()> {
    let world = World::new(session, "runtime")?;
    let runtime_ref = "runtime/org.gnome.Platform/x86_64/46";
    let (_app, frame) = kingston_with_one_more(&world, runtime_ref, |runtime, editor| {
        runtime["download_size"] = 250_000_000.into();
        editor["needs"] = serde_json::json!([runtime_ref]);
    })?;
    frame.expect(&[
        "Group title=\"KINGSTON\" description=\"USB drive · 3 updates · 510.8\u{a0}MB\"",
        "Row title=\"GNOME Text Editor\" subtitle=\"45.1 → 46.0 · with org.gnome.Platform 46\"",
        "Label \"253.4\u{a0}MB\"",
    ])?;
    frame.expect_not(&["Row title=\"org.gnome.Platform 46\""])?;
    frame.save("runtime")?;
    Ok(())
}

fn agent_notifies_and_installs(session: &Session) -> Result<()> {
    let world = World::new(session, "agent")?;
    fs::create_dir_all(&world.drives)?;
    world.fake_ctl("install-all-ok.jsonl", Some(11), &[])?;
    let _agent = world.start(&["--background"])?;
    world.wait_for_app_on_bus()?;

    world.add_drive("kingston.json")?;
    // Waited for whole: the monitor prints a call's arguments a line at a time.
    let notification = [
        "member=Notify",
        "string \"Updates on KINGSTON\"",
        "string \"2 apps and a system update\"",
        "string \"install\"",
        "string \"Install\"",
        "string \"show\"",
        "string \"Show\"",
    ];
    session
        .wait_for_bus(
            "the notification for KINGSTON with Install and Show",
            |log| notification.iter().all(|needle| log.contains(needle)),
        )
        .with_context(|| format!("the bus monitor saw:\n{}", session.monitor_text()))?;
    // dunst queues what it received, then shows it.
    wait_for("dunst to show the notification", DEADLINE, || {
        let displayed = stdout_of(Command::new("dunstctl").args(["count", "displayed"]))?;
        anyhow::Ok(displayed.trim() != "0")
    })?;

    // A second `ferry` hands over to the agent, which opens its window.
    world.run_remote(&[])?;
    let updates = world.wait_for_frame("the window with updates", |text| {
        text.contains("Row title=\"GNOME Text Editor\"")
            && text.contains("Button \"Install All\" sensitive=true")
    })?;
    updates.save("updates")?;
    stdout_of(
        Command::new("import")
            .args(["-window", "root"])
            .arg(screenshots_dir().join("notification.png")),
    )?;

    // Install, as a person would: through the notification's action, via dunst's menu.
    stdout_of(Command::new("dunstctl").arg("context"))?;
    let args = wait_for_file(&world.ctl_args, "ferryctl to be started", |text| {
        text.contains("--\n").then(|| text.to_owned())
    })?;
    // Every update on the drive: the arguments the install request's unit test expects too.
    let expected = fs::read_to_string(data("drives/kingston-install-all.args"))?;
    let args: Vec<&str> = args.lines().collect();
    ensure!(
        args.iter().copied().eq(expected.lines().chain(["--"])),
        "ferryctl was called with {args:?}, not {expected:?}"
    );
    ensure!(
        session.monitor_text().contains("member=ActionInvoked"),
        "dunst did not report the action"
    );
    let menu = fs::read_to_string(&session.pick_log).unwrap_or_default();
    ensure!(menu.contains("Install"), "dunst's menu offered {menu:?}");

    let installing = world.wait_for_frame("the installation in progress", |text| {
        text.contains("Installing 3 updates") && text.contains("Label \"Downloaded\"")
    })?;
    installing.expect(&[
        "Label \"101.4\u{a0}MB of 260.8\u{a0}MB · 11.5\u{a0}MB/s · Less than a minute left\"",
        "Label \"98.0\u{a0}MB of 245.1\u{a0}MB · 9.7\u{a0}MB/s\"",
        "Label \"Waiting\"",
        "Button \"Cancel\" sensitive=true",
        "Button \"Install All\" sensitive=false",
        "ProgressBar fraction=0.389 size=",
    ])?;
    installing.save("installing")?;

    world.release_gate()?;
    let done = world.wait_for_frame("the end of the installation", |text| {
        text.contains("Button \"Restart\" sensitive=true")
    })?;
    done.expect(&[
        "Label \"Restart to finish\"",
        "Label \"The system update is ready. Restart the computer to start using it.\"",
        "Label \"Installed\"",
        // The way back, through History and a confirmation (`history_and_go_back`).
        "Button \"Go Back…\" sensitive=true",
    ])?;
    done.expect_not(&["Button \"Cancel\"", "ProgressBar"])?;
    done.save("done")?;
    session.wait_for_bus("the result notification", |log| {
        log.contains("string \"Restart to finish\"") && log.contains("string \"restart\"")
    })?;
    Ok(())
}

fn failures(session: &Session) -> Result<()> {
    let world = World::new(session, "failures")?;
    world.add_drive("kingston.json")?;
    world.fake_ctl("install-one-fails.jsonl", None, &[("FAKE_CTL_EXIT", "1")])?;
    let _app = world.start(&[])?;
    world.wait_for_frame("the updates", |text| {
        text.contains("Button \"Install All\" sensitive=true")
    })?;
    world.wait_for_app_on_bus()?;

    world.activate("install-all")?;
    let failed = world.wait_for_frame("the failure", |text| {
        text.contains("Label \"Some updates could not be installed\"")
    })?;
    failed.expect(&[
        // In words, the object's checksum only under Details.
        "subtitle=\"An object from KINGSTON is corrupt: its checksum does not match. Copy the app to the drive again.",
        "MenuButton \"Details\" sensitive=true",
        "Button \"Try Again\" sensitive=true",
        "Label \"Restart to finish\"",
        "Button \"Install All\" sensitive=true",
    ])?;
    failed.expect_not(&["5f3ca1e0c2a7"])?;
    failed.save("failed")?;

    // Only what failed is left to install; what was installed stays so.
    world.fake_ctl("install-tool-killed.jsonl", None, &[("FAKE_CTL_DIE", "1")])?;
    world.activate("install-all")?;
    let died = world.wait_for_frame("a child that died", |text| {
        text.contains("Label \"Installation failed\"") && text.contains("The drive went away")
    })?;
    died.expect(&[
        "Row title=\"org.example.Tool\" subtitle=\"The drive went away\"",
        "Button \"Try Again\" sensitive=true",
        "Label \"Installed\"",
        "Label \"Restart to finish\"",
        // The system update of the first run still waits for its restart.
        "Button \"Restart\" sensitive=true",
    ])?;
    ensure!(
        died.text.matches("Button \"Try Again\"").count() == 1 && !died.has("Button \"Install\""),
        "only the failed update can be tried again:\n{}",
        died.text
    );
    world.ensure_second_run_asked_only_for_the_tool(
        "the second run asked for more than what failed",
    )?;
    died.save("failed-child-died")?;

    world.fake_ctl("stream-version-2.jsonl", None, &[])?;
    world.activate("install-all")?;
    world.wait_for_frame("a refused stream", |text| {
        text.contains("a format this app does not understand (event stream version 2)")
    })?;
    Ok(())
}

fn problems_only(session: &Session) -> Result<()> {
    let world = World::new(session, "problems")?;
    world.add_drive("broken-stick.json")?;
    let app = world.start(&[])?;
    let frame = world.wait_for_frame("the problems", |text| {
        text.contains("StatusPage title=\"Nothing can be installed from BROKEN STICK\"")
    })?;
    frame.expect(&[
        "Row title=\"The system update is signed with a key this computer does not trust; get the drive from your administrator.\" subtitle=\"exampleos/x86_64/stable\"",
        "subtitle=\"app/org.gnome.Maps/x86_64/stable\"",
    ])?;
    frame.expect_not(&["Button \"Install All\""])?;
    frame.save("problems")?;

    // Without the agent, quitting (Ctrl+Q, or the desktop's Quit) ends the process.
    world.wait_for_app_on_bus()?;
    world.activate("quit")?;
    let mut app = app;
    wait_for("the app to exit", DEADLINE, || {
        anyhow::Ok(app.0.try_wait()?.is_some())
    })?;
    Ok(())
}

fn german_and_cancel(session: &Session) -> Result<()> {
    let mut world = World::new(session, "german")?;
    world.language = Some("de");
    world.add_drive("kingston.json")?;
    world.add_drive("broken-stick.json")?;
    world.fake_ctl("install-all-ok.jsonl", Some(11), &[])?;
    let _app = world.start(&[])?;
    world.wait_for_frame("the German window", |text| {
        text.contains("Button \"Alle installieren\" sensitive=true")
    })?;
    world.wait_for_app_on_bus()?;
    world.activate("install-all")?;
    let frame = world.wait_for_frame("the German progress", |text| {
        text.contains("3 Aktualisierungen werden installiert")
            && text.contains("Label \"Heruntergeladen\"")
    })?;
    frame.expect(&[
        "Group title=\"KINGSTON\" description=\"USB-Datenträger · 3 Aktualisierungen · 260.8\u{a0}MB\"",
        "Row title=\"Betriebssystem\" subtitle=\"Systemaktualisierung · 41.2 → 42.0\"",
        "ExpanderRow title=\"2 Aktualisierungen können nicht installiert werden\"",
        "Label \"Unsigniert\"",
        "Button \"Abbrechen\" sensitive=true",
        "Weniger als eine Minute verbleibend",
    ])?;
    frame.save("german")?;

    world.activate("cancel")?;
    let cancelled = world.wait_for_frame("the cancelled installation", |text| {
        text.contains("Label \"Installation abgebrochen\"")
    })?;
    cancelled.expect(&["Button \"Erneut versuchen\" sensitive=true"])?;
    Ok(())
}

fn agent_problems_and_withdrawal(session: &Session) -> Result<()> {
    let world = World::new(session, "withdrawal")?;
    fs::create_dir_all(&world.drives)?;
    let _agent = world.start(&["--background"])?;
    world.wait_for_app_on_bus()?;
    let closes_before = session
        .monitor_text()
        .matches("member=CloseNotification")
        .count();

    world.add_drive("broken-stick.json")?;
    session.wait_for_bus("the problems notification", |log| {
        log.contains("string \"Nothing can be installed from BROKEN STICK\"")
            && log.contains("string \"The system update is signed with a key this computer does not trust; get the drive from your administrator. And 1 more problem.\"")
    })?;
    world.remove_drive("broken-stick.json")?;
    session.wait_for_bus("the notification to be withdrawn", |log| {
        log.matches("member=CloseNotification").count() > closes_before
    })?;
    Ok(())
}

/// A per-user installation whose remote's server has a newer app: listed under "Internet",
/// with no drive at all. Real flatpak and a real HTTP server; the listing is the engine's.
fn internet_update_of_a_per_user_app(session: &Session) -> Result<()> {
    let mut world = World::new(session, "internet")?;
    let fixture = FlatpakFixture::new(&world.dir.join("flatpak"))?;
    fixture.publish_app(&AppSpec::new("v2"))?;
    let server = StaticServer::serve(&fixture.repo.repo.path)?;
    fixture.client.set_remote_url(REMOTE, &server.url)?;
    world.use_flatpak_client(&fixture);
    fs::create_dir_all(&world.drives)?;
    let _app = world.start(&[])?;
    let frame = world.wait_for_frame("the app update from the Internet", |text| {
        text.contains("Group title=\"Internet\"")
    })?;
    frame.expect(&[
        &format!("Row title=\"{APP_NAME}\""),
        "Button \"Install All\" sensitive=true",
    ])?;
    frame.expect_not(&["KINGSTON"])?;
    ensure!(
        server.requests().iter().any(|path| path == "/summary"),
        "the remote's server was not asked: {:?}",
        server.requests()
    );
    frame.save("internet")?;
    Ok(())
}

/// A drive written by `flatpak create-usb` carries an app this machine does not have, and
/// one of a publisher it does not know: "Also on this drive" shows the first with its
/// AppStream name and size, counts the second, and Install runs `ferryctl install` on it.
fn new_app_from_a_drive(session: &Session) -> Result<()> {
    let mut world = World::new(session, "new-app")?;
    let fixture = FlatpakFixture::new(&world.dir.join("flatpak"))?;
    fixture.publish_runtime("v2")?;
    let notes = AppSpec::new("v1")
        .id(NEW_APP_ID)
        .name(NEW_APP_NAME)
        .runtime_branch("v2");
    fixture.publish_app(&notes)?;
    let stick = world.dir.join("stick");
    fixture.drive_from_peer("peer", &stick, &[NEW_APP_ID])?;
    world.use_flatpak_client(&fixture);
    let record = format!(
        r#"{{"v":1,"id":"notes-stick","label":"NOTES","device":null,"mount":"{}","repos":[],"updates":[],"problems":[]}}"#,
        stick.display()
    );
    world.add_record("notes-stick.json", &record)?;
    world.fake_ctl("install-new-app.jsonl", None, &[])?;
    let app = world.start(&[])?;
    let frame = world.wait_for_frame("the new app on the drive", |text| {
        text.contains("Group title=\"Also on this drive\"") && text.contains(NEW_APP_NAME)
    })?;
    frame.expect(&[
        &format!("Row title=\"{NEW_APP_NAME}\""),
        "Button \"Install\" sensitive=true",
    ])?;
    frame.save("new-apps")?;
    // A screen reader says which app each button installs, before and after.
    let bus = A11yBus::connect()?;
    let application = bus.application(app.0.id(), DEADLINE)?;
    let named = |name: &str| -> Result<()> {
        let tree = bus.walk(&application)?;
        ensure!(
            tree.in_window(MAIN_WINDOW)
                .any(|node| node.is_interactive() && node.name == name),
            "no button named {name:?}:\n{}",
            tree.dump(MAIN_WINDOW)
        );
        Ok(())
    };
    named(&format!("Install {NEW_APP_NAME}"))?;

    let app_ref = ferry_tests::flatpak::app_ref(NEW_APP_ID, "stable")?;
    world.activate_with("install-new-app", &format!("flatpak:user:{app_ref}"))?;
    let done = world.wait_for_frame("the new app installed", |text| {
        text.contains("Label \"Updates installed\"")
    })?;
    done.expect(&["Button \"Installed\" sensitive=false"])?;
    named(&format!("{NEW_APP_NAME} is installed"))?;
    let called = fs::read_to_string(&world.ctl_args)?;
    ensure!(
        called.contains("install\n--json\n")
            && called.contains(&format!("\n{app_ref}\n"))
            && called.contains(&format!("--from\n{}\n", stick.display()))
            && called.contains("--installation\nuser\n")
            && !called.contains("runtime/"),
        "ferryctl was called as:\n{called}"
    );
    Ok(())
}

/// X11's keysym of the Tab key.
const TAB_KEYSYM: u32 = 0xff09;

/// The title bar's window buttons: GTK keeps them out of the Tab chain (the window
/// manager's keys do what they do).
const WINDOW_CONTROLS: [&str; 3] = ["Minimize", "Maximize", "Close"];

/// The main window's accessible name.
const MAIN_WINDOW: &str = "Ferry";

/// What a screen reader gets, over AT-SPI: in each state (updates, installing, finished with
/// a failure, Preferences, and finished in `accessibility_when_done`) every button and switch has a name that says what it does and
/// Tab reaches it, the update rows say which update they are, progress is signalled, and
/// installing works through the Action interface as a screen reader's user would start it.
fn accessibility(session: &Session) -> Result<()> {
    let world = World::new(session, "a11y")?;
    world.add_drive("kingston.json")?;
    let sharing = world.dir.join("sharing");
    fs::write(&sharing, "no\n")?;
    let sharing = sharing.display().to_string();
    world.fake_ctl(
        "install-one-fails.jsonl",
        Some(11),
        &[("FAKE_CTL_EXIT", "1"), ("FAKE_CTL_SHARING", &sharing)],
    )?;
    let app = world.start(&[])?;
    let _gate = OpenGateOnDrop(&world);
    world.wait_for_frame("the updates", |text| {
        text.contains("Button \"Install All\" sensitive=true")
    })?;
    let bus = A11yBus::connect()?;
    let application = bus.application(app.0.id(), DEADLINE)?;

    let updates = bus.walk(&application)?;
    expect_named(&updates, MAIN_WINDOW, "updates")?;
    let idle_progress: Vec<String> = updates
        .in_window(MAIN_WINDOW)
        .filter(|node| node.role == "progress bar")
        .map(|node| node.to_string())
        .collect();
    ensure!(
        idle_progress.is_empty(),
        "progress bars before anything runs: {idle_progress:?}"
    );
    for name in ["Operating System", "GNOME Text Editor", "org.example.Tool"] {
        let install = row_button(&updates, name, "Install")?;
        ensure!(
            install.has_state(STATE_FOCUSABLE) && install.has_state(STATE_SENSITIVE),
            "the keyboard cannot reach {install}"
        );
    }
    let install_all = install_all_button(&updates)?;
    ensure!(
        install_all.has_state(STATE_FOCUSABLE),
        "the keyboard cannot reach {install_all}"
    );

    // Tab, as a keyboard user would: focus goes round every action in the window.
    let cycle = tab_cycle(&bus, &updates, MAIN_WINDOW)?;
    let missed: Vec<String> = updates
        .in_window(MAIN_WINDOW)
        .filter(|node| {
            node.is_interactive()
                && node.has_state(STATE_FOCUSABLE)
                && node.has_state(STATE_SENSITIVE)
                && !WINDOW_CONTROLS.contains(&node.name.as_str())
                && !cycle.contains(&node.name)
        })
        .map(|node| node.to_string())
        .collect();
    ensure!(
        missed.is_empty(),
        "Tab never reaches {missed:?}; it goes round {cycle:?}"
    );

    // Activated through AT-SPI, Install All runs what the button's click runs (`failures`).
    bus.do_action(install_all, "click")?;
    world.wait_for_frame("the installation in progress", |text| {
        text.contains("Button \"Cancel\" sensitive=true") && text.contains("Label \"Downloaded\"")
    })?;
    let installing = bus.walk(&application)?;
    expect_named(&installing, MAIN_WINDOW, "installing")?;
    let progress = installing
        .in_window(MAIN_WINDOW)
        .find(|node| node.role == "progress bar" && node.name == "Overall progress")
        .with_context(|| format!("no named progress:\n{}", installing.dump(MAIN_WINDOW)))?;
    // The same fraction the bar draws (`ProgressBar fraction=0.389` in `agent_notifies_and_installs`).
    let fraction = bus.current_value(progress)?;
    ensure!(
        (fraction - 0.389).abs() < 0.001,
        "the progress bar reports {fraction}"
    );
    let cancel = installing
        .in_window(MAIN_WINDOW)
        .find(|node| node.is_interactive() && node.name == "Cancel the installation")
        .with_context(|| format!("no Cancel:\n{}", installing.dump(MAIN_WINDOW)))?;
    ensure!(
        cancel.has_state(STATE_FOCUSABLE),
        "the keyboard cannot reach {cancel}"
    );
    let args = fs::read_to_string(&world.ctl_args)?;
    ensure!(
        args.contains("exampleos/x86_64/stable\napp/org.gnome.TextEditor/x86_64/stable\napp/org.example.Tool/x86_64/stable\n"),
        "ferryctl was called as:\n{args}"
    );

    let mut name_changes = bus.listen("accessible-name")?;
    world.release_gate()?;
    world.wait_for_frame("the failure", |text| {
        text.contains("Label \"Some updates could not be installed\"")
    })?;
    let failed = bus.walk(&application)?;
    expect_named(&failed, MAIN_WINDOW, "failed")?;
    // What changed while it installed reached a screen reader as events: the progress text
    // did, and controls whose names stayed the same did not (a screen reader reads a focused
    // control's name again on each). GTK 4.8 sends no value events for progress bars, and
    // events only for what an assistive technology has seen (walked) before.
    let seen = |path: &str| {
        installing
            .nodes
            .iter()
            .chain(&updates.nodes)
            .find(|node| node.path.as_str() == path)
    };
    let changed: Vec<&atspi_support::Node> = name_changes
        .take()
        .iter()
        .filter_map(|path| seen(path))
        .collect();
    ensure!(
        changed
            .iter()
            .any(|node| node.role == "label" && node.name.contains(" of ")),
        "no change of the progress text was signalled: {changed:?}"
    );
    let mut repeated = Vec::new();
    for node in changed.iter().filter(|node| node.is_interactive()) {
        let before = updates.nodes.iter().find(|before| before.path == node.path);
        if before.is_some_and(|before| before.name == node.name) && bus.name_of(node)? == node.name
        {
            repeated.push(node.to_string());
        }
    }
    repeated.sort();
    repeated.dedup();
    ensure!(
        repeated.is_empty(),
        "signalled as renamed while their names stayed the same: {repeated:?}"
    );
    let retry = row_button(&failed, "org.example.Tool", "Try")?;
    row_button(&failed, "org.example.Tool", "Details")?;
    failed
        .in_window(MAIN_WINDOW)
        .find(|node| node.is_interactive() && node.name.contains("Restart"))
        .with_context(|| format!("no Restart:\n{}", failed.dump(MAIN_WINDOW)))?;

    // The row's own button, through AT-SPI: only the failed update runs again.
    world.fake_ctl(
        "install-tool-killed.jsonl",
        None,
        &[("FAKE_CTL_DIE", "1"), ("FAKE_CTL_SHARING", &sharing)],
    )?;
    bus.do_action(retry, "click")?;
    world.wait_for_frame("the second failure", |text| {
        text.contains("The drive went away")
    })?;
    world.ensure_second_run_asked_only_for_the_tool(
        "the row's button asked for more than its update",
    )?;

    let preferences = world.open_preferences()?;
    preferences.wait_for_frame("the preferences", |text| {
        text.contains("Switch active=false sensitive=true")
    })?;
    let tree = bus.walk(&application)?;
    expect_named(&tree, "Preferences", "preferences")?;
    let switch = tree
        .in_window("Preferences")
        .find(|node| node.is_interactive() && node.name == "Share updates with computers nearby")
        .with_context(|| format!("no named switch:\n{}", tree.dump("Preferences")))?;
    let cycle = tab_cycle(&bus, &tree, "Preferences")?;
    ensure!(
        cycle.contains(&switch.name),
        "Tab never reaches {switch}; it goes round {cycle:?}"
    );
    // One app per session bus name: this one goes before the next starts.
    drop(app);
    accessibility_when_done(session, &bus)
}

/// Lets a fake ferryctl that waits at the gate go on when a scenario ends early, so that it
/// does not outlive the scenario.
struct OpenGateOnDrop<'a>(&'a World<'a>);

impl Drop for OpenGateOnDrop<'_> {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Non-blocking: with nobody reading, opening fails at once instead of waiting.
        if let Ok(mut gate) = fs::OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(&self.0.gate)
        {
            let _ = gate.write_all(b"go\n");
        }
    }
}

/// The window after everything installed: the way on (Restart) and back (Go Back) are named
/// and on the Tab round.
fn accessibility_when_done(session: &Session, bus: &A11yBus) -> Result<()> {
    let world = World::new(session, "a11y-done")?;
    world.add_drive("kingston.json")?;
    let app = world.start(&[])?;
    world.wait_for_frame("the updates", |text| {
        text.contains("Button \"Install All\" sensitive=true")
    })?;
    let application = bus.application(app.0.id(), DEADLINE)?;
    let updates = bus.walk(&application)?;
    let install_all = install_all_button(&updates)?;
    bus.do_action(install_all, "click")?;
    world.wait_for_frame("the end of the installation", |text| {
        text.contains("Button \"Restart\" sensitive=true") && !text.contains("Try Again")
    })?;
    let done = bus.walk(&application)?;
    expect_named(&done, MAIN_WINDOW, "done")?;
    // Installed rows say so, and offer nothing to install or progress to follow.
    let stale: Vec<String> = done
        .in_window(MAIN_WINDOW)
        .filter(|node| node.name.starts_with("Install ") || node.role == "progress bar")
        .map(|node| node.to_string())
        .collect();
    ensure!(
        stale.is_empty(),
        "a screen reader finds {stale:?} in the finished window:\n{}",
        done.dump(MAIN_WINDOW)
    );
    let cycle = tab_cycle(bus, &done, MAIN_WINDOW)?;
    for action in [
        "Restart the computer to finish the system update",
        "Go Back to the Previous Version",
    ] {
        ensure!(
            cycle.iter().any(|name| name == action),
            "Tab never reaches {action:?}; it goes round {cycle:?}\n{}",
            done.dump(MAIN_WINDOW)
        );
    }
    Ok(())
}

/// Presses Tab until the focus comes back where it started; the names of what it went
/// through, in order.
fn tab_cycle(bus: &A11yBus, tree: &Tree, window: &str) -> Result<Vec<String>> {
    let focusable: Vec<&atspi_support::Node> = tree
        .in_window(window)
        .filter(|node| node.has_state(STATE_FOCUSABLE))
        .collect();
    let focused = || -> Result<Option<usize>> {
        for (index, node) in focusable.iter().enumerate() {
            let states = bus.states(node)?;
            if states
                .first()
                .is_some_and(|bits| bits & (1 << STATE_FOCUSED) != 0)
            {
                return Ok(Some(index));
            }
        }
        Ok(None)
    };
    let mut visited: Vec<usize> = Vec::new();
    let mut previous = focused()?;
    for _ in 0..=2 * focusable.len() {
        bus.press_key(TAB_KEYSYM)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        let now = loop {
            let now = focused()?;
            if now.is_some() && now != previous {
                break now;
            }
            ensure!(
                Instant::now() < deadline,
                "Tab moved the focus nowhere after {:?}",
                visited
                    .iter()
                    .map(|index| &focusable[*index].name)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        previous = now;
        let Some(index) = now else { continue };
        if visited.first() == Some(&index) {
            return Ok(visited
                .iter()
                .map(|index| focusable[*index].name.clone())
                .collect());
        }
        visited.push(index);
    }
    bail!("the focus never came back round in {window:?}")
}

/// Every button, switch and the like in `window` has a name made of words. The tree is kept
/// next to the screenshots as `a11y-STATE.txt`.
fn expect_named(tree: &Tree, window: &str, state: &str) -> Result<()> {
    fs::write(
        screenshots_dir().join(format!("a11y-{state}.txt")),
        tree.dump(window),
    )?;
    let interactive: Vec<_> = tree
        .in_window(window)
        .filter(|node| node.is_interactive())
        .collect();
    ensure!(
        !interactive.is_empty(),
        "nothing to act on in {window:?}:\n{}",
        tree.dump(window)
    );
    // The keyboard reaches every action: a control is focusable itself, or holds the one
    // that is (a menu button holds a toggle button).
    let unreachable: Vec<String> = tree
        .nodes
        .iter()
        .enumerate()
        .filter(|(index, node)| {
            node.window == window
                && node.is_interactive()
                && node.has_state(STATE_SENSITIVE)
                && !node.has_state(STATE_FOCUSABLE)
                && !tree
                    .descendants(*index)
                    .any(|inner| inner.is_interactive() && inner.has_state(STATE_FOCUSABLE))
        })
        .map(|(_, node)| node.to_string())
        .collect();
    ensure!(
        unreachable.is_empty(),
        "the keyboard cannot reach {unreachable:?} in {window:?}:\n{}",
        tree.dump(window)
    );
    let unnamed: Vec<String> = interactive
        .iter()
        .filter(|node| !node.is_named())
        .map(|node| node.to_string())
        .collect();
    ensure!(
        unnamed.is_empty(),
        "unnamed in {window:?}: {unnamed:?}\n{}",
        tree.dump(window)
    );
    Ok(())
}

/// The update row named `update`, and in it the button the keyboard reaches whose name
/// starts with `verb`: that name must say which update it acts on.
/// The main window's "Install All" button in `tree`.
fn install_all_button(tree: &Tree) -> Result<&atspi_support::Node> {
    tree.in_window(MAIN_WINDOW)
        .find(|node| node.is_interactive() && node.name == "Install All")
        .with_context(|| format!("no Install All:\n{}", tree.dump(MAIN_WINDOW)))
}

fn row_button<'a>(tree: &'a Tree, update: &str, verb: &str) -> Result<&'a atspi_support::Node> {
    let (row, _) = tree
        .nodes
        .iter()
        .enumerate()
        .find(|(_, node)| {
            node.window == MAIN_WINDOW && node.role == "list item" && node.name == update
        })
        .with_context(|| format!("no row named {update:?}:\n{}", tree.dump(MAIN_WINDOW)))?;
    let button = tree
        .descendants(row)
        .find(|node| {
            node.is_interactive() && node.has_state(STATE_FOCUSABLE) && node.name.starts_with(verb)
        })
        .with_context(|| {
            format!(
                "no {verb} button in the row {update:?}:\n{}",
                tree.dump(MAIN_WINDOW)
            )
        })?;
    ensure!(
        button.name.contains(update),
        "the row {update:?} has a button a screen reader reads as {:?}: it does not say which \
         update",
        button.name
    );
    Ok(button)
}

/// The desktop starts a `DBusActivatable` app by calling `Activate` on its name: the bus
/// starts `ferry --gapplication-service` from the service file, and the window opens.
/// The menu's "Copy Updates to a Drive…" through its states, with the fake ferryctl replaying
/// a recorded dry run and copy of `prepare-drive --json`.
fn copy_updates_to_a_drive(session: &Session) -> Result<()> {
    let world = World::new(session, "copy")?;
    let folder = world.dir.join("for-stick");
    fs::create_dir_all(&folder)?;
    world.fake_ctl("prepare-plan.jsonl", None, &[])?;
    let _app = world.start(&[])?;
    world.wait_for_app_on_bus()?;
    world.activate("copy-updates")?;
    let choose = world.wait_for_frame("the choice of a drive", |text| {
        text.contains("StatusPage title=\"Copy Updates to a Drive\"")
    })?;
    choose.expect(&[
        "Group title=\"Drives\"",
        "Button \"Choose a Folder…\" sensitive=true",
        "Button \"Close\" sensitive=true",
    ])?;
    choose.save("copy-choose")?;

    world.activate_with("copy-to", &folder.display().to_string())?;
    let plan = world.wait_for_frame("the plan", |text| {
        text.contains("StatusPage title=\"Copy to for-stick\"") && text.contains("Check ")
    })?;
    plan.expect(&[
        "Row title=\"Operating System\" subtitle=\"2.5\u{a0}GB\"",
        "Row title=\"org.gnome.Maps\" subtitle=\"15.6\u{a0}MB\"",
        "Row title=\"org.gnome.Platform\" subtitle=\"Already on the drive\"",
        "description=\"2.5\u{a0}GB to copy, 15.9\u{a0}GB free\"",
        "Button \"Copy\" sensitive=true",
    ])?;
    plan.expect_not(&["appstream2", "Check active=false"])?;
    plan.save("copy-plan")?;
    let dry_run = fs::read_to_string(&world.ctl_args)?;
    ensure!(
        dry_run.contains(&format!(
            "prepare-drive\n--json\n--dry-run\n{}\n--\n",
            folder.display()
        )),
        "the dry run was called as:\n{dry_run}"
    );

    // Paused after two progress events.
    world.fake_ctl("prepare-copy.jsonl", Some(5), &[])?;
    world.activate("copy-start")?;
    let copying = world.wait_for_frame("the copy's progress", |text| {
        text.contains("StatusPage title=\"Copying to for-stick\"")
            && text.contains("21800 of 52000 items")
    })?;
    copying.expect(&[
        "ProgressBar fraction=0.418",
        "Label \"Less than a minute left\"",
        "Button \"Cancel\" sensitive=true",
        "31.0\u{a0}MB/s",
    ])?;
    copying.save("copy-progress")?;

    world.release_gate()?;
    let done = world.wait_for_frame("the end of the copy", |text| {
        text.contains("StatusPage title=\"Updates Copied\"")
    })?;
    done.expect(&[
        "Everything was written to for-stick and read back.",
        // A folder, not a removable block device.
        "Button \"Remove Drive\" sensitive=false",
        "Button \"Close\" sensitive=true",
    ])?;
    done.save("copy-done")?;
    let calls = fs::read_to_string(&world.ctl_args)?;
    ensure!(
        calls.ends_with(&format!(
            "prepare-drive\n--json\n--cancel-on-stdin-eof\n{}\n--\n",
            folder.display()
        )),
        "the copy was called as:\n{calls}"
    );
    Ok(())
}

fn preferences_share_nearby(session: &Session) -> Result<()> {
    let world = World::new(session, "preferences")?;
    let state = world.dir.join("sharing");
    fs::write(&state, "no\n")?;
    let state_text = state.display().to_string();
    world.fake_ctl(
        "install-all-ok.jsonl",
        None,
        &[("FAKE_CTL_SHARING", &state_text)],
    )?;
    let _app = world.start(&[])?;
    let preferences = world.open_preferences()?;
    let off = preferences.wait_for_frame("sharing off", |text| {
        text.contains("Switch active=false sensitive=true")
    })?;
    off.expect(&[
        "Group title=\"Computers Nearby\"",
        "Row title=\"Share updates with computers nearby\" subtitle=\"Off.",
    ])?;
    preferences.activate_with_bool("share-nearby", true)?;
    let on = preferences.wait_for_frame("sharing on", |text| {
        text.contains("Switch active=true sensitive=true")
    })?;
    on.expect(&["subtitle=\"On. 3 computers fetched updates from this one today.\""])?;
    on.save("preferences")?;
    ensure!(fs::read_to_string(&state)?.trim() == "yes");
    let calls = fs::read_to_string(&preferences.ctl_args)?;
    ensure!(
        calls.contains("sharing\non\n--\n") && calls.contains("sharing\nstatus\n--json\n--\n"),
        "ferryctl was called as:\n{calls}"
    );
    Ok(())
}

fn history_and_go_back(session: &Session) -> Result<()> {
    let world = World::new(session, "history")?;
    let history = data("history.json").display().to_string();
    world.fake_ctl(
        "install-all-ok.jsonl",
        None,
        &[("FAKE_CTL_HISTORY", &history)],
    )?;
    let _app = world.start(&[])?;
    world.wait_for_app_on_bus()?;
    world.activate("history")?;
    let page = world.wait_for_frame("the history", |text| {
        text.contains("Go Back to the Previous Version")
    })?;
    page.expect(&[
        "Group title=\"Operating System\"",
        "Row title=\"Version 12.5 is installed\" subtitle=\"If something does not work since \
         the update, you can go back to 12.4.\"",
        "Group title=\"Installed Updates\"",
        "Row title=\"Text Editor\"",
        "Installed 45.1 → 45.2 from the computer classroom-7\"",
        "Row title=\"Operating System\"",
        "Installed 12.4 → 12.5 from the drive KINGSTON\"",
        "Row title=\"Maps\"",
        "Could not be installed from the drive KINGSTON\"",
    ])?;
    page.save("history")?;

    // Going back asks first (the update card's button is this action too); nothing runs
    // until the answer.
    world.activate("go-back")?;
    let confirm = World {
        dump: world.dump.join("confirm"),
        ..world.clone()
    };
    let question = confirm.wait_for_frame("the confirmation", |text| {
        text.contains("Go back to the previous version?")
    })?;
    question.expect(&["starts 12.4 from the next restart", "Button \"Go Back\""])?;
    ensure!(
        !fs::read_to_string(&world.ctl_args)?.contains("rollback"),
        "rollback ran before the answer"
    );
    world.activate("go-back-answer")?;
    let done = world.wait_for_frame("gone back", |text| {
        text.contains("12.4 is the default again. Restart the computer to use it.")
    })?;
    done.expect_not(&["Go Back to the Previous Version"])?;
    let calls = fs::read_to_string(&world.ctl_args)?;
    ensure!(
        calls.contains("history\n--json\n--\n") && calls.contains("rollback\n--yes\n--\n"),
        "ferryctl was called as:\n{calls}"
    );
    Ok(())
}

fn dbus_activation(session: &Session) -> Result<()> {
    let world = World::new(session, "activation")?;
    fs::create_dir_all(&world.drives)?;
    // The bus starts the app with its own environment plus this: the world's.
    let command = world.command(&[]);
    let mut vars = Vec::new();
    for (name, value) in command.get_envs() {
        let (Some(name), Some(value)) = (name.to_str(), value.and_then(|v| v.to_str())) else {
            continue;
        };
        ensure!(
            !name.contains('\'') && !value.contains('\''),
            "cannot quote {name}={value}"
        );
        vars.push(format!("'{name}': '{value}'"));
    }
    stdout_of(&mut gdbus_call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus.UpdateActivationEnvironment",
        &[&format!("{{{}}}", vars.join(", "))],
    ))?;
    let activate = gdbus_call(
        "io.github.ferry.Ferry",
        "/io/github/ferry/Ferry",
        "org.freedesktop.Application.Activate",
        &["{}"],
    )
    .output()?;
    // A pidfd names this very process, even after it exits: safe to signal on failure.
    let activated = bus_pid("io.github.ferry.Ferry").and_then(|pid| {
        Ok(Activated(rustix::process::pidfd_open(
            pid,
            rustix::process::PidfdFlags::empty(),
        )?))
    });
    ensure!(
        activate.status.success(),
        "activation failed: {}",
        String::from_utf8_lossy(&activate.stderr)
    );
    let activated = activated?;
    world.wait_for_frame("the window opened by D-Bus activation", |text| {
        text.contains("Plug in a USB drive with updates")
    })?;
    // It is the service process the bus started, and it quits when asked.
    world.activate("quit")?;
    let timeout = Timespec {
        tv_sec: DEADLINE.as_secs() as i64,
        tv_nsec: 0,
    };
    let mut fds = [PollFd::new(&activated.0, PollFlags::IN)];
    let ready = rustix::event::poll(&mut fds, Some(&timeout))?;
    ensure!(
        ready == 1,
        "the activated app did not quit within {DEADLINE:?}"
    );
    Ok(())
}

/// The pid of the process owning `name` on the session bus.
fn bus_pid(name: &str) -> Result<rustix::process::Pid> {
    let text = stdout_of(&mut gdbus_call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus.GetConnectionUnixProcessID",
        &[name],
    ))?;
    // "(uint32 1234,)"
    let digits: String = text
        .trim()
        .trim_start_matches("(uint32 ")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let raw: i32 = digits
        .parse()
        .with_context(|| format!("no pid in {text:?}"))?;
    rustix::process::Pid::from_raw(raw).context("pid 0")
}

/// The app the bus started, killed if the scenario ends before it quits.
struct Activated(std::os::fd::OwnedFd);

impl Drop for Activated {
    fn drop(&mut self) {
        let _ = rustix::process::pidfd_send_signal(&self.0, rustix::process::Signal::KILL);
    }
}
