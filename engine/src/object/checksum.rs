//! SHA-256 object checksums as OSTree names them; the type lives in `ferry-schema`, which
//! writes them into JSON.

pub use ferry_schema::{Checksum, InvalidChecksum};
