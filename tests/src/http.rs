//! A static file server on loopback, standing for an upstream remote or a LAN peer in tests.
//! It logs every request path so tests can check which objects were fetched from it.

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::cmd::Tool;
use crate::error::{FixtureError, Result};

/// Moves the calling thread into a network namespace of its own with only loopback up. Servers
/// it starts and processes it spawns afterwards share it, so a listing that browses for
/// computers nearby (DNS-SD multicast) reaches nothing beyond this test. Needs root.
// unshare(CLONE_NEWNET) is unsafe in rustix: it changes what the thread's sockets reach.
#[allow(unsafe_code)]
pub fn isolate_network() -> Result<()> {
    // SAFETY: CLONE_NEWNET changes only which network stack this thread's new sockets use; no
    // file descriptor table or memory is shared differently afterwards.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }.map_err(
        |e| FixtureError::Requirement(format!("a network namespace of its own (root): {e}")),
    )?;
    Tool::new("ip").args(["link", "set", "lo", "up"]).run()?;
    Ok(())
}

/// Serves the files under a directory at `http://127.0.0.1:PORT/`, until dropped.
pub struct StaticServer {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    pub root: PathBuf,
    server: Arc<tiny_http::Server>,
    log: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl StaticServer {
    /// Starts serving `root` on a free loopback port.
    pub fn serve(root: &Path) -> Result<StaticServer> {
        let server = tiny_http::Server::http("127.0.0.1:0")
            .map_err(|e| FixtureError::Unexpected(format!("cannot listen on 127.0.0.1: {e}")))?;
        let port = server
            .server_addr()
            .to_ip()
            .map(|addr| addr.port())
            .ok_or_else(|| FixtureError::Unexpected("server has no IP address".into()))?;
        let server = Arc::new(server);
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (server, log, root) = (server.clone(), log.clone(), root.to_path_buf());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let path = request.url().split('?').next().unwrap_or("").to_string();
                    if let Ok(mut log) = log.lock() {
                        log.push(path.clone());
                    }
                    let response = match read_below(&root, &path) {
                        Some(bytes) => tiny_http::Response::from_data(bytes),
                        None => tiny_http::Response::from_data(b"not found".to_vec())
                            .with_status_code(404),
                    };
                    let _ = request.respond(response);
                }
            })
        };
        Ok(StaticServer {
            url: format!("http://127.0.0.1:{port}"),
            root: root.to_path_buf(),
            server,
            log,
            thread: Some(thread),
        })
    }

    /// Paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Forgets the requests logged so far.
    pub fn clear_requests(&self) {
        if let Ok(mut log) = self.log.lock() {
            log.clear();
        }
    }
}

impl std::fmt::Debug for StaticServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticServer")
            .field("url", &self.url)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The bytes of the file below `root` that a request for `url_path` names; None for `..`,
/// anything odd, or no such file.
pub fn read_below(root: &Path, url_path: &str) -> Option<Vec<u8>> {
    resolve(root, url_path).and_then(|path| fs::read(path).ok())
}

/// Maps a request path onto a file below `root`, refusing `..` and anything odd.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let relative = Path::new(url_path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let path = root.join(relative);
    path.is_file().then_some(path)
}
