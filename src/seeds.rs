//! Seeds of sub-tasks: every random choice follows from the config's one
//! seed through [`derive_seed`].

/// A seed for a named sub-task (`"expert"`, `"eval"`, ...) and indices, so
/// every random choice follows from the config's one seed.
pub fn derive_seed(seed: u64, task: &str, indices: &[u64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in task.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    for i in indices {
        for b in i.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}
