//! A static HTTP/1.1 file server on loopback standing for a peer, with a thread per connection
//! and keep-alive, as real peers serve: a client keeping several connections open at once
//! (Ferry keeps up to eight) is answered on each of them. It logs every request path.
//!
//! A [`Behaviour`] makes it misbehave the ways peers do on a real network: objects served with
//! other (well-formed) content, bodies trickled a byte at a time, 404s for objects it holds,
//! vanishing mid-pull, and a callback at a chosen request so a test can break something else
//! (pull a drive out) at a known point of the pull.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// `/objects/XX/REST.EXTENSION`, the URL path of an object below a repository's base URL.
pub fn object_path(checksum: &str, extension: &str) -> String {
    format!(
        "/objects/{}/{}.{extension}",
        checksum.get(..2).unwrap_or(""),
        checksum.get(2..).unwrap_or("")
    )
}

fn is_object(path: &str) -> bool {
    path.starts_with("/objects/")
}

/// When a [`Behaviour::trigger`] fires.
pub enum When {
    /// Before answering the n-th object request (1 for the first).
    NthObject(usize),
    /// Before answering the first request for this path.
    Path(String),
}

/// A callback run once, in the peer's thread, before the request it waits for is answered.
pub struct Trigger {
    pub when: When,
    pub action: Box<dyn FnOnce() + Send>,
}

/// Bodies sent one byte per `every`.
pub struct Trickle {
    pub every: Duration,
    /// The paths trickled (objects or others, such as delta files); `None` for every object
    /// (config and summary stay fast, so the peer is taken into the pull).
    pub only: Option<HashSet<String>>,
}

/// How a peer departs from serving its files faithfully. The default is an honest peer.
#[derive(Default)]
pub struct Behaviour {
    /// Object paths served with other bytes: a `.filez` keeps its header and a valid deflate
    /// stream but one byte of content changes, so only its hash gives it away.
    pub tamper: HashSet<String>,
    /// Object paths answered 404 although the file is there.
    pub not_found: HashSet<String>,
    pub trickle: Option<Trickle>,
    /// This many object requests are answered; the next one is cut halfway through its body,
    /// and the peer then stops listening and closes every connection, as a computer switched
    /// off mid-pull.
    pub vanish_after: Option<usize>,
    /// Object paths whose first answer is cut halfway through its body, that connection then
    /// closed, as a server closing a keep-alive connection too early; the peer stays up and
    /// answers the next request for them in full.
    pub cut_once: HashSet<String>,
    pub trigger: Option<Trigger>,
}

impl Behaviour {
    pub fn tamper(mut self, paths: impl IntoIterator<Item = String>) -> Self {
        self.tamper.extend(paths);
        self
    }

    pub fn not_found(mut self, paths: impl IntoIterator<Item = String>) -> Self {
        self.not_found.extend(paths);
        self
    }

    /// Every object body trickled, one byte per `every`.
    pub fn trickle(mut self, every: Duration) -> Self {
        self.trickle = Some(Trickle { every, only: None });
        self
    }

    /// Only the object paths given trickled, one byte per `every`.
    pub fn trickle_only(
        mut self,
        every: Duration,
        paths: impl IntoIterator<Item = String>,
    ) -> Self {
        self.trickle = Some(Trickle {
            every,
            only: Some(paths.into_iter().collect()),
        });
        self
    }

    pub fn cut_once(mut self, paths: impl IntoIterator<Item = String>) -> Self {
        self.cut_once.extend(paths);
        self
    }

    pub fn vanish_after(mut self, objects: usize) -> Self {
        self.vanish_after = Some(objects);
        self
    }

    pub fn on(mut self, when: When, action: impl FnOnce() + Send + 'static) -> Self {
        self.trigger = Some(Trigger {
            when,
            action: Box::new(action),
        });
        self
    }
}

/// One request as the peer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    /// 200, or 404; 0 when the peer never answered (it vanished first).
    pub status: u16,
    /// Whether the whole body went out.
    pub complete: bool,
}

/// A peer's request log, watched from elsewhere (see [`Peer::log_watch`]).
pub struct LogWatch {
    shared: Arc<Shared>,
}

