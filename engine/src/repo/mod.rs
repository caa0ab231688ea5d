//! A repository on disk: config, refs, locks, reading and writing objects in every mode.
