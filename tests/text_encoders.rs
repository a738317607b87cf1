//! The checkpoint text encoders (BERT family, CLIP text tower) against
//! Hugging Face `transformers` on randomly initialised tiny checkpoints
//! (tests/fixtures/parity/{bert_tiny,minilm_style,clip_text_tiny}: a model
//! folder each, and the token ids, hidden states and pooled embeddings that
//! `transformers` computed for `expected.json`'s sentences), plus padding
//! invariance and the errors for missing or mismatched files.

mod common;

use candle_core::{DType, Device, Tensor};
use common::max_abs_diff;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use vl_distill::config::Config;
use vl_distill::data::scenes::{generate, ScenesConfig};
use vl_distill::text::{
    self, BertEncoder, CaptionEmbeddings, ClipTextEncoder, EncoderOptions, Pooling, TextEncoder,
};

const TOL: f32 = 1e-4;
/// Padding and batch composition change only the float rounding of the
/// matrix products (values up to ≈ 4 here: a few units in the last place).
const PAD_TOL: f32 = 1e-5;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn model(name: &str) -> PathBuf {
    fixture(name).join("model")
}

fn expected(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("expected.safetensors"), &Device::Cpu)
        .unwrap()
}

fn sentences(name: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture(name).join("expected.json")).unwrap(),
    )
    .unwrap();
    v["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// A number from a fixture's JSON file (so the tests follow a regenerated fixture).
fn json_usize(path: &Path, key: &str) -> usize {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{}: no {key}", path.display())) as usize
}

fn refs(s: &[String]) -> Vec<&str> {
    s.iter().map(String::as_str).collect()
}

fn opts() -> EncoderOptions {
    EncoderOptions::default()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    let d = max_abs_diff(got, want);
    eprintln!("{what}: max abs diff {d:e}");
    assert!(d <= tol, "{what}: max abs diff {d} > {tol}");
}

/// Recorded ids `[n, L]` (i64) and mask as per-row unpadded u32 lists.
fn recorded_ids(exp: &HashMap<String, Tensor>) -> Vec<Vec<u32>> {
    let ids = exp["input_ids"].to_vec2::<i64>().unwrap();
    let mask = exp["attention_mask"].to_vec2::<i64>().unwrap();
    ids.iter()
        .zip(&mask)
        .map(|(r, m)| {
            r.iter()
                .zip(m)
                .filter(|(_, m)| **m == 1)
                .map(|(t, _)| *t as u32)
                .collect()
        })
        .collect()
}

fn row(t: &Tensor, i: usize) -> Tensor {
    t.get(i).unwrap()
}

/// A copy of a fixture model folder in a temp dir, for tests that break it.
fn copy_folder(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&model(name), dir.path());
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

// ---------------------------------------------------------------- BERT

#[test]
fn bert_token_ids_equal_the_recorded_ones() {
    for name in ["bert_tiny", "minilm_style"] {
        let enc = BertEncoder::load(model(name), &opts(), &Device::Cpu).unwrap();
        let exp = expected(name);
        let s = sentences(name);
        let ids = enc.tokenize(&refs(&s)).unwrap();
        assert_eq!(ids, recorded_ids(&exp), "{name}");
        // padded the way transformers pads ([PAD] = 0), with the same mask
        let batch = enc.batch(&ids).unwrap();
        let want_ids = exp["input_ids"].to_dtype(DType::U32).unwrap();
        let want_mask = exp["attention_mask"].to_dtype(DType::U32).unwrap();
        assert_eq!(
            batch.input_ids.to_vec2::<u32>().unwrap(),
            want_ids.to_vec2::<u32>().unwrap()
        );
        assert_eq!(
            batch.attention_mask.to_vec2::<u32>().unwrap(),
            want_mask.to_vec2::<u32>().unwrap()
        );
        assert_eq!(enc.max_len(), 64, "min(128, max_position_embeddings 64)");
    }
}

#[test]
fn bert_matches_transformers_cls_mean_and_normalised() {
    let device = vl_distill::device::for_tests();
    let name = "bert_tiny";
    let exp = expected(name);
    let s = sentences(name);
    // a plain BERT folder: [CLS] pooling, no normalisation by default
    let enc = BertEncoder::load(model(name), &opts(), &device).unwrap();
    assert_eq!((enc.pooling(), enc.normalize()), (Pooling::Cls, false));
    assert_eq!(enc.dim(), 32);
    let ids = enc.tokenize(&refs(&s)).unwrap();
    let batch = enc.batch(&ids).unwrap();
    let hidden = enc.last_hidden_state(&batch).unwrap();
    assert_close("last_hidden_state", &hidden, &exp["last_hidden_state"], TOL);
    let cls = enc.encode(&refs(&s)).unwrap();
    assert_eq!(cls.device().location(), Device::Cpu.location());
    assert_close("cls", &cls, &exp["cls"], TOL);

    let mean = BertEncoder::load(
        model(name),
        &EncoderOptions {
            pooling: Some(Pooling::Mean),
            ..opts()
        },
        &device,
    )
    .unwrap();
    assert_close("mean", &mean.encode(&refs(&s)).unwrap(), &exp["mean"], TOL);
    let mean_l2 = BertEncoder::load(
        model(name),
        &EncoderOptions {
            pooling: Some(Pooling::Mean),
            normalize: Some(true),
            ..opts()
        },
        &device,
    )
    .unwrap();
    assert_close(
        "mean_normalized",
        &mean_l2.encode(&refs(&s)).unwrap(),
        &exp["mean_normalized"],
        TOL,
    );
    // the identity tells the three apart
    let ids = [enc.id(), mean.id(), mean_l2.id()];
    assert!(
        ids[0].starts_with("bert-model-cls-raw-len64-"),
        "{}",
        ids[0]
    );
    assert!(ids[1].contains("-mean-raw-"), "{}", ids[1]);
    assert!(ids[2].contains("-mean-l2-"), "{}", ids[2]);
}

#[test]
fn sentence_transformers_folder_defaults_to_its_mean_pooling_and_normalize() {
    let name = "minilm_style";
    let exp = expected(name);
    let s = sentences(name);
    let enc = BertEncoder::load(model(name), &opts(), &Device::Cpu).unwrap();
    assert_eq!((enc.pooling(), enc.normalize()), (Pooling::Mean, true));
    assert_eq!(
        enc.max_len(),
        64,
        "sentence_bert_config.json max_seq_length"
    );
    let emb = enc.encode(&refs(&s)).unwrap();
    assert_close("mean_normalized", &emb, &exp["mean_normalized"], TOL);
    let norms = emb.sqr().unwrap().sum(1).unwrap().to_vec1::<f32>().unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5), "{norms:?}");
    // explicit options override the folder
    let cls = BertEncoder::load(
        model(name),
        &EncoderOptions {
            pooling: Some(Pooling::Cls),
            normalize: Some(false),
            ..opts()
        },
        &Device::Cpu,
    )
    .unwrap();
    assert_close("cls", &cls.encode(&refs(&s)).unwrap(), &exp["cls"], TOL);
    assert_ne!(enc.id(), cls.id());
}

