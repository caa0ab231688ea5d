//! Serving repositories read-only over HTTP to computers nearby, as archive repositories.
//!
//! An archive repository is served as it is; a bare, bare-user or bare-user-only one through
//! an [`archive_view::ArchiveView`]: a generated summary of the advertised refs, and only the
//! objects of advertised or deployed commits ([`allowed`]), content converted on request
//! ([`cache`] keeps large conversions). Of an archive repository, only what a pull reads is
//! served: a `config` generated here (never the repository's own,
//! whose remote URLs may carry credentials), `summary`, `summary.sig` and regular files under
//! `objects/`, `deltas/`, `delta-indexes/` and `refs/`. Files are opened from a descriptor of
//! the repository with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`
//! and the opened file is what is streamed, so no symbolic link is followed and nothing can be
//! swapped between a check and the open. Repository N answers at `/N/`, the path a DNS-SD
//! advertisement with `ri` = N points libostree to; the first one also at `/`.
//!
//! Clients are untrusted; [`ServeLimits`] bounds what each may hold: the request head must
//! arrive within the header timeout (also the keep-alive idle timeout), a connection that
//! moves no byte either way for the idle timeout is closed, request heads are capped at
//! [`MAX_REQUEST_HEAD`] bytes, and at most `max_connections` are open at once. When the cap is
//! reached a new connection displaces the one that has waited longest for a request head, so
//! clients that trickle bytes cannot lock out an honest one; if every connection is busy
//! answering, the new one is closed at once.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::lan::advertise::Advertisement;
use crate::lan::LanError;
use crate::object::{ObjectId, ObjectKind, Summary};
use crate::repo::{open_beneath_resolving, RepoConfig, RepoError, RepoMode};

pub mod activation;
pub mod admission;
pub mod allowed;
pub mod archive_view;
pub mod cache;
mod connection;
pub mod stats;

use archive_view::{ArchiveView, Converted, ViewError, ViewOptions};
use cache::ConvertCache;
pub use connection::ServeBody;
use connection::{Connections, Content, Eviction, IdleTimeout, WaitingGuard};

/// The repository index advertised (`ri`) for the first repository served, and the path
/// prefix it is also served under.
pub const REPO_INDEX: u16 = 0;
/// The largest request head read (hyper's smallest buffer): OSTree paths are short.
pub const MAX_REQUEST_HEAD: usize = 8192;
/// How long open connections may finish their responses once the server is asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a connection displaced at the cap may take to finish sending what it answered.
const EVICTION_GRACE: Duration = Duration::from_secs(2);
/// Files up to this size are read whole before they are sent.
const WHOLE_FILE: u64 = 256 * 1024;
/// How often viewed repositories look for changed refs between summary requests.
const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// What each client may hold of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Time for a whole request head to arrive, from when the server starts reading one
    /// (so also how long an idle keep-alive connection is kept).
    pub header_timeout: Duration,
    /// Time a connection may move no byte in either direction.
    pub idle_timeout: Duration,
    /// Stop once no connection was open and no request came for this long (a
    /// socket-activated server; the service manager starts it again on the next one).
    pub idle_exit: Option<Duration>,
    /// Computers pulling at once ([`admission`]); others are asked to come back (503 for
    /// `config` and the summary). None lets everyone in.
    pub max_clients: Option<usize>,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            idle_exit: None,
            max_clients: None,
        }
    }
}

/// Why a repository cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The repository could not be opened.
    #[error("cannot open the repository {path}")]
    Open {
        /// The repository.
        path: PathBuf,
        /// The repository error.
        #[source]
        source: RepoError,
    },
    /// A bare repository could not be viewed as an archive one.
    #[error("cannot serve the {mode} repository {path}")]
    View {
        /// The repository.
        path: PathBuf,
        /// Its mode.
        mode: RepoMode,
        /// Why it cannot be viewed.
        #[source]
        source: Box<ViewError>,
    },
    /// The repository's directory could not be opened.
    #[error("cannot open the directory {path}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The open error.
        #[source]
        source: io::Error,
    },
}

/// A repository opened for serving.
#[derive(Debug)]
pub struct ServedRepo {
    path: PathBuf,
    dir: OwnedFd,
    backing: Backing,
}

