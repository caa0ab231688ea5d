//! Translations through gettext. Every string a person reads goes through [`tr`], [`trf`],
//! [`ntr`] or [`ntrf`]; `scripts/i18n.sh pot` extracts them with these names as keywords.
//! Placeholders are named (`{label}`) so translators can move them.

use gettextrs::{bind_textdomain_codeset, bindtextdomain, textdomain};

use crate::config;

/// Sets up gettext. Called first in `main`, before any thread exists.
// setlocale is unsafe: it races with other threads reading the locale.
#[allow(unsafe_code)]
pub fn init() {
    // SAFETY: called at the very start of main, while the process is single-threaded.
    unsafe {
        gettextrs::setlocale(gettextrs::LocaleCategory::LcAll, "");
    }
    // A missing catalogue only means English text.
    if let Err(error) = bindtextdomain(config::GETTEXT_PACKAGE, config::locale_dir()) {
        tracing::debug!(%error, "no translations bound");
    }
    let _ = bind_textdomain_codeset(config::GETTEXT_PACKAGE, "UTF-8");
    let _ = textdomain(config::GETTEXT_PACKAGE);
}

/// Translates `msgid`.
pub fn tr(msgid: &str) -> String {
    gettextrs::gettext(msgid)
}

/// Translates `msgid` and fills its named placeholders, e.g. `("label", "KINGSTON")`.
pub fn trf(msgid: &str, args: &[(&str, &dyn std::fmt::Display)]) -> String {
    fill(gettextrs::gettext(msgid), args)
}

/// Translates a message with a plural form chosen by `n`.
pub fn ntr(singular: &str, plural: &str, n: u64) -> String {
    gettextrs::ngettext(singular, plural, plural_index(n))
}

/// [`ntr`], then fills the named placeholders; `{n}` is always available.
pub fn ntrf(
    singular: &str,
    plural: &str,
    n: u64,
    args: &[(&str, &dyn std::fmt::Display)],
) -> String {
    let text = fill(ntr(singular, plural, n), &[("n", &n)]);
    fill(text, args)
}

/// gettext takes an `u32`; counts beyond it all use the plural form of a big number.
fn plural_index(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn fill(mut text: String, args: &[(&str, &dyn std::fmt::Display)]) -> String {
    for (name, value) in args {
        let placeholder = format!("{{{name}}}");
        if text.contains(&placeholder) {
            text = text.replace(&placeholder, &value.to_string());
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_named_placeholders_in_any_order() {
        let text = fill(
            "{new} from {old}".to_owned(),
            &[("old", &"1.0"), ("new", &"2.0")],
        );
        assert_eq!(text, "2.0 from 1.0");
    }

    #[test]
    fn plural_forms_without_a_catalogue_follow_english() {
        // Not literals in the call, so the extraction leaves these test strings out.
        let (one, many) = ("{n} app", "{n} apps");
        assert_eq!(ntrf(one, many, 1, &[]), "1 app");
        assert_eq!(ntrf(one, many, 3, &[]), "3 apps");
    }
}
