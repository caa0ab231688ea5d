//! SIGINT and SIGTERM cancel the running operation instead of killing the process, so the
//! engine can stop between objects and leave every repository consistent.

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
