//! Just enough GVariant framing to split the containers of static deltas into the raw byte
//! slices of their members. Deltas embed whole objects (the new commit, dirtrees) whose
//! exact bytes are what gets hashed, so the members are read as slices, not re-serialised.
//! Every offset is bounds-checked; framing that points outside its container is refused.

use super::DeltaError;

/// How one member of a tuple or an array is laid out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub align: usize,
    /// `Some(size)` for fixed-size types.
    pub fixed: Option<usize>,
}

pub(crate) const BYTE: Layout = Layout {
    align: 1,
    fixed: Some(1),
};
pub(crate) const U64: Layout = Layout {
    align: 8,
    fixed: Some(8),
};
pub(crate) const U32: Layout = Layout {
    align: 4,
    fixed: Some(4),
};
/// Any variable-size type aligned to `align`.
pub(crate) const fn var(align: usize) -> Layout {
    Layout { align, fixed: None }
}

fn malformed(what: &'static str) -> DeltaError {
    DeltaError::Malformed(what)
}

fn offset_size(container: usize) -> usize {
    match container {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

fn read_offset(bytes: &[u8], at: usize, size: usize) -> Option<usize> {
    let slice = bytes.get(at..at.checked_add(size)?)?;
    let mut value: u64 = 0;
    for (shift, byte) in slice.iter().enumerate() {
        value |= u64::from(*byte) << (8 * shift);
    }
    usize::try_from(value).ok()
}

fn align_up(value: usize, align: usize) -> Option<usize> {
    let mask = align.checked_sub(1)?;
    value.checked_add(mask).map(|v| v & !mask)
}

/// The members of a tuple (or dict entry) of the given member layouts.
pub(crate) fn tuple<'a>(
    what: &'static str,
    bytes: &'a [u8],
    members: &[Layout],
) -> Result<Vec<&'a [u8]>, DeltaError> {
    let size = bytes.len();
    let osz = offset_size(size);
    let framed = members
        .iter()
        .take(members.len().saturating_sub(1))
        .filter(|m| m.fixed.is_none())
        .count();
    let frames_start = size
        .checked_sub(framed * osz)
        .ok_or_else(|| malformed(what))?;
    let mut out = Vec::with_capacity(members.len());
    let mut position = 0usize;
    let mut frame = 0usize;
    for (index, member) in members.iter().enumerate() {
        let start = align_up(position, member.align).ok_or_else(|| malformed(what))?;
        let end = match member.fixed {
            Some(fixed) => start.checked_add(fixed).ok_or_else(|| malformed(what))?,
            None if index + 1 == members.len() => frames_start,
            None => {
                frame += 1;
                read_offset(bytes, size - frame * osz, osz).ok_or_else(|| malformed(what))?
            }
        };
        if start > end || end > frames_start {
            return Err(malformed(what));
        }
        out.push(&bytes[start..end]);
        position = end;
    }
    Ok(out)
}

/// The elements of an array of variable-size elements aligned to `align`.
pub(crate) fn var_array<'a>(
    what: &'static str,
    bytes: &'a [u8],
    align: usize,
    max_elements: usize,
) -> Result<Vec<&'a [u8]>, DeltaError> {
    let size = bytes.len();
    if size == 0 {
        return Ok(Vec::new());
    }
    let osz = offset_size(size);
    let last_end = read_offset(
        bytes,
        size.checked_sub(osz).ok_or_else(|| malformed(what))?,
        osz,
    )
    .ok_or_else(|| malformed(what))?;
    if last_end > size || !(size - last_end).is_multiple_of(osz) {
        return Err(malformed(what));
    }
    let count = (size - last_end) / osz;
    if count > max_elements {
        return Err(DeltaError::TooMany { what, count });
    }
    let mut out = Vec::with_capacity(count);
    let mut position = 0usize;
    for index in 0..count {
        let start = align_up(position, align).ok_or_else(|| malformed(what))?;
        let end = read_offset(bytes, last_end + index * osz, osz).ok_or_else(|| malformed(what))?;
        if start > end || end > last_end {
            return Err(malformed(what));
        }
        out.push(&bytes[start..end]);
        position = end;
    }
    Ok(out)
}

/// The elements of an array of fixed-size elements.
pub(crate) fn fixed_array<'a>(
    what: &'static str,
    bytes: &'a [u8],
    element: usize,
) -> Result<Vec<&'a [u8]>, DeltaError> {
    if element == 0 || !bytes.len().is_multiple_of(element) {
        return Err(malformed(what));
    }
    Ok(bytes.chunks_exact(element).collect())
}

/// A serialised variant `v`: its value bytes and its type string.
pub(crate) fn variant<'a>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<(&'a [u8], &'a [u8]), DeltaError> {
    let separator = bytes
        .iter()
        .rposition(|b| *b == 0)
        .ok_or_else(|| malformed(what))?;
    Ok((&bytes[..separator], &bytes[separator + 1..]))
}

/// A string `s`: its bytes without the trailing NUL.
pub(crate) fn string<'a>(what: &'static str, bytes: &'a [u8]) -> Result<&'a str, DeltaError> {
    match bytes.split_last() {
        Some((0, text)) => std::str::from_utf8(text).map_err(|_| malformed(what)),
        _ => Err(malformed(what)),
    }
}

/// One entry of an `a{sv}`: key, value bytes, value type string.
pub(crate) type DictEntry<'a> = (&'a str, &'a [u8], &'a [u8]);

/// A dictionary `a{sv}` as its entries.
pub(crate) fn vardict<'a>(
    what: &'static str,
    bytes: &'a [u8],
    max_entries: usize,
) -> Result<Vec<DictEntry<'a>>, DeltaError> {
    let mut out = Vec::new();
    for entry in var_array(what, bytes, 8, max_entries)? {
        let members = tuple(what, entry, &[var(1), var(8)])?;
        let key = string(what, members[0])?;
        let (value, type_str) = variant(what, members[1])?;
        out.push((key, value, type_str));
    }
    Ok(out)
}

pub(crate) fn u32_le(bytes: &[u8]) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(raw)
}

pub(crate) fn u64_le(bytes: &[u8]) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gvariant::{gv, Marker};

    #[test]
    fn splits_what_gvariant_serialises() {
        let mut out = Vec::new();
        gv!("(sayt)")
            .serialize(&("name", &b"abc"[..], 7u64), &mut out)
            .unwrap();
        let members = tuple("test", &out, &[var(1), var(1), U64]).unwrap();
        assert_eq!(string("test", members[0]).unwrap(), "name");
        assert_eq!(members[1], b"abc");
        assert_eq!(u64_le(members[2]), 7);

        // aay ["x", "", "yz"]: the elements, then their end offsets.
        let out = b"xyz\x01\x01\x03";
        let items: Vec<&[u8]> = vec![b"x", b"", b"yz"];
        let elements = var_array("test", out, 1, 10).unwrap();
        assert_eq!(elements, items);
        assert!(var_array("test", out, 1, 2).is_err());
    }

    #[test]
    fn refuses_offsets_outside_the_container() {
        // A two-member tuple whose frame offset points past the end.
        let bytes = [b'a', 0, 0xf0];
        assert!(tuple("test", &bytes, &[var(1), var(1)]).is_err());
        let bytes = [1, 2, 0x40];
        assert!(var_array("test", &bytes, 1, 10).is_err());
    }
}