#[test]
fn bert_vocab_txt_builds_the_same_tokenizer() {
    let dir = copy_folder("bert_tiny");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let s = sentences("bert_tiny");
    let enc = BertEncoder::load(dir.path(), &opts(), &Device::Cpu).unwrap();
    assert_eq!(
        enc.tokenize(&refs(&s)).unwrap(),
        recorded_ids(&expected("bert_tiny"))
    );
    assert_close(
        "cls",
        &enc.encode(&refs(&s)).unwrap(),
        &expected("bert_tiny")["cls"],
        TOL,
    );
    // do_lower_case = false keeps capitals (which this vocabulary lacks)
    edit_json(&dir.path().join("tokenizer_config.json"), |v| {
        v["do_lower_case"] = false.into()
    });
    let cased = BertEncoder::load(dir.path(), &opts(), &Device::Cpu).unwrap();
    let vocab = std::fs::read_to_string(dir.path().join("vocab.txt")).unwrap();
    let unk = vocab.lines().position(|l| l == "[UNK]").unwrap() as u32;
    let ids = cased.tokenize(&["Two dogs"]).unwrap();
    assert!(ids[0].contains(&unk), "{ids:?}");
    assert_ne!(cased.id(), enc.id());
}

#[test]
fn bert_weights_with_a_bert_prefix_load_the_same() {
    let dir = copy_folder("bert_tiny");
    let w = dir.path().join("model.safetensors");
    let tensors = candle_core::safetensors::load(&w, &Device::Cpu).unwrap();
    let prefixed: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| (format!("bert.{k}"), v))
        .collect();
    candle_core::safetensors::save(&prefixed, &w).unwrap();
    let s = sentences("bert_tiny");
    let enc = BertEncoder::load(dir.path(), &opts(), &Device::Cpu).unwrap();
    assert_close(
        "cls",
        &enc.encode(&refs(&s)).unwrap(),
        &expected("bert_tiny")["cls"],
        TOL,
    );
}

