//! The real all-MiniLM-L6-v2 (from PyPI, unpacked by
//! `data-scripts/fetch_minilm.sh`) through the `bert` text encoder, against
//! the embeddings the Python sentence-transformers package computed for the
//! same sentences (`tests/fixtures/minilm/reference.json`, recorded once by
//! `data-scripts/minilm/record_reference.py`), and as a sentence encoder:
//! paraphrases nearer than unrelated sentences.
//!
//! The model folder is not in the repository. Without it these tests print
//! why and pass; with `VL_DISTILL_REQUIRE_DATA=1` (as `.ci/run` sets after
//! running the fetch script) a missing folder fails them.

use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use vl_distill::text::{BertEncoder, EncoderOptions, TextEncoder};

/// Largest allowed |Rust − Python| per embedding coordinate. The vectors
/// are unit length (384 coordinates, typically ≈ 0.05 each); f32 matrix
/// products in another order differ by a few 1e-7.
const TOL: f32 = 1e-5;

fn model_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/models/all-MiniLM-L6-v2");
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    let msg = format!(
        "{} is absent: run data-scripts/fetch_minilm.sh to test the real all-MiniLM-L6-v2",
        dir.display()
    );
    if std::env::var_os("VL_DISTILL_REQUIRE_DATA").is_some_and(|v| v == "1") {
        panic!("{msg} (VL_DISTILL_REQUIRE_DATA=1)");
    }
    eprintln!("skipped: {msg}");
    None
}

struct Reference {
    sentences: Vec<String>,
    input_ids: Vec<Vec<u32>>,
    embeddings: Vec<Vec<f32>>,
    max_seq_length: usize,
}

fn reference() -> Reference {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm/reference.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let rows = |k: &str| -> Vec<Vec<f64>> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            })
            .collect()
    };
    Reference {
        sentences: strings("sentences"),
        input_ids: rows("input_ids")
            .into_iter()
            .map(|r| r.into_iter().map(|x| x as u32).collect())
            .collect(),
        embeddings: rows("embeddings")
            .into_iter()
            .map(|r| r.into_iter().map(|x| x as f32).collect())
            .collect(),
        max_seq_length: v["max_seq_length"].as_u64().unwrap() as usize,
    }
}

fn encoder(dir: &Path) -> BertEncoder {
    BertEncoder::load(dir, &EncoderOptions::default(), &Device::Cpu).unwrap()
}

fn rows(t: &Tensor) -> Vec<Vec<f32>> {
    t.to_vec2::<f32>().unwrap()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

#[test]
fn minilm_matches_sentence_transformers() {
    let Some(dir) = model_dir() else { return };
    let r = reference();
    let enc = encoder(&dir);
    // the folder's own settings: mean pooling, normalised, 384-d
    assert_eq!(enc.dim(), 384);
    let texts: Vec<&str> = r.sentences.iter().map(String::as_str).collect();
    let ids = enc.tokenize(&texts[..r.input_ids.len()]).unwrap();
    assert_eq!(
        ids, r.input_ids,
        "token ids differ from the Python tokenizer's"
    );
    // the long sentence is cut at the folder's max_seq_length
    let long = enc.tokenize(&texts[texts.len() - 1..]).unwrap();
    assert_eq!(long[0].len(), r.max_seq_length);
    let got = rows(&enc.encode(&texts).unwrap());
    assert_eq!(got.len(), r.embeddings.len());
    let mut worst = 0f32;
    for (g, e) in got.iter().zip(&r.embeddings) {
        assert_eq!(g.len(), e.len());
        for (a, b) in g.iter().zip(e) {
            worst = worst.max((a - b).abs());
        }
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "not unit length: {norm}");
    }
    assert!(worst < TOL, "max |Rust - Python| = {worst:e}");
    eprintln!("all-MiniLM-L6-v2 vs sentence-transformers: max abs diff {worst:e}");
}

#[test]
fn minilm_puts_paraphrases_nearer_than_unrelated_sentences() {
    let Some(dir) = model_dir() else { return };
    let enc = encoder(&dir);
    let pairs = [
        (
            "A man is riding a horse on the beach.",
            "Someone rides a horse along the sea shore.",
        ),
        (
            "Two dogs are playing with a ball in the park.",
            "A pair of puppies chase a ball on the grass.",
        ),
        ("a grinning face", "a smiling face with big teeth"),
        ("a small red car", "a little crimson automobile"),
    ];
    let unrelated = [
        "The stock market fell sharply this morning.",
        "Quantum computers use qubits instead of bits.",
        "She baked bread in a wood-fired oven.",
    ];
    for (a, b) in pairs {
        let e = rows(&enc.encode(&[a, b]).unwrap());
        let near = cos(&e[0], &e[1]);
        for u in unrelated {
            let eu = rows(&enc.encode(&[u]).unwrap());
            let far = cos(&e[0], &eu[0]).max(cos(&e[1], &eu[0]));
            assert!(
                near > far + 0.2,
                "{a:?} ~ {b:?}: {near:.3}, but {u:?} is at {far:.3}"
            );
        }
    }
}
