//! Fetching a commit closure from sources, verifying every object, and storing it.

pub mod schedule;