// ---------------------------------------------------------------- CLIP

#[test]
fn clip_matches_transformers_text_embeds() {
    let device = vl_distill::device::for_tests();
    let name = "clip_text_tiny";
    let exp = expected(name);
    let s = sentences(name);
    let enc = ClipTextEncoder::load(model(name), &opts(), &device).unwrap();
    assert_eq!(enc.dim(), 24, "projection_dim");
    assert_eq!(enc.hidden_size(), 32);
    assert!(enc.has_projection() && !enc.normalize());
    let config = model(name).join("config.json");
    let eos = json_usize(&config, "eos_token_id") as u32;
    assert_eq!(eos as usize, json_usize(&config, "vocab_size") - 1);
    assert_eq!((enc.eos_id(), enc.pad_id(), enc.max_len()), (eos, eos, 16));
    let ids = enc.tokenize(&refs(&s)).unwrap();
    assert_eq!(ids, recorded_ids(&exp));
    assert!(
        ids.iter().any(|r| r.len() == 16),
        "the long caption is truncated"
    );
    assert!(
        ids.iter().all(|r| *r.last().unwrap() == eos),
        "ends with EOS"
    );
    let batch = enc.batch(&ids).unwrap();
    assert_eq!(
        batch.input_ids.to_vec2::<u32>().unwrap(),
        exp["input_ids"]
            .to_dtype(DType::U32)
            .unwrap()
            .to_vec2::<u32>()
            .unwrap()
    );
    // causal attention only: equal to transformers without a padding mask
    let hidden = enc.last_hidden_state(&batch).unwrap();
    assert_close(
        "last_hidden_state",
        &hidden,
        &exp["last_hidden_state_no_mask"],
        TOL,
    );
    assert_close("pooled", &enc.pooled(&ids).unwrap(), &exp["pooled"], TOL);
    let emb = enc.encode(&refs(&s)).unwrap();
    assert_close("text_embeds", &emb, &exp["text_embeds"], TOL);
    assert!(
        enc.id().starts_with("clip-model-eos-proj-raw-len16-"),
        "{}",
        enc.id()
    );

    let l2 = ClipTextEncoder::load(
        model(name),
        &EncoderOptions {
            normalize: Some(true),
            ..opts()
        },
        &device,
    )
    .unwrap();
    let want = vl_distill::text::checkpoint::l2_normalize(&exp["text_embeds"]).unwrap();
    assert_close("normalised", &l2.encode(&refs(&s)).unwrap(), &want, TOL);
    assert_ne!(l2.id(), enc.id());
}

#[test]
fn clip_without_projection_returns_the_pooled_state() {
    let dir = copy_folder("clip_text_tiny");
    let w = dir.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&w, &Device::Cpu).unwrap();
    assert!(tensors.remove("text_projection.weight").is_some());
    candle_core::safetensors::save(&tensors, &w).unwrap();
    let exp = expected("clip_text_tiny");
    let s = sentences("clip_text_tiny");
    let enc = ClipTextEncoder::load(dir.path(), &opts(), &Device::Cpu).unwrap();
    assert_eq!(enc.dim(), 32);
    assert_close(
        "pooled",
        &enc.encode(&refs(&s)).unwrap(),
        &exp["pooled"],
        TOL,
    );
}

