//! An archive repository served over HTTP: a computer nearby or an upstream server.
//!
//! The layout is libostree's: `config`, `summary`, `summary.sig` and
//! `objects/XX/YYYY.{commit,commitmeta,dirtree,dirmeta,filez}` under a base URL. A source
//! whose `config` or `summary` cannot be fetched, or that refuses the connection, is
//! unavailable as a whole; a 404 for one object only means that peer lacks it.
//!
//! Requests run on a small Tokio runtime owned by the source, so callers use plain blocking
//! calls from any thread, each waiting in slices of [`Interrupt::POLL`] so a cancelled or
//! abandoned request returns at once. Connections time out after [`CONNECT_TIMEOUT`]; a
//! response that sends nothing for [`IDLE_TIMEOUT`] is given up, however large the object.
//! Connections are kept alive and reused (reqwest's pool). Proxies are taken from the usual
//! environment variables (`http_proxy`, `https_proxy`, `no_proxy`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::io::{self, BufRead, Read};
use std::time::{Duration, Instant};

use flate2::bufread::DeflateDecoder;

use super::{
    source_name, Because, Cause, FetchError, FetchedArchive, FetchedContent, FetchedSummary,
    Interrupt, OfferedRef, Source, SourceRank,
};
use crate::cancel::CancelToken;
use crate::object::{
    Checksum, FileHeader, ObjectId, ObjectKind, Summary, MAX_COMMIT_SIZE,
    MAX_DETACHED_METADATA_SIZE, MAX_METADATA_SIZE,
};
use crate::repo::{RepoConfig, RepoMode, MAX_CONFIG_SIZE};
use crate::schema::{SourceInfo, SourceKind};

/// How long to wait for a connection to be accepted.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a response may stay silent before the source is given up as gone.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept open per server, for requests in flight at once.
const POOL_PER_HOST: usize = 16;
/// Redirects followed for one request, as reqwest's default policy.
const MAX_REDIRECTS: usize = 10;
/// Bodies that declare at most this many bytes are read whole on the runtime as they arrive,
/// so a small object costs one hand-off to the caller instead of one per chunk.
const WHOLE_BODY: u64 = 256 * 1024;

/// An archive repository at an `http://` or `https://` URL.
pub struct HttpSource {
    info: SourceInfo,
    base: reqwest::Url,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    summary: Summary,
    summary_bytes: Vec<u8>,
    summary_signatures: Option<Vec<u8>>,
    /// Commit sizes the summary states, by commit: a commit is never read past its size.
    commit_sizes: HashMap<Checksum, u64>,
    /// Commits the summary lists only as held in part (and nowhere whole).
    held_in_part: HashSet<Checksum>,
    rank: SourceRank,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What a request came back with.
enum Fetched {
    Found(Answer),
    NotFound,
}

/// A successful response: its declared length and its body.
struct Answer {
    content_length: Option<u64>,
    body: Body,
}

enum Body {
    /// Read as the caller reads.
    Streamed(reqwest::Response),
    /// Already read on the runtime: the bytes, then why reading stopped early, if it did.
    Read {
        /// The chunks as they arrived (not copied into one buffer).
        chunks: VecDeque<bytes::Bytes>,
        failed: Option<reqwest::Error>,
    },
}

/// Aborts a task on the source's runtime when its caller stops waiting (cancel, abandon).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// Sends a GET, retried once as [`HttpSource::get`] says, and reads a small body whole.
async fn send_and_read(
    client: reqwest::Client,
    url: reqwest::Url,
    interrupt: Interrupt,
) -> Result<(reqwest::StatusCode, Answer), reqwest::Error> {
    let mut retried = false;
    let response = loop {
        match client.get(url.clone()).send().await {
            Ok(response) => break response,
            Err(error) if !retried && !error.is_connect() && !error.is_timeout() => {
                tracing::debug!(error = %crate::causes::Causes(&error), %url, "retrying a request on a new connection");
                retried = true;
            }
            Err(error) => return Err(error),
        }
    };
    interrupt.note_activity();
    let status = response.status();
    let content_length = response.content_length();
    let small = content_length.is_some_and(|length| length <= WHOLE_BODY);
    if !status.is_success() || !small {
        let body = Body::Streamed(response);
        return Ok((
            status,
            Answer {
                content_length,
                body,
            },
        ));
    }
    let mut response = response;
    let mut chunks = VecDeque::new();
    let mut read = 0u64;
    let mut failed = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                interrupt.note_activity();
                read += chunk.len() as u64;
                // hyper stops at the declared length; the bound keeps that a promise.
                if read > WHOLE_BODY {
                    break;
                }
                chunks.push_back(chunk);
            }
            Ok(None) => break,
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    let body = Body::Read { chunks, failed };
    Ok((
        status,
        Answer {
            content_length,
            body,
        },
    ))
}

