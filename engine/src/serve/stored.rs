//! Raw deflate made of stored blocks (RFC 1951, 3.2.4): the content as it is, in blocks of at
//! most 65,535 bytes, each after a 5-byte header (final bit and type 00, then LEN and its
//! one's complement, little-endian). Its length is known before a byte is read, so a large
//! object can be framed while it is sent, with its `Content-Length`.

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
pub fn write_framed(mut content: impl Read, length: u64, out: &mut dyn Write) -> io::Result<()> {
    let mut buffer = vec![0; MAX_BLOCK.min(usize::try_from(length).unwrap_or(MAX_BLOCK))];
    let mut remaining = length;
    loop {
        let take = usize::try_from(remaining)
            .unwrap_or(MAX_BLOCK)
            .min(MAX_BLOCK);
        let block = &mut buffer[..take];
        content.read_exact(block)?;
        remaining -= take as u64;
        out.write_all(&block_header(take, remaining == 0))?;
        out.write_all(block)?;
        if remaining == 0 {
            return Ok(());
        }
    }
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
    fn content_shorter_than_announced_is_an_error() {
        let mut framed = Vec::new();
        assert!(write_framed(&b"abc"[..], 4, &mut framed).is_err());
    }
}
