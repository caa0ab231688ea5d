//! How numbers look to people: sizes, rates, remaining time and versions.

use relm4::gtk::glib;

use crate::i18n::{ntrf, tr, trf};

/// A size in the units GNOME uses everywhere ("12.3 MB").
pub fn size(bytes: u64) -> String {
    glib::format_size(bytes).to_string()
}

/// A transfer rate ("1.2 MB/s").
pub fn rate(bytes_per_second: u64) -> String {
    // Translators: a transfer rate; {size} is for example "1.2 MB".
    trf("{size}/s", &[("size", &size(bytes_per_second))])
}

/// "3.1 MB of 12.0 MB", or just the done part while the total is unknown.
pub fn bytes_of(done: u64, total: u64) -> String {
    if total == 0 {
        return size(done);
    }
    // Translators: download progress, for example "3.1 MB of 12.0 MB".
    trf(
        "{done} of {total}",
        &[("done", &size(done)), ("total", &size(total))],
    )
}

/// Remaining time, rounded the way people say it.
pub fn time_left(seconds: u64) -> String {
    if seconds < 60 {
        return tr("Less than a minute left");
    }
    let minutes = seconds.div_ceil(60);
    if minutes < 60 {
        return ntrf(
            "About {n} minute left",
            "About {n} minutes left",
            minutes,
            &[],
        );
    }
    let hours = minutes.div_ceil(60);
    ntrf("About {n} hour left", "About {n} hours left", hours, &[])
}

/// "41.2 → 42.0"; a new install shows only the new version.
pub fn version_change(current: Option<&str>, new: Option<&str>) -> Option<String> {
    match (current, new) {
        (Some(current), Some(new)) if current != new => {
            // Translators: an update from one version to another.
            Some(trf(
                "{current} → {new}",
                &[("current", &current), ("new", &new)],
            ))
        }
        (_, Some(new)) => Some(new.to_owned()),
        (Some(_), None) | (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_decimal_units() {
        // GLib keeps number and unit together with a no-break space.
        assert_eq!(size(12_300_000), "12.3\u{a0}MB");
        assert_eq!(
            bytes_of(3_100_000, 12_000_000),
            "3.1\u{a0}MB of 12.0\u{a0}MB"
        );
        assert_eq!(bytes_of(3_100_000, 0), "3.1\u{a0}MB");
        assert_eq!(rate(1_200_000), "1.2\u{a0}MB/s");
    }

    #[test]
    fn remaining_time_rounds_up() {
        assert_eq!(time_left(5), "Less than a minute left");
        assert_eq!(time_left(61), "About 2 minutes left");
        assert_eq!(time_left(60), "About 1 minute left");
        assert_eq!(time_left(3 * 3600 + 1), "About 4 hours left");
    }

    #[test]
    fn versions_show_the_change() {
        assert_eq!(
            version_change(Some("1.0"), Some("2.0")).as_deref(),
            Some("1.0 → 2.0")
        );
        assert_eq!(version_change(None, Some("2.0")).as_deref(), Some("2.0"));
        assert_eq!(
            version_change(Some("2.0"), Some("2.0")).as_deref(),
            Some("2.0")
        );
        assert_eq!(version_change(Some("1.0"), None), None);
    }
}