impl HttpSource {
    /// Connects to the repository at `url`: reads its `config` (it must be an archive
    /// repository) and its `summary` (and `summary.sig` when there is one). Fails as
    /// [`FetchError::Unavailable`] when the server refuses, or serves no repository or no
    /// summary. Tripping `cancel` stops it within [`Interrupt::POLL`]. Call it from a thread
    /// that is not running asynchronous tasks.
    pub fn connect(
        url: &str,
        kind: SourceKind,
        label: Option<String>,
        cancel: &CancelToken,
    ) -> Result<Self, FetchError> {
        // A link-local peer's zone cannot be parsed: it is asked for by a stand-in name.
        let zoned = crate::lan::zone::ZonedUrl::parse(url)
            .map_err(|reason| FetchError::failed(&info(kind, url, label.clone()), reason))?;
        let parsed = zoned.as_ref().map_or(url, |zoned| zoned.url.as_str());
        let mut base = reqwest::Url::parse(parsed).map_err(|error| {
            FetchError::failed(
                &info(kind, url, label.clone()),
                Because::new(format!("{url} is not a valid URL"), error),
            )
        })?;
        let info = info(kind, url, label);
        if !matches!(base.scheme(), "http" | "https") {
            return Err(FetchError::failed(
                &info,
                "only http:// and https:// repositories can be fetched from",
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ferry-http")
            .enable_all()
            .build()
            .map_err(|error| FetchError::failed(&info, Because::new("cannot start", error)))?;
        let mut client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_max_idle_per_host(POOL_PER_HOST)
            .tcp_nodelay(true)
            .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")));
        if let Some(zoned) = &zoned {
            // No proxy can reach a link-local address.
            client = client.resolve(&zoned.host, zoned.address).no_proxy();
        }
        if base.scheme() == "http" {
            // A plain-HTTP source, as every computer nearby is, needs no certificates: the
            // system's roots are a few hundred small files, whose cold reads delayed the
            // pull's first request. Such a source may not redirect to https:// then.
            client = client.tls_certs_only(std::iter::empty()).redirect(
                reqwest::redirect::Policy::custom(|attempt| {
                    if attempt.url().scheme() != "http" {
                        attempt.error("it redirects to https://; use that address instead")
                    } else if attempt.previous().len() >= MAX_REDIRECTS {
                        attempt.error("too many redirects")
                    } else {
                        attempt.follow()
                    }
                }),
            );
        }
        let client = client
            .build()
            .map_err(|error| FetchError::failed(&info, Because::new("cannot start", error)))?;
        let mut source = Self {
            info,
            base,
            client,
            runtime,
            summary: Summary {
                refs: Vec::new(),
                collection_id: None,
                collection_map: Vec::new(),
                partial_map: Vec::new(),
                metadata: crate::object::Metadata::new(),
            },
            summary_bytes: Vec::new(),
            summary_signatures: None,
            commit_sizes: HashMap::new(),
            held_in_part: HashSet::new(),
            rank: SourceRank {
                kind,
                summary_timestamp: None,
            },
        };

        let interrupt = Interrupt::on_cancel(cancel);
        let config = source
            .get_bytes("config", MAX_CONFIG_SIZE as u64, &interrupt)?
            .ok_or_else(|| source.unavailable("it serves no OSTree repository (no config)"))?;
        let config = std::str::from_utf8(&config)
            .ok()
            .and_then(|text| RepoConfig::parse(text).ok())
            .ok_or_else(|| source.unavailable("its repository config cannot be read"))?;
        if config.mode != RepoMode::Archive {
            return Err(source.unavailable(&format!(
                "it serves a {} repository; only archive repositories can be served",
                config.mode
            )));
        }
        let summary_bytes = source
            .get_bytes("summary", MAX_METADATA_SIZE, &interrupt)?
            .ok_or_else(|| source.unavailable("it has no summary"))?;
        let summary = Summary::parse(&summary_bytes).map_err(|error| {
            FetchError::unavailable(&source.info, Because::new("its summary is invalid", error))
        })?;
        source.summary_signatures =
            source.get_bytes("summary.sig", MAX_METADATA_SIZE, &interrupt)?;
        source.rank.summary_timestamp = summary.last_modified();
        source.commit_sizes = summary
            .collection_refs()
            .map(|(_, summary_ref)| summary_ref)
            .chain(summary.partial_refs().map(|(_, summary_ref)| summary_ref))
            .map(|summary_ref| (summary_ref.commit, summary_ref.commit_size))
            .collect();
        let whole: HashSet<Checksum> = summary
            .collection_refs()
            .map(|(_, summary_ref)| summary_ref.commit)
            .collect();
        source.held_in_part = summary
            .partial_refs()
            .map(|(_, summary_ref)| summary_ref.commit)
            .filter(|commit| !whole.contains(commit))
            .collect();
        source.summary = summary;
        source.summary_bytes = summary_bytes;
        Ok(source)
    }

    /// The summary read when connecting (unverified).
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The summary's bytes, for checking `summary.sig`.
    pub fn summary_bytes(&self) -> &[u8] {
        &self.summary_bytes
    }

    /// `summary.sig`, when the server has one.
    pub fn summary_signatures(&self) -> Option<&[u8]> {
        self.summary_signatures.as_deref()
    }

    fn unavailable(&self, reason: &str) -> FetchError {
        FetchError::unavailable(&self.info, reason)
    }

    fn request_error(&self, path: &str, error: reqwest::Error) -> FetchError {
        let what = if error.is_connect() {
            "cannot connect"
        } else if error.is_timeout() {
            "timed out"
        } else {
            "request failed"
        };
        FetchError::unavailable(
            &self.info,
            Because::new(format!("{what} fetching {path}"), error),
        )
    }

    /// Starts a GET of `path` below the base URL and waits for the response headers (and a
    /// small body). The request runs as one task on the runtime, beside its connection.
    fn get(&self, path: &str, interrupt: &Interrupt) -> Result<Fetched, FetchError> {
        let url = self.base.join(path).map_err(|error| {
            FetchError::failed(&self.info, Because::new(format!("bad path {path}"), error))
        })?;
        // A kept-alive connection the server closed meanwhile (at its connection cap, or
        // idle) fails the request before any answer: a GET is retried once, on a new one.
        let task = AbortOnDrop(self.runtime.spawn(send_and_read(
            self.client.clone(),
            url,
            interrupt.clone(),
        )));
        let (status, answer) = match wait(self.runtime.handle(), interrupt, &self.info, path, task)?
        {
            Ok(Ok(answered)) => answered,
            Ok(Err(error)) => return Err(self.request_error(path, error)),
            Err(error) => {
                return Err(FetchError::unavailable(
                    &self.info,
                    Because::new(format!("fetching {path} stopped"), error),
                ))
            }
        };
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Fetched::NotFound);
        }
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            return Err(FetchError::Busy {
                source_name: crate::source::source_name(&self.info),
            });
        }
        if !status.is_success() {
            return Err(self.unavailable(&format!("it answered {status} for {path}")));
        }
        Ok(Fetched::Found(answer))
    }

