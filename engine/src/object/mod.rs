//! OSTree object formats: checksums, object kinds, GVariant views of metadata objects,
//! content headers and name validation. Pure functions over bytes; no I/O.

pub mod checksum;

pub use checksum::{Checksum, InvalidChecksum};
