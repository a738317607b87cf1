//! Pretraining an image encoder (`vl-distill pretrain`): the source shares
//! no image with the splits, pretraining lowers the loss, the weights land
//! where `--image-encoder` finds them and every expert starts from them
//! (a LoRA ViT's base included), and bad requests are refused.

mod common;

use candle_core::{DType, Tensor};
use common::max_abs_diff;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use vl_distill::config::{pretrained_checkpoint, Config, ImageEncoderConfig, ROOT_VAR};
use vl_distill::data::scenes::{generate, ScenesConfig};
use vl_distill::data::Sample;
use vl_distill::model::TwoTower;
use vl_distill::notebook::Workspace;
use vl_distill::pipeline;
use vl_distill::stage1::pretrain::{source_config, source_dataset, PretrainRecord};

/// Held while a test points [`ROOT_VAR`] at its own checkout (the tests of
/// this file run in parallel threads of one process).
static ROOT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn image_hashes(samples: &[Sample]) -> HashSet<[u8; 32]> {
    samples
        .iter()
        .map(|s| Sha256::digest(s.image.as_raw()).into())
        .collect()
}

/// Pretrains `config`'s encoder into `root`, at the place under the
/// checkout where `--image-encoder` looks; returns the file.
fn pretrain_under(root: &Path, config: &Config) -> PathBuf {
    let rel = pretrained_checkpoint(&config.model.image, config.data.image_size).unwrap();
    let file = root.join(&rel);
    let written = pipeline::pretrain(
        config,
        vl_distill::device::for_tests(),
        &root.join("work"),
        Some(&file),
        false,
    )
    .unwrap();
    assert_eq!(written, file);
    file
}

#[test]
fn the_pretraining_source_shares_no_image_with_train_val_or_test() {
    // the default profile's sizes: 10 000 + 200 source images against
    // 1000 / 200 / 500
    let config = Config::default_profile();
    let splits = generate(&ScenesConfig::from_config(&config).unwrap()).unwrap();
    let source = source_dataset(&config).unwrap();
    assert_eq!(source.train.len(), config.pretrain.images);
    assert_eq!(source.val.len(), config.pretrain.val_images);
    let source_images: HashSet<[u8; 32]> = image_hashes(&source.train)
        .union(&image_hashes(&source.val))
        .copied()
        .collect();
    // the source has no repeats of its own either
    assert_eq!(
        source_images.len(),
        source.train.len() + source.val.len(),
        "repeated images inside the source"
    );
    for (name, split) in [
        ("train", &splits.train),
        ("val", &splits.val),
        ("test", &splits.test),
    ] {
        let shared = image_hashes(split).intersection(&source_images).count();
        assert_eq!(shared, 0, "{shared} images of {name} are in the source");
    }
    // the same configuration gives the same source
    let again = source_dataset(&config).unwrap();
    assert_eq!(again.train[17].image, source.train[17].image);
    assert_eq!(again.val[3].captions, source.val[3].captions);
}

#[test]
fn pretraining_lowers_the_loss_and_every_expert_starts_from_the_weights() {
    let root = tempfile::tempdir().unwrap();
    let mut config = Config::smoke();
    config.set_image_encoder("nf_resnet50").unwrap();
    config
        .apply_overrides(&[
            "pretrain.images=600",
            "pretrain.epochs=4",
            "pretrain.warmup_epochs=0.5",
        ])
        .unwrap();
    // where --image-encoder looks, under a checkout of its own
    let rel = pretrained_checkpoint(&config.model.image, config.data.image_size).unwrap();
    assert!(rel.starts_with("data/models/pretrained"), "{rel:?}");
    let file = pretrain_under(root.path(), &config);

    let record: PretrainRecord =
        serde_json::from_str(&std::fs::read_to_string(file.with_extension("json")).unwrap())
            .unwrap();
    let losses: Vec<f64> = record.epochs.iter().map(|e| e.train_loss).collect();
    assert_eq!(losses.len(), 4);
    assert!(
        losses[3] < losses[0] - 0.1,
        "pretraining must lower the contrastive loss: {losses:?}"
    );
    assert_eq!(record.architecture, "nf_resnet50-scaled");

    // --image-encoder now finds the weights (and the experts keep the
    // profile's epochs: they fine-tune)
    let guard = ROOT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var(ROOT_VAR, root.path());
    let mut c = Config::smoke();
    c.set_image_encoder("nf_resnet50").unwrap();
    let mut lora = Config::smoke();
    lora.set_image_encoder("vit_lora").unwrap();
    let mut elsewhere = Config::smoke();
    elsewhere.apply_overrides(&["data.image_size=32"]).unwrap();
    elsewhere.set_image_encoder("nf_resnet50").unwrap();
    std::env::remove_var(ROOT_VAR);
    drop(guard);
    assert_eq!(c.model.image.checkpoint(), Some(file.as_path()));
    assert_eq!(c.model.image.scratch_epochs(), None);
    // weights of another resolution are not taken
    assert_eq!(elsewhere.model.image.checkpoint(), None);
    // no ViT was pretrained here, so the LoRA ViT's base stays random
    assert_eq!(lora.model.image.checkpoint(), None);

    let saved = candle_core::safetensors::load(&file, &candle_core::Device::Cpu).unwrap();
    let model = TwoTower::new(&c.model, c.data.image_size as usize, 128).unwrap();
    for seed in [0, 7] {
        let p = model
            .init(seed, &candle_core::Device::Cpu, DType::F32)
            .unwrap();
        assert_eq!(p.image.len(), saved.len());
        for (name, t) in p.image.iter() {
            let diff = max_abs_diff(t, &saved[name]);
            assert_eq!(
                diff, 0.0,
                "{name} of expert seed {seed} is not the pretrained one"
            );
        }
    }
}

