//! Parity of the image towers with timm: small configurations built by
//! `data-scripts/parity/make_fixtures.py` from random weights, whose timm
//! outputs are committed under `tests/fixtures/parity/`; and, for the full
//! registered configurations, parameter names and shapes against what timm
//! records (`full_size.json`).

mod common;

use candle_core::{DType, Device};
use common::max_abs_diff;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::path::{Path, PathBuf};
use vl_distill::model::checkpoint::load_like;
use vl_distill::model::{ops, ImageEncoder, NfCfg, NfNet, ParamSet, Vit, VitCfg};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn vit_cfg(v: &Value) -> VitCfg {
    let first = |k: &str| -> usize {
        match &v[k] {
            Value::Array(a) => a[0].as_u64().unwrap() as usize,
            x => x.as_u64().unwrap() as usize,
        }
    };
    VitCfg {
        img_size: first("img_size"),
        patch_size: first("patch_size"),
        embed_dim: first("embed_dim"),
        depth: first("depth"),
        num_heads: first("num_heads"),
        mlp_ratio: v["mlp_ratio"].as_f64().unwrap_or(4.0),
    }
}

/// The tower a fixture's `config.json` describes, and the name of its
/// classifier's weight.
fn tower(cfg: &Value) -> (Box<dyn ImageEncoder>, &'static str) {
    if let Some(nf) = cfg.get("cfg") {
        let c: NfCfg = serde_json::from_value(nf.clone()).unwrap();
        (Box::new(NfNet::new("fixture", c).unwrap()), "head.fc")
    } else {
        let v = cfg.get("vit_resolved").unwrap_or(&cfg["vit"]);
        (Box::new(Vit::new("fixture", vit_cfg(v)).unwrap()), "head")
    }
}

fn check_fixture(name: &str, weights_of: &str) {
    let dir = fixtures().join(name);
    let cfg = json(&dir.join("config.json"));
    let (enc, head) = tower(&cfg);
    assert_eq!(
        enc.out_dim(),
        cfg["num_features"].as_u64().unwrap() as usize
    );
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let template = enc.init(&mut rng, &dev, DType::F32).unwrap();
    let weights = fixtures().join(weights_of).join("weights.safetensors");
    let p = load_like(&weights, &template, name, &dev, DType::F32).unwrap();
    let io = candle_core::safetensors::load(dir.join("io.safetensors"), &dev).unwrap();
    let features = enc.forward(&p, &io["input"]).unwrap();
    let d = max_abs_diff(&features, &io["features"]);
    eprintln!("{name}: max abs diff of the features {d:.2e}");
    assert!(d < 1e-4, "{name}: features differ from timm by {d}");
    // the classifier on top reproduces timm's logits too
    let all = candle_core::safetensors::load(&weights, &dev).unwrap();
    let logits = ops::linear(
        &features,
        &all[&format!("{head}.weight")],
        Some(&all[&format!("{head}.bias")]),
    )
    .unwrap();
    let d = max_abs_diff(&logits, &io["logits"]);
    assert!(d < 1e-4, "{name}: logits differ from timm by {d}");
    // every tensor of the state dict but the classifier is used
    let unused: Vec<&String> = all
        .keys()
        .filter(|k| !k.starts_with(head) && !template.names().contains(k))
        .collect();
    assert!(
        unused.is_empty(),
        "{name}: timm tensors not loaded: {unused:?}"
    );
}

#[test]
fn nf_resnet50_scaled_matches_timm() {
    check_fixture("nf_resnet50_scaled", "nf_resnet50_scaled");
}

#[test]
fn nf_resnet50_scaled_matches_timm_on_odd_sizes() {
    check_fixture("nf_resnet50_scaled_odd", "nf_resnet50_scaled");
}

#[test]
fn nf_regnet_b1_scaled_matches_timm() {
    check_fixture("nf_regnet_b1_scaled", "nf_regnet_b1_scaled");
}

#[test]
fn nfnet_l0_scaled_matches_timm() {
    check_fixture("nfnet_l0_scaled", "nfnet_l0_scaled");
}

/// Three blocks in one stage: identity shortcuts and β falling within the stage.
#[test]
fn nfnet_l0_deeper_stage_matches_timm() {
    check_fixture("nfnet_l0_deep", "nfnet_l0_deep");
}

#[test]
fn vit_scaled_matches_timm() {
    check_fixture("vit_scaled", "vit_scaled");
}

