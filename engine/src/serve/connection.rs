//! What each connection holds: its response bodies, its place in the table of open
//! connections (to displace the longest-waiting one at the cap) and its idle timeout.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// Bytes read from a file per body frame.
const CHUNK: usize = 64 * 1024;

/// A response body; dropping it (sent or abandoned) marks the connection as waiting again.
pub struct ServeBody {
    pub(super) content: Content,
    pub(super) _guard: WaitingGuard,
}

pub(super) enum Content {
    Empty,
    Bytes(Option<Bytes>),
    File {
        file: tokio::fs::File,
        remaining: u64,
        buffer: Box<[u8]>,
    },
    /// A header, then a file's bytes framed as stored deflate blocks as they are read.
    Framed {
        head: Option<Bytes>,
        file: tokio::fs::File,
        /// File bytes not yet sent.
        remaining: u64,
        /// Framed bytes not yet sent (the size hint).
        left: u64,
        /// The final block went out (an empty file still sends one).
        done: bool,
        /// The block being read: header room, then its bytes; empty between blocks.
        block: Vec<u8>,
        /// Bytes of `block` read so far, past its header.
        filled: usize,
    },
}

impl Content {
    /// `head`, then `length` bytes of `file` as stored blocks; the body's length is returned
    /// beside it.
    pub(super) fn framed(head: Vec<u8>, file: std::fs::File, length: u64) -> (Self, u64) {
        let total = head.len() as u64 + crate::object::stored::framed_len(length);
        let content = Content::Framed {
            head: Some(Bytes::from(head)),
            file: tokio::fs::File::from_std(file),
            remaining: length,
            left: total,
            done: false,
            block: Vec::new(),
            filled: 0,
        };
        (content, total)
    }

    pub(super) fn stream(file: std::fs::File, length: u64) -> Self {
        Content::File {
            file: tokio::fs::File::from_std(file),
            remaining: length,
            buffer: vec![0; CHUNK].into_boxed_slice(),
        }
    }
}