    /// The whole body of `path`, at most `max` bytes; None for a 404.
    fn get_bytes(
        &self,
        path: &str,
        max: u64,
        interrupt: &Interrupt,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let response = match self.get(path, interrupt)? {
            Fetched::Found(response) => response,
            Fetched::NotFound => return Ok(None),
        };
        if response.content_length.is_some_and(|length| length > max) {
            return Err(FetchError::failed(
                &self.info,
                format!("{path} is larger than the {max} bytes allowed"),
            ));
        }
        let mut body = self.body(response, path, interrupt);
        let mut bytes = Vec::new();
        if let Err(error) = (&mut body).take(max + 1).read_to_end(&mut bytes) {
            return Err(body.stopped.take().unwrap_or_else(|| {
                FetchError::unavailable(
                    &self.info,
                    Because::new(format!("reading {path} failed"), error),
                )
            }));
        }
        if bytes.len() as u64 > max {
            return Err(FetchError::failed(
                &self.info,
                format!("{path} is larger than the {max} bytes allowed"),
            ));
        }
        Ok(Some(bytes))
    }

    fn body(&self, answer: Answer, path: &str, interrupt: &Interrupt) -> HttpBody {
        let (response, queued, failed) = match answer.body {
            Body::Streamed(response) => (Some(response), VecDeque::new(), None),
            Body::Read { chunks, failed } => (None, chunks, failed),
        };
        HttpBody {
            runtime: self.runtime.handle().clone(),
            info: self.info.clone(),
            path: path.to_owned(),
            interrupt: interrupt.clone(),
            response,
            chunk: bytes::Bytes::new(),
            queued,
            failed,
            stopped: None,
        }
    }

    fn object_path(object: ObjectId) -> String {
        let hex = object.checksum.to_hex();
        format!(
            "objects/{}/{}.{}",
            &hex[..2],
            &hex[2..],
            object.kind.extension(RepoMode::Archive)
        )
    }