#[derive(Debug)]
enum Backing {
    /// Served as stored, with a generated config.
    Archive { config: Bytes },
    /// A bare mode, viewed as an archive (boxed: one per repository, much larger).
    View(Box<ArchiveView>),
}

impl ServedRepo {
    /// Opens `path` for serving. A repository that is not an archive is served through a
    /// view, which converts content with `cache` and reads what is advertised as `options`
    /// say.
    pub fn open(
        path: &Path,
        options: ViewOptions,
        cache: Option<Arc<ConvertCache>>,
    ) -> Result<Self, ServeError> {
        let repo = crate::repo::Repo::open(path).map_err(|source| ServeError::Open {
            path: path.to_owned(),
            source,
        })?;
        let mode = repo.config().mode;
        let dir = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| ServeError::Directory {
            path: path.to_owned(),
            source: errno.into(),
        })?;
        let backing = if mode == RepoMode::Archive {
            let config = RepoConfig::new_text(RepoMode::Archive, repo.collection_id());
            Backing::Archive {
                config: Bytes::from(config),
            }
        } else {
            let view_error = |source: ViewError| ServeError::View {
                path: path.to_owned(),
                mode,
                source: Box::new(source),
            };
            let cache = cache.ok_or_else(|| view_error(ViewError::NoCache))?;
            Backing::View(Box::new(
                ArchiveView::new(repo, options, cache).map_err(view_error)?,
            ))
        };
        let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        Ok(Self { path, dir, backing })
    }

    /// The served repository's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `config` peers are given: `[core]` repo_version, mode and collection ID only.
    pub fn config_text(&self) -> Bytes {
        match &self.backing {
            Backing::Archive { config } => config.clone(),
            Backing::View(view) => view.snapshot().config.clone(),
        }
    }

    /// The view, when the repository is not an archive.
    pub fn view(&self) -> Option<&ArchiveView> {
        match &self.backing {
            Backing::View(view) => Some(view),
            Backing::Archive { .. } => None,
        }
    }

    /// Reads the refs again (a viewed repository); true when what is served changed.
    pub fn refresh(&self) -> Result<bool, ViewError> {
        match &self.backing {
            Backing::View(view) => view.refresh(),
            Backing::Archive { .. } => Ok(false),
        }
    }

    /// What to advertise for this repository at index `repo_index`: from its summary file,
    /// or from the generated summary of a view.
    pub fn advertisement(&self, repo_index: u16) -> Result<Advertisement, LanError> {
        match &self.backing {
            Backing::Archive { .. } => Advertisement::from_repo(&self.path, repo_index),
            Backing::View(view) => {
                let summary = Summary::parse(&view.snapshot().summary).map_err(|error| {
                    LanError::Summary {
                        path: self.path.display().to_string(),
                        source: error.into(),
                    }
                })?;
                Ok(Advertisement::from_summary(&summary, 0, repo_index))
            }
        }
    }

    /// The regular file at `relative`, opened beneath the repository with no symlink
    /// followed, and its size.
    fn open_file(&self, relative: &str) -> Option<(std::fs::File, u64)> {
        let resolve = ResolveFlags::BENEATH
            .union(ResolveFlags::NO_SYMLINKS)
            .union(ResolveFlags::NO_MAGICLINKS);
        // NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        let fd = open_beneath_resolving(
            &self.dir,
            relative,
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
            resolve,
        )
        .ok()?;
        let stat = rustix::fs::fstat(&fd).ok()?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return None;
        }
        Some((std::fs::File::from(fd), u64::try_from(stat.st_size).ok()?))
    }
}

/// What a request path names, when it is one a pull may read.
#[derive(Debug, PartialEq, Eq)]
enum Servable<'a> {
    Config,
    File(&'a str),
}

/// Parses `uri_path` (at `/<N>/` for repository N of `repos`, or at `/` for the first)
/// without touching the filesystem.
fn servable(uri_path: &str, repos: usize) -> Option<(usize, Servable<'_>)> {
    let rest = uri_path.strip_prefix('/')?;
    let (index, relative) = match rest.split_once('/') {
        Some((first, relative))
            if !first.is_empty()
                && first.bytes().all(|b| b.is_ascii_digit())
                && first.len() <= 4
                && first.parse::<usize>().is_ok_and(|n| n < repos)
                && (first == "0" || !first.starts_with('0')) =>
        {
            (first.parse::<usize>().ok()?, relative)
        }
        _ => (0, rest),
    };
    // Percent-escapes are refused rather than decoded: no OSTree path needs one.
    if relative.is_empty() || relative.contains(['%', '\\', '\0']) {
        return None;
    }
    let segments: Vec<&str> = relative.split('/').collect();
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return None;
    }
    match segments.as_slice() {
        ["config"] => Some((index, Servable::Config)),
        ["summary" | "summary.sig"] | ["objects" | "deltas" | "delta-indexes" | "refs", _, ..] => {
            Some((index, Servable::File(relative)))
        }
        _ => None,
    }
}