/// Our built-in scaled configurations are the ones the fixtures were made from.
#[test]
fn builtin_scaled_configs_are_the_fixtures_configs() {
    for (name, ours) in [
        ("nf_resnet50_scaled", NfCfg::nf_resnet50_scaled()),
        ("nf_regnet_b1_scaled", NfCfg::nf_regnet_b1_scaled()),
        ("nfnet_l0_scaled", NfCfg::nfnet_l0_scaled()),
    ] {
        let theirs: NfCfg =
            serde_json::from_value(json(&fixtures().join(name).join("config.json"))["cfg"].clone())
                .unwrap();
        let mut ours = ours;
        // timm records an empty attention-kwargs dict where it has none
        if theirs.attn_kwargs.is_some() && ours.attn_kwargs.is_none() {
            ours.attn_kwargs = theirs.attn_kwargs.clone();
        }
        assert_eq!(ours, theirs, "{name}");
    }
    let v = json(&fixtures().join("vit_scaled/config.json"));
    assert_eq!(VitCfg::scaled(32), vit_cfg(&v["vit_resolved"]));
}

fn names_and_shapes(p: &ParamSet) -> Vec<(String, Vec<usize>)> {
    let mut v: Vec<_> = p
        .iter()
        .map(|(n, t)| (n.to_string(), t.dims().to_vec()))
        .collect();
    v.sort();
    v
}

/// The full registered configurations have exactly timm's parameters (the
/// classifier aside), by name and shape, and the same count.
#[test]
fn full_size_names_and_shapes_match_timm() {
    let record = json(&fixtures().join("full_size.json"));
    let encoders: Vec<(&str, Box<dyn ImageEncoder>, &str)> = vec![
        (
            "nf_resnet50",
            Box::new(NfNet::new("f", NfCfg::nf_resnet50()).unwrap()),
            "head.fc.",
        ),
        (
            "nf_regnet_b1",
            Box::new(NfNet::new("f", NfCfg::nf_regnet_b1()).unwrap()),
            "head.fc.",
        ),
        (
            "nfnet_l0",
            Box::new(NfNet::new("f", NfCfg::nfnet_l0()).unwrap()),
            "head.fc.",
        ),
        (
            "vit_tiny_patch16_224",
            Box::new(Vit::new("f", VitCfg::tiny_patch16_224()).unwrap()),
            "head.",
        ),
        (
            "vit_base_patch16_224",
            Box::new(Vit::new("f", VitCfg::base_patch16_224()).unwrap()),
            "head.",
        ),
    ];
    for (name, enc, head) in encoders {
        let r = &record[name];
        let mut theirs: Vec<(String, Vec<usize>)> = r["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e[0].as_str().unwrap().to_string(),
                    e[1].as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap() as usize)
                        .collect(),
                )
            })
            .filter(|(n, _)| !n.starts_with(head))
            .collect();
        theirs.sort();
        assert!(
            r["buffers"].as_array().unwrap().is_empty(),
            "{name} has buffers"
        );
        // shapes only: no need to materialise 86M random numbers
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let ours = enc.init(&mut rng, &Device::Cpu, DType::F32).unwrap();
        assert_eq!(names_and_shapes(&ours), theirs, "{name}");
        let head_count: usize =
            record[name]["num_classes"].as_u64().unwrap() as usize * (enc.out_dim() + 1);
        assert_eq!(
            ours.num_elements() + head_count,
            r["num_params"].as_u64().unwrap() as usize,
            "{name}: parameter count"
        );
        assert_eq!(enc.out_dim(), r["num_features"].as_u64().unwrap() as usize);
    }
}

/// Loading a checkpoint of another architecture names the file and tensor.
#[test]
fn wrong_checkpoint_is_a_clear_error() {
    let dev = Device::Cpu;
    let enc = NfNet::new("nfnet_l0-scaled", NfCfg::nfnet_l0_scaled()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let template = enc.init(&mut rng, &dev, DType::F32).unwrap();
    let other = fixtures().join("nf_resnet50_scaled/weights.safetensors");
    let e = load_like(&other, &template, "nfnet_l0-scaled", &dev, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("weights.safetensors") && e.contains("not a nfnet_l0-scaled checkpoint"),
        "{e}"
    );
    let e = load_like(&fixtures().join("nope"), &template, "x", &dev, DType::F32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not found"), "{e}");
}
