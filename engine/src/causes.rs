//! An error as one line of text with its causes, for what leaves the process as words (problems,
//! events, results) and for one-line terminal output. Errors say what failed in their own
//! message and keep why as their `source`; this is the one place that joins the two.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// What failed, with the error behind it as its source: for errors whose variant holds a cause
/// but whose caller knows what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct Because {
    what: String,
    #[source]
    source: Box<dyn Error + Send + Sync>,
}

impl Because {
    /// `what` failed because of `source`.
    pub fn new(what: impl Into<String>, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// A cause shared by the clones of the error that holds it, for errors that must stay `Clone`
/// and `Eq` (trust refusals are cloned into each verdict and compared in tests). It stands in
/// for the error it holds: same text, same causes. Two compare equal when they say the same.
#[derive(Debug)]
pub struct Shared<E>(Arc<E>);

impl<E> Shared<E> {
    /// Shares `error`.
    pub fn new(error: E) -> Self {
        Self(Arc::new(error))
    }
}

impl<E> Clone for Shared<E> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<E: fmt::Display> fmt::Display for Shared<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: Error> Error for Shared<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

impl<E: fmt::Display> PartialEq for Shared<E> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl<E: fmt::Display> Eq for Shared<E> {}

/// Displays an error followed by each of its causes, separated by `": "`. A cause whose text
/// the line already holds is left out, so an error that still names its cause in its own
/// message does not print it twice.
pub struct Causes<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&text(self.0))
    }
}

/// [`Causes`] as a string.
pub fn text(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let said = current.to_string();
        if !line.contains(&said) {
            line.push_str(": ");
            line.push_str(&said);
        }
        cause = current.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read the drive record {path}")]
    struct Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn each_cause_follows_once() {
        let error = Unreadable {
            path: "/run/ferry/drives/a.json".into(),
            source: std::io::Error::other("permission denied"),
        };
        assert_eq!(
            text(&error),
            "cannot read the drive record /run/ferry/drives/a.json: permission denied"
        );
    }

    #[test]
    fn a_cause_the_message_already_names_is_not_repeated() {
        let io = std::io::Error::other("the drive went away");
        let error = crate::repo::RepoError::io("read", "/media/k/repo/config", io);
        let line = text(&error);
        assert_eq!(line.matches("the drive went away").count(), 1, "{line}");
    }
}
