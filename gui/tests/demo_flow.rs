//! The README demo, end to end and headless: the demo scene (a drive with a signed OS update
//! and two app updates; a fake sysroot and a per-user Flatpak installation at the older
//! versions), the real `ferry-hook --mount` recording the drive, the real agent
//! `ferry --background` under Xvfb with dunst as the notification server on a private session
//! bus, and a click on the notification's **Install**, made through dunst's context menu. The
//! agent's `ferryctl install` must leave the sysroot at 2.0 and both apps at their new commits.
//!
//! Needs root (the fake sysroot is deployed by `ostree admin`), Xvfb, dbus-daemon, dunst and
//! `ferryctl` and `ferry-hook` built next to this test (`cargo build --workspace`).

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use ferry_tests::bins;
use ferry_tests::cmd::wait_for;
use ferry_tests::demo::{self, DemoScene, DRIVE_NAME, NEW_RUNTIME_BRANCH};
use ferry_tests::flatpak::runtime_ref;

mod session_support;

use session_support::{gdbus_wait, stdout_of};

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
/// Starting a server or the agent.
const START: Duration = Duration::from_secs(30);
/// The whole installation: one OS deployment and three Flatpak refs, about 17 MB.
const INSTALL: Duration = Duration::from_secs(300);

/// Kills a child when dropped, so a failing test leaves no server behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first line a freshly started server prints on stdout (Xvfb's display number,
/// dbus-daemon's address), within [`START`].
fn first_line(child: &mut Child, what: &str) -> Result<String> {
    let stdout = child.stdout.take().context("stdout is not piped")?;
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let _ = send.send(read.map(|_| line));
    });
    let line = receive
        .recv_timeout(START)
        .with_context(|| format!("{what} printed nothing within {START:?}"))?
        .with_context(|| format!("reading what {what} printed"))?;
    let line = line.trim().to_owned();
    ensure!(!line.is_empty(), "{what} exited without starting");
    Ok(line)
}

/// A display and a session bus of their own, with dunst serving notifications and a bus
/// monitor logging every notification call and signal.
struct Desktop {
    display: String,
    bus: String,
    monitor_log: PathBuf,
    _xvfb: Guard,
    _bus: Guard,
    _monitor: Guard,
    _dunst: Guard,
}

impl Desktop {
    fn start(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.join("xvfb.log"))?)
            .spawn()
            .context("starting Xvfb (scripts/install-deps.sh installs it)")?;
        let display = format!(":{}", first_line(&mut xvfb, "Xvfb")?);
        let xvfb = Guard(xvfb);

        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.join("dbus-daemon.log"))?)
            .spawn()
            .context("starting dbus-daemon")?;
        let address = first_line(&mut bus, "dbus-daemon")?;
        let bus = Guard(bus);

        let monitor_log = dir.join("dbus-monitor.log");
        let monitor = Command::new("dbus-monitor")
            .args(["--address", &address])
            .arg("interface='org.freedesktop.Notifications'")
            .stdout(fs::File::create(&monitor_log)?)
            .stderr(Stdio::null())
            .spawn()
            .context("starting dbus-monitor")?;
        let monitor = Guard(monitor);

        // dunst's context menu runs this instead of dmenu: it picks the Install action.
        let pick = dir.join("pick-install.sh");
        fs::write(&pick, "#!/bin/sh\ntee \"$0.log\" | grep -m1 'Install'\n")?;
        fs::set_permissions(&pick, fs::Permissions::from_mode(0o755))?;
        let dunstrc = dir.join("dunstrc");
        fs::write(
            &dunstrc,
            format!(
                "[global]\n    dmenu = {}\n\n[urgency_low]\n    timeout = 0\n\n\
                 [urgency_normal]\n    timeout = 0\n\n[urgency_critical]\n    timeout = 0\n",
                pick.display()
            ),
        )?;
        let dunst = Command::new("dunst")
            .arg("-config")
            .arg(&dunstrc)
            .env("DISPLAY", &display)
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("dunst.log"))?)
            .spawn()
            .context("starting dunst")?;
        let desktop = Self {
            display,
            bus: address,
            monitor_log,
            _xvfb: xvfb,
            _bus: bus,
            _monitor: monitor,
            _dunst: Guard(dunst),
        };
        desktop
            .run(&mut gdbus_wait("org.freedesktop.Notifications"))
            .context("dunst did not take the notification bus name")?;
        Ok(desktop)
    }

    /// A command in this session.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env_remove("WAYLAND_DISPLAY");
        command
    }

    /// Runs `command` in this session; its stdout, or an error with its stderr.
    fn run(&self, command: &mut Command) -> Result<String> {
        stdout_of(
            command
                .env("DISPLAY", &self.display)
                .env("DBUS_SESSION_BUS_ADDRESS", &self.bus),
        )
    }

    fn monitor_text(&self) -> String {
        fs::read_to_string(&self.monitor_log).unwrap_or_default()
    }

    /// Waits until the bus monitor has logged something `found` accepts.
    fn wait_for_bus(
        &self,
        what: &str,
        limit: Duration,
        found: impl Fn(&str) -> bool,
    ) -> Result<()> {
        wait_for(what, limit, || anyhow::Ok(found(&self.monitor_text())))
            .with_context(|| format!("the bus monitor saw:\n{}", self.monitor_text()))
    }
}

