//! The head-only regime: a pretrained image encoder frozen in eval mode,
//! two linear heads into a joint space that train on its cached,
//! standardised features, and stage 2 matching the heads' trajectories
//! (RepBlend's regime). The emoji preset uses it; `--frozen-backbone` (or
//! [`Config::freeze_backbone`]) gives it to a pretrained encoder on any data.

use super::*;
use crate::error::{Error, Result};

/// Dimension of the joint space the two heads project into.
pub const HEAD_ONLY_JOINT_DIM: usize = 256;

impl Config {
    /// Freezes the pretrained image encoder and switches the model, the
    /// experts, the evaluation and stage 2 to the head-only regime: a
    /// linear image head and a linear text tower into a
    /// [`HEAD_ONLY_JOINT_DIM`]-d space; 5 experts × 12 epochs of plain SGD
    /// at rate 0.1 for both heads, each epoch seeing every image once with
    /// one of its captions; students chosen on val from the grid rate
    /// ×{0.3, 1, 3, 10} × momentum {0, 0.9} × {25, 50, 100} epochs; 150
    /// outer iterations of 40 student steps matching the experts' first two
    /// epochs, pixels on Adam (step 0.01, kept in range), text embeddings
    /// and features at rate 3000 on momentum-0.5 SGD. These are the
    /// settings chosen on the emoji data's validation split
    /// (docs/measurements.md); the smoke profile shrinks them to a check of
    /// the machinery.
    ///
    /// Call it after the image encoder is chosen
    /// ([`Config::set_image_encoder`]); a later switch to another encoder
    /// with pretrained weights keeps the regime (one without falls back to
    /// a backbone that trains). Refuses an encoder without pretrained weights (a frozen
    /// random network teaches nothing) and `vit_lora` (its adapters train
    /// inside the backbone; freeze `vit` instead).
    ///
    /// ```
    /// use vl_distill::config::{Backbone, Config};
    /// let mut c = Config::default_profile();
    /// c.set_image_encoder("nf_resnet50").unwrap();
    /// // no `vl-distill pretrain` weights in the working folder here
    /// assert!(c.freeze_backbone().is_err());
    /// c.model.image.set_checkpoint("nf_resnet50.safetensors".into());
    /// c.freeze_backbone().unwrap();
    /// assert_eq!(c.model.backbone, Backbone::Frozen);
    /// assert_eq!(c.model.image_proj, Some(256));
    /// ```
    pub fn freeze_backbone(&mut self) -> Result<()> {
        let kind = self.model.image.kind();
        if matches!(self.model.image, ImageEncoderConfig::VitLora { .. }) {
            return Err(Error::Config(
                "a frozen backbone does not apply to vit_lora: its adapters train inside the \
                 backbone (freeze `vit` instead)"
                    .into(),
            ));
        }
        if self.model.image.checkpoint().is_none() {
            let hint = match self.model.image {
                ImageEncoderConfig::EfficientnetLite0 { .. } => {
                    format!("run {EFFICIENTNET_FETCH_SCRIPT}")
                }
                ImageEncoderConfig::ConvNet { .. } => "it is not pretrained here".to_string(),
                _ => format!("run `{}`", pretrain_command(kind, &self.profile)),
            };
            return Err(Error::Config(format!(
                "a frozen backbone needs pretrained weights, and {kind} has none ({hint}, or set \
                 model.image.checkpoint)"
            )));
        }
        self.apply_head_only_regime();
        Ok(())
    }

