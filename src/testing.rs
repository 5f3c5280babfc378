//! Helpers the unit tests share. Test builds only; never in a release.

/// A xorshift64 generator from `seed` (not zero): reproducible test data
/// without a dependency.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    debug_assert!(seed != 0, "xorshift stays at zero");
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
