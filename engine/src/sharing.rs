//! Sharing this machine's updates with computers nearby: the `share-nearby` switch in
//! `ferry.conf`, the `ferry-serve.socket` unit that follows it, and the day's count of
//! computers that fetched from this one (kept by `ferryctl serve` in its cache directory).

use std::collections::BTreeSet;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::policy::{Policy, PolicyError};

/// The socket unit that starts `ferryctl serve --system` on the first connection.
pub const SOCKET_UNIT: &str = "ferry-serve.socket";
/// The service the socket starts.
pub const SERVICE_UNIT: &str = "ferry-serve.service";
/// Replaces `systemctl` (tests, other init systems).
pub const ENV_SYSTEMCTL: &str = "FERRY_SYSTEMCTL";
/// Where the server keeps the day's count, beside its cache of converted objects.
pub const DEFAULT_STATS_FILE: &str = "/var/cache/ferry/serve/today.json";
/// A stats file larger than this is not read (it holds one day's addresses).
const MAX_STATS_BYTES: u64 = 1024 * 1024;
/// At most this many distinct addresses are remembered per day; more are only counted.
const MAX_REMEMBERED_CLIENTS: usize = 4096;

/// What the Preferences switch shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharingStatus {
    /// `share-nearby = yes` in the policy.
    pub enabled: bool,
    /// Whether the socket is listening (`systemctl is-active`); None when that is unknown.
    pub running: Option<bool>,
    /// Computers (distinct addresses) that fetched objects from this one today.
    pub computers_today: u64,
    /// Bytes they fetched today.
    pub bytes_today: u64,
}

/// Why sharing could not be switched.
#[derive(Debug, thiserror::Error)]
pub enum SharingError {
    /// The policy file could not be read.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The write error.
        #[source]
        source: std::io::Error,
    },
    /// `systemctl` could not be started.
    #[error("cannot run {program}")]
    Systemctl {
        /// The program run.
        program: String,
        /// The spawn error.
        #[source]
        source: std::io::Error,
    },
    /// `systemctl` ran and failed.
    #[error("`{command}` failed ({status})")]
    Unit {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
    },
}

/// Turns sharing on or off: writes `share-nearby` into the policy at `config` (keeping the
/// rest of the file as it is), then enables and starts, or disables and stops, the socket.
pub fn switch(config: &Path, enabled: bool) -> Result<(), SharingError> {
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::from("[policy]\n"),
        Err(source) => {
            return Err(SharingError::Write {
                path: config.to_owned(),
                source,
            })
        }
    };
    let value = if enabled { "yes" } else { "no" };
    let new_text = crate::policy::with_value(&text, "share-nearby", value);
    // Never write a policy the hook would refuse.
    Policy::parse(&new_text, config)?;
    write_atomically(config, new_text.as_bytes()).map_err(|source| SharingError::Write {
        path: config.to_owned(),
        source,
    })?;
    if enabled {
        systemctl(&["enable", "--now", SOCKET_UNIT])
    } else {
        systemctl(&["disable", "--now", SOCKET_UNIT])?;
        systemctl(&["stop", SERVICE_UNIT])
    }
}

/// The policy's switch, whether the socket listens, and today's count in `stats_file`.
pub fn status(config: &Path, stats_file: &Path) -> Result<SharingStatus, SharingError> {
    let policy = Policy::read(config)?;
    let running = Command::new(systemctl_program())
        .args(["is-active", "--quiet", SOCKET_UNIT])
        .status()
        .ok()
        .and_then(|status| status.code())
        // 0 active; 3 inactive; anything else (no systemd) is unknown.
        .and_then(|code| match code {
            0 => Some(true),
            3 => Some(false),
            _ => None,
        });
    let today = DayStats::read(stats_file)
        .filter(|stats| stats.day == today())
        .unwrap_or_default();
    Ok(SharingStatus {
        enabled: policy.share_nearby,
        running,
        computers_today: today.computers,
        bytes_today: today.bytes,
    })
}

fn systemctl_program() -> String {
    std::env::var(ENV_SYSTEMCTL)
        .ok()
        .filter(|program| !program.is_empty())
        .unwrap_or_else(|| "systemctl".to_owned())
}