#[test]
fn a_lora_vit_rides_on_its_pretrained_base() {
    let root = tempfile::tempdir().unwrap();
    let mut config = Config::smoke();
    config.set_image_encoder("vit_lora").unwrap();
    config
        .apply_overrides(&["pretrain.images=128", "pretrain.epochs=1"])
        .unwrap();
    // a LoRA ViT pretrains (and then loads) the plain ViT of its size
    let source = source_config(&config).unwrap();
    assert_eq!(source.model.image.kind(), "vit");
    let rel = pretrained_checkpoint(&config.model.image, config.data.image_size).unwrap();
    let vit = ImageEncoderConfig::named("vit", "smoke").unwrap();
    assert_eq!(
        Some(&rel),
        pretrained_checkpoint(&vit, config.data.image_size).as_ref()
    );
    let file = pretrain_under(root.path(), &config);
    assert!(file.ends_with(&rel));
    let mut lora = Config::smoke();
    lora.set_image_encoder("vit_lora").unwrap();
    lora.model.image.set_checkpoint(file.clone());
    let with_base = TwoTower::new(&lora.model, lora.data.image_size as usize, 128).unwrap();
    let mut scratch = Config::smoke();
    scratch.set_image_encoder("vit_lora").unwrap();
    let random_base = TwoTower::new(&scratch.model, scratch.data.image_size as usize, 128).unwrap();
    // the trained parameters are the adapters alone either way; the base
    // (outside the trained set) is the pretrained one, so the features differ
    let dev = candle_core::Device::Cpu;
    let p = with_base.init(0, &dev, DType::F32).unwrap();
    let q = random_base.init(0, &dev, DType::F32).unwrap();
    assert_eq!(p.image.names(), q.image.names());
    assert!(
        p.image.names().iter().all(|n| n.contains("lora")),
        "{:?}",
        p.image.names()
    );
    let x = Tensor::randn(0f32, 1.0, (2, 3, 24, 24), &dev).unwrap();
    let a = with_base.encode_images(&p.image, &x).unwrap();
    let b = random_base.encode_images(&q.image, &x).unwrap();
    let diff = max_abs_diff(&a, &b);
    assert!(
        diff > 1e-3,
        "the pretrained base must change the features ({diff})"
    );
}

#[test]
fn pretraining_refuses_what_it_cannot_pretrain() {
    let err = |c: &Config| source_config(c).unwrap_err().to_string();
    // the ConvNet is the from-scratch reference
    assert!(
        err(&Config::smoke()).contains("convnet"),
        "{}",
        err(&Config::smoke())
    );
    let mut eff = Config::smoke();
    eff.model.image = ImageEncoderConfig::named("efficientnet_lite0", "smoke").unwrap();
    assert!(err(&eff).contains("ImageNet"), "{}", err(&eff));
    // the source is built from the scenes only
    let mut emoji = Config::smoke();
    emoji.set_dataset("emoji").unwrap();
    emoji.set_image_encoder("nf_resnet50").unwrap();
    assert!(err(&emoji).contains("built-in scenes"), "{}", err(&emoji));
    // settings out of range name the setting
    for bad in [
        "pretrain.lr=0",
        "pretrain.epochs=0",
        "pretrain.images=1",
        "pretrain.warmup_epochs=9",
        "pretrain.weight_decay=-1",
    ] {
        let mut c = Config::smoke();
        c.set_image_encoder("nf_resnet50").unwrap();
        let e = c.apply_overrides(&[bad]).unwrap_err().to_string();
        assert!(e.contains("pretrain"), "{bad}: {e}");
    }
}

#[test]
fn a_notebook_workspace_pretrains_an_encoder_once_then_starts_from_its_weights() {
    let root = tempfile::tempdir().unwrap();
    let ws = Workspace::new("smoke", &root.path().join("notebooks")).unwrap();
    let _guard = ROOT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var(ROOT_VAR, root.path());
    let first = ws.pretrained_config("vit");
    let written = root
        .path()
        .join("data/models/pretrained/vit-scaled-24px.safetensors");
    let stamp = std::fs::metadata(&written).and_then(|m| m.modified());
    // the second call loads what the first wrote; the LoRA ViT takes it as
    // its base; the ConvNet is not pretrained here
    let second = ws.pretrained_config("vit");
    let lora = ws.pretrained_config("vit_lora");
    let convnet = ws.pretrained_config("convnet");
    std::env::remove_var(ROOT_VAR);
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.model.image.checkpoint(), Some(written.as_path()));
    assert_eq!(second.model.image, first.model.image);
    assert_eq!(
        std::fs::metadata(&written)
            .and_then(|m| m.modified())
            .unwrap(),
        stamp.unwrap(),
        "the weights must not be trained again"
    );
    assert_eq!(
        lora.unwrap().model.image.checkpoint(),
        Some(written.as_path())
    );
    assert_eq!(convnet.unwrap().model.image.checkpoint(), None);
    assert!(written.with_extension("json").exists());
}
