//! SHA-256 object checksums as OSTree names them: 32 bytes, written as 64 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The checksum of an OSTree object.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum([u8; 32]);

/// A string or byte array that is not a valid checksum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid checksum {0:?}: expected 64 lowercase hex digits")]
pub struct InvalidChecksum(pub String);

impl Checksum {
    pub const LEN: usize = 32;
    pub const HEX_LEN: usize = 64;

    pub const fn from_array(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// From the 32 raw bytes stored inside commits and dirtrees.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, InvalidChecksum> {
        <[u8; 32]>::try_from(bytes)
            .map(Self)
            .map_err(|_| InvalidChecksum(format!("{} raw bytes", bytes.len())))
    }

    /// From 64 lowercase hex digits, as in ref files and object paths.
    pub fn from_hex(text: &str) -> Result<Self, InvalidChecksum> {
        let valid = text.len() == Self::HEX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(InvalidChecksum(text.chars().take(80).collect()));
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            *byte = (hex_digit(pair[0]) << 4) | hex_digit(pair[1]);
        }
        Ok(Self(out))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }

    /// The first 10 hex digits, for messages meant for people.
    pub fn short(&self) -> String {
        encode_hex(&self.0[..5])
    }
}

/// The value of one lowercase hex digit; callers have checked it is one.
fn hex_digit(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        _ => digit - b'a' + 10,
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    text
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.to_hex())
    }
}

impl FromStr for Checksum {
    type Err = InvalidChecksum;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl Serialize for Checksum {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Checksum {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let text = "ab".repeat(32);
        let sum = Checksum::from_hex(&text).expect("valid");
        assert_eq!(sum.to_hex(), text);
        assert_eq!(sum.short(), "ababababab");
        let every_digit = "0123456789abcdef".repeat(4);
        let sum = Checksum::from_hex(&every_digit).expect("valid");
        assert_eq!(
            sum.as_bytes()[..8],
            [1, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]
        );
        assert_eq!(sum.to_hex(), every_digit);
    }

    #[test]
    fn rejects_bad_hex() {
        assert!(Checksum::from_hex("AB").is_err());
        assert!(
            Checksum::from_hex(&"AB".repeat(32)).is_err(),
            "uppercase is not canonical"
        );
        assert!(Checksum::from_hex(&"zz".repeat(32)).is_err());
        assert!(Checksum::from_hex(&format!("{}\n", "ab".repeat(32))).is_err());
        assert!(Checksum::from_slice(&[0u8; 31]).is_err());
    }
}
