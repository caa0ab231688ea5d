//! Local networks made of network namespaces the test creates (a veth pair, or a bridge with
//! many machines, optionally rate-limited with `tc`), and `ferryctl serve` running in them.
//! Nothing here sends traffic outside those namespaces; every namespace is deleted on drop.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::bins;
use crate::cmd::{wait_for, Tool};
use crate::error::{FixtureError, IoContext, Result};

/// How long a started server may take to print its address, or to stop.
pub const PROCESS_WAIT: Duration = Duration::from_secs(30);

/// A running `ferryctl serve`, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct ServeProcess {
    pub child: Child,
    /// What it printed: `Serving DIR at http://ADDRESS:PORT/`, without the final slash.
    pub url: String,
    log: PathBuf,
}

/// Where and how [`ServeProcess::start`] runs `ferryctl serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions<'a> {
    /// Run inside this network namespace.
    pub namespace: Option<&'a str>,
    /// Host name (in a UTS namespace of its own), so it advertises itself as "Ferry on HOST".
    pub host: Option<&'a str>,
    /// Extra environment.
    pub env: Vec<(&'a str, &'a std::ffi::OsStr)>,
}

impl ServeProcess {
    /// `[ip netns exec NAMESPACE] ferryctl -v serve ARGS...`, its log in `log`; returns once it
    /// printed the address it serves at.
    pub fn start(
        options: &ServeOptions<'_>,
        args: &[&std::ffi::OsStr],
        log: &Path,
    ) -> Result<Self> {
        let ferryctl = bins::binary("ferryctl")?;
        let mut tool = match options.host {
            Some(host) => Tool::new("unshare").args([
                "--uts",
                "sh",
                "-c",
                "hostname \"$0\" && exec \"$@\"",
                host,
            ]),
            None => Tool::new("env"),
        };
        tool = match options.namespace {
            Some(name) => tool.args(["ip", "netns", "exec", name]).arg(&ferryctl),
            None => tool.arg(&ferryctl),
        };
        tool = tool
            .env("FERRY_LOG", "info")
            .env("NO_COLOR", "1")
            .env("LC_ALL", "C.UTF-8")
            .envs(options.env.iter().copied())
            .args(["-v", "serve"])
            .args(args);
        Self::spawn(tool, log)
    }

    /// Starts `tool` (a `ferryctl serve` command line) and waits for the address it prints.
    pub fn spawn(tool: Tool, log: &Path) -> Result<Self> {
        let mut command = tool.into_command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).at("create", log)?);
        let mut child = command.spawn().map_err(|source| FixtureError::Spawn {
            command: "ferryctl serve".into(),
            source,
        })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| FixtureError::Unexpected("ferryctl serve has no stdout".into()))?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServeProcess {
            child,
            url: String::new(),
            log: log.to_owned(),
        };
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = receiver.recv_timeout(left) else {
                return Err(FixtureError::Unexpected(format!(
                    "ferryctl serve printed no address; its log:\n{}",
                    server.log_text()
                )));
            };
            if let Some(at) = line.find("http://") {
                server.url = line[at..].trim_end_matches('/').to_owned();
                return Ok(server);
            }
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> Result<u16> {
        self.url
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| FixtureError::Unexpected(format!("no port in {}", self.url)))
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        // The shell's own `kill`: present wherever `sh` is.
        Tool::new("sh")
            .args(["-c", &format!("kill -TERM {}", self.child.id())])
            .run()?;
        let mut status = None;
        wait_for("ferryctl serve to stop", PROCESS_WAIT, || {
            status = self.child.try_wait().ok().flatten();
            Ok::<_, FixtureError>(status.is_some())
        })?;
        status.ok_or_else(|| FixtureError::Unexpected("no exit status".into()))
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.terminate();
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The status code of `GET path` to 127.0.0.1:`port` (the path sent as is, unnormalised) and
/// the body as sent.
pub fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let io = |e: std::io::Error| FixtureError::Unexpected(format!("GET {path}: {e}"));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(io)?;
    stream.set_read_timeout(Some(PROCESS_WAIT)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(io)?;
    let status = String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| FixtureError::Unexpected(format!("GET {path}: no status line")))?;
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| response[at + 4..].to_vec())
        .unwrap_or_default();
    Ok((status, body))
}

fn ip(args: &[&str]) -> Result<()> {
    Tool::new("ip").args(args).run().map(drop)
}

/// Brings `lo` and `dev` up in namespace `name`, with multicast on `dev` (for mDNS).
fn bring_up(name: &str, dev: &str) -> Result<()> {
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    ip(&["-n", name, "link", "set", dev, "multicast", "on", "up"])
}

