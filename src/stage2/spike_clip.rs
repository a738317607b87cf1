//! Spike clipping of the matching gradient (`distill.clip_spikes`).
//!
//! Most outer iterations give gradients of similar size; now and then an
//! unroll from an expert start the set fits badly gives one tens of times
//! larger, and a step of the usual rate along it throws the set far from
//! where the other experts pull it. The rule here scales such a gradient
//! down to `factor` times the median of the recent norms, leaving every
//! ordinary gradient exactly as it is.

use crate::config::{SPIKE_WARMUP, SPIKE_WINDOW};

/// The factor (at most 1) that brings a gradient of norm `norm` down to
/// `factor` × the median of the last [`SPIKE_WINDOW`] norms in `previous`
/// (oldest first); 1 while fewer than [`SPIKE_WARMUP`] are known, and for
/// any gradient within the bound.
pub fn spike_scale(norm: f64, previous: &[f64], factor: f64) -> f64 {
    if previous.len() < SPIKE_WARMUP {
        return 1.0;
    }
    let mut recent: Vec<f64> = previous[previous.len().saturating_sub(SPIKE_WINDOW)..].to_vec();
    recent.sort_by(f64::total_cmp);
    let k = recent.len();
    let median = if k % 2 == 1 {
        recent[k / 2]
    } else {
        0.5 * (recent[k / 2 - 1] + recent[k / 2])
    };
    let bound = factor * median;
    if norm > bound && bound > 0.0 {
        bound / norm
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_clipped_during_the_warm_up() {
        let few = vec![1.0; SPIKE_WARMUP - 1];
        assert_eq!(spike_scale(1000.0, &few, 3.0), 1.0);
    }

    #[test]
    fn a_spike_is_scaled_to_the_bound_and_ordinary_norms_are_untouched() {
        // median of 1..=11 is 6
        let previous: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(spike_scale(18.0, &previous, 3.0), 1.0);
        assert_eq!(spike_scale(5.0, &previous, 3.0), 1.0);
        let s = spike_scale(36.0, &previous, 3.0);
        assert!((s * 36.0 - 18.0).abs() < 1e-12, "{s}");
        // an even count takes the middle pair's mean: median of 1..=12 is 6.5
        let even: Vec<f64> = (1..=12).map(f64::from).collect();
        assert!((spike_scale(39.0, &even, 2.0) * 39.0 - 13.0).abs() < 1e-12);
    }

    #[test]
    fn only_the_recent_window_counts() {
        // a long early stretch of large norms, then a window of small ones
        let mut previous = vec![100.0; 200];
        previous.extend(std::iter::repeat_n(1.0, SPIKE_WINDOW));
        let s = spike_scale(10.0, &previous, 2.0);
        assert!((s * 10.0 - 2.0).abs() < 1e-12, "{s}");
    }
}
