//! SIGINT and SIGTERM (and, on request, the end of stdin) cancel the running operation instead
//! of killing the process, so the engine can stop between objects and leave every repository
//! consistent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ferry_engine::cancel::CancelToken;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Installs the handlers and returns the token they trip. A second signal exits at once.
pub fn install() -> anyhow::Result<CancelToken> {
    let token = CancelToken::new();
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let seen = Arc::new(AtomicUsize::new(0));
    let trip = token.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                tracing::info!(signal, "cancelling on signal");
                trip.cancel();
                if seen.fetch_add(1, Ordering::SeqCst) >= 1 {
                    std::process::exit(130);
                }
            }
        })?;
    Ok(token)
}

/// Trips `token` when standard input reaches its end. A parent that cannot signal this
/// process (an unprivileged desktop app and its child run as root through pkexec) keeps a
/// pipe to its stdin and closes it to cancel. Whatever arrives on stdin is discarded.
pub fn cancel_on_stdin_eof(token: &CancelToken) -> anyhow::Result<()> {
    let trip = token.clone();
    std::thread::Builder::new()
        .name("stdin-eof".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buffer = [0u8; 512];
            loop {
                match std::io::Read::read(&mut stdin, &mut buffer) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        tracing::warn!(error = %ferry_engine::causes::Causes(&error), "cannot read standard input; cancelling");
                        break;
                    }
                }
            }
            tracing::info!("cancelling: standard input was closed");
            trip.cancel();
        })?;
    Ok(())
}
