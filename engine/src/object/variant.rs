//! Small helpers around the `gvariant` crate: serialising to a Vec without panicking, and
//! checking that a GVariant type string is a single complete type.

use gvariant::{Marker, SerializeTo};

use super::FormatError;

/// Serialises `value` as the GVariant type of `marker`. Fails (instead of panicking, as
/// `serialize_to_vec` would) when a string holds a NUL byte.
pub(crate) fn serialize<M, T>(
    what: &'static str,
    marker: M,
    value: T,
) -> Result<Vec<u8>, FormatError>
where
    M: Marker,
    T: SerializeTo<M::Type>,
{
    let mut out = Vec::new();
    marker
        .serialize(value, &mut out)
        .map_err(|error| FormatError::Unserialisable {
            what,
            source: crate::causes::Shared::new(error),
        })?;
    Ok(out)
}

/// Refuses `original` unless it equals its own re-serialisation: GVariant readers give
/// defaults for malformed data, so a value read from bytes that are not in normal form would
/// silently differ from what those bytes say to another reader.
pub(crate) fn ensure_normal_form(
    what: &'static str,
    type_str: &'static str,
    original: &[u8],
    reserialized: &[u8],
) -> Result<(), FormatError> {
    if original != reserialized {
        return Err(FormatError::NotNormalForm { what, type_str });
    }
    Ok(())
}

/// Deepest nesting of containers accepted in a type string (GLib allows 128; real OSTree
/// metadata uses a handful).
const MAX_TYPE_DEPTH: usize = 64;

/// True when `type_str` is exactly one complete, definite GVariant type, as a serialised
/// variant (`v`) must carry.
pub(crate) fn is_single_complete_type(type_str: &[u8]) -> bool {
    if type_str.is_empty() || type_str.len() > 255 {
        return false;
    }
    match parse_one(type_str, 0) {
        Some(end) => end == type_str.len(),
        None => false,
    }
}

fn is_basic(byte: u8) -> bool {
    b"bynqiuxthdsog".contains(&byte)
}

/// Parses one complete type starting at the beginning of `rest`; returns its length.
fn parse_one(rest: &[u8], depth: usize) -> Option<usize> {
    if depth > MAX_TYPE_DEPTH {
        return None;
    }
    let first = *rest.first()?;
    match first {
        byte if is_basic(byte) || byte == b'v' => Some(1),
        b'a' | b'm' => parse_one(&rest[1..], depth + 1).map(|len| len + 1),
        b'(' => {
            let mut position = 1;
            loop {
                if *rest.get(position)? == b')' {
                    return Some(position + 1);
                }
                position += parse_one(&rest[position..], depth + 1)?;
            }
        }
        b'{' => {
            let key = *rest.get(1)?;
            if !is_basic(key) {
                return None;
            }
            let value_len = parse_one(&rest[2..], depth + 1)?;
            if *rest.get(2 + value_len)? != b'}' {
                return None;
            }
            Some(3 + value_len)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_gvariant_cannot_hold_keeps_the_serialiser_error_as_its_cause() {
        let error = serialize("string value", gvariant::gv!("s"), "a\0b").expect_err("a NUL");
        assert!(
            matches!(error, FormatError::Unserialisable { .. }),
            "{error}"
        );
        let cause = std::error::Error::source(&error).expect("a cause");
        assert!(!error.to_string().contains(&cause.to_string()), "{error}");
    }

    #[test]
    fn recognises_complete_types() {
        for good in [
            "s",
            "v",
            "as",
            "a{sv}",
            "(a{sv}aya(say)sstayay)",
            "a{sa(s(taya{sv}))}",
            "()",
            "mv",
            "aay",
        ] {
            assert!(is_single_complete_type(good.as_bytes()), "{good}");
        }
        for bad in [
            "", "ss", "a", "{sv}x", "{vs}", "(s", "z", "a{s}", "r", "*", "?",
        ] {
            assert!(!is_single_complete_type(bad.as_bytes()), "{bad}");
        }
        let deep = format!("{}s", "a".repeat(100));
        assert!(!is_single_complete_type(deep.as_bytes()));
    }
}