impl LogWatch {
    /// Waits until `done` holds for the request log, failing after `timeout`.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Request]) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut log = lock(&self.shared.log);
        loop {
            if done(&log) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "{}: condition not met within {timeout:?}: {:?}",
                    self.shared.address,
                    *log
                );
            }
            log = match self.shared.logged.wait_timeout(log, left) {
                Ok((log, _)) => log,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// Gone: the peer was dropped or vanished. Waiters (trickles) wake when it is set.
#[derive(Default)]
struct Gone {
    flag: Mutex<bool>,
    changed: Condvar,
}

impl Gone {
    fn is_set(&self) -> bool {
        *lock(&self.flag)
    }

    fn set(&self) {
        *lock(&self.flag) = true;
        self.changed.notify_all();
    }

    /// Waits up to `timeout`; true when the peer is gone.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = lock(&self.flag);
        match self
            .changed
            .wait_timeout_while(guard, timeout, |gone| !*gone)
        {
            Ok((gone, _)) => *gone,
            Err(poisoned) => *poisoned.into_inner().0,
        }
    }
}

struct Shared {
    root: PathBuf,
    address: std::net::SocketAddr,
    tamper: HashSet<String>,
    not_found: HashSet<String>,
    trickle: Option<Trickle>,
    vanish_after: Option<usize>,
    /// Paths still to be cut once (see [`Behaviour::cut_once`]).
    cut_once: Mutex<HashSet<String>>,
    trigger: Mutex<Option<Trigger>>,
    objects_requested: AtomicUsize,
    log: Mutex<Vec<Request>>,
    logged: Condvar,
    gone: Gone,
    /// Set once the listener is closed: connections are refused from then on.
    closed: Gone,
    connections: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Shared {
    /// Stops listening and cuts every connection.
    fn vanish(&self) {
        self.gone.set();
        // Wakes the accept loop so it drops the listener, and waits for that: a connection
        // attempted after this returns is refused.
        let _ = TcpStream::connect(self.address);
        self.closed.wait(Duration::from_secs(5));
        for stream in lock(&self.connections).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn push(&self, request: Request) -> usize {
        let mut log = lock(&self.log);
        log.push(request);
        self.logged.notify_all();
        log.len() - 1
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut Request)) {
        let mut log = lock(&self.log);
        if let Some(request) = log.get_mut(index) {
            change(request);
        }
        self.logged.notify_all();
    }

    fn fire_trigger(&self, path: &str, nth_object: Option<usize>) {
        let action = {
            let mut slot = lock(&self.trigger);
            let due = match slot.as_ref().map(|t| &t.when) {
                Some(When::NthObject(n)) => nth_object == Some(*n),
                Some(When::Path(wanted)) => wanted == path,
                None => false,
            };
            if due {
                slot.take()
            } else {
                None
            }
        };
        if let Some(trigger) = action {
            (trigger.action)();
        }
    }
}

/// Serves the files under a directory at `http://127.0.0.1:PORT`, until dropped.
pub struct Peer {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    pub fn serve(root: &Path) -> Result<Peer> {
        Self::serve_with(root, Behaviour::default())
    }

