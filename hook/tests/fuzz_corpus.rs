//! Replays the fuzz corpus and every crash the fuzzers found (`fuzz/corpus/<target>/`,
//! `fuzz/artifacts/<target>/`) through the same entries the fuzz targets call, so a fixed
//! crash stays fixed without nightly or libFuzzer. The entries live in the fuzz crate; the
//! hook's tests host them because they reach both the engine and the hook's policy parser.

#[path = "../../fuzz/src/entries.rs"]
mod entries;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("corpus entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_an_entry_and_a_seed_corpus() {
    let mut declared: Vec<String> = files_in(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .map(|path| {
            path.file_stem()
                .expect("name")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    declared.sort();
    let mut entries: Vec<String> = entries::TARGETS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    entries.sort();
    assert_eq!(
        declared, entries,
        "fuzz_targets/*.rs and entries::TARGETS differ"
    );
    for (name, _) in entries::TARGETS {
        let seeds = files_in(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz/corpus/{name}/ has no seed inputs");
    }
}

#[test]
fn every_corpus_and_crash_input_is_handled_without_a_panic() {
    // The entries' own panics are the failures; keep the default hook from printing each.
    let mut failures = Vec::new();
    let mut replayed = 0;
    for (name, entry) in entries::TARGETS {
        for kind in ["corpus", "artifacts"] {
            for path in files_in(&fuzz_dir().join(kind).join(name)) {
                let data = std::fs::read(&path).expect("read input");
                replayed += 1;
                if catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
                    failures.push(path.display().to_string());
                }
            }
        }
    }
    assert!(replayed >= entries::TARGETS.len());
    assert!(failures.is_empty(), "inputs that panic: {failures:#?}");
}
