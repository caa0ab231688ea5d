//! Socket activation: systemd (or `systemd-socket-activate`) listens on the port and starts
//! the server with the listening socket as descriptor 3, `LISTEN_FDS=1` and `LISTEN_PID` set
//! to the server's process ID (`sd_listen_fds(3)`).

use std::os::fd::{FromRawFd, OwnedFd};

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// Why a passed socket cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a number.
    #[error("LISTEN_FDS={0} is not a number of descriptors")]
    BadCount(String),
    /// The passed descriptor is not a listening TCP socket; says what it is instead.
    #[error("descriptor 3 passed by the service manager is not a listening TCP socket: {0}")]
    NotListening(&'static str),
    /// The passed descriptor could not be examined or set up.
    #[error("descriptor 3 passed by the service manager cannot be used as a listening socket")]
    Unusable(#[source] std::io::Error),
}

/// The listening socket passed by the service manager, when this process was started with
/// one; the variables are removed so child processes do not take it for theirs.
pub fn activated_listener() -> Result<Option<std::net::TcpListener>, ActivationError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let count = std::env::var("LISTEN_FDS").ok();
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(None);
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let count: i32 = count
        .trim()
        .parse()
        .map_err(|_| ActivationError::BadCount(count.clone()))?;
    if count < 1 {
        return Ok(None);
    }
    let fd = take_descriptor(LISTEN_FDS_START);
    let unusable = |error: std::io::Error| ActivationError::Unusable(error);
    let stat = rustix::fs::fstat(&fd).map_err(|e| unusable(e.into()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
        return Err(ActivationError::NotListening("not a socket"));
    }
    rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC).map_err(|e| unusable(e.into()))?;
    let socket = socket2::Socket::from(fd);
    let stream = socket.r#type().map_err(unusable)?;
    if stream != socket2::Type::STREAM {
        return Err(ActivationError::NotListening("not a stream socket"));
    }
    let listener = std::net::TcpListener::from(socket);
    listener.set_nonblocking(true).map_err(unusable)?;
    Ok(Some(listener))
}

/// Takes ownership of descriptor `fd`, which the service manager passed to this process.
#[allow(unsafe_code)]
fn take_descriptor(fd: i32) -> OwnedFd {
    // SAFETY: LISTEN_PID names this process, so by the sd_listen_fds protocol descriptor 3
    // was opened for it and nothing else in the process owns it; it is taken once, here,
    // after the variables that announce it were removed.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