/// The object an `objects/XX/YYY.EXT` path of an archive repository names.
fn archive_object(relative: &str) -> Option<ObjectId> {
    let (dir, file) = relative.strip_prefix("objects/")?.split_once('/')?;
    ObjectId::from_object_path(dir, file, RepoMode::Archive)
}

/// A listening socket on `address`:`port`, or, with no address, on every address: IPv6
/// (link-local ones included) and IPv4 on one dual-stack socket, else IPv4 alone where this
/// machine has no IPv6. Non-blocking, for [`TcpListener::from_std`].
pub fn listen(address: Option<IpAddr>, port: u16) -> io::Result<std::net::TcpListener> {
    let bind = |address: SocketAddr, dual_stack: bool| -> io::Result<std::net::TcpListener> {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        if dual_stack {
            socket.set_only_v6(false)?;
        }
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        Ok(socket.into())
    };
    match address {
        Some(address) => bind(SocketAddr::new(address, port), false),
        None => bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port), true).or_else(|error| {
            tracing::info!(error = %crate::causes::Causes(&error), "no IPv6 here; listening on IPv4 only");
            bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port), false)
        }),
    }
}

/// Serves `repos` (repository N at `/N/`, the first also at `/`) on `listener` until `stop`
/// completes or, with [`ServeLimits::idle_exit`], the server was idle that long; then lets
/// open responses finish for a few seconds.
pub async fn serve(
    listener: TcpListener,
    repos: Vec<Arc<ServedRepo>>,
    limits: ServeLimits,
    stats: Option<Arc<stats::ServeStats>>,
    stop: impl Future<Output = ()>,
) {
    let repos: Arc<[Arc<ServedRepo>]> = repos.into();
    let table = Arc::new(Connections::default());
    let admission = Arc::new(admission::Admission::new(limits.max_clients));
    let (shutdown, shutting_down) = watch::channel(false);
    let refreshers: Vec<_> = repos
        .iter()
        .filter(|repo| repo.view().is_some())
        .map(|repo| tokio::spawn(refresh_periodically(Arc::clone(repo))))
        .collect();
    tokio::pin!(stop);
    let idle = idle_exit(limits.idle_exit, Arc::clone(&table));
    tokio::pin!(idle);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
            () = &mut idle => break,
        };
        let (stream, client) = match accepted {
            Ok((stream, address)) => (stream, address.ip()),
            Err(error) => {
                // Out of descriptors or similar: wait instead of spinning.
                tracing::warn!(error = %crate::causes::Causes(&error), "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        table.touch();
        let Some((id, evict)) = table.admit(limits.max_connections) else {
            tracing::warn!(
                max = limits.max_connections,
                "every connection is busy; closing a new one"
            );
            drop(stream);
            continue;
        };
        tokio::spawn(connection(
            stream,
            client,
            Arc::clone(&admission),
            stats.clone(),
            Arc::clone(&repos),
            limits,
            Arc::clone(&table),
            id,
            evict,
            shutting_down.clone(),
        ));
    }
    tracing::info!("stopping the server");
    for refresher in refreshers {
        refresher.abort();
    }
    let _ = shutdown.send(true);
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while table.count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(stats) = stats {
        let _ = tokio::task::spawn_blocking(move || stats.flush()).await;
    }
}

/// Completes once no connection has been open for `idle` (never without one).
async fn idle_exit(idle: Option<Duration>, table: Arc<Connections>) {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    let mut ticks = tokio::time::interval(Duration::from_millis(250).min(idle));
    loop {
        ticks.tick().await;
        if table.count() == 0 && table.idle_for() >= idle {
            tracing::info!(
                seconds = idle.as_secs(),
                "no request for the idle time; exiting"
            );
            return;
        }
    }
}

/// Looks for changed refs every [`REFRESH_EVERY`], so the index follows them between
/// summary requests.
async fn refresh_periodically(repo: Arc<ServedRepo>) {
    let mut ticks = tokio::time::interval(REFRESH_EVERY);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let repo = Arc::clone(&repo);
        if let Ok(Err(error)) = tokio::task::spawn_blocking(move || repo.refresh()).await {
            tracing::warn!(error = %crate::causes::Causes(&error), "keeping what was served before");
        }
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one connection's whole context, passed once"
)]
async fn connection(
    stream: TcpStream,
    client: IpAddr,
    admission: Arc<admission::Admission>,
    stats: Option<Arc<stats::ServeStats>>,
    repos: Arc<[Arc<ServedRepo>]>,
    limits: ServeLimits,
    table: Arc<Connections>,
    id: u64,
    evict: Arc<Eviction>,
    mut shutting_down: watch::Receiver<bool>,
) {
    let service_table = Arc::clone(&table);
    let service = hyper::service::service_fn(move |request| {
        let repos = Arc::clone(&repos);
        let stats = stats.clone();
        let guard = WaitingGuard::busy(Arc::clone(&service_table), id);
        let admission = Arc::clone(&admission);
        async move {
            let response = respond(&repos, request, guard, client, &admission).await;
            if let Some(stats) = stats {
                count_object(&stats, client, &response);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_REQUEST_HEAD)
        .serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(error = %crate::causes::Causes(&error), "connection ended");
            }
        }
        () = evict.notify.notified() => {
            tracing::debug!("closing a connection waiting for a request, for a new one");
            if evict.has_answered() {
                // Its last response may not be out yet: a graceful close sends it first (and
                // closes an idle connection at once), within a bound, so a client that reads
                // nothing cannot hold on. One that never completed a request closes at once.
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(EVICTION_GRACE, connection).await;
            }
        }
        () = stopping(&mut shutting_down) => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
    table.remove(id);
}

/// Completes once the server is asked to stop.
async fn stopping(shutting_down: &mut watch::Receiver<bool>) {
    let _ = shutting_down.wait_for(|stop| *stop).await;
}

/// Counts a successful object response towards the day's figures.
fn count_object(stats: &stats::ServeStats, client: IpAddr, response: &Response<ServeBody>) {
    if response.status() != StatusCode::OK {
        return;
    }
    let is_object = response.extensions().get::<ObjectResponse>().is_some();
    if !is_object {
        return;
    }
    let bytes = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    stats.record(client, bytes);
}

/// Marks a response that carries an object (`/objects/…`), which the day's figures count.
#[derive(Debug, Clone, Copy)]
struct ObjectResponse;

async fn respond(
    repos: &Arc<[Arc<ServedRepo>]>,
    request: Request<Incoming>,
    guard: WaitingGuard,
    client: IpAddr,
    admission: &admission::Admission,
) -> Response<ServeBody> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let now = std::time::Instant::now();
    let starts_a_pull = ["/config", "/summary", "/summary.sig"]
        .iter()
        .any(|end| path.ends_with(end));
    if starts_a_pull && !admission.start(client, now) {
        tracing::info!(%method, %path, %client, "busy with other computers; asked to come back");
        let mut response = Response::new(ServeBody::empty(guard));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response.headers_mut().insert(
            RETRY_AFTER,
            HeaderValue::from(admission::PULL_IDLE.as_secs() + 1),
        );
        return response;
    }
    if !starts_a_pull {
        admission.touch(client, now);
    }
    let (mut response, from) = answer(repos, &method, &path, guard).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), from, "request");
    if method == Method::GET && path.contains("/objects/") {
        response.extensions_mut().insert(ObjectResponse);
    }
    response
}

