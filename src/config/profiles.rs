//! The built-in profiles: `smoke` (seconds per stage: tests, CI, notebook
//! execution in CI), `default` (the README's main command, minutes on a
//! 2-core CPU) and `paper` (the paper's sizes, for a GPU and a prepared
//! Flickr30K / COCO).

use super::*;
use crate::error::{Error, Result};
use std::path::PathBuf;

impl Config {
    /// The built-in profile called `name` (`smoke`, `default`, `paper`).
    pub fn profile(name: &str) -> Result<Config> {
        match name {
            "smoke" => Ok(Self::smoke()),
            "default" => Ok(Self::default_profile()),
            "paper" => Ok(Self::paper()),
            other => Err(Error::Config(format!(
                "unknown profile {other:?}: choose smoke, default or paper"
            ))),
        }
    }

    /// Seconds per stage: tests, CI, notebooks in CI.
    pub fn smoke() -> Config {
        Config {
            profile: "smoke".into(),
            seed: 0,
            data: DataConfig {
                source: DataSource::Scenes {
                    train: 300,
                    val: 60,
                    test: 100,
                },
                image_size: 24,
                norm: ImageNorm::default(),
                skip_unreadable: false,
            },
            text: TextConfig {
                encoder: "hashed".into(),
                dim: 128,
                path: None,
                pooling: None,
                normalize: None,
                max_len: None,
                batch_size: DEFAULT_TEXT_BATCH_SIZE,
            },
            model: ModelConfig {
                image: ImageEncoderConfig::ConvNet {
                    width: 16,
                    depth: 2,
                },
                image_proj: None,
                backbone: Backbone::Trained,
                text_tower: TextTowerConfig::Linear,
                temperature: 0.07,
                learn_temperature: false,
            },
            experts: ExpertConfig {
                num_experts: 2,
                epochs: 4,
                batch_size: 64,
                lr_image: 0.1,
                lr_text: 0.1,
                momentum: 0.0,
                weight_decay: 0.0,
                val_every_epoch: true,
                captions_per_image: None,
            },
            eval: EvalConfig {
                num_seeds: 2,
                full_epochs: 4,
                small_set_epochs: 30,
                batch_size: 64,
                student_grid: None,
            },
            pretrain: PretrainConfig {
                images: 1200,
                val_images: 60,
                epochs: 2,
                batch_size: 64,
                ..PretrainConfig::default()
            },
            distill: DistillConfig {
                pairs: 20,
                syn_steps: 3,
                expert_epochs: 1,
                max_start_epoch: 2,
                batch_syn: None,
                iterations: 10,
                // pixels are normalised (std ≈ 1 over thousands of values per
                // image) and their gradients tiny; the hashed text embeddings
                // are unit vectors: the two need rates 1000× apart
                lr_images: 1000.0,
                lr_texts: 1.0,
                lr_lr: 0.1,
                momentum: 0.5,
                init_images: InitKind::Real,
                init_texts: InitKind::Real,
                distill_images: true,
                distill_texts: true,
                checkpoint_every: 5,
                log_every: 1,
                cached_steps: DEFAULT_CACHED_STEPS,
                max_lr_step: None,
                clamp_pixels: false,
                space: SynthSpace::Pixels,
                lr_features: DEFAULT_LR_FEATURES,
                feature_iterations: None,
                pixel_optimizer: PixelOptimizer::Sgd,
                clip_spikes: None,
                backbone_chunk: None,
                similarity: None,
                blend: None,
            },
        }
    }

    /// A laptop CPU in minutes: the README's main command.
    pub fn default_profile() -> Config {
        let mut c = Self::smoke();
        c.profile = "default".into();
        c.data.source = DataSource::Scenes {
            train: 1000,
            val: 200,
            test: 500,
        };
        c.data.image_size = 32;
        c.text.dim = 384;
        c.model.image = ImageEncoderConfig::ConvNet {
            width: 64,
            depth: 3,
        };
        c.experts.num_experts = 3;
        c.experts.epochs = 4;
        c.experts.batch_size = 128;
        c.eval.num_seeds = 3;
        c.eval.full_epochs = 4;
        c.eval.small_set_epochs = 50;
        c.eval.batch_size = 128;
        // every method's students (distilled sets and coresets alike)
        // chosen on val before the one test evaluation, from the grid the
        // head-only regime and the emoji preset search too (with the
        // ConvNet every method chose momentum 0.9, with the LoRA ViT the
        // distilled set chose none: the grid keeps both)
        c.eval.student_grid = Some(StudentGrid::standard());
        // chosen by `vl-distill tune --profile default` on val recall (27
        // candidates around the earlier lr_texts 3, lr_lr 0.1,
        // max_start_epoch 2; docs/measurements.md); 100 iterations of 5
        // student steps
        c.distill.pairs = 100;
        c.distill.syn_steps = 5;
        c.distill.iterations = 100;
        c.distill.lr_images = 3000.0;
        c.distill.lr_texts = 9.0;
        c.distill.lr_lr = 0.3;
        c.distill.max_start_epoch = 4;
        c.distill.checkpoint_every = 10;
        c.distill.log_every = 10;
        c.pretrain = PretrainConfig::default();
        c
    }

    /// The paper's sizes; needs a GPU and a prepared dataset (set `data.source`).
    pub fn paper() -> Config {
        let mut c = Self::default_profile();
        c.profile = "paper".into();
        c.data.source = DataSource::Karpathy {
            json: PathBuf::from("data/flickr30k/dataset_flickr30k.json"),
            image_root: None,
        };
        c.data.image_size = 224;
        c.text.dim = 768;
        // the paper's image encoder (point model.image.checkpoint at timm's
        // ImageNet weights to fine-tune them as the paper does)
        c.model.image = ImageEncoderConfig::NfnetL0 {
            size: EncoderSize::Full,
            checkpoint: None,
        };
        c.model.text_tower = TextTowerConfig::ProjectionHead { dropout: 0.1 };
        c.experts.num_experts = 20;
        c.experts.epochs = 10;
        c.experts.batch_size = 128;
        c.eval.num_seeds = 5;
        c.eval.full_epochs = 10;
        c.eval.small_set_epochs = 1000;
        // the paper's Flickr30K command
        c.distill.pairs = 100;
        c.distill.syn_steps = 8;
        c.distill.expert_epochs = 1;
        c.distill.max_start_epoch = 2;
        c.distill.iterations = 3000;
        c.distill.lr_images = 1000.0;
        c.distill.lr_texts = 1000.0;
        c.distill.lr_lr = 0.01;
        c
    }
}

#[cfg(test)]
mod tests {
    use crate::config::*;

    #[test]
    fn profiles_are_valid_and_distinct() {
        for p in ["smoke", "default", "paper"] {
            let c = Config::profile(p).unwrap();
            c.validate().unwrap();
            assert_eq!(c.profile, p);
        }
        assert!(Config::profile("huge").is_err());
    }
}