/// The variables that make a process see the demo machine as its own, plus Ferry's runtime
/// directory.
fn machine_vars(scene: &DemoScene, run_dir: &Path) -> Vec<(String, OsString)> {
    let mut vars = scene.machine_vars();
    vars.push(("FERRY_RUN_DIR".into(), run_dir.as_os_str().to_owned()));
    vars.push(("LC_ALL".into(), "C.UTF-8".into()));
    vars.push(("FERRY_LOG".into(), "info,pgp=error".into()));
    vars
}

/// What a log file says, for failure messages.
fn log_text(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    format!("{}:\n{text}", path.display())
}

#[test]
fn demo_drive_notifies_and_install_updates_the_os_and_both_apps() -> Result<()> {
    ensure!(
        ferry_tests::is_root(),
        "this test deploys a fake sysroot with `ostree admin`: run it as root"
    );
    // The window lists online too: keep its browse for computers nearby off the host's links.
    ferry_tests::http::isolate_network()?;
    let ferryctl = bins::binary("ferryctl")?;
    let ferry_hook = bins::binary("ferry-hook")?;
    let tmp = tempfile::tempdir()?;
    let scene = demo::build(&tmp.path().join("scene"))?;
    let work = tmp.path().join("work");
    let run_dir = work.join("run");
    let desktop = Desktop::start(&work.join("desktop"))?;
    let machine = machine_vars(&scene, &run_dir);

    // The agent, as the session's autostart starts it.
    let agent_log = work.join("ferry.log");
    let agent = desktop
        .command(FERRY)
        .arg("--background")
        .envs(machine.iter().map(|(k, v)| (k, v)))
        .env("FERRY_CTL", &ferryctl)
        .env("GDK_BACKEND", "x11")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&agent_log)?)
        .spawn()
        .context("starting ferry --background")?;
    let mut agent = Guard(agent);
    desktop
        .run(&mut gdbus_wait("io.github.ferry.Ferry"))
        .with_context(|| format!("the agent did not start; {}", log_text(&agent_log)))?;

    // The drive is plugged in: the hook validates it and writes its record.
    let config = work.join("ferry.conf");
    fs::write(&config, "on-insert = notify\n")?;
    let hook = Command::new(&ferry_hook)
        .envs(machine.iter().map(|(k, v)| (k, v)))
        .env("FERRY_SIDELOAD_DIR", work.join("sideload-repos"))
        .env("FERRY_CONFIG", &config)
        .env("FERRY_CTL", &ferryctl)
        .arg("--mount")
        .arg(&scene.drive.root)
        .output()
        .context("running ferry-hook")?;
    ensure!(
        hook.status.success(),
        "ferry-hook --mount failed: {}",
        String::from_utf8_lossy(&hook.stderr)
    );

    // The agent notifies, with Install and Show. A directory has no label: it is named by
    // where it is mounted.
    // Waited for whole: the monitor prints a call's arguments a line at a time.
    let summary = format!("string \"Updates on {DRIVE_NAME}\"");
    let notification = [
        "member=Notify",
        summary.as_str(),
        "string \"2 apps and a system update\"",
        "string \"install\"",
        "string \"Install\"",
        "string \"show\"",
    ];
    desktop
        .wait_for_bus(
            "the drive's notification with Install and Show",
            START,
            |log| notification.iter().all(|needle| log.contains(needle)),
        )
        .with_context(|| log_text(&agent_log))?;
    wait_for("dunst to show the notification", START, || {
        let displayed = desktop.run(Command::new("dunstctl").args(["count", "displayed"]))?;
        anyhow::Ok(displayed.trim() != "0")
    })?;

    // A person clicks Install: dunst's menu picks the action and dunst emits ActionInvoked.
    desktop.run(Command::new("dunstctl").arg("context"))?;
    desktop.wait_for_bus("dunst to report the Install action", START, |log| {
        log.contains("member=ActionInvoked")
    })?;

    // The agent runs the installation and notifies how it ended.
    let ended = [
        "string \"Restart to finish\"",
        "string \"Updates installed\"",
        "could not be installed\"",
    ];
    desktop
        .wait_for_bus("the notification of the result", INSTALL, |log| {
            ended.iter().any(|needle| log.contains(needle))
        })
        .with_context(|| log_text(&agent_log))?;
    ensure!(
        agent.0.try_wait()?.is_none(),
        "the agent exited; {}",
        log_text(&agent_log)
    );
    // A sysroot this computer did not boot from needs no restart of this computer, so both
    // happy endings count.
    let log = desktop.monitor_text();
    ensure!(
        !log.contains(ended[2]),
        "the installation failed:\n{log}\n{}",
        log_text(&agent_log)
    );

    // The machine: OS 2.0 is the default deployment, both apps at their new commits, and the
    // runtime they need installed.
    let default = scene.sysroot.default_deployment()?;
    ensure!(
        default.commit == scene.v2 && default.version.as_deref() == Some("2.0"),
        "the default deployment is {default:?}, not 2.0 ({}):\n{}",
        scene.v2,
        scene.sysroot.status()?
    );
    for app in &scene.apps {
        let commit = scene.user.installed_commit(app.app.id)?;
        ensure!(
            commit == app.offered,
            "{} is at {commit}, not the drive's {}",
            app.app.id,
            app.offered
        );
    }
    let runtime = runtime_ref(ferry_tests::flatpak::RUNTIME_ID, NEW_RUNTIME_BRANCH)?;
    let installed = scene.user.installed_refs()?;
    if !installed
        .iter()
        .any(|name| runtime.ends_with(name.as_str()))
    {
        bail!("{runtime} is not installed: {installed:?}");
    }
    Ok(())
}
