//! How numbers look to people: sizes, rates, remaining time, versions and where an update
//! came from.

use ferry_schema::{Problem, SourceKind, SourceUse};
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

/// Where an update came from, e.g. "from KINGSTON and 2 computers nearby": the drives by
/// label, computers nearby counted, servers as "the Internet". Only sources that handed out
/// something count; None while none has.
pub fn came_from(sources: &[SourceUse]) -> Option<String> {
    let used = || sources.iter().filter(|s| s.objects > 0 || s.bytes > 0);
    let mut drives: Vec<&str> = Vec::new();
    for source in used().filter(|s| s.kind == SourceKind::Drive) {
        let label = source.label.as_deref().unwrap_or(&source.source);
        if !drives.contains(&label) {
            drives.push(label);
        }
    }
    let mut peers: Vec<&str> = used()
        .filter(|s| s.kind == SourceKind::Lan)
        .map(|s| s.source.as_str())
        .collect();
    peers.sort_unstable();
    peers.dedup();
    let internet = used().any(|s| s.kind == SourceKind::Upstream);

    let mut parts: Vec<String> = Vec::new();
    match drives.as_slice() {
        [] => {}
        [label] => parts.push((*label).to_owned()),
        // Translators: this and the next three fill {source}, {first}, {second} or {third} in
        // "from {source}" and the like; use the form that reads right after "from".
        more => parts.push(ntrf("{n} drive", "{n} drives", more.len() as u64, &[])),
    }
    match peers.len() {
        0 => {}
        1 => parts.push(tr("a computer nearby")),
        n => parts.push(ntrf(
            "{n} computer nearby",
            "{n} computers nearby",
            n as u64,
            &[],
        )),
    }
    if internet {
        parts.push(tr("the Internet"));
    }
    Some(match parts.as_slice() {
        [] => return None,
        // Translators: under an update; {source} is a drive's label, "3 computers nearby"
        // or "the Internet".
        [one] => trf("from {source}", &[("source", one)]),
        // Translators: under an update, e.g. "from KINGSTON and 2 computers nearby".
        [first, second] => trf(
            "from {first} and {second}",
            &[("first", first), ("second", second)],
        ),
        [first, second, third, ..] => trf(
            "from {first}, {second} and {third}",
            &[("first", first), ("second", second), ("third", third)],
        ),
    })
}

/// A failure as a person reads it: `message` with every object name (a 64-digit checksum,
/// with its `.file`/`.dirtree`/… kind) replaced by "an object", and the message as it was
/// for the Details when anything was replaced.
pub fn in_words(message: &str) -> (String, Option<String>) {
    let mut words = String::with_capacity(message.len());
    let mut replaced = false;
    let mut rest = message;
    while let Some(start) = find_checksum(rest) {
        words.push_str(&rest[..start]);
        let mut end = start + 64;
        let kind_len = rest[end..]
            .strip_prefix('.')
            .map(|tail| tail.chars().take_while(|c| c.is_ascii_alphabetic()).count())
            .filter(|len| *len > 0)
            .map_or(0, |len| len + 1);
        end += kind_len;
        // "Object <checksum>" reads as "an object" too.
        let lead = ["Object ", "object "]
            .iter()
            .find(|lead| words.ends_with(**lead))
            .map(|lead| lead.len());
        let capital = match lead {
            Some(len) => {
                let capital = words.ends_with("Object ");
                words.truncate(words.len() - len);
                capital
            }
            None => false,
        };
        words.push_str(&if capital || words.is_empty() {
            tr("An object")
        } else {
            tr("an object")
        });
        replaced = true;
        rest = &rest[end..];
    }
    words.push_str(rest);
    (words, replaced.then(|| message.to_owned()))
}

/// Where the first run of exactly 64 hex digits starts.
fn find_checksum(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut run = 0usize;
    for (index, byte) in bytes.iter().enumerate() {
        if byte.is_ascii_hexdigit() {
            run += 1;
            continue;
        }
        if run == 64 {
            return Some(index - 64);
        }
        run = 0;
    }
    (run == 64).then(|| bytes.len() - 64)
}

/// What a problem is about, under its reason: the ref it concerns, else the place it was met
/// on (a repository path or an address), else what it names when it was met on no source.
pub fn problem_subject(problem: &Problem) -> String {
    match (&problem.ref_name, &problem.origin) {
        (Some(ref_name), _) => ref_name.clone(),
        (None, Some(origin)) => origin.location.clone(),
        (None, None) => problem.source.clone(),
    }
}