/// Where a response's body came from, for the request log.
type From = &'static str;

fn not_found(guard: WaitingGuard) -> (Response<ServeBody>, From) {
    let mut response = Response::new(ServeBody::empty(guard));
    *response.status_mut() = StatusCode::NOT_FOUND;
    (response, "none")
}

async fn answer(
    repos: &Arc<[Arc<ServedRepo>]>,
    method: &Method,
    path: &str,
    guard: WaitingGuard,
) -> (Response<ServeBody>, From) {
    if method != Method::GET && method != Method::HEAD {
        return not_found(guard);
    }
    let Some((index, servable)) = servable(path, repos.len()) else {
        return not_found(guard);
    };
    let Some(repo) = repos.get(index) else {
        return not_found(guard);
    };
    let whole = method == Method::GET;
    let found = match servable {
        Servable::Config => {
            let repo = Arc::clone(repo);
            // A peer starting a pull: a good moment to look for changed refs.
            let config = tokio::task::spawn_blocking(move || {
                refresh_logged(&repo);
                repo.config_text()
            })
            .await
            .ok();
            config.map(|config| {
                let length = config.len() as u64;
                (Content::Bytes(Some(config)), length, "generated")
            })
        }
        // A small object of a repository served as stored is read right here: a hand-off to
        // the blocking pool and back cost more than the read.
        Servable::File(relative) if repo.view().is_none() => {
            read_file(repo, relative, whole).map(|(c, l)| (c, l, "file"))
        }
        Servable::File(relative) => {
            let repo = Arc::clone(repo);
            let relative = relative.to_owned();
            tokio::task::spawn_blocking(move || match repo.view() {
                None => read_file(&repo, &relative, whole).map(|(c, l)| (c, l, "file")),
                Some(view) => view_file(&repo, view, &relative, whole),
            })
            .await
            .ok()
            .flatten()
        }
    };
    let Some((content, length, from)) = found else {
        return not_found(guard);
    };
    let content = if method == Method::HEAD {
        Content::Empty
    } else {
        content
    };
    let mut response = Response::new(ServeBody {
        content,
        _guard: guard,
    });
    let headers = response.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    (response, from)
}

