//! The fuzz targets' code. `entries.rs` is also compiled into the hook's replay test
//! (`hook/tests/fuzz_corpus.rs`), so the corpus and found crashes run through the same code.

pub mod entries;
