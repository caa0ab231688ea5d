//! The GLib key file format that OSTree and Flatpak use for deployment origins, repository
//! configs, `remotes.d` and `installations.d`: read-only, with GKeyFile's rules for groups,
//! comments, escapes and booleans.

use std::collections::HashMap;

/// Files larger than this are refused: real ones are a few kilobytes.
pub(crate) const MAX_KEY_FILE_SIZE: usize = 1024 * 1024;

/// A parsed key file. Groups keep their first-seen order; a repeated group is merged into the
/// first and a repeated key keeps its last value, as GKeyFile does.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyFile {
    groups: Vec<(String, HashMap<String, String>)>,
}

impl KeyFile {
    /// Parses `text`; the error says which line is wrong.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_KEY_FILE_SIZE {
            return Err(format!(
                "{} bytes, more than the {MAX_KEY_FILE_SIZE} allowed",
                text.len()
            ));
        }
        let mut file = Self::default();
        let mut current: Option<usize> = None;
        for (index, raw_line) in text.split('\n').enumerate() {
            let line = raw_line.trim_start_matches(|c: char| c.is_ascii_whitespace());
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let line_number = index + 1;
            if let Some(rest) = line.strip_prefix('[') {
                let Some(end) = rest.rfind(']') else {
                    return Err(format!("line {line_number}: group header without ']'"));
                };
                let name = &rest[..end];
                if name.is_empty()
                    || name.contains(['[', ']'])
                    || name.chars().any(char::is_control)
                {
                    return Err(format!("line {line_number}: invalid group name {name:?}"));
                }
                current = Some(match file.groups.iter().position(|(n, _)| n == name) {
                    Some(position) => position,
                    None => {
                        file.groups.push((name.to_owned(), HashMap::new()));
                        file.groups.len() - 1
                    }
                });
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!(
                    "line {line_number}: neither a group, a key=value pair nor a comment"
                ));
            };
            let key = key.trim_end_matches(|c: char| c.is_ascii_whitespace());
            if key.is_empty() {
                return Err(format!("line {line_number}: empty key"));
            }
            let value = value.trim_start_matches(|c: char| c.is_ascii_whitespace());
            let Some(group) = current else {
                return Err(format!("line {line_number}: key {key:?} before any group"));
            };
            file.groups[group]
                .1
                .insert(key.to_owned(), value.to_owned());
        }
        Ok(file)
    }

    /// Group names in file order.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|(name, _)| name.as_str())
    }

    /// A value with GKeyFile's escapes (`\s`, `\n`, `\t`, `\r`, `\\`) resolved.
    pub(crate) fn string(&self, group: &str, key: &str) -> Result<Option<String>, String> {
        self.raw(group, key)
            .map(|raw| unescape(raw).map_err(|detail| format!("[{group}] {key}: {detail}")))
            .transpose()
    }

    /// Every key of `group` with its unescaped value, sorted by key.
    pub(crate) fn entries(&self, group: &str) -> Result<Vec<(String, String)>, String> {
        let Some((_, entries)) = self.groups.iter().find(|(name, _)| name == group) else {
            return Ok(Vec::new());
        };
        let mut out = entries
            .iter()
            .map(|(key, raw)| {
                unescape(raw)
                    .map(|value| (key.clone(), value))
                    .map_err(|detail| format!("[{group}] {key}: {detail}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        Ok(out)
    }

    /// A boolean as GKeyFile reads it: `true`/`1` or `false`/`0`, trailing spaces ignored.
    pub(crate) fn boolean(&self, group: &str, key: &str) -> Result<Option<bool>, String> {
        match self.raw(group, key).map(str::trim_end) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(other) => Err(format!(
                "[{group}] {key}: {other:?} is not a boolean (true or false)"
            )),
        }
    }

    fn raw(&self, group: &str, key: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|(name, _)| name == group)
            .and_then(|(_, entries)| entries.get(key))
            .map(String::as_str)
    }
}

fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => return Err(format!("invalid escape \\{other}")),
            None => return Err("value ends with a lone backslash".to_owned()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_groups_keys_and_escapes() {
        let file = KeyFile::parse(
            "# comment\n[core]\nmode = bare-user-only\r\n\n[remote \"x\"]\nurl=file:///a\\sb\n\
             gpg-verify=false\n[core]\nmode=archive-z2\n",
        )
        .expect("valid");
        assert_eq!(file.groups().collect::<Vec<_>>(), ["core", "remote \"x\""]);
        assert_eq!(
            file.string("core", "mode").expect("valid").as_deref(),
            Some("archive-z2")
        );
        assert_eq!(
            file.string("remote \"x\"", "url")
                .expect("valid")
                .as_deref(),
            Some("file:///a b")
        );
        assert_eq!(
            file.boolean("remote \"x\"", "gpg-verify").expect("valid"),
            Some(false)
        );
        assert_eq!(file.string("remote \"x\"", "missing").expect("valid"), None);
        assert_eq!(
            file.entries("remote \"x\"").expect("valid"),
            [
                ("gpg-verify".to_owned(), "false".to_owned()),
                ("url".to_owned(), "file:///a b".to_owned())
            ]
        );
    }

    #[test]
    fn rejects_malformed_lines() {
        assert!(KeyFile::parse("key=value\n").is_err(), "key before group");
        assert!(KeyFile::parse("[open\n").is_err());
        assert!(KeyFile::parse("[g]\njust words\n").is_err());
        let file = KeyFile::parse("[g]\nb=yes\ns=a\\q\n").expect("valid");
        assert!(file.boolean("g", "b").is_err());
        assert!(file.string("g", "s").is_err());
    }
}