/// Limits what leaves `dev` in namespace `name` to `rate` (a tc rate such as `100mbit`).
fn limit(name: &str, dev: &str, rate: &str) -> Result<()> {
    Tool::new("tc")
        .args([
            "-n", name, "qdisc", "replace", "dev", dev, "root", "tbf", "rate", rate,
        ])
        .args(["burst", "256kbit", "latency", "50ms"])
        .run()
        .map(drop)
}

/// Two network namespaces, A and B, joined by a veth pair (`veth-a` in A, `veth-b` in B)
/// created inside them.
#[derive(Debug)]
pub struct VethPair {
    pub a: String,
    pub b: String,
}

/// A's IPv6 link-local address on a [`VethPair::link_local_only`].
pub const LINK_LOCAL_A: &str = "fe80::a";

impl VethPair {
    /// A is 10.201.0.1, B 10.201.0.2.
    pub fn create() -> Result<Self> {
        Self::with_addresses(&[
            ("veth-a", "10.201.0.1/24", false),
            ("veth-b", "10.201.0.2/24", false),
        ])
    }

    /// No IPv4 at all: A is fe80::a, B fe80::b, link-local IPv6 only.
    pub fn link_local_only() -> Result<Self> {
        Self::with_addresses(&[
            ("veth-a", &format!("{LINK_LOCAL_A}/64"), true),
            ("veth-b", "fe80::b/64", true),
        ])
    }

