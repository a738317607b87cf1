//! A built-in, deterministic sentence encoder for the offline default: hashed
//! bag of words and word bigrams (the "hashing trick"), L2-normalised.
//!
//! Each lowercase alphanumeric token and each pair of adjacent tokens is
//! hashed (FNV-1a, 64 bit) to a bucket in `0..dim` and a sign; the embedding
//! is the signed count vector divided by its norm. Bigrams keep some word
//! order ("red circle left of blue square" ≠ "blue circle left of red
//! square"). No weights, no download, identical on every machine.

use super::TextEncoder;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};

/// Hashed bag-of-words-and-bigrams encoder of dimension `dim`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedBowEncoder {
    dim: usize,
}

impl HashedBowEncoder {
    /// An encoder with `dim` buckets (384 matches MiniLM's size).
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::Config("hashed encoder dimension must be > 0".into()));
        }
        Ok(HashedBowEncoder { dim })
    }

    /// Lowercase alphanumeric tokens of `text`.
    pub fn tokens(text: &str) -> Vec<String> {
        text.split(|c: char| !c.is_alphanumeric())
            .filter(|t| !t.is_empty())
            .map(str::to_lowercase)
            .collect()
    }

    fn add(&self, v: &mut [f32], feature: &str) {
        let h = fnv1a(feature.as_bytes());
        let bucket = (h % self.dim as u64) as usize;
        let sign = if (h >> 63) & 1 == 0 { 1.0 } else { -1.0 };
        v[bucket] += sign;
    }

    /// The embedding of one text as a vector.
    pub fn embed(&self, text: &str) -> Vec<f32> {
        let toks = Self::tokens(text);
        let mut v = vec![0f32; self.dim];
        for t in &toks {
            self.add(&mut v, t);
        }
        for w in toks.windows(2) {
            self.add(&mut v, &format!("{} {}", w[0], w[1]));
        }
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        }
        v
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl TextEncoder for HashedBowEncoder {
    fn id(&self) -> String {
        format!("hashed-bow-bigram-v1-d{}", self.dim)
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn encode(&self, texts: &[&str]) -> Result<Tensor> {
        let mut data = Vec::with_capacity(texts.len() * self.dim);
        for t in texts {
            data.extend(self.embed(t));
        }
        Ok(Tensor::from_vec(
            data,
            (texts.len(), self.dim),
            &Device::Cpu,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_normalised_and_order_aware() {
        let e = HashedBowEncoder::new(384).unwrap();
        let a = e.embed("A red circle left of a blue square.");
        assert_eq!(a, e.embed("a red circle left of a blue square"));
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        let swapped = e.embed("a blue circle left of a red square");
        let other = e.embed("three green triangles on grass");
        assert!(cos(&a, &swapped) < 0.99, "bigrams must see word order");
        assert!(cos(&a, &swapped) > cos(&a, &other));
        assert!(e.embed("").iter().all(|x| *x == 0.0));
        assert!(HashedBowEncoder::new(0).is_err());
        let t = e.encode(&["x y", "z"]).unwrap();
        assert_eq!(t.dims(), &[2, 384]);
    }
}
