//! Allocator tuning for candle on the CPU.
//!
//! Every candle op allocates a fresh output buffer, and training frees and
//! re-allocates activations of tens of MB many times a second. With glibc's
//! default settings the heap is grown and trimmed back around each of them,
//! which shows up as system time. Asking glibc to keep 1 GiB of slack at the
//! top of the heap (`M_TOP_PAD`) and not to trim below 1 GiB measured
//! 870 ms → 605 ms per forward + backward of the default profile's model
//! (batch 128, 2 cores). Memory returns to the OS only above that slack.
//! Limiting glibc to one arena, so the second-order worker threads share that
//! heap, measured 3.1 s → 2.0 s per reverse-sweep step (100 pairs, default
//! model; `cargo bench --bench step`).

use std::sync::Once;

static TUNE: Once = Once::new();

/// Applies the allocator settings once per process (glibc on Linux; a no-op elsewhere).
pub fn tune() {
    TUNE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes glibc's tuning parameters; it is
        // called once, with valid parameter codes and values.
        unsafe {
            libc::mallopt(libc::M_TOP_PAD, 1 << 30);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
            // one arena: the second-order worker threads then reuse the same
            // padded heap instead of mapping fresh memory for every tensor
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    });
}