#[test]
fn a_full_clip_config_with_text_config_is_read() {
    let dir = copy_folder("clip_text_tiny");
    let cfg = dir.path().join("config.json");
    edit_json(&cfg, |v| {
        let text = v.clone();
        *v = serde_json::json!({
            "model_type": "clip",
            "projection_dim": 24,
            "text_config": text,
            "vision_config": {"hidden_size": 64},
        });
        v["text_config"]["projection_dim"] = 512.into(); // the top level wins
    });
    let enc = ClipTextEncoder::load(dir.path(), &opts(), &Device::Cpu).unwrap();
    assert_eq!(enc.dim(), 24);
    let s = sentences("clip_text_tiny");
    assert_close(
        "text_embeds",
        &enc.encode(&refs(&s)).unwrap(),
        &expected("clip_text_tiny")["text_embeds"],
        TOL,
    );
}

// ---------------------------------------------------------- both encoders

/// The embedding of a caption alone equals its embedding in a batch with a
/// longer caption (padding) and does not depend on the batch size.
#[test]
fn padding_does_not_change_an_embedding() {
    let short = "Two dogs";
    let long = "the QUICK brown fox jumps over the lazy dog! a red circle above a blue square";
    let encoders: Vec<(&str, Box<dyn TextEncoder>)> = vec![
        (
            "bert cls",
            Box::new(BertEncoder::load(model("bert_tiny"), &opts(), &Device::Cpu).unwrap()),
        ),
        (
            "bert mean",
            Box::new(BertEncoder::load(model("minilm_style"), &opts(), &Device::Cpu).unwrap()),
        ),
        (
            "clip",
            Box::new(
                ClipTextEncoder::load(model("clip_text_tiny"), &opts(), &Device::Cpu).unwrap(),
            ),
        ),
    ];
    for (what, enc) in encoders {
        let alone = enc.encode(&[short]).unwrap();
        let padded = enc.encode(&[long, short, long]).unwrap();
        assert_eq!(padded.dims(), &[3, enc.dim()]);
        let d = max_abs_diff(&row(&alone, 0), &row(&padded, 1));
        assert!(d <= PAD_TOL, "{what}: padding changed the embedding by {d}");
        let d = max_abs_diff(&row(&padded, 0), &row(&padded, 2));
        assert_eq!(d, 0.0, "{what}: same caption, same batch");
        // rows come back in input order whatever the batching
        let many: Vec<&str> = [short, long, "a blue square", short, "two red circles"].repeat(3);
        let a = enc.encode(&many).unwrap();
        for (i, caption) in many.iter().enumerate() {
            let one = enc.encode(&[caption]).unwrap();
            let d = max_abs_diff(&row(&a, i), &row(&one, 0));
            assert!(
                d <= PAD_TOL,
                "{what}: caption {i} differs by {d} in a batch"
            );
        }
    }
}

#[test]
fn small_batches_give_the_same_embeddings() {
    let s = sentences("bert_tiny");
    let big = BertEncoder::load(model("bert_tiny"), &opts(), &Device::Cpu).unwrap();
    let small = BertEncoder::load(
        model("bert_tiny"),
        &EncoderOptions {
            batch_size: 1,
            ..opts()
        },
        &Device::Cpu,
    )
    .unwrap();
    let d = max_abs_diff(
        &big.encode(&refs(&s)).unwrap(),
        &small.encode(&refs(&s)).unwrap(),
    );
    assert!(d < 1e-6, "{d}");
    assert_eq!(big.id(), small.id(), "batch size changes no embedding");
    assert_eq!(big.encode(&[]).unwrap().dims(), &[0, 32]);
}

#[test]
fn max_len_truncates_and_is_part_of_the_identity() {
    let s = sentences("bert_tiny");
    let short = BertEncoder::load(
        model("bert_tiny"),
        &EncoderOptions {
            max_len: Some(5),
            ..opts()
        },
        &Device::Cpu,
    )
    .unwrap();
    let ids = short.tokenize(&refs(&s)).unwrap();
    assert!(ids.iter().all(|r| r.len() <= 5));
    let full = recorded_ids(&expected("bert_tiny"));
    // [CLS] + 3 tokens + [SEP]
    assert_eq!(ids[0][..4], full[0][..4]);
    assert_eq!(ids[0][4], *full[0].last().unwrap());
    let default = BertEncoder::load(model("bert_tiny"), &opts(), &Device::Cpu).unwrap();
    assert_ne!(short.id(), default.id());
    assert!(short.id().contains("-len5-"));
    // beyond the position table: refused with both numbers
    let err = BertEncoder::load(
        model("bert_tiny"),
        &EncoderOptions {
            max_len: Some(65),
            ..opts()
        },
        &Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("65") && err.contains("2..=64"), "{err}");
}