    fn get_object(
        &self,
        object: ObjectId,
        interrupt: &Interrupt,
    ) -> Result<(Answer, String), FetchError> {
        let path = Self::object_path(object);
        match self.get(&path, interrupt)? {
            Fetched::Found(response) => Ok((response, path)),
            Fetched::NotFound => Err(FetchError::not_found(object, &self.info)),
        }
    }
}

fn info(kind: SourceKind, url: &str, label: Option<String>) -> SourceInfo {
    SourceInfo::new(kind, url, label)
}

/// Runs `future` to completion on `runtime`, looking at `interrupt` every
/// [`Interrupt::POLL`] and giving up after [`IDLE_TIMEOUT`] without bytes.
fn wait<F: Future>(
    runtime: &tokio::runtime::Handle,
    interrupt: &Interrupt,
    info: &SourceInfo,
    what: &str,
    future: F,
) -> Result<F::Output, FetchError> {
    let started = Instant::now();
    runtime.block_on(async {
        tokio::pin!(future);
        loop {
            if let Ok(output) = tokio::time::timeout(Interrupt::POLL, &mut future).await {
                return Ok(output);
            }
            if interrupt.is_interrupted() {
                return Err(interrupt.error(info));
            }
            if interrupt.silent_for(started) >= IDLE_TIMEOUT {
                return Err(FetchError::unavailable(
                    info,
                    format!(
                        "it sent nothing for {} s while serving {what}",
                        IDLE_TIMEOUT.as_secs()
                    ),
                ));
            }
        }
    })
}

/// A response body read as a blocking stream; each wait for data honours the request's
/// [`Interrupt`] and [`IDLE_TIMEOUT`].
struct HttpBody {
    runtime: tokio::runtime::Handle,
    info: SourceInfo,
    path: String,
    interrupt: Interrupt,
    /// None once the whole body was read on the runtime (it is then in `queued`).
    response: Option<reqwest::Response>,
    chunk: bytes::Bytes,
    /// Chunks read on the runtime, after `chunk`.
    queued: VecDeque<bytes::Bytes>,
    /// Why reading on the runtime stopped early, reported once `chunk` is used up.
    failed: Option<reqwest::Error>,
    /// Why reading stopped early, in the source's terms (the `io::Error` only carries text).
    stopped: Option<FetchError>,
}

impl HttpBody {
    /// The transport failed mid-body: kept as [`FetchError::Broken`] for the caller.
    fn broke(&mut self, error: reqwest::Error) -> io::Error {
        let failure = io::Error::other(error);
        self.stopped = Some(FetchError::broken(
            &self.info,
            Because::new(
                format!("reading {}", self.path),
                crate::causes::text(&failure),
            ),
        ));
        failure
    }
}

impl BufRead for HttpBody {
    /// The rest of the chunk hyper handed over, or the next one: the body needs no buffer
    /// of its own (and no copy into one) for the archive reader and inflater above it.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.chunk.is_empty() {
            if let Some(next) = self.queued.pop_front() {
                self.chunk = next;
                continue;
            }
            let Some(response) = self.response.as_mut() else {
                return match self.failed.take() {
                    Some(error) => Err(self.broke(error)),
                    None => Ok(&[]),
                };
            };
            let next = response.chunk();
            let chunk = match wait(&self.runtime, &self.interrupt, &self.info, &self.path, next) {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(error)) => return Err(self.broke(error)),
                Err(error) => {
                    let text = crate::causes::text(&error);
                    self.stopped = Some(error);
                    return Err(io::Error::new(io::ErrorKind::TimedOut, text));
                }
            };
            match chunk {
                Some(chunk) => {
                    self.interrupt.note_activity();
                    self.chunk = chunk;
                }
                None => return Ok(&[]),
            }
        }
        Ok(&self.chunk)
    }

    fn consume(&mut self, amount: usize) {
        let amount = amount.min(self.chunk.len());
        bytes::Buf::advance(&mut self.chunk, amount);
    }
}

impl Read for HttpBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.consume(count);
        Ok(count)
    }
}

impl Source for HttpSource {
    fn info(&self) -> &SourceInfo {
        &self.info
    }

    fn rank(&self) -> SourceRank {
        self.rank
    }