fn refresh_logged(repo: &ServedRepo) {
    if let Err(error) = repo.refresh() {
        tracing::warn!(error = %crate::causes::Causes(&error), "keeping what was served before");
    }
}

/// A file of the repository as stored. Most objects are small: they are read in one go on
/// the blocking pool, and cost one hand-off instead of one per chunk.
fn read_file(repo: &ServedRepo, relative: &str, whole: bool) -> Option<(Content, u64)> {
    let (file, length) = repo.open_file(relative)?;
    file_content(file, length, whole)
}

fn file_content(file: std::fs::File, length: u64, whole: bool) -> Option<(Content, u64)> {
    if !whole || length > WHOLE_FILE {
        return Some((Content::stream(file, length), length));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(length).ok()?);
    file.take(length).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 == length).then(|| (Content::Bytes(Some(Bytes::from(bytes))), length))
}

/// A path of a viewed repository: the generated summary, or an allowed object (metadata as
/// stored, content converted).
fn view_file(
    repo: &ServedRepo,
    view: &ArchiveView,
    relative: &str,
    whole: bool,
) -> Option<(Content, u64, From)> {
    if relative == "summary" {
        refresh_logged(repo);
        let summary = view.snapshot().summary.clone();
        let length = summary.len() as u64;
        return Some((Content::Bytes(Some(summary)), length, "generated"));
    }
    let object = archive_object(relative)?;
    if !view.allows(&object) {
        tracing::debug!(%object, "not an object of an advertised commit");
        return None;
    }
    if object.kind != ObjectKind::File {
        return read_file(repo, relative, whole).map(|(c, l)| (c, l, "file"));
    }
    match view.convert(&object.checksum) {
        Ok(Converted::Memory(bytes)) => {
            let length = bytes.len() as u64;
            Some((
                Content::Bytes(Some(Bytes::from(bytes))),
                length,
                "converted",
            ))
        }
        Ok(Converted::Framed { head, file, length }) => {
            let (content, total) = Content::framed(head, file, length);
            Some((content, total, "converted"))
        }
        Ok(Converted::Cached { object, hit }) => {
            // Positioned at the payload; the stream reads from there.
            let (content, length) = file_content(object.file, object.length, whole)?;
            Some((content, length, if hit { "cache" } else { "converted" }))
        }
        Err(error) => {
            tracing::warn!(error = %crate::causes::Causes(&error), %object, "cannot convert an object");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Checksum;

    #[test]
    fn with_no_address_one_socket_takes_ipv6_and_ipv4() {
        let listener = listen(None, 0).expect("listen");
        let bound = listener.local_addr().expect("bound");
        assert!(bound.is_ipv6(), "{bound}: IPv4 only");
        for client in [
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bound.port()),
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port()),
        ] {
            std::net::TcpStream::connect_timeout(&client, Duration::from_secs(5))
                .unwrap_or_else(|error| panic!("{client}: {error}"));
        }
        let chosen = listen(Some(Ipv4Addr::LOCALHOST.into()), 0).expect("listen");
        assert_eq!(
            chosen.local_addr().expect("bound").ip(),
            IpAddr::from(Ipv4Addr::LOCALHOST)
        );
    }

    #[test]
    fn archive_object_paths_name_objects() {
        let hex = "ab".repeat(32);
        let checksum = Checksum::from_hex(&hex).expect("checksum");
        let path = |extension: &str| format!("objects/ab/{}.{extension}", &hex[2..]);
        assert_eq!(
            archive_object(&path("filez")),
            Some(ObjectId::new(checksum, ObjectKind::File))
        );
        assert_eq!(
            archive_object(&path("commitmeta")),
            Some(ObjectId::new(checksum, ObjectKind::CommitMeta))
        );
        for refused in [
            path("file"),
            path("commitpartial"),
            format!("objects/a/b{}.commit", &hex[2..]),
            format!("deltas/ab/{}.commit", &hex[2..]),
            "objects/ab/cd.commit".to_owned(),
        ] {
            assert_eq!(archive_object(&refused), None, "{refused}");
        }
    }

    #[test]
    fn only_pull_paths_are_servable() {
        let one = |path| servable(path, 1);
        assert_eq!(one("/config"), Some((0, Servable::Config)));
        assert_eq!(one("/0/config"), Some((0, Servable::Config)));
        assert_eq!(
            one("/0/objects/ab/cd.commit"),
            Some((0, Servable::File("objects/ab/cd.commit")))
        );
        assert_eq!(one("/summary"), Some((0, Servable::File("summary"))));
        // With two repositories the second answers at /1/ only.
        assert_eq!(servable("/1/config", 2), Some((1, Servable::Config)));
        assert_eq!(servable("/01/config", 2), None);
        for refused in [
            "/",
            "/0",
            "/0/",
            "/objects",
            "/objects/",
            "/objects/ab/",
            "/tmp-secret",
            "/objects/../config",
            "/objects/ab/../../tmp-secret",
            "/objects/ab/cd%2ecommit",
            "/config/x",
            "/1/config",
        ] {
            assert!(one(refused).is_none(), "{refused} was servable");
        }
    }

    #[test]
    fn files_are_opened_beneath_the_repository_without_symlinks() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let repo_path = dir.path().join("repo");
        crate::repo::Repo::init(&repo_path, RepoMode::Archive, Some("org.example.Os"))
            .expect("init");
        std::fs::write(
            repo_path.join("config"),
            "[core]\nrepo_version=1\nmode=archive-z2\ncollection-id=org.example.Os\n\
             [remote \"origin\"]\nurl=https://user:secret@example.com/repo\n",
        )
        .expect("write config");
        std::fs::create_dir_all(repo_path.join("objects/ab")).expect("mkdir");
        std::fs::write(repo_path.join("objects/ab/cd.commit"), "x").expect("write");
        std::fs::write(dir.path().join("outside"), "secret").expect("write");
        std::os::unix::fs::symlink(
            dir.path().join("outside"),
            repo_path.join("objects/ab/ef.commit"),
        )
        .expect("symlink");
        std::os::unix::fs::symlink("cd.commit", repo_path.join("objects/ab/00.commit"))
            .expect("symlink");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            repo_path.join("objects/ab/11.commit"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");

        let served = ServedRepo::open(&repo_path, ViewOptions::default(), None).expect("open");
        let config = String::from_utf8_lossy(&served.config_text()).into_owned();
        assert!(config.contains("mode=archive-z2"), "{config}");
        assert!(config.contains("collection-id=org.example.Os"), "{config}");
        assert!(
            !config.contains("secret") && !config.contains("remote"),
            "{config}"
        );
        assert!(served.open_file("objects/ab/cd.commit").is_some());
        for refused in [
            "objects/ab/ef.commit",
            "objects/ab/00.commit",
            "objects/ab/11.commit",
            "objects/ab",
        ] {
            assert!(served.open_file(refused).is_none(), "{refused} was opened");
        }
    }
}
