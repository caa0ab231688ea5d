//! Finding OSTree repositories on a drive without leaving it.