    fn refs(&self) -> Result<Vec<OfferedRef>, FetchError> {
        let mut offered: Vec<OfferedRef> = Vec::new();
        // A set, not a scan of what was kept: a summary may list hundreds of thousands of refs.
        let mut seen: std::collections::HashSet<(Option<&str>, &str)> =
            std::collections::HashSet::new();
        // Refs held in part are offered too: only refs installed in part take them
        // (`commit_is_complete`).
        let held_in_part = self
            .summary
            .partial_refs()
            .map(|(collection_id, summary_ref)| (Some(collection_id), summary_ref));
        for (collection_id, summary_ref) in self.summary.collection_refs().chain(held_in_part) {
            if seen.insert((collection_id, summary_ref.name.as_str())) {
                offered.push(OfferedRef {
                    collection_id: collection_id.map(str::to_owned),
                    ref_name: summary_ref.name.clone(),
                    commit: summary_ref.commit,
                });
            }
        }
        Ok(offered)
    }

    fn fetch_metadata(
        &self,
        kind: ObjectKind,
        checksum: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<Vec<u8>, FetchError> {
        let object = ObjectId::new(*checksum, kind);
        let max = match kind {
            // The size the summary states is the object's exact size (its name fixes it).
            ObjectKind::Commit => self.metadata_size(object).unwrap_or(MAX_COMMIT_SIZE),
            _ => MAX_METADATA_SIZE,
        };
        self.get_bytes(&Self::object_path(object), max, interrupt)?
            .ok_or_else(|| FetchError::not_found(object, &self.info))
    }

    /// Commits the summary lists, at the size it states (at most [`MAX_COMMIT_SIZE`]).
    fn metadata_size(&self, object: ObjectId) -> Option<u64> {
        if object.kind != ObjectKind::Commit {
            return None;
        }
        // 0 is what a summary writer that did not know the size would put.
        self.commit_sizes
            .get(&object.checksum)
            .filter(|&&size| size > 0)
            .map(|&size| size.min(MAX_COMMIT_SIZE))
    }

    fn fetch_commitmeta(
        &self,
        commit: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let object = ObjectId::new(*commit, ObjectKind::CommitMeta);
        self.get_bytes(
            &Self::object_path(object),
            MAX_DETACHED_METADATA_SIZE,
            interrupt,
        )
    }

    fn fetch_content(
        &self,
        checksum: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<FetchedContent, FetchError> {
        let object = ObjectId::new(*checksum, ObjectKind::File);
        let (response, path) = self.get_object(object, interrupt)?;
        let mut body = self.body(response, &path, interrupt);
        let header = read_header(&mut body).map_err(|reason| {
            if let Some(stopped) = body.stopped.take() {
                return stopped;
            }
            FetchError::failed(
                &self.info,
                Because::new(format!("{object} from {}", source_name(&self.info)), reason),
            )
        })?;
        let body: Box<dyn Read + Send> = if header.is_regular() {
            Box::new(DeflateDecoder::new(body))
        } else {
            Box::new(io::empty())
        };
        Ok(FetchedContent { header, body })
    }

    /// A served repository can only be asked for objects; its summary lists complete commits.
    fn commit_is_complete(&self, commit: &Checksum) -> Result<bool, FetchError> {
        Ok(!self.held_in_part.contains(commit))
    }

    fn fetch_archived_content(
        &self,
        checksum: &Checksum,
        interrupt: &Interrupt,
    ) -> Result<Option<FetchedArchive>, FetchError> {
        let (response, path) =
            self.get_object(ObjectId::new(*checksum, ObjectKind::File), interrupt)?;
        let size = response.content_length;
        Ok(Some(FetchedArchive {
            size,
            stream: Box::new(self.body(response, &path, interrupt)),
        }))
    }

    fn fetch_delta_file(
        &self,
        relative_path: &str,
        max: u64,
        interrupt: &Interrupt,
    ) -> Result<Option<Vec<u8>>, FetchError> {
        self.get_bytes(relative_path, max, interrupt)
    }

    fn fetch_summary(&self) -> Result<Option<FetchedSummary>, FetchError> {
        Ok(Some(FetchedSummary {
            summary: self.summary_bytes.clone(),
            signatures: self.summary_signatures.clone(),
        }))
    }
}

/// Reads the length-prefixed archive header at the start of a `.filez` stream.
fn read_header(reader: &mut impl Read) -> Result<FileHeader, Cause> {
    let mut prefix = [0u8; 8];
    reader
        .read_exact(&mut prefix)
        .map_err(|error| Because::new("cannot read the header", error))?;
    let length = FileHeader::prefix_length(prefix)?;
    let mut variant = vec![0u8; length as usize];
    reader
        .read_exact(&mut variant)
        .map_err(|error| Because::new("cannot read the header", error))?;
    Ok(FileHeader::parse_archive(&variant)?)
}
