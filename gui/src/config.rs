//! Build-time and run-time settings. Build systems may set `FERRY_LOCALEDIR` and
//! `FERRY_BINDIR` at compile time; a plain `cargo build` gets the usual system paths.

use std::path::PathBuf;

/// The application ID, shared by the window and the background agent.
pub const APP_ID: &str = "io.github.ferry.Ferry";

/// The gettext domain of every Ferry binary.
pub const GETTEXT_PACKAGE: &str = "ferry";

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where compiled catalogues are installed.
pub const LOCALEDIR: &str = match option_env!("FERRY_LOCALEDIR") {
    Some(dir) => dir,
    None => "/usr/share/locale",
};

/// Where `ferryctl` is installed; the polkit policy names the same path.
pub const BINDIR: &str = match option_env!("FERRY_BINDIR") {
    Some(dir) => dir,
    None => "/usr/bin",
};

/// Catalogue directory: `$FERRY_LOCALEDIR`, else the compiled-in default.
pub fn locale_dir() -> PathBuf {
    std::env::var_os("FERRY_LOCALEDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(LOCALEDIR))
}

/// The `ferryctl` to run for installs: `$FERRY_CTL`, else the one installed next to this
/// program, else the one in the compiled-in bin directory.
pub fn ferryctl_path() -> PathBuf {
    if let Some(path) = std::env::var_os("FERRY_CTL").filter(|path| !path.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("ferryctl")))
        .filter(|path| path.is_file())
    {
        return sibling;
    }
    PathBuf::from(BINDIR).join("ferryctl")
}

/// Test hook: when `$FERRY_TEST_DUMP_DIR` is set, the window writes a description of its
/// widget tree and a rendering of itself there after every visible change.
pub fn test_dump_dir() -> Option<PathBuf> {
    std::env::var_os("FERRY_TEST_DUMP_DIR")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
}
