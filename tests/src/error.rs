//! One error type for every fixture builder, so a failing set-up says which command or file
//! failed and how.

use std::path::PathBuf;

/// Why a fixture could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// An external tool could not be started at all.
    #[error("cannot run `{command}`: {source} (is it installed? run scripts/install-deps.sh)")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    /// An external tool ran and failed.
    #[error("`{command}` failed ({status}):\n{stderr}{stdout}")]
    Command {
        command: String,
        status: String,
        stdout: String,
        stderr: String,
    },
    /// An external tool succeeded where the fixture expected it to fail.
    #[error("`{command}` succeeded but was expected to fail; output:\n{stdout}{stderr}")]
    UnexpectedSuccess {
        command: String,
        stdout: String,
        stderr: String,
    },
    /// A file operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A tool's output or a file did not look as the fixture expects.
    #[error("{0}")]
    Unexpected(String),
    /// The fixture needs something the machine does not offer (root, a tool, a built binary).
    #[error("{0}")]
    Requirement(String),
}

/// Result of a fixture operation.
pub type Result<T, E = FixtureError> = std::result::Result<T, E>;

/// Attaches the path and the action to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| FixtureError::Io {
            action,
            path: path.into(),
            source,
        })
    }
}
