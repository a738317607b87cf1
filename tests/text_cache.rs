//! The caption-embedding cache: computed once, reused, keyed by encoder and
//! captions, and a damaged cache file is an error naming it.

use vl_distill::data::scenes::{generate, ScenesConfig};
use vl_distill::text::{CaptionEmbeddings, HashedBowEncoder, TextEncoder};

fn data(seed: u64) -> vl_distill::data::Dataset {
    generate(&ScenesConfig {
        seed,
        image_size: 16,
        train: 10,
        val: 3,
        test: 4,
    })
    .unwrap()
}

#[test]
fn embeddings_are_cached_per_encoder_and_content() {
    let dir = tempfile::tempdir().unwrap();
    let ds = data(1);
    let enc = HashedBowEncoder::new(64).unwrap();
    let (a, hit) = CaptionEmbeddings::load_or_compute(dir.path(), &enc, &ds).unwrap();
    assert!(!hit);
    assert_eq!(a.train.dims(), &[50, 64]);
    assert_eq!(a.test.dims(), &[20, 64]);
    let (b, hit) = CaptionEmbeddings::load_or_compute(dir.path(), &enc, &ds).unwrap();
    assert!(hit);
    let diff = (a.val - b.val).unwrap().abs().unwrap().sum_all().unwrap();
    assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    // another encoder or other captions get their own entry
    let other = HashedBowEncoder::new(32).unwrap();
    assert_ne!(
        CaptionEmbeddings::cache_path(dir.path(), &enc, &ds),
        CaptionEmbeddings::cache_path(dir.path(), &other, &ds)
    );
    assert_ne!(
        CaptionEmbeddings::cache_path(dir.path(), &enc, &ds),
        CaptionEmbeddings::cache_path(dir.path(), &enc, &data(2))
    );
    assert!(enc.id().contains("64"));
}

#[test]
fn a_damaged_cache_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ds = data(3);
    let enc = HashedBowEncoder::new(16).unwrap();
    let path = CaptionEmbeddings::cache_path(dir.path(), &enc, &ds);
    std::fs::write(&path, b"garbage").unwrap();
    let err = CaptionEmbeddings::load_or_compute(dir.path(), &enc, &ds)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(path.file_name().unwrap().to_str().unwrap()),
        "{err}"
    );
}
