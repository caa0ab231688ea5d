//! A running `ferryctl serve` for the serving tests, and a raw HTTP GET.

#![allow(
    dead_code,
    reason = "each test file uses a different part of the helpers"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_tests::bins;
use ferry_tests::cmd::{wait_for, Tool};

/// How long a server may take to start, and a stopped one to exit.
pub const PROCESS_WAIT: Duration = Duration::from_secs(30);

/// A running `ferryctl serve`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    /// What it printed: `Serving DIR at http://ADDRESS:PORT/`.
    pub url: String,
    log: PathBuf,
}

impl Server {
    /// `[ip netns exec NAMESPACE] ferryctl -v serve --repo REPO ARGS...`, its log in `log`.
    pub fn start(
        namespace: Option<&str>,
        repo: &Path,
        args: &[&str],
        log: &Path,
    ) -> Result<Server> {
        Server::start_as(None, namespace, repo, args, log)
    }

    /// [`Server::start`], with host name `host` (in a UTS namespace of its own) when given,
    /// so that it advertises itself as "Ferry on HOST".
    pub fn start_as(
        host: Option<&str>,
        namespace: Option<&str>,
        repo: &Path,
        args: &[&str],
        log: &Path,
    ) -> Result<Server> {
        let ferryctl = bins::binary("ferryctl")?;
        let mut tool = match host {
            Some(host) => Tool::new("unshare").args([
                "--uts",
                "sh",
                "-c",
                "hostname \"$0\" && exec \"$@\"",
                host,
            ]),
            None => Tool::new("env"),
        };
        tool = match namespace {
            Some(name) => tool.args(["ip", "netns", "exec", name]).arg(&ferryctl),
            None => tool.arg(&ferryctl),
        };
        tool = tool
            .env("FERRY_LOG", "info")
            .env("NO_COLOR", "1")
            .env("LC_ALL", "C.UTF-8")
            .args(["-v", "serve", "--repo"])
            .arg(repo)
            .args(args);
        Server::spawn(tool, log)
    }

    /// Starts `tool` (a `ferryctl serve` command line) and waits for the address it prints.
    pub fn spawn(tool: Tool, log: &Path) -> Result<Server> {
        let mut command = tool.into_command();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log)?);
        let mut child = command.spawn().context("start ferryctl serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + PROCESS_WAIT;
        let mut server = Server {
            child,
            url: String::new(),
            log: log.to_owned(),
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = receiver.recv_timeout(left).with_context(|| {
                format!(
                    "ferryctl serve printed no address; its log:\n{}",
                    server.log_text()
                )
            })?;
            if let Some(at) = line.find("http://") {
                server.url = line[at..].trim_end_matches('/').to_owned();
                return Ok(server);
            }
        }
    }

    pub fn port(&self) -> Result<u16> {
        let port = self.url.rsplit(':').next().context("no port")?;
        Ok(port.parse()?)
    }

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
            anyhow::Ok(status.is_some())
        })?;
        status.context("no exit status")
    }
}

impl Drop for Server {
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

/// The status code of `GET path` (sent as is, unnormalised) and the body.
pub fn get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(PROCESS_WAIT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()?;
    // The body as sent (not through the lossy text above: objects are binary).
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| response[at + 4..].to_vec())
        .unwrap_or_default();
    Ok((status, body))
}
