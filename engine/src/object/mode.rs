//! How a repository stores its objects. It lives beside the object types, as in libostree,
//! because an object's file name depends on it.

use std::fmt;

/// How a repository stores content objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RepoMode {
    /// Compressed `.filez` objects (`archive`, also spelled `archive-z2`); servable over HTTP.
    Archive,
    /// Plain files with real ownership, mode and xattrs; needs root to write.
    Bare,
    /// Plain files; ownership, mode and xattrs in the `user.ostreemeta` xattr.
    BareUser,
    /// Plain files without ownership or xattrs (Flatpak's system repository).
    BareUserOnly,
}

impl RepoMode {
    /// Every mode.
    pub const ALL: [RepoMode; 4] = [
        RepoMode::Archive,
        RepoMode::Bare,
        RepoMode::BareUser,
        RepoMode::BareUserOnly,
    ];

    /// The name `ostree init --mode` and `scan` use (`archive` for `archive-z2` too).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Archive => "archive",
            Self::Bare => "bare",
            Self::BareUser => "bare-user",
            Self::BareUserOnly => "bare-user-only",
        }
    }
}

impl fmt::Display for RepoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
