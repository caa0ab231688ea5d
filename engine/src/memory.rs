//! How the process's heap gives memory back. Verifying a commit may briefly take tens of
//! megabytes; glibc's default raises its mmap threshold after such a buffer is freed, so the
//! next ones come from per-thread heaps that keep the memory. Fixing the threshold makes every
//! large buffer its own mapping, returned to the system when freed: a listing's peak stays
//! near what it holds at once rather than the sum over its threads.

/// Buffers of this size or more are mapped on their own (glibc's initial threshold).
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Call once at start, before threads are spawned.
// mallopt has no safe wrapper.
#[allow(unsafe_code)]
pub fn return_large_buffers() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a glibc tunable; called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