#[test]
fn missing_folder_or_files_are_named() {
    let nowhere = Path::new("/definitely/not/a/model");
    let err = BertEncoder::load(nowhere, &opts(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/definitely/not/a/model"), "{err}");
    let err = ClipTextEncoder::load(nowhere, &opts(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("/definitely/not/a/model"), "{err}");

    for (name, file) in [
        ("bert_tiny", "model.safetensors"),
        ("bert_tiny", "config.json"),
        ("minilm_style", "1_Pooling/config.json"),
        ("clip_text_tiny", "model.safetensors"),
        ("clip_text_tiny", "tokenizer.json"),
        ("clip_text_tiny", "config.json"),
    ] {
        let dir = copy_folder(name);
        std::fs::remove_file(dir.path().join(file)).unwrap();
        let err = if name.starts_with("clip") {
            ClipTextEncoder::load(dir.path(), &opts(), &Device::Cpu).unwrap_err()
        } else {
            BertEncoder::load(dir.path(), &opts(), &Device::Cpu).unwrap_err()
        }
        .to_string();
        let folder = dir.path().display().to_string();
        assert!(
            err.contains(&format!("text encoder folder {folder} has no {file}")),
            "{name} without {file}: {err}"
        );
    }
    // BERT needs tokenizer.json or vocab.txt
    let dir = copy_folder("bert_tiny");
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    std::fs::remove_file(dir.path().join("vocab.txt")).unwrap();
    let err = BertEncoder::load(dir.path(), &opts(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no tokenizer.json (nor vocab.txt)"),
        "{err}"
    );
    // a PyTorch checkpoint gets a hint
    let dir = copy_folder("bert_tiny");
    std::fs::rename(
        dir.path().join("model.safetensors"),
        dir.path().join("pytorch_model.bin"),
    )
    .unwrap();
    let err = BertEncoder::load(dir.path(), &opts(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("convert it to safetensors"), "{err}");
}

#[test]
fn mismatches_name_the_file_and_both_numbers() {
    let vocab = json_usize(&model("bert_tiny").join("config.json"), "vocab_size");
    // config hidden size vs the weights
    let dir = copy_folder("bert_tiny");
    edit_json(&dir.path().join("config.json"), |v| {
        v["hidden_size"] = 48.into()
    });
    let err = BertEncoder::load(dir.path(), &opts(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.safetensors")
            && err.contains(&format!("[{vocab}, 32]"))
            && err.contains(&format!("[{vocab}, 48]")),
        "{err}"
    );
    // a tokenizer with more ids than the model's vocabulary
    let dir = copy_folder("bert_tiny");
    edit_json(&dir.path().join("config.json"), |v| {
        v["vocab_size"] = (vocab - 10).into()
    });
    let err = BertEncoder::load(dir.path(), &opts(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokenizer.json")
            && err.contains(&format!("up to {}", vocab - 1))
            && err.contains(&format!("vocab_size is {}", vocab - 10)),
        "{err}"
    );
    // more layers in the weights than the config says
    let dir = copy_folder("bert_tiny");
    edit_json(&dir.path().join("config.json"), |v| {
        v["num_hidden_layers"] = 1.into()
    });
    let err = BertEncoder::load(dir.path(), &opts(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than the 1 layers"), "{err}");
    // a CLIP tokenizer whose end-of-text token is not the largest id
    let bos = json_usize(&model("clip_text_tiny").join("config.json"), "bos_token_id");
    let dir = copy_folder("clip_text_tiny");
    edit_json(&dir.path().join("tokenizer_config.json"), |v| {
        v["eos_token"] = "<|startoftext|>".into()
    });
    let err = ClipTextEncoder::load(dir.path(), &opts(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokenizer.json")
            && err.contains(&format!("id {}", bos))
            && err.contains(&format!("largest id is {}", bos + 1)),
        "{err}"
    );
    // CLIP projection vs config
    let dir = copy_folder("clip_text_tiny");
    edit_json(&dir.path().join("config.json"), |v| {
        v["projection_dim"] = 16.into()
    });
    let err = ClipTextEncoder::load(dir.path(), &opts(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("text_projection.weight")
            && err.contains("[24, 32]")
            && err.contains("[16, 32]"),
        "{err}"
    );
    // an activation candle's CLIP does not implement
    let dir = copy_folder("clip_text_tiny");
    edit_json(&dir.path().join("config.json"), |v| {
        v["hidden_act"] = "gelu".into()
    });
    let err = ClipTextEncoder::load(dir.path(), &opts(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("config.json") && err.contains("quick_gelu"),
        "{err}"
    );
    // an unsupported sentence-transformers pooling mode
    let dir = copy_folder("minilm_style");
    edit_json(&dir.path().join("1_Pooling/config.json"), |v| {
        v["pooling_mode_mean_tokens"] = false.into();
        v["pooling_mode_max_tokens"] = true.into();
    });
    let err = BertEncoder::load(dir.path(), &opts(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1_Pooling") && err.contains("pooling_mode_max_tokens"),
        "{err}"
    );
}

#[test]
fn from_config_builds_each_encoder_and_refuses_bad_options() {
    let mut c = Config::smoke();
    c.set("text.encoder", "bert").unwrap();
    let err = text::from_config(&c.text).err().unwrap().to_string();
    assert!(err.contains("text.path"), "{err}");
    c.set("text.path", &model("minilm_style").display().to_string())
        .unwrap();
    let enc = text::from_config(&c.text).unwrap();
    assert_eq!(enc.dim(), 32, "the checkpoint's hidden size, not text.dim");
    assert!(enc.id().contains("-mean-l2-"), "{}", enc.id());
    c.set("text.pooling", "cls").unwrap();
    c.set("text.normalize", "false").unwrap();
    c.set("text.max_len", "8").unwrap();
    let enc = text::from_config(&c.text).unwrap();
    assert!(enc.id().contains("-cls-raw-len8-"), "{}", enc.id());
    c.set("text.pooling", "max").unwrap();
    let err = text::from_config(&c.text).err().unwrap().to_string();
    assert!(
        err.contains("\"max\"") && err.contains("\"cls\" or \"mean\""),
        "{err}"
    );

    let mut c = Config::smoke();
    c.set("text.encoder", "clip").unwrap();
    c.set("text.path", &model("clip_text_tiny").display().to_string())
        .unwrap();
    assert_eq!(text::from_config(&c.text).unwrap().dim(), 24);
    c.set("text.pooling", "mean").unwrap();
    let err = text::from_config(&c.text).err().unwrap().to_string();
    assert!(err.contains("does not apply to clip"), "{err}");

    c.set("text.encoder", "elmo").unwrap();
    let err = text::from_config(&c.text).err().unwrap().to_string();
    assert!(err.contains("available: hashed, bert, clip"), "{err}");
}

#[test]
fn caption_cache_works_with_a_checkpoint_encoder() {
    let ds = generate(&ScenesConfig {
        seed: 4,
        image_size: 16,
        train: 6,
        val: 2,
        test: 2,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let enc = BertEncoder::load(model("minilm_style"), &opts(), &Device::Cpu).unwrap();
    let (a, hit) = CaptionEmbeddings::load_or_compute(dir.path(), &enc, &ds).unwrap();
    assert!(!hit);
    assert_eq!(
        a.train.dims(),
        &[ds.num_captions(vl_distill::data::Split::Train), 32]
    );
    let (b, hit) = CaptionEmbeddings::load_or_compute(dir.path(), &enc, &ds).unwrap();
    assert!(hit);
    assert_eq!(max_abs_diff(&a.test, &b.test), 0.0);
    // another pooling is another cache entry
    let cls = BertEncoder::load(
        model("minilm_style"),
        &EncoderOptions {
            pooling: Some(Pooling::Cls),
            ..opts()
        },
        &Device::Cpu,
    )
    .unwrap();
    assert_ne!(
        CaptionEmbeddings::cache_path(dir.path(), &enc, &ds),
        CaptionEmbeddings::cache_path(dir.path(), &cls, &ds)
    );
}