fn systemctl(args: &[&str]) -> Result<(), SharingError> {
    let program = systemctl_program();
    let status = Command::new(&program)
        .args(args)
        .status()
        .map_err(|source| SharingError::Systemctl {
            program: program.clone(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(SharingError::Unit {
            command: format!("{program} {}", args.join(" ")),
            status: status.to_string(),
        })
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, mode 0644.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Today's date in UTC, `YYYY-MM-DD`.
fn today() -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    now.get(..10).unwrap_or_default().to_owned()
}

/// What the server counts for one day: who fetched and how much.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayStats {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Distinct client addresses seen (the first `MAX_REMEMBERED_CLIENTS`).
    pub clients: BTreeSet<IpAddr>,
    /// Distinct clients, including those past the remembered ones.
    pub computers: u64,
    /// Bytes served.
    pub bytes: u64,
}

impl DayStats {
    /// Reads a stats file; None when it is missing, too large or not stats.
    pub fn read(path: &Path) -> Option<DayStats> {
        let file = std::fs::File::open(path).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_STATS_BYTES + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        if bytes.len() as u64 > MAX_STATS_BYTES {
            return None;
        }
        serde_json::from_slice(&bytes).ok()
    }

    /// Counts `bytes` sent to `client`, starting a new day when the date changed.
    pub fn record(&mut self, client: IpAddr, bytes: u64) {
        let day = today();
        if self.day != day {
            *self = DayStats {
                day,
                ..DayStats::default()
            };
        }
        let client = canonical(client);
        if !self.clients.contains(&client) {
            if self.clients.len() < MAX_REMEMBERED_CLIENTS {
                self.clients.insert(client);
            }
            self.computers = self.computers.saturating_add(1);
        }
        self.bytes = self.bytes.saturating_add(bytes);
    }

    /// Writes the stats atomically.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        write_atomically(path, &json)
    }
}

/// An IPv4 client reaching a dual-stack socket appears as `::ffff:a.b.c.d`; count it once.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_counts_each_computer_once_and_a_new_day_starts_over() {
        let mut stats = DayStats::default();
        let a: IpAddr = "10.0.0.1".parse().expect("address");
        let a_mapped: IpAddr = "::ffff:10.0.0.1".parse().expect("address");
        let b: IpAddr = "fe80::b".parse().expect("address");
        stats.record(a, 100);
        stats.record(a_mapped, 50);
        stats.record(b, 1);
        assert_eq!(stats.computers, 2);
        assert_eq!(stats.bytes, 151);
        stats.day = "2000-01-01".into();
        stats.record(b, 7);
        assert_eq!((stats.computers, stats.bytes), (1, 7));
        assert_eq!(stats.day, today());
    }

    #[test]
    fn stats_survive_a_round_trip_and_garbage_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("today.json");
        let mut stats = DayStats::default();
        stats.record("10.0.0.9".parse().expect("address"), 42);
        stats.write(&path).expect("write stats");
        assert_eq!(DayStats::read(&path), Some(stats));
        std::fs::write(&path, "not json").expect("write");
        assert_eq!(DayStats::read(&path), None);
    }

    #[test]
    fn switching_keeps_the_rest_of_the_policy_and_runs_systemctl() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("ferry.conf");
        let text = "# a comment\n[policy]\non-insert = install\nshare-nearby = no\n";
        std::fs::write(&config, text).expect("write");
        let log = dir.path().join("systemctl.log");
        let fake = dir.path().join("systemctl");
        std::fs::write(
            &fake,
            format!("#!/bin/sh\necho \"$@\" >> '{}'\n", log.display()),
        )
        .expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // The variable is read by this process only; tests in this binary that run
        // systemctl all use this fake.
        std::env::set_var(ENV_SYSTEMCTL, &fake);

        switch(&config, true).expect("switch on");
        let written = std::fs::read_to_string(&config).expect("read");
        assert_eq!(
            written,
            "# a comment\n[policy]\non-insert = install\nshare-nearby = yes\n"
        );
        let policy = Policy::read(&config).expect("policy");
        assert!(policy.share_nearby);
        assert_eq!(policy.on_insert, crate::policy::OnInsert::Install);

        switch(&config, false).expect("switch off");
        assert!(!Policy::read(&config).expect("policy").share_nearby);
        let calls = std::fs::read_to_string(&log).expect("log");
        assert_eq!(
            calls,
            "enable --now ferry-serve.socket\ndisable --now ferry-serve.socket\nstop ferry-serve.service\n"
        );

        // A policy that is already broken is not made worse, nor rewritten.
        std::fs::write(&config, "on-insert = sometimes\n").expect("write");
        assert!(switch(&config, true).is_err());
        assert_eq!(
            std::fs::read_to_string(&config).expect("read"),
            "on-insert = sometimes\n"
        );
    }
}
