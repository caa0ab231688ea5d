//! Reading line-based streams (the JSON event stream of a child, a file of JSON lines) without
//! letting the writer make the reader hold more than one bounded line.

use std::io::{self, BufRead};

/// The longest JSON line any Ferry reader accepts. A plan listing hundreds of updates with
/// their AppStream data stays far below it.
pub const MAX_JSON_LINE_BYTES: usize = 4 * 1024 * 1024;

/// What [`read_line_bounded`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads up to the next newline into `line` (without it), refusing to hold more than `max`
/// bytes: an overlong line is consumed and reported, never buffered.
pub fn read_line_bounded(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    line.clear();
    let mut too_long = false;
    let mut read_any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if available.is_empty() {
            return Ok(match (read_any, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        read_any = true;
        let (chunk, consumed, end) = match available.iter().position(|&byte| byte == b'\n') {
            Some(at) => (&available[..at], at + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long && line.len() + chunk.len() <= max {
            line.extend_from_slice(chunk);
        } else {
            too_long = true;
            line.clear();
        }
        reader.consume(consumed);
        if end {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

/// Why a line of a JSON-lines stream was not read.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The line was skipped; the next one can still be read.
    #[error("a line longer than {max} bytes was skipped")]
    TooLong { max: usize },
    /// Reading stopped.
    #[error("cannot read the stream: {0}")]
    Io(#[from] io::Error),
}

/// The lines of a JSON-lines stream, each at most [`MAX_JSON_LINE_BYTES`], without their
/// newline (or a carriage return before it). An over-long line is consumed without being
/// held and reported as [`LineError::TooLong`]; the lines after it are read as usual. After
/// an I/O error the iterator ends.
#[derive(Debug)]
pub struct JsonLines<R> {
    reader: R,
    line: Vec<u8>,
    max: usize,
    failed: bool,
}

impl<R: BufRead> JsonLines<R> {
    pub fn new(reader: R) -> Self {
        Self::with_max(reader, MAX_JSON_LINE_BYTES)
    }

    fn with_max(reader: R, max: usize) -> Self {
        Self {
            reader,
            line: Vec::new(),
            max,
            failed: false,
        }
    }
}

impl<R: BufRead> Iterator for JsonLines<R> {
    type Item = Result<String, LineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match read_line_bounded(&mut self.reader, &mut self.line, self.max) {
            Ok(LineRead::Eof) => None,
            Ok(LineRead::TooLong) => Some(Err(LineError::TooLong { max: self.max })),
            Ok(LineRead::Line) => {
                let text = String::from_utf8_lossy(&self.line);
                Some(Ok(text.strip_suffix('\r').unwrap_or(&text).to_owned()))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(LineError::Io(error)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_lines_skip_what_is_too_long() {
        let mut reader =
            std::io::Cursor::new(b"short\nthis line is far too long\nok\nlast".to_vec());
        let mut line = Vec::new();
        let mut seen = Vec::new();
        loop {
            let read = read_line_bounded(&mut reader, &mut line, 10).expect("read");
            if read == LineRead::Eof {
                break;
            }
            seen.push((read, String::from_utf8_lossy(&line).into_owned()));
        }
        assert_eq!(
            seen,
            [
                (LineRead::Line, "short".to_owned()),
                (LineRead::TooLong, String::new()),
                (LineRead::Line, "ok".to_owned()),
                (LineRead::Line, "last".to_owned()),
            ]
        );
    }

    /// Hands out at most `chunk` bytes per read and counts what was read, so a test can see
    /// the reader stopped holding bytes once a line passed the cap.
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn json_lines_refuse_an_overlong_line_and_read_on() {
        let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(100));
        let stream = format!("{{\"v\":1}}\r\n{huge}\n\n{{\"v\":2}}");
        let reader = io::BufReader::with_capacity(
            8,
            Trickle {
                data: stream.as_bytes(),
                chunk: 3,
            },
        );
        let mut lines = JsonLines::with_max(reader, 32);
        assert_eq!(lines.next().expect("a line").expect("read"), "{\"v\":1}");
        assert!(matches!(
            lines.next().expect("a line"),
            Err(LineError::TooLong { max: 32 })
        ));
        assert!(
            lines.line.capacity() <= 2 * 32,
            "held {} bytes of a line over the cap",
            lines.line.capacity()
        );
        assert_eq!(lines.next().expect("a line").expect("read"), "");
        assert_eq!(lines.next().expect("a line").expect("read"), "{\"v\":2}");
        assert!(lines.next().is_none());
    }

    #[test]
    fn the_one_cap_holds_a_line_of_its_size_and_refuses_one_byte_more() {
        let fits = "x".repeat(MAX_JSON_LINE_BYTES);
        let stream = format!("{fits}\n{fits}y\n");
        let mut lines = JsonLines::new(stream.as_bytes());
        assert_eq!(
            lines.next().expect("a line").expect("read").len(),
            MAX_JSON_LINE_BYTES
        );
        let error = lines.next().expect("a line").expect_err("too long");
        assert_eq!(
            error.to_string(),
            format!("a line longer than {MAX_JSON_LINE_BYTES} bytes was skipped")
        );
        assert!(lines.next().is_none());
    }
}