/// A drive's label in a source name: "KINGSTON" of "KINGSTON (/media/k/.ostree/repo)"; the
/// whole name when it has no label.
pub(crate) fn drive_label(name: &str) -> &str {
    name.find(" (/")
        .or_else(|| name.ends_with(')').then(|| name.rfind(" (")).flatten())
        .map_or(name, |end| &name[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_objects_in_words_and_keep_the_checksum_for_details() {
        let sum = "5f3ca1e0c2a7e3b6a5f0a0d9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9";
        let message = format!("Object {sum}.file from KINGSTON is corrupt.");
        let (words, details) = in_words(&message);
        assert_eq!(words, "An object from KINGSTON is corrupt.");
        assert_eq!(details.as_deref(), Some(message.as_str()));
        let (words, _) = in_words(&format!("it handed out {sum}.dirtree (usr), twice"));
        assert_eq!(words, "it handed out an object (usr), twice");
        // Nothing to hide: no details.
        assert_eq!(
            in_words("The drive went away"),
            ("The drive went away".into(), None)
        );
        // 63 or 65 digits are not a checksum.
        let (_, details) = in_words(&format!("{}0 and {}", sum, &sum[1..]));
        assert_eq!(details, None);
    }
    use ferry_schema::SourceState;

    fn used(label: Option<&str>, location: &str, kind: SourceKind, objects: u64) -> SourceUse {
        let source = ferry_schema::SourceInfo::new(kind, location, label.map(str::to_owned));
        SourceUse {
            source: source.name(),
            label: source.label,
            kind,
            objects,
            bytes: objects * 1000,
            state: SourceState::Active,
            reason: None,
        }
    }

    fn peer(n: u32) -> SourceUse {
        used(
            Some(&format!("Ferry on lab-{n}")),
            &format!("http://10.0.0.{n}:43381/0"),
            SourceKind::Lan,
            3,
        )
    }

    #[test]
    fn a_problem_is_about_its_ref_else_where_it_was_met() {
        use ferry_schema::{ProblemKind, SourceInfo};
        let peer = SourceInfo::new(
            SourceKind::Lan,
            "http://192.0.2.7:8080/",
            Some("classroom-1".to_owned()),
        );
        let mut problem =
            Problem::on_source(ProblemKind::Unavailable, &peer, None, "gone".to_owned());
        assert_eq!(problem.source, "classroom-1 (http://192.0.2.7:8080/)");
        assert_eq!(problem_subject(&problem), "http://192.0.2.7:8080/");
        problem.ref_name = Some("app/org.example.App/x86_64/stable".to_owned());
        assert_eq!(
            problem_subject(&problem),
            "app/org.example.App/x86_64/stable"
        );
        let installation = Problem::about(
            ProblemKind::Unreadable,
            "/var/lib/flatpak",
            None,
            "cannot read it".to_owned(),
        );
        assert_eq!(problem_subject(&installation), "/var/lib/flatpak");
    }

    #[test]
    fn an_update_says_which_drive_and_how_many_computers_it_came_from() {
        let kingston = used(
            Some("KINGSTON"),
            "/media/k/.ostree/repo",
            SourceKind::Drive,
            10,
        );
        assert_eq!(
            came_from(std::slice::from_ref(&kingston)).as_deref(),
            Some("from KINGSTON")
        );
        assert_eq!(
            came_from(&[kingston.clone(), peer(1), peer(2)]).as_deref(),
            Some("from KINGSTON and 2 computers nearby")
        );
        assert_eq!(
            came_from(&[peer(1), peer(2), peer(3)]).as_deref(),
            Some("from 3 computers nearby")
        );
        assert_eq!(
            came_from(&[peer(4)]).as_deref(),
            Some("from a computer nearby")
        );
        let flathub = used(
            None,
            "https://dl.flathub.org/repo/",
            SourceKind::Upstream,
            5,
        );
        assert_eq!(
            came_from(std::slice::from_ref(&flathub)).as_deref(),
            Some("from the Internet")
        );
        assert_eq!(
            came_from(&[kingston.clone(), peer(1), flathub]).as_deref(),
            Some("from KINGSTON, a computer nearby and the Internet")
        );
        // Two repositories on one drive are one drive; two drives are counted.
        let other_repo = used(
            Some("KINGSTON"),
            "/media/k/ostree/repo",
            SourceKind::Drive,
            1,
        );
        let sandisk = used(
            Some("SANDISK"),
            "/media/s/.ostree/repo",
            SourceKind::Drive,
            1,
        );
        assert_eq!(
            came_from(&[kingston.clone(), other_repo]).as_deref(),
            Some("from KINGSTON")
        );
        assert_eq!(
            came_from(&[kingston, sandisk]).as_deref(),
            Some("from 2 drives")
        );
    }

    #[test]
    fn sources_that_gave_nothing_are_not_named() {
        let mut dropped = peer(9);
        dropped.objects = 0;
        dropped.bytes = 0;
        dropped.state = SourceState::Dropped;
        assert_eq!(came_from(&[]), None);
        assert_eq!(came_from(std::slice::from_ref(&dropped)), None);
        let unlabelled = used(None, "/run/media/repo", SourceKind::Drive, 2);
        assert_eq!(
            came_from(&[unlabelled, dropped]).as_deref(),
            Some("from /run/media/repo")
        );
        // A label is taken whole, however it reads.
        let odd = used(
            Some("USB (2)"),
            "/media/u/.ostree/repo",
            SourceKind::Drive,
            1,
        );
        assert_eq!(came_from(&[odd]).as_deref(), Some("from USB (2)"));
    }

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