impl ServeBody {
    pub(super) fn empty(guard: WaitingGuard) -> Self {
        Self {
            content: Content::Empty,
            _guard: guard,
        }
    }
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match &mut self.get_mut().content {
            Content::Empty => Poll::Ready(None),
            Content::Bytes(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Content::File {
                file,
                remaining,
                buffer,
            } => {
                if *remaining == 0 {
                    return Poll::Ready(None);
                }
                let want = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(buffer.len());
                let mut read = ReadBuf::new(&mut buffer[..want]);
                ready!(Pin::new(file).poll_read(cx, &mut read))?;
                let filled = read.filled();
                if filled.is_empty() {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was served",
                    ))));
                }
                *remaining -= filled.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(filled)))))
            }
            Content::Framed {
                head,
                file,
                remaining,
                left,
                done,
                block,
                filled,
            } => {
                if let Some(head) = head.take() {
                    *left = left.saturating_sub(head.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(head))));
                }
                if *done {
                    return Poll::Ready(None);
                }
                use crate::object::stored::{block_header, HEADER, MAX_BLOCK};
                if block.is_empty() {
                    let take = usize::try_from(*remaining)
                        .unwrap_or(MAX_BLOCK)
                        .min(MAX_BLOCK);
                    *block = vec![0u8; HEADER + take];
                    *filled = 0;
                }
                let take = block.len() - HEADER;
                // One whole block per frame: its header carries its length. A read that is
                // not ready leaves what was read in `block`.
                while *filled < take {
                    let mut read = ReadBuf::new(&mut block[HEADER + *filled..]);
                    ready!(Pin::new(&mut *file).poll_read(cx, &mut read))?;
                    let got = read.filled().len();
                    if got == 0 {
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the file shrank while it was served",
                        ))));
                    }
                    *filled += got;
                }
                *remaining -= take as u64;
                *done = *remaining == 0;
                block[..HEADER].copy_from_slice(&block_header(take, *done));
                let out = std::mem::take(block);
                *left = left.saturating_sub(out.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.content {
            Content::Empty => true,
            Content::Bytes(bytes) => bytes.is_none(),
            Content::File { remaining, .. } => *remaining == 0,
            Content::Framed { head, done, .. } => head.is_none() && *done,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.content {
            Content::Empty => SizeHint::with_exact(0),
            Content::Bytes(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            Content::File { remaining, .. } => SizeHint::with_exact(*remaining),
            Content::Framed { left, .. } => SizeHint::with_exact(*left),
        }
    }
}

/// The open connections, and since when each has been waiting for a request head.
pub(super) struct Connections {
    table: Mutex<ConnectionTable>,
    /// When a connection was last accepted or a request last answered.
    last_activity: Mutex<Instant>,
}

impl Default for Connections {
    fn default() -> Self {
        Self {
            table: Mutex::default(),
            last_activity: Mutex::new(Instant::now()),
        }
    }
}

#[derive(Default)]
struct ConnectionTable {
    next_id: u64,
    open: HashMap<u64, Connection>,
}

struct Connection {
    /// `None` while a request is being answered.
    waiting_since: Option<Instant>,
    evict: Arc<Eviction>,
}

/// How a connection learns that a new one displaced it at the cap.
#[derive(Default)]
pub(super) struct Eviction {
    pub(super) notify: Notify,
    /// Whether it has answered a request: then the last response's final bytes may still be
    /// on their way out when it is displaced, since it counts as waiting once the body was
    /// handed over.
    answered: AtomicBool,
}

impl Eviction {
    pub(super) fn has_answered(&self) -> bool {
        self.answered.load(Ordering::Relaxed)
    }
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, ConnectionTable> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn count(&self) -> usize {
        self.lock().open.len()
    }

    pub(super) fn touch(&self) {
        *self
            .last_activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    pub(super) fn idle_for(&self) -> Duration {
        self.last_activity
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
    }

    /// Registers a new connection, displacing the longest-waiting one at the cap; `None`
    /// when every open connection is answering a request.
    pub(super) fn admit(&self, max: usize) -> Option<(u64, Arc<Eviction>)> {
        let mut table = self.lock();
        if table.open.len() >= max.max(1) {
            let longest = table
                .open
                .iter()
                .filter_map(|(id, c)| c.waiting_since.map(|since| (since, *id)))
                .min()?
                .1;
            if let Some(displaced) = table.open.remove(&longest) {
                displaced.evict.notify.notify_one();
            }
        }
        let id = table.next_id;
        table.next_id += 1;
        let evict = Arc::new(Eviction::default());
        table.open.insert(
            id,
            Connection {
                waiting_since: Some(Instant::now()),
                evict: Arc::clone(&evict),
            },
        );
        Some((id, evict))
    }

    pub(super) fn set_waiting(&self, id: u64, waiting: bool) {
        if let Some(connection) = self.lock().open.get_mut(&id) {
            connection.waiting_since = waiting.then(Instant::now);
            if waiting {
                connection.evict.answered.store(true, Ordering::Relaxed);
            }
        }
    }

    pub(super) fn remove(&self, id: u64) {
        self.lock().open.remove(&id);
    }
}

/// Marks a connection busy while it lives, and waiting again when dropped.
pub(super) struct WaitingGuard {
    table: Arc<Connections>,
    id: u64,
}

impl WaitingGuard {
    pub(super) fn busy(table: Arc<Connections>, id: u64) -> Self {
        table.set_waiting(id, false);
        Self { table, id }
    }
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.table.touch();
        self.table.set_waiting(self.id, true);
    }
}

/// A stream that fails with `TimedOut` once no byte has moved for `timeout`.
pub(super) struct IdleTimeout {
    stream: TcpStream,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl IdleTimeout {
    pub(super) fn new(stream: TcpStream, timeout: Duration) -> Self {
        Self {
            stream,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn moved(&mut self) {
        let next = Instant::now() + self.timeout;
        self.deadline.as_mut().reset(next);
    }

    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client moved no byte for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for IdleTimeout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.pending(cx),
        }
    }
}

impl AsyncWrite for IdleTimeout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(written)) => {
                if written > 0 {
                    this.moved();
                }
                Poll::Ready(Ok(written))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_flush(cx) {
            Poll::Pending => this.pending(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
