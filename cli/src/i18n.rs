//! Translations of ferryctl's human output (the JSON output is never translated).

use gettextrs::{bindtextdomain, textdomain};

pub const GETTEXT_DOMAIN: &str = "ferry";

/// Where compiled catalogues are installed; `FERRY_LOCALEDIR` overrides it for tests.
fn locale_dir() -> String {
    std::env::var("FERRY_LOCALEDIR")
        .ok()
        .or_else(|| option_env!("FERRY_LOCALEDIR").map(str::to_owned))
        .unwrap_or_else(|| "/usr/share/locale".to_owned())
}

/// Sets up gettext. Called once at the start of `main`, before any thread exists.
// setlocale is unsafe: it races with other threads reading the locale.
#[allow(unsafe_code)]
pub fn init() {
    // SAFETY: called first thing in main, while the process is still single-threaded.
    unsafe {
        gettextrs::setlocale(gettextrs::LocaleCategory::LcAll, "");
    }
    // A missing catalogue only means English output.
    let _ = bindtextdomain(GETTEXT_DOMAIN, locale_dir());
    let _ = textdomain(GETTEXT_DOMAIN);
}

/// Translates `msgid`.
pub fn tr(msgid: &str) -> String {
    gettextrs::gettext(msgid)
}

/// Translates `msgid` and fills its `{}` placeholders in order.
pub fn trf(msgid: &str, args: &[&dyn std::fmt::Display]) -> String {
    fill(gettextrs::gettext(msgid), args)
}

/// Translates a message with a plural form chosen by `n`, and fills its `{}` placeholders in
/// order.
pub fn ntrf(singular: &str, plural: &str, n: u64, args: &[&dyn std::fmt::Display]) -> String {
    // gettext takes an u32; counts beyond it all use the plural form of a big number.
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    fill(gettextrs::ngettext(singular, plural, n), args)
}

fn fill(mut text: String, args: &[&dyn std::fmt::Display]) -> String {
    for arg in args {
        if let Some(at) = text.find("{}") {
            text.replace_range(at..at + 2, &arg.to_string());
        }
    }
    text
}