    /// `addresses`: A's then B's (device, address, whether it is IPv6 link-local).
    fn with_addresses(addresses: &[(&str, &str, bool); 2]) -> Result<Self> {
        let id = std::process::id();
        let lan = VethPair {
            a: format!("ferry-lan-{id}-a"),
            b: format!("ferry-lan-{id}-b"),
        };
        for name in [&lan.a, &lan.b] {
            ip(&["netns", "add", name])?;
        }
        ip(&[
            "-n", &lan.a, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b",
            "netns", &lan.b,
        ])?;
        for (name, (dev, address, link_local)) in [&lan.a, &lan.b].into_iter().zip(addresses) {
            if *link_local {
                // Exactly the address given, usable at once (no duplicate detection).
                ip(&["-n", name, "link", "set", dev, "addrgenmode", "none"])?;
                ip(&["-n", name, "addr", "add", address, "dev", dev, "nodad"])?;
            } else {
                ip(&["-n", name, "addr", "add", address, "dev", dev])?;
            }
            bring_up(name, dev)?;
        }
        Ok(lan)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for name in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Machines on one switch: a namespace per machine, each with `eth0` at 10.203.0.N/24
/// (N from 1), joined by a bridge in a hub namespace of its own. Multicast crosses the
/// bridge, so DNS-SD discovery is real.
#[derive(Debug)]
pub struct Switch {
    hub: String,
    machines: Vec<String>,
}

impl Switch {
    /// `count` machines; with `rate`, each machine's link is limited to it both ways.
    pub fn create(count: usize, rate: Option<&str>) -> Result<Self> {
        let id = std::process::id();
        let mut switch = Switch {
            hub: format!("ferry-sw-{id}-hub"),
            machines: Vec::new(),
        };
        ip(&["netns", "add", &switch.hub])?;
        ip(&["-n", &switch.hub, "link", "add", "br0", "type", "bridge"])?;
        // Flood multicast to every port instead of waiting for IGMP reports.
        ip(&[
            "-n",
            &switch.hub,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &switch.hub, "link", "set", "br0", "up"])?;
        for index in 0..count {
            let name = format!("ferry-sw-{id}-{}", index + 1);
            ip(&["netns", "add", &name])?;
            switch.machines.push(name.clone());
            let port = format!("port{}", index + 1);
            ip(&[
                "-n",
                &name,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &switch.hub,
            ])?;
            ip(&[
                "-n",
                &switch.hub,
                "link",
                "set",
                &port,
                "master",
                "br0",
                "up",
            ])?;
            ip(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{}/24", Self::address_of(index)),
                "dev",
                "eth0",
            ])?;
            bring_up(&name, "eth0")?;
            if let Some(rate) = rate {
                limit(&name, "eth0", rate)?;
                limit(&switch.hub, &port, rate)?;
            }
        }
        Ok(switch)
    }

    /// The namespace of machine `index` (from 0).
    pub fn machine(&self, index: usize) -> &str {
        &self.machines[index]
    }

    /// How many machines there are.
    pub fn len(&self) -> usize {
        self.machines.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.machines.is_empty()
    }

    /// Machine `index`'s IPv4 address.
    pub fn address_of(index: usize) -> String {
        format!("10.203.0.{}", index + 1)
    }

    /// `ip netns exec MACHINE PROGRAM`.
    pub fn exec(&self, index: usize, program: impl AsRef<std::ffi::OsStr>) -> Tool {
        Tool::new("ip")
            .args(["netns", "exec", self.machine(index)])
            .arg(program)
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        for name in self.machines.iter().chain([&self.hub]) {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Which IP family an [`Avahi`] daemon announces and resolves over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvahiFamily {
    /// IPv4 only (`use-ipv4=yes`, `use-ipv6=no`).
    Ipv4,
    /// IPv6 only: on a link with only link-local addresses, those are what it announces.
    Ipv6,
}

/// avahi-daemon running in a network namespace, on a private system bus of its own: a
/// dbus-daemon whose socket is in `dir`, so that clients reach it through
/// `DBUS_SYSTEM_BUS_ADDRESS` ([`Avahi::bus_address`]). avahi-daemon runs in a mount namespace
/// of its own, where `dir` provides `/run` (its pid file and socket) and an empty
/// `/etc/avahi/services`. Both processes are killed on drop.
#[derive(Debug)]
pub struct Avahi {
    /// None until started: a failure to start it still stops the bus.
    avahi: Option<Child>,
    bus: Child,
    dir: PathBuf,
}

impl Avahi {
    /// Starts the bus and avahi-daemon in namespace `namespace`, as host `host_name` on
    /// `interface` (IPv4 only), and returns once avahi-daemon has started up.
    pub fn start(namespace: &str, interface: &str, host_name: &str, dir: &Path) -> Result<Self> {
        Self::start_on(namespace, interface, host_name, dir, AvahiFamily::Ipv4)
    }

    /// As [`Avahi::start`], announcing and resolving over `family` only.
    pub fn start_on(
        namespace: &str,
        interface: &str,
        host_name: &str,
        dir: &Path,
        family: AvahiFamily,
    ) -> Result<Self> {
        let (ipv4, ipv6) = match family {
            AvahiFamily::Ipv4 => ("yes", "no"),
            AvahiFamily::Ipv6 => ("no", "yes"),
        };
        for sub in ["services", "run"] {
            std::fs::create_dir_all(dir.join(sub)).at("create", dir)?;
        }
        let socket = dir.join("bus.sock");
        let bus_config = dir.join("bus.conf");
        std::fs::write(
            &bus_config,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>
  <policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/></policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .at("write", &bus_config)?;
        let config = dir.join("avahi-daemon.conf");
        std::fs::write(
            &config,
            format!(
                "[server]\nhost-name={host_name}\ndomain-name=local\nuse-ipv4={ipv4}\nuse-ipv6={ipv6}\n\
                 allow-interfaces={interface}\nenable-dbus=yes\n\
                 ratelimit-interval-usec=1000000\nratelimit-burst=1000\n\
                 [wide-area]\nenable-wide-area=no\n\
                 [publish]\npublish-hinfo=no\npublish-workstation=no\n[reflector]\n[rlimits]\n"
            ),
        )
        .at("write", &config)?;
        let bus = Tool::new("ip")
            .args([
                "netns",
                "exec",
                namespace,
                "dbus-daemon",
                "--nofork",
                "--nopidfile",
            ])
            .arg(format!("--config-file={}", bus_config.display()))
            .spawn()?;
        let mut started = Avahi {
            avahi: None,
            bus,
            dir: dir.to_owned(),
        };
        wait_for("the private system bus", PROCESS_WAIT, || {
            Ok::<_, FixtureError>(socket.exists())
        })?;
        let log = dir.join("avahi-daemon.log");
        let mut command = Tool::new("ip")
            .args(["netns", "exec", namespace, "unshare", "-m", "--propagation", "private"])
            .args([
                "sh",
                "-c",
                "mount --bind \"$0/services\" /etc/avahi/services && mount --bind \"$0/run\" /run \
                 && exec avahi-daemon -f \"$0/avahi-daemon.conf\" --no-drop-root --no-chroot --no-rlimits",
            ])
            .arg(dir)
            .env("DBUS_SYSTEM_BUS_ADDRESS", started.bus_address())
            .into_command();
        let log_file = std::fs::File::create(&log).at("create", &log)?;
        command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().at("open", &log)?)
            .stderr(log_file);
        let avahi = command.spawn().map_err(|source| FixtureError::Spawn {
            command: "avahi-daemon".into(),
            source,
        })?;
        let avahi = started.avahi.insert(avahi);
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_for("avahi-daemon to start up", PROCESS_WAIT, || {
            if let Ok(Some(status)) = avahi.try_wait() {
                return Err(FixtureError::Unexpected(format!(
                    "avahi-daemon exited ({status}):\n{}",
                    log_text()
                )));
            }
            Ok(log_text().contains("Server startup complete"))
        })?;
        Ok(started)
    }

    /// The `DBUS_SYSTEM_BUS_ADDRESS` of its bus.
    pub fn bus_address(&self) -> String {
        format!("unix:path={}", self.dir.join("bus.sock").display())
    }

    /// What avahi-daemon logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.join("avahi-daemon.log")).unwrap_or_default()
    }
}

impl Drop for Avahi {
    fn drop(&mut self) {
        for child in self.avahi.iter_mut().chain([&mut self.bus]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