    pub fn serve_with(root: &Path, behaviour: Behaviour) -> Result<Peer> {
        let listener = TcpListener::bind("127.0.0.1:0").context("listen on 127.0.0.1")?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            address,
            tamper: behaviour.tamper,
            not_found: behaviour.not_found,
            trickle: behaviour.trickle,
            vanish_after: behaviour.vanish_after,
            cut_once: Mutex::new(behaviour.cut_once),
            trigger: Mutex::new(behaviour.trigger),
            objects_requested: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            logged: Condvar::new(),
            gone: Gone::default(),
            closed: Gone::default(),
            connections: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if shared.gone.is_set() {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = shared.clone();
                    std::thread::spawn(move || serve_connection(stream, &shared));
                }
                drop(listener);
                shared.closed.set();
            })
        };
        Ok(Peer {
            url: format!("http://{address}"),
            shared,
            thread: Some(thread),
        })
    }

    /// Paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.log().into_iter().map(|r| r.path).collect()
    }

    /// Every request so far with how it was answered.
    pub fn log(&self) -> Vec<Request> {
        lock(&self.shared.log).clone()
    }

    /// Object paths whose whole body this peer sent with a 200.
    pub fn served_objects(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|r| is_object(&r.path) && r.status == 200 && r.complete)
            .map(|r| r.path)
            .collect()
    }

    /// Object paths requested, however they were answered.
    pub fn object_requests(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|path| is_object(path))
            .collect()
    }

    /// Waits until `done` holds for the request log, failing after `timeout`.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[Request]) -> bool) -> Result<()> {
        self.log_watch().wait_for(timeout, done)
    }

    /// A handle on this peer's request log that another peer's trigger can wait on.
    pub fn log_watch(&self) -> LogWatch {
        LogWatch {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.shared.vanish();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Answers GET requests on one connection until the client closes it (or stays silent for a
/// minute), or the peer goes away.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let id = shared.next_connection.fetch_add(1, Ordering::SeqCst);
    match stream.try_clone() {
        Ok(clone) => {
            lock(&shared.connections).insert(id, clone);
        }
        Err(_) => return,
    }
    // A peer that vanished between accept and here closes at once.
    if !shared.gone.is_set() {
        answer_requests(&stream, shared);
    }
    let _ = stream.shutdown(Shutdown::Both);
    lock(&shared.connections).remove(&id);
}

fn answer_requests(stream: &TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut close = false;
        loop {
            let mut header = String::new();
            match reader.read_line(&mut header) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if header.eq_ignore_ascii_case("connection: close") {
                close = true;
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .split('?')
            .next()
            .unwrap_or("")
            .to_owned();
        if shared.gone.is_set() {
            return;
        }
        let index = shared.push(Request {
            path: path.clone(),
            status: 0,
            complete: false,
        });
        let nth_object =
            is_object(&path).then(|| shared.objects_requested.fetch_add(1, Ordering::SeqCst) + 1);
        shared.fire_trigger(&path, nth_object);
        let cut = match (nth_object, shared.vanish_after) {
            (Some(n), Some(limit)) if n > limit + 1 => {
                // Gone already: this request is never answered.
                shared.vanish();
                return;
            }
            (Some(n), Some(limit)) => n == limit + 1,
            _ => false,
        };
        let found = ferry_tests::http::read_below(&shared.root, &path);
        let (status, body) = match found {
            Some(_) if shared.not_found.contains(&path) => (404, b"not found".to_vec()),
            Some(bytes) if shared.tamper.contains(&path) => (200, tampered(&path, bytes)),
            Some(bytes) => (200, bytes),
            None => (404, b"not found".to_vec()),
        };
        shared.update(index, |r| r.status = status);
        let head = format!(
            "HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
            if status == 200 {
                "200 OK"
            } else {
                "404 Not Found"
            },
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        if writer.write_all(head.as_bytes()).is_err() {
            return;
        }
        if cut {
            let _ = writer.write_all(&body[..body.len() / 2]);
            let _ = writer.flush();
            shared.vanish();
            return;
        }
        if status == 200 && lock(&shared.cut_once).remove(&path) {
            let _ = writer.write_all(&body[..body.len() / 2]);
            let _ = writer.flush();
            return;
        }
        let sent = match shared.trickle.as_ref().filter(|t| {
            status == 200
                && match &t.only {
                    Some(only) => only.contains(&path),
                    None => is_object(&path),
                }
        }) {
            Some(trickle) => send_slowly(&mut writer, &body, trickle.every, &shared.gone),
            None => writer.write_all(&body).is_ok(),
        };
        if !sent {
            return;
        }
        shared.update(index, |r| r.complete = true);
        if close {
            return;
        }
    }
}

/// Writes `body` one byte per `every`; false when the client or the peer went away first.
fn send_slowly(writer: &mut TcpStream, body: &[u8], every: Duration, gone: &Gone) -> bool {
    for byte in body {
        if writer.write_all(&[*byte]).is_err() || writer.flush().is_err() {
            return false;
        }
        if gone.wait(every) {
            return false;
        }
    }
    true
}

/// Another body for an object: a `.filez` with one byte of its content changed (still a valid
/// object, of the same size); anything else with its last byte flipped.
fn tampered(path: &str, bytes: Vec<u8>) -> Vec<u8> {
    if path.ends_with(".filez") {
        if let Ok(changed) = ferry_tests::tamper::change_filez_content(&bytes) {
            return changed;
        }
    }
    let mut bytes = bytes;
    if let Some(last) = bytes.last_mut() {
        *last ^= 0x01;
    }
    bytes
}
