//! Raw deflate made of stored blocks (RFC 1951, 3.2.4): the content as it is, in blocks of at
//! most 65,535 bytes, each after a 5-byte header (final bit and type 00, then LEN and its
//! one's complement, little-endian). Its length is known before a byte is read, so a large
//! object can be framed while it is sent, with its `Content-Length`.
//!
//! Archive objects may hold any valid deflate, and stored blocks are the cheapest one: the
//! server frames every large object so, and drive preparation frames content that
//! [`looks_incompressible`] (zlib's fastest level runs at ~42 MB/s on random bytes and saves
//! nothing there, against ~800 MB/s for stored blocks).

use std::io::{self, Read, Write};

/// The most content one stored block carries.
pub const MAX_BLOCK: usize = 65_535;
/// The bytes of a block's header.
pub const HEADER: usize = 5;

/// How many bytes `content` bytes take as stored blocks (an empty content is one empty final
/// block).
pub fn framed_len(content: u64) -> u64 {
    let blocks = content.div_ceil(MAX_BLOCK as u64).max(1);
    content + blocks * HEADER as u64
}

/// The header of a block of `len` bytes; `last` for the final one.
pub fn block_header(len: usize, last: bool) -> [u8; HEADER] {
    let len = u16::try_from(len.min(MAX_BLOCK)).unwrap_or(u16::MAX);
    let [low, high] = len.to_le_bytes();
    let [not_low, not_high] = (!len).to_le_bytes();
    [u8::from(last), low, high, not_low, not_high]
}

/// Writes the `length` bytes `content` holds as stored blocks; fails when it holds fewer.
pub fn write_framed(content: impl Read, length: u64, out: &mut dyn Write) -> io::Result<()> {
    write_framed_with(content, length, out, &mut Vec::new())
}

/// [`write_framed`] with a caller's `buffer`, kept between objects by callers that frame many.
pub fn write_framed_with(
    mut content: impl Read,
    length: u64,
    out: &mut dyn Write,
    buffer: &mut Vec<u8>,
) -> io::Result<()> {
    let mut remaining = length;
    loop {
        let take = usize::try_from(remaining)
            .unwrap_or(MAX_BLOCK)
            .min(MAX_BLOCK);
        buffer.resize(HEADER + take, 0);
        content.read_exact(&mut buffer[HEADER..])?;
        remaining -= take as u64;
        buffer[..HEADER].copy_from_slice(&block_header(take, remaining == 0));
        // Header and block in one write: most objects are one block, so one system call.
        out.write_all(buffer)?;
        if remaining == 0 {
            return Ok(());
        }
    }
}

/// Appends the `length` bytes `content` holds to `out` as stored blocks, read straight into
/// place; fails when it holds fewer.
pub fn frame_into(mut content: impl Read, length: u64, out: &mut Vec<u8>) -> io::Result<()> {
    let mut remaining = length;
    loop {
        let take = usize::try_from(remaining)
            .unwrap_or(MAX_BLOCK)
            .min(MAX_BLOCK);
        remaining -= take as u64;
        out.extend_from_slice(&block_header(take, remaining == 0));
        let start = out.len();
        out.resize(start + take, 0);
        content.read_exact(&mut out[start..])?;
        if remaining == 0 {
            return Ok(());
        }
    }
}

/// Bits per byte above which a sample is taken for compressed or random data. Text is near 4.5,
/// machine code near 6, and the estimate from a few KiB of random bytes stays above 7.9.
const INCOMPRESSIBLE_BITS_PER_BYTE: f64 = 7.5;
/// Samples shorter than this say too little; they are compressed (they are small anyway).
const SAMPLE_MIN: usize = 512;

/// Whether `sample`, the start of some content, looks like data deflate cannot shrink
/// (already compressed, encrypted or random), judged by the entropy of its byte histogram as
/// filesystems decide whether to compress an extent. A wrong guess costs only speed or
/// space: any deflate is a valid archive object.
pub fn looks_incompressible(sample: &[u8]) -> bool {
    if sample.len() < SAMPLE_MIN {
        return false;
    }
    let mut counts = [0u32; 256];
    for byte in sample {
        counts[usize::from(*byte)] += 1;
    }
    let total = sample.len() as f64;
    let bits: f64 = counts
        .iter()
        .filter(|count| **count > 0)
        .map(|count| {
            let p = f64::from(*count) / total;
            -p * p.log2()
        })
        .sum();
    bits > INCOMPRESSIBLE_BITS_PER_BYTE
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::DeflateDecoder;

    fn inflate(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        DeflateDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("valid deflate");
        out
    }

    #[test]
    fn stored_blocks_inflate_back_and_have_the_announced_length() {
        for size in [
            0usize,
            1,
            100,
            MAX_BLOCK - 1,
            MAX_BLOCK,
            MAX_BLOCK + 1,
            3 * MAX_BLOCK + 7,
        ] {
            let content: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let mut framed = Vec::new();
            write_framed(&content[..], size as u64, &mut framed).expect("frame");
            assert_eq!(framed.len() as u64, framed_len(size as u64), "{size}");
            assert_eq!(inflate(&framed), content, "{size}");
        }
    }

    #[test]
    fn random_bytes_look_incompressible_and_text_and_code_do_not() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let random: Vec<u8> = (0..16 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        assert!(looks_incompressible(&random));
        let text = "Ferry carries updates from drives and computers nearby. ".repeat(300);
        assert!(!looks_incompressible(text.as_bytes()));
        let ladder: Vec<u8> = (0..16 * 1024).map(|i| (i % 64) as u8).collect();
        assert!(!looks_incompressible(&ladder));
        // Too short to judge: compressed.
        assert!(!looks_incompressible(&random[..100]));
    }

    #[test]
    fn a_reused_buffer_frames_like_a_fresh_one() {
        let mut buffer = Vec::new();
        for size in [MAX_BLOCK + 3, 10, 0] {
            let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut framed = Vec::new();
            write_framed_with(&content[..], size as u64, &mut framed, &mut buffer).expect("frame");
            assert_eq!(inflate(&framed), content, "{size}");
        }
    }

    #[test]
    fn framing_into_a_vector_appends_what_write_framed_writes() {
        for size in [0usize, 70, MAX_BLOCK, 2 * MAX_BLOCK + 1] {
            let content: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
            let mut written = b"head".to_vec();
            write_framed(&content[..], size as u64, &mut written).expect("frame");
            let mut appended = b"head".to_vec();
            frame_into(&content[..], size as u64, &mut appended).expect("frame");
            assert_eq!(appended, written, "{size}");
        }
        assert!(frame_into(&b"ab"[..], 3, &mut Vec::new()).is_err());
    }

    #[test]
    fn content_shorter_than_announced_is_an_error() {
        let mut framed = Vec::new();
        assert!(write_framed(&b"abc"[..], 4, &mut framed).is_err());
    }
}
