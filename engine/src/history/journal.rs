//! The systemd journal without libsystemd: entries are written to journald's native socket
//! (one datagram, `KEY=value` lines, the length-prefixed form for values with a newline) and
//! read back with `journalctl -o json`, which knows the journal file format.

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Map, Value};

/// journald's native protocol socket.
pub const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";
/// Moves the socket entries are written to (tests bind their own).
pub const ENV_JOURNAL_SOCKET: &str = "FERRY_JOURNAL_SOCKET";
/// Makes `ferryctl history` read the journal files of a directory instead of the system's.
pub const ENV_JOURNAL_DIR: &str = "FERRY_JOURNAL_DIR";

/// A value longer than this is cut, so one entry stays one datagram.
const MAX_VALUE_BYTES: usize = 16 * 1024;
/// `journalctl` output read at most; entries are small.
const MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;

/// Why the journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A journal entry could not be sent.
    #[error("cannot write to the journal at {}", socket.display())]
    Send {
        /// The journal's socket.
        socket: PathBuf,
        /// The send error.
        #[source]
        error: std::io::Error,
    },
    /// `journalctl` could not be started.
    #[error("cannot run journalctl; install it (it is part of the systemd package)")]
    Spawn(#[source] std::io::Error),
    /// `journalctl` exited with an error.
    #[error("journalctl failed ({status}): {stderr}")]
    Failed {
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `journalctl`'s output exceeded the limit.
    #[error("journalctl printed more than {MAX_OUTPUT_BYTES} bytes")]
    TooLarge,
    /// `journalctl`'s output could not be read.
    #[error("cannot read journalctl's output")]
    Read(#[source] std::io::Error),
}

/// Which journal to read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum JournalLocation {
    /// The system's journal, as `journalctl` finds it.
    #[default]
    System,
    /// The journal files of a directory (`journalctl --directory`).
    Directory(PathBuf),
    /// One journal file (`journalctl --file`).
    File(PathBuf),
}

/// The socket entries go to: `FERRY_JOURNAL_SOCKET`, else journald's.
pub fn socket_path() -> PathBuf {
    std::env::var_os(ENV_JOURNAL_SOCKET)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// One entry in journald's native format. Field names must be journal field names
/// (`[A-Z0-9_]`, not starting with `_`); the same name may repeat.
pub fn encode(fields: &[(&str, String)]) -> Vec<u8> {
    let mut datagram = Vec::new();
    for (name, value) in fields {
        let value = cut(value, MAX_VALUE_BYTES);
        datagram.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            datagram.push(b'\n');
            datagram.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            datagram.push(b'=');
        }
        datagram.extend_from_slice(value.as_bytes());
        datagram.push(b'\n');
    }
    datagram
}

/// Sends one entry to the journal socket at `socket`.
pub fn send(socket: &Path, fields: &[(&str, String)]) -> Result<(), JournalError> {
    let fail = |error| JournalError::Send {
        socket: socket.to_owned(),
        error,
    };
    let datagram = encode(fields);
    let sender = UnixDatagram::unbound().map_err(fail)?;
    sender.send_to(&datagram, socket).map_err(fail)?;
    Ok(())
}

/// The entries with `MESSAGE_ID=message_id`, newest first, at most `limit`, as the JSON
/// objects `journalctl -o json` prints.
pub fn read(
    location: &JournalLocation,
    message_id: &str,
    limit: usize,
) -> Result<Vec<Map<String, Value>>, JournalError> {
    let mut command = Command::new("journalctl");
    command.args(["--output=json", "--no-pager", "--reverse", "--quiet"]);
    command.arg(format!("--lines={limit}"));
    match location {
        JournalLocation::System => {}
        JournalLocation::Directory(dir) => {
            command.arg("--directory").arg(dir);
        }
        JournalLocation::File(file) => {
            command.arg("--file").arg(file);
        }
    }
    command.arg(format!("MESSAGE_ID={message_id}"));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(JournalError::Spawn)?;
    let mut stdout = Vec::new();
    if let Some(pipe) = child.stdout.take() {
        pipe.take(MAX_OUTPUT_BYTES + 1)
            .read_to_end(&mut stdout)
            .map_err(JournalError::Read)?;
    }
    let too_large = stdout.len() as u64 > MAX_OUTPUT_BYTES;
    if too_large {
        let _ = child.kill();
    }
    let mut stderr = Vec::new();
    if let Some(pipe) = child.stderr.take() {
        let _ = pipe.take(16 * 1024).read_to_end(&mut stderr);
    }
    let status = child.wait().map_err(JournalError::Read)?;
    if too_large {
        return Err(JournalError::TooLarge);
    }
    if !status.success() {
        return Err(JournalError::Failed {
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
        });
    }
    Ok(stdout
        .split(|byte| *byte == b'\n')
        .filter_map(|line| serde_json::from_slice::<Map<String, Value>>(line).ok())
        .take(limit)
        .collect())
}

/// The values of `name` in an entry `journalctl -o json` printed: a string, or an array
/// when the field repeats. Binary values (arrays of numbers) are read as UTF-8 if they are.
pub fn values(entry: &Map<String, Value>, name: &str) -> Vec<String> {
    fn one(value: &Value) -> Option<String> {
        match value {
            Value::String(text) => Some(text.clone()),
            Value::Array(bytes) if bytes.iter().all(Value::is_u64) => {
                let bytes: Option<Vec<u8>> = bytes
                    .iter()
                    .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect();
                bytes.and_then(|bytes| String::from_utf8(bytes).ok())
            }
            _ => None,
        }
    }
    match entry.get(name) {
        None => Vec::new(),
        Some(Value::Array(items)) if items.iter().any(|item| !item.is_u64()) => {
            items.iter().filter_map(one).collect()
        }
        Some(value) => one(value).into_iter().collect(),
    }
}

/// The first value of `name`.
pub fn value(entry: &Map<String, Value>, name: &str) -> Option<String> {
    values(entry, name).into_iter().next()
}

fn cut(value: &str, max: usize) -> &str {
    if value.len() <= max {
        return value;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_a_newline_use_the_length_form() {
        let datagram = encode(&[
            ("MESSAGE_ID", "abc".to_owned()),
            ("FERRY_DETAIL", "one\ntwo".to_owned()),
        ]);
        let mut expected = b"MESSAGE_ID=abc\nFERRY_DETAIL\n".to_vec();
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.extend_from_slice(b"one\ntwo\n");
        assert_eq!(datagram, expected);
    }

    #[test]
    fn long_values_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_VALUE_BYTES);
        let datagram = encode(&[("MESSAGE", long)]);
        let text = std::str::from_utf8(&datagram).expect("still UTF-8");
        assert!(text.len() <= "MESSAGE=\n".len() + MAX_VALUE_BYTES);
    }

    #[test]
    fn repeated_and_binary_fields_are_read() {
        let entry: Map<String, Value> = serde_json::from_str(
            r#"{"FERRY_SOURCE":["drive A","lan B"],"MESSAGE":[104,105],"ONE":"x"}"#,
        )
        .expect("json");
        assert_eq!(values(&entry, "FERRY_SOURCE"), ["drive A", "lan B"]);
        assert_eq!(value(&entry, "MESSAGE").as_deref(), Some("hi"));
        assert_eq!(values(&entry, "ONE"), ["x"]);
        assert!(values(&entry, "NONE").is_empty());
    }
}
