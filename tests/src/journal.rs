//! A stand-in for journald, for machines without one: [`JournalSink`] binds a unix datagram
//! socket where a test points `FERRY_JOURNAL_SOCKET`, receives the entries written in
//! journald's native protocol and stamps them with the time they arrived, as journald does;
//! [`write_journal_files`] stores them as real journal files with `systemd-journal-remote`
//! (reading the journal export format), which `journalctl --directory` then reads.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cmd::Tool;
use crate::error::{FixtureError, IoContext, Result};

/// Where Debian's systemd-journal-remote package puts the tool.
pub const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

/// One received entry: its fields in order (names may repeat), and when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub fields: Vec<(String, Vec<u8>)>,
    /// Microseconds since the Unix epoch.
    pub realtime_usec: u64,
}

impl JournalEntry {
    /// The values of `name`, as text.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.fields
            .iter()
            .filter(|(field, _)| field == name)
            .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
            .collect()
    }

    /// The first value of `name`.
    pub fn value(&self, name: &str) -> Option<String> {
        self.values(name).into_iter().next()
    }
}

/// A socket receiving journal entries.
#[derive(Debug)]
pub struct JournalSink {
    pub path: PathBuf,
    socket: UnixDatagram,
}

impl JournalSink {
    /// Binds `dir/journal.socket`.
    pub fn bind(dir: &Path) -> Result<JournalSink> {
        std::fs::create_dir_all(dir).at("create directory", dir)?;
        let path = dir.join("journal.socket");
        let socket = UnixDatagram::bind(&path).at("bind", &path)?;
        socket.set_nonblocking(true).at("configure", &path)?;
        Ok(JournalSink { path, socket })
    }

    /// Every entry received so far, waiting up to `wait` for at least one.
    pub fn receive(&self, wait: Duration) -> Result<Vec<JournalEntry>> {
        let deadline = Instant::now() + wait;
        let mut entries = Vec::new();
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            match self.socket.recv(&mut buffer) {
                Ok(len) => entries.push(JournalEntry {
                    fields: parse_native(&buffer[..len])?,
                    realtime_usec: now_usec(),
                }),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    if !entries.is_empty() || Instant::now() >= deadline {
                        return Ok(entries);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => return Err(error).at("receive from", &self.path),
            }
        }
    }
}

fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// journald's native protocol: `NAME=value\n`, or `NAME\n` + 64-bit little-endian length +
/// value + `\n`.
pub fn parse_native(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>> {
    let bad = |what: &str| FixtureError::Unexpected(format!("bad journal datagram: {what}"));
    let mut fields = Vec::new();
    while !data.is_empty() {
        let line_end = data
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| bad("no newline"))?;
        let line = &data[..line_end];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            let name = String::from_utf8_lossy(&line[..eq]).into_owned();
            fields.push((name, line[eq + 1..].to_vec()));
            data = &data[line_end + 1..];
        } else {
            let name = String::from_utf8_lossy(line).into_owned();
            let rest = &data[line_end + 1..];
            let len_bytes: [u8; 8] = rest
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("short length"))?;
            let len = u64::from_le_bytes(len_bytes) as usize;
            let value = rest.get(8..8 + len).ok_or_else(|| bad("short value"))?;
            if rest.get(8 + len) != Some(&b'\n') {
                return Err(bad("no newline after a binary value"));
            }
            fields.push((name, value.to_vec()));
            data = &rest[8 + len + 1..];
        }
    }
    Ok(fields)
}

/// Stores `entries` as journal files in `dir` (`dir/ferry.journal`), through
/// `systemd-journal-remote` reading the export format on stdin.
pub fn write_journal_files(dir: &Path, entries: &[JournalEntry]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).at("create directory", dir)?;
    let mut export = Vec::new();
    for entry in entries {
        export.extend_from_slice(
            format!("__REALTIME_TIMESTAMP={}\n", entry.realtime_usec).as_bytes(),
        );
        for (name, value) in &entry.fields {
            export.extend_from_slice(name.as_bytes());
            if value.contains(&b'\n') {
                export.push(b'\n');
                export.extend_from_slice(&(value.len() as u64).to_le_bytes());
            } else {
                export.push(b'=');
            }
            export.extend_from_slice(value);
            export.push(b'\n');
        }
        export.push(b'\n');
    }
    let file = dir.join("ferry.journal");
    Tool::new(JOURNAL_REMOTE)
        .arg(format!("--output={}", file.display()))
        .arg("-")
        .stdin(export)
        .run()?;
    Ok(file)
}
