//! Name rules from libostree: ref names (`ostree_validate_rev`), remote names
//! (`ostree_validate_remote_name`), collection IDs (`ostree_validate_collection_id`, the
//! D-Bus interface name rules) and file names inside dirtrees (`ot_util_filename_validate`).
//!
//! libostree matches ref fragments with a GLib regex in which `\w` and `\d` follow Unicode
//! (letters, numbers and `_`); the same classes are used here. Unlike GLib's `$`, a trailing
//! newline is not accepted.

use std::fmt;
use std::sync::OnceLock;

use regex::Regex;

/// What kind of name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A ref name.
    Ref,
    /// A remote name.
    Remote,
    /// A collection ID.
    CollectionId,
    /// One path component of a tree.
    FileName,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ref => "ref name",
            Self::Remote => "remote name",
            Self::CollectionId => "collection ID",
            Self::FileName => "file name",
        })
    }
}

/// A name libostree would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {name:?}: {reason}")]
pub struct InvalidName {
    /// What kind of name it is.
    pub kind: NameKind,
    /// The name, shortened to 120 characters.
    pub name: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl InvalidName {
    fn new(kind: NameKind, name: &str, reason: &'static str) -> Self {
        Self {
            kind,
            name: name.chars().take(120).collect(),
            reason,
        }
    }
}

/// Longest ref name accepted; libostree has no limit, but a ref is a path under `refs/`.
const MAX_REF_LEN: usize = 1024;

const FRAGMENT: &str = r"[\p{L}\p{N}_][-._\p{L}\p{N}_]*";

fn ref_regex() -> &'static Regex {
    static REGEX: OnceLock<Regex> = OnceLock::new();
    REGEX.get_or_init(|| {
        Regex::new(&format!(r"\A(?:{FRAGMENT}/)*{FRAGMENT}\z")).expect("constant pattern")
    })
}

fn fragment_regex() -> &'static Regex {
    static REGEX: OnceLock<Regex> = OnceLock::new();
    REGEX.get_or_init(|| Regex::new(&format!(r"\A{FRAGMENT}\z")).expect("constant pattern"))
}

/// A ref name: `/`-separated fragments, each starting with a letter, digit or `_` and
/// continuing with those or `-` and `.`. No empty fragments, so no leading, trailing or
/// doubled `/`, and no `.` or `..` fragments.
pub fn validate_ref_name(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName::new(NameKind::Ref, name, "it is empty"));
    }
    if name.len() > MAX_REF_LEN {
        return Err(InvalidName::new(NameKind::Ref, name, "it is too long"));
    }
    if !ref_regex().is_match(name) {
        return Err(InvalidName::new(
            NameKind::Ref,
            name,
            "use letters, digits, '_', '-' and '.' in parts separated by '/'",
        ));
    }
    Ok(())
}

/// One component of a ref path (what libostree accepts as a directory entry under `refs/`).
pub(crate) fn is_ref_fragment(fragment: &str) -> bool {
    fragment_regex().is_match(fragment)
}

/// A remote name: a single ref fragment.
pub fn validate_remote_name(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName::new(NameKind::Remote, name, "it is empty"));
    }
    if name.len() > MAX_REF_LEN || !is_ref_fragment(name) {
        return Err(InvalidName::new(
            NameKind::Remote,
            name,
            "use letters, digits, '_', '-' and '.', starting with a letter, digit or '_'",
        ));
    }
    Ok(())
}

/// A collection ID: a reverse-DNS name of at least two elements of ASCII letters, digits and
/// `_`, none starting with a digit, at most 255 characters.
pub fn validate_collection_id(id: &str) -> Result<(), InvalidName> {
    const RULES: &str = "expected a reverse-DNS name such as org.example.Os: at least two \
                         '.'-separated elements of ASCII letters, digits and '_', none starting \
                         with a digit, at most 255 characters";
    if id.is_empty() || id.len() > 255 {
        return Err(InvalidName::new(NameKind::CollectionId, id, RULES));
    }
    let mut elements = 0;
    for element in id.split('.') {
        elements += 1;
        let mut bytes = element.bytes();
        let valid_start = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        if !valid_start || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(InvalidName::new(NameKind::CollectionId, id, RULES));
        }
    }
    if elements < 2 {
        return Err(InvalidName::new(NameKind::CollectionId, id, RULES));
    }
    Ok(())
}

/// A name inside a dirtree: not empty, not `.` or `..`, no `/` and no NUL.
pub fn validate_file_name(name: &str) -> Result<(), InvalidName> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name == "." || name == ".." {
        "it refers to a directory itself or its parent"
    } else if name.contains('/') {
        "it contains '/'"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(InvalidName::new(NameKind::FileName, name, reason))
}

pub use ferry_schema::FlatpakRef;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_follow_libostree() {
        // Accepted by ostree 2022.7's `ostree refs --create`.
        for good in [
            "main",
            "os/x86_64/stable",
            "_x",
            "x-",
            "a..b",
            "é",
            "ü/x",
            "٣",
            "app/org.example.App/x86_64/stable",
        ] {
            assert!(validate_ref_name(good).is_ok(), "{good}");
        }
        // Refused by it.
        for bad in [
            "", "a//b", "-a", "a b", "/a", "a/", ".", "..", "a/../b", ".hidden", "a\n", "a\0",
        ] {
            assert!(validate_ref_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn remote_names_are_single_fragments() {
        assert!(validate_remote_name("origin").is_ok());
        assert!(validate_remote_name("flathub-beta").is_ok());
        assert!(validate_remote_name("a/b").is_err());
        assert!(validate_remote_name("").is_err());
        assert!(validate_remote_name("-x").is_err());
    }

    #[test]
    fn collection_ids_are_reverse_dns() {
        for good in ["org.example.Os", "com.endlessm.Os_2", "_a.b"] {
            assert!(validate_collection_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "org",
            ".org.example",
            "org..example",
            "org.1example",
            "org.ex-ample",
        ] {
            assert!(validate_collection_id(bad).is_err(), "{bad}");
        }
        assert!(validate_collection_id(&format!("a.{}", "b".repeat(254))).is_err());
    }

    #[test]
    fn file_names_cannot_escape() {
        assert!(validate_file_name("hello.txt").is_ok());
        assert!(validate_file_name("...").is_ok());
        for bad in ["", ".", "..", "a/b", "/", "a\0"] {
            assert!(validate_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
