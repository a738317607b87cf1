//! Memory allocation for candle on the CPU.
//!
//! Every candle op allocates a fresh output buffer, and one reverse-sweep
//! step of stage 2 allocates and frees gigabytes of activations and
//! gradients (one step's double-backward graph). An allocator that hands
//! freed memory back to the OS pays for it again as page faults (the kernel
//! zeroes every page on first touch), as system time.
//!
//! With the default `mimalloc` feature the crate uses mimalloc as the global
//! allocator, and [`tune`] turns off its purging, so freed memory is kept for
//! reuse for the life of the process (the resident size stays at its peak).
//! Without the feature (a program with its own global allocator), [`tune`]
//! sets glibc's top pad and trim threshold to 1 GiB and uses one arena. The
//! allocators compared are in `docs/measurements.md`.

use std::sync::Once;

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

static TUNE: Once = Once::new();

/// `mi_option_purge_delay` in the pinned mimalloc's `mi_option_t` enum
/// (libmimalloc-sys 0.1.49 does not name it). The crate builds mimalloc v3
/// unless its `v2` feature is on; the index is 15 in both, the default value
/// is 1000 ms in v3 and 10 ms in v2.
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Applies the allocator settings once per process.
pub fn tune() {
    TUNE.call_once(|| {
        #[cfg(feature = "mimalloc")]
        // SAFETY: reading and setting an option of the linked mimalloc; the
        // option is checked to hold one of the purge delay's defaults first
        // (an environment variable MIMALLOC_PURGE_DELAY overrides both and
        // is left alone).
        unsafe {
            let delay = libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY);
            if delay == 1000 || delay == 10 {
                // -1: never purge, keep freed pages for reuse
                libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
            }
        }
        #[cfg(all(not(feature = "mimalloc"), target_os = "linux", target_env = "gnu"))]
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

/// True when the purge delay of mimalloc is off (after [`tune`]), i.e. freed
/// memory is kept for reuse; false without the `mimalloc` feature.
#[cfg(test)]
fn keeps_freed_memory() -> bool {
    #[cfg(feature = "mimalloc")]
    // SAFETY: reads an option of the linked mimalloc.
    unsafe {
        libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) < 0
    }
    #[cfg(not(feature = "mimalloc"))]
    false
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(feature = "mimalloc")]
    fn tune_turns_purging_off() {
        super::tune();
        assert!(super::keeps_freed_memory());
    }
}
