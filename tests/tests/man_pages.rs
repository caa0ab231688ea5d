//! The manual pages and shell completions that `make install` generates document every
//! subcommand and every long option, as the binaries' own `--help` lists them.

use std::path::Path;

use ferry_tests::bins::{ferry_hook, ferryctl};

/// The lines of one section (`Commands:`, `Options:`) of a `--help` text: indented, with
/// blank lines between entries in the long form.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|line| *line != title)
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with(' '))
        .collect()
}

/// The subcommands a `--help` text lists, without clap's own `help`.
fn subcommands(help: &str) -> Vec<String> {
    section(help, "Commands:")
        .iter()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The long options a `--help` text lists, without their dashes: `verbose`, `only-from`.
fn long_flags(help: &str) -> Vec<String> {
    let mut flags = Vec::new();
    for line in section(help, "Options:") {
        let line = line.trim_start();
        if !line.starts_with('-') {
            continue;
        }
        // The option's spelling ends where its description starts.
        let spec = line.split("  ").next().unwrap_or(line);
        for word in spec.split([' ', ',']) {
            if let Some(name) = word.strip_prefix("--") {
                let name = name.split(['=', '<', '.']).next().unwrap();
                flags.push(name.to_owned());
            }
        }
    }
    assert!(!flags.is_empty(), "no long options found in:\n{help}");
    flags
}

/// Whether `needle` occurs in `text` as a whole word: `--from` does not count for `--from-x`.
fn has_word(text: &str, needle: &str) -> bool {
    text.match_indices(needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        let joins = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '-');
        let word_starts = !needle.starts_with(char::is_alphanumeric) || !joins(before);
        word_starts && !joins(after)
    })
}

/// A page's text with roff's escaped hyphens made plain.
fn read_page(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no manual page {}: {e}", path.display()))
        .replace("\\-", "-")
}

fn help_of(path: &[String]) -> String {
    ferryctl()
        .unwrap()
        .args(path)
        .arg("--help")
        .stdout()
        .unwrap()
}

/// Every subcommand path of ferryctl, from its `--help`: `[]`, `["install"]`, `["delta",
/// "generate"]`, ...
fn command_tree() -> Vec<Vec<String>> {
    let mut tree = Vec::new();
    let mut pending = vec![Vec::<String>::new()];
    while let Some(path) = pending.pop() {
        for name in subcommands(&help_of(&path)) {
            let mut child = path.clone();
            child.push(name);
            pending.push(child);
        }
        tree.push(path);
    }
    tree
}

#[test]
fn ferryctl_pages_name_every_subcommand_and_long_option() {
    let dir = tempfile::tempdir().unwrap();
    ferryctl()
        .unwrap()
        .arg("generate-man")
        .arg(dir.path())
        .run()
        .unwrap();
    let tree = command_tree();
    assert!(tree.len() > 7, "too few subcommands found: {tree:?}");
    for path in &tree {
        let name = std::iter::once("ferryctl")
            .chain(path.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("-");
        let page = read_page(&dir.path().join(format!("{name}.1")));
        assert!(
            page.contains(&format!(".TH {name} 1")),
            "{name}.1 has no title"
        );
        for flag in long_flags(&help_of(path)) {
            assert!(
                page.contains(&format!("\\fB--{flag}\\fR")),
                "{name}.1 does not document --{flag}"
            );
        }
        for sub in subcommands(&help_of(path)) {
            assert!(
                page.contains(&format!("{name}-{sub}(1)")),
                "{name}.1 does not refer to {name}-{sub}(1)"
            );
        }
    }
    // The packaging helpers stay out of the pages.
    let root = read_page(&dir.path().join("ferryctl.1"));
    assert!(
        !root.contains("generate-man"),
        "ferryctl.1 lists generate-man"
    );
}

#[test]
fn ferryctl_completes_every_subcommand_and_long_option_in_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    let tree = command_tree();
    for (shell, file, option_prefix) in [
        ("bash", "ferryctl.bash", "--"),
        ("zsh", "_ferryctl", "--"),
        ("fish", "ferryctl.fish", "-l "),
    ] {
        ferryctl()
            .unwrap()
            .args(["generate-completions", shell])
            .arg(dir.path())
            .run()
            .unwrap();
        let script = std::fs::read_to_string(dir.path().join(file))
            .unwrap_or_else(|e| panic!("no {shell} completion {file}: {e}"));
        for path in &tree {
            if let Some(name) = path.last() {
                assert!(
                    has_word(&script, name),
                    "the {shell} completion lacks {name}"
                );
            }
            for flag in long_flags(&help_of(path)) {
                assert!(
                    has_word(&script, &format!("{option_prefix}{flag}")),
                    "the {shell} completion lacks --{flag} of {path:?}"
                );
            }
        }
        assert!(
            !script.contains("generate-man"),
            "the {shell} completion offers generate-man"
        );
    }
}

#[test]
fn ferry_hook_page_documents_every_long_option_in_section_8() {
    let dir = tempfile::tempdir().unwrap();
    ferry_hook()
        .unwrap()
        .arg("--generate-man")
        .arg(dir.path())
        .run()
        .unwrap();
    let page = read_page(&dir.path().join("ferry-hook.8"));
    assert!(
        page.contains(".TH ferry-hook 8"),
        "ferry-hook.8 has no title"
    );
    let help = ferry_hook().unwrap().arg("--help").stdout().unwrap();
    for flag in long_flags(&help) {
        assert!(
            page.contains(&format!("\\fB--{flag}\\fR")),
            "ferry-hook.8 does not document --{flag}"
        );
    }
    assert!(
        !page.contains("generate-man"),
        "ferry-hook.8 lists --generate-man"
    );
}

/// The hand-written ferry.conf(5) describes every key of the example policy, and no other.
#[test]
fn ferry_conf_page_describes_the_keys_of_the_example_policy() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let example = std::fs::read_to_string(root.join("data/ferry.conf")).unwrap();
    let keys: Vec<&str> = example
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('=').map(|(key, _)| key.trim()))
        .collect();
    assert!(keys.len() >= 7, "too few keys in data/ferry.conf: {keys:?}");
    let page = read_page(&root.join("data/man/ferry.conf.5"));
    let documented: Vec<&str> = page
        .lines()
        .filter_map(|line| line.strip_prefix(".BR ").or(line.strip_prefix(".BI ")))
        .filter(|line| line.contains("\" = \""))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        documented, keys,
        "ferry.conf.5 and data/ferry.conf differ in keys"
    );
}