    /// The settings of [`Config::freeze_backbone`], without its checks.
    pub(super) fn apply_head_only_regime(&mut self) {
        let m = &mut self.model;
        m.backbone = Backbone::Frozen;
        m.image_proj = Some(HEAD_ONLY_JOINT_DIM);
        m.text_tower = TextTowerConfig::Linear;
        m.temperature = 0.07;
        m.learn_temperature = false;
        // heads on standardised features: one rate for both, plain SGD
        let e = &mut self.experts;
        e.num_experts = 5;
        e.epochs = 12;
        e.lr_image = 0.1;
        e.lr_text = 0.1;
        e.momentum = 0.0;
        e.batch_size = 128;
        // an epoch sees each image once, with one of its captions: a
        // displacement 40 synthetic steps can follow (over every caption
        // the 100 initial pairs barely move the student towards it)
        e.captions_per_image = Some(1);
        self.eval.full_epochs = 12;
        self.eval.batch_size = 128;
        // every method's students chosen on val from the same grid; on
        // cached features a student trains in a second or two, so every
        // rate and momentum trains every seed (no finalists)
        self.eval.student_grid = Some(StudentGrid {
            finalists: None,
            ..StudentGrid::standard()
        });
        // 40 student steps match the experts' first 2 epochs from their
        // initialisation (start epoch 0 only); the log-α steps need no bound
        let d = &mut self.distill;
        d.syn_steps = 40;
        d.expert_epochs = 2;
        d.max_start_epoch = 1;
        d.momentum = 0.5;
        d.pixel_optimizer = PixelOptimizer::Adam;
        d.lr_images = 0.01;
        d.lr_features = 3000.0;
        d.lr_texts = 3000.0;
        d.lr_lr = 0.01;
        d.max_lr_step = None;
        d.clamp_pixels = true;
        d.iterations = 150;
        d.log_every = 25;
        d.checkpoint_every = 25;
        if self.profile == "smoke" {
            self.experts.num_experts = 2;
            self.experts.epochs = 8;
            self.eval.full_epochs = 8;
            self.eval.student_grid = Some(StudentGrid {
                lr_scales: vec![1.0, 3.0],
                momenta: vec![0.0],
                epochs: vec![self.eval.small_set_epochs],
                finalists: None,
            });
            let d = &mut self.distill;
            d.iterations = 10;
            d.feature_iterations = None;
            d.syn_steps = 5;
            d.log_every = 5;
            d.checkpoint_every = 5;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freezing_refuses_what_cannot_freeze_and_sets_the_emoji_presets_regime() {
        // no pretrained weights (none in the working folder here): refused
        // with the command that makes them
        let mut c = Config::default_profile();
        c.set_image_encoder("vit").unwrap();
        let err = c.freeze_backbone().unwrap_err().to_string();
        assert!(
            err.contains("vl-distill pretrain --image-encoder vit --profile default"),
            "{err}"
        );
        assert_eq!(c.model.backbone, Backbone::Trained);
        let mut convnet = Config::default_profile();
        let err = convnet.freeze_backbone().unwrap_err().to_string();
        assert!(err.contains("not pretrained here"), "{err}");
        let mut lora = Config::default_profile();
        lora.set_image_encoder("vit_lora").unwrap();
        lora.model
            .image
            .set_checkpoint("vit-scaled-32px.safetensors".into());
        let err = lora.freeze_backbone().unwrap_err().to_string();
        assert!(err.contains("vit_lora"), "{err}");

        // with weights: the regime the emoji preset runs, on any encoder
        c.model
            .image
            .set_checkpoint("vit-scaled-32px.safetensors".into());
        c.freeze_backbone().unwrap();
        let mut emoji = Config::default_profile();
        emoji.set_dataset("emoji").unwrap();
        assert_eq!(emoji.model.backbone, Backbone::Frozen);
        assert_eq!(c.model.image_proj, emoji.model.image_proj);
        assert_eq!(c.model.text_tower, emoji.model.text_tower);
        assert_eq!(c.experts, emoji.experts);
        assert_eq!(c.eval, emoji.eval);
        // students on cached features are cheap: every rate and momentum
        // trains every seed, where the default profile sends 2 finalists on
        let finalists = |c: &Config| c.eval.student_grid.as_ref().map(|g| g.finalists);
        assert_eq!(finalists(&emoji), Some(None));
        assert_eq!(finalists(&Config::default_profile()), Some(Some(2)));
        // the emoji preset adds only its feature iterations
        let mut d = emoji.distill.clone();
        d.feature_iterations = None;
        assert_eq!(c.distill, d);
        // and the smoke profile shrinks it
        let mut s = Config::smoke();
        s.set_image_encoder("nf_resnet50").unwrap();
        s.model
            .image
            .set_checkpoint("nf_resnet50-scaled-32px.safetensors".into());
        s.freeze_backbone().unwrap();
        assert_eq!((s.experts.num_experts, s.distill.iterations), (2, 10));
    }
}
