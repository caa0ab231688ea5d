//! The patch format of ostree's bundled bsdiff (Matthew Endsley's): no header and no
//! compression of its own (the part around it is xz-compressed). The stream is a series of
//! control triples of 8-byte sign-magnitude little-endian integers (bytes to add from the old
//! file, bytes to copy from the stream, how far to move in the old file), each followed by
//! the "diff" bytes and the "extra" bytes they announce. The new size comes from the op.

use super::DeltaError;

fn offtin(raw: &[u8]) -> i64 {
    let mut magnitude: i64 = i64::from(raw[7] & 0x7f);
    for byte in raw[..7].iter().rev() {
        magnitude = magnitude * 256 + i64::from(*byte);
    }
    if raw[7] & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

struct Stream<'a> {
    rest: &'a [u8],
}

impl<'a> Stream<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], DeltaError> {
        if count > self.rest.len() {
            return Err(DeltaError::Bspatch("patch ends early"));
        }
        let (head, tail) = self.rest.split_at(count);
        self.rest = tail;
        Ok(head)
    }
}

/// Rebuilds a file of `new_size` bytes from `old` and `patch`.
pub(crate) fn apply(old: &[u8], patch: &[u8], new_size: usize) -> Result<Vec<u8>, DeltaError> {
    let mut new = vec![0u8; new_size];
    let mut stream = Stream { rest: patch };
    let mut old_position: i64 = 0;
    let mut new_position: usize = 0;
    let old_len = old.len() as i64;
    while new_position < new_size {
        let add = offtin(stream.take(8)?);
        let copy = offtin(stream.take(8)?);
        let seek = offtin(stream.take(8)?);
        let add = usize::try_from(add).map_err(|_| DeltaError::Bspatch("negative length"))?;
        let copy = usize::try_from(copy).map_err(|_| DeltaError::Bspatch("negative length"))?;
        let add_end = new_position
            .checked_add(add)
            .filter(|end| *end <= new_size)
            .ok_or(DeltaError::Bspatch("writes past the new size"))?;
        let diff = stream.take(add)?;
        for (index, byte) in diff.iter().enumerate() {
            let from_old = old_position.saturating_add(index as i64);
            let old_byte = if (0..old_len).contains(&from_old) {
                old[from_old as usize]
            } else {
                0
            };
            new[new_position + index] = byte.wrapping_add(old_byte);
        }
        new_position = add_end;
        old_position = old_position.saturating_add(add as i64);
        let copy_end = new_position
            .checked_add(copy)
            .filter(|end| *end <= new_size)
            .ok_or(DeltaError::Bspatch("writes past the new size"))?;
        new[new_position..copy_end].copy_from_slice(stream.take(copy)?);
        new_position = copy_end;
        old_position = old_position.saturating_add(seek);
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offout(value: i64) -> [u8; 8] {
        let mut raw = value.unsigned_abs().to_le_bytes();
        if value < 0 {
            raw[7] |= 0x80;
        }
        raw
    }

    #[test]
    fn adds_copies_and_seeks() {
        let old = b"hello world";
        let mut patch = Vec::new();
        // 5 bytes added to "hello" (turning h into j), 3 extra bytes, skip back 0.
        patch.extend(offout(5));
        patch.extend(offout(3));
        patch.extend(offout(-5));
        patch.extend([2, 0, 0, 0, 0]);
        patch.extend(b"!!!");
        // then 5 bytes from the start of old again unchanged.
        patch.extend(offout(5));
        patch.extend(offout(0));
        patch.extend(offout(0));
        patch.extend([0; 5]);
        assert_eq!(apply(old, &patch, 13).unwrap(), b"jello!!!hello");
        assert!(apply(old, &patch, 14).is_err(), "patch too short");
        assert!(apply(old, &patch[..30], 13).is_err());
        assert!(apply(old, &patch, 6).is_err(), "writes past the end");
    }
}
