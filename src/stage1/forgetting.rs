//! Forgetting events per training pair (Toneva et al., 2019), counted while
//! an expert trains: what the forgetting coreset ranks pairs by.

use crate::data::captioned_images::check_pairs_fit;
use crate::error::{Error, Result};
use crate::seeds::derive_seed;
use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Forgetting events per training pair (Toneva et al., 2019), counted while
/// a model trains on minibatches.
///
/// "Correct" in the contrastive setting: within its minibatch, a pair's
/// image retrieves its own caption first (the row's largest logit) **and**
/// its caption retrieves its own image first (the column's largest logit);
/// see [`batch_correct`]. A forgetting event is a presentation at which a
/// pair is not correct after having been correct at its previous
/// presentation. Pairs never correct at any presentation count as forgotten
/// more than any other (as in the paper, "never learned" ranks first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgettingCounts {
    last: Vec<Option<bool>>,
    ever_correct: Vec<bool>,
    events: Vec<u32>,
}

impl ForgettingCounts {
    /// Counters for `n` training pairs, none presented yet.
    pub fn new(n: usize) -> Self {
        ForgettingCounts {
            last: vec![None; n],
            ever_correct: vec![false; n],
            events: vec![0; n],
        }
    }

    /// Records one presentation of the pairs `pairs`, `correct[j]` telling
    /// whether `pairs[j]` was correct.
    pub fn record(&mut self, pairs: &[u32], correct: &[bool]) -> Result<()> {
        if pairs.len() != correct.len() {
            return Err(Error::Shape(format!(
                "{} pairs but {} correctness flags",
                pairs.len(),
                correct.len()
            )));
        }
        for (&p, &c) in pairs.iter().zip(correct) {
            let p = p as usize;
            if p >= self.events.len() {
                return Err(Error::Shape(format!(
                    "pair {p} of {} counted",
                    self.events.len()
                )));
            }
            if self.last[p] == Some(true) && !c {
                self.events[p] += 1;
            }
            self.last[p] = Some(c);
            self.ever_correct[p] |= c;
        }
        Ok(())
    }

    /// Number of pairs counted.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether no pair is counted.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Forgetting events of every pair (never-learned pairs report their
    /// count too; [`ForgettingCounts::select`] ranks them first).
    pub fn events(&self) -> &[u32] {
        &self.events
    }

    /// Whether pair `p` was ever correct.
    pub fn ever_learned(&self, p: usize) -> bool {
        self.ever_correct[p]
    }

    /// The `m` most-forgotten pairs, at most one per image (`owner`): never
    /// learned first, then by forgetting events, ties in an order drawn
    /// from `seed`.
    pub fn select(&self, owner: &[u32], m: usize, seed: u64) -> Result<Vec<usize>> {
        check_pairs_fit(m, owner, self.events.len())?;
        let mut order: Vec<usize> = (0..self.events.len()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "forgetting", &[m as u64]));
        order.shuffle(&mut rng);
        let key = |p: usize| {
            if self.ever_correct[p] {
                self.events[p] as u64
            } else {
                u64::MAX
            }
        };
        order.sort_by_key(|&p| std::cmp::Reverse(key(p)));
        let mut used_image = std::collections::HashSet::new();
        Ok(order
            .into_iter()
            .filter(|&p| used_image.insert(owner[p]))
            .take(m)
            .collect())
    }
}

/// Per pair of a minibatch, whether it is matched both ways in the
/// `[B, B]` image × caption similarity matrix `logits`: row i's largest
/// entry is at column i and column i's largest entry is at row i.
pub fn batch_correct(logits: &Tensor) -> Result<Vec<bool>> {
    let (b, c) = logits.dims2()?;
    if b != c {
        return Err(Error::Shape(format!("logits {b}×{c} are not square")));
    }
    let rows = logits.argmax(1)?.to_vec1::<u32>()?;
    let cols = logits.argmax(0)?.to_vec1::<u32>()?;
    Ok((0..b)
        .map(|i| rows[i] as usize == i && cols[i] as usize == i)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn forgetting_counts_a_scripted_history() {
        let mut c = ForgettingCounts::new(4);
        // pair 0: learned, forgotten, learned, forgotten → 2 events
        // pair 1: never learned; pair 2: always right → 0; pair 3: 1 event
        let history: [(&[u32], &[bool]); 4] = [
            (&[0, 1, 2, 3], &[true, false, true, false]),
            (&[0, 1, 2, 3], &[false, false, true, true]),
            (&[0, 3], &[true, false]),
            (&[0, 2], &[false, true]),
        ];
        for (pairs, correct) in history {
            c.record(pairs, correct).unwrap();
        }
        assert_eq!(c.events(), &[2, 0, 0, 1]);
        assert!(!c.ever_learned(1) && c.ever_learned(2));
        let owner: Vec<u32> = (0..4).collect();
        assert_eq!(c.select(&owner, 3, 0).unwrap(), vec![1, 0, 3]);
        assert_eq!(c.select(&owner, 4, 9).unwrap(), vec![1, 0, 3, 2]);
        assert!(c.select(&owner, 5, 0).is_err());
        assert!(c.record(&[4], &[true]).is_err());
        assert!(c.record(&[0, 1], &[true]).is_err());
    }

    #[test]
    fn correct_means_matched_both_ways() {
        // pair 0 matched both ways; pair 1's image prefers caption 2;
        // pair 2's caption is retrieved by image 1 first
        let logits = Tensor::new(
            &[[5.0f32, 1.0, 0.0], [0.0, 2.0, 3.0], [1.0, 0.0, 2.5]],
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(batch_correct(&logits).unwrap(), vec![true, false, false]);
        assert!(batch_correct(&logits.narrow(0, 0, 2).unwrap()).is_err());
    }
}
