//! Checks of a configuration: ranges, names and the consistency of its
//! parts, with an error that names the setting.

use super::*;
use crate::error::{Error, Result};

/// Checks that `name` is a text encoder ([`TEXT_ENCODERS`]).
pub fn check_text_encoder(name: &str) -> Result<()> {
    if TEXT_ENCODERS.contains(&name) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "unknown text encoder {name:?} (available: {})",
        TEXT_ENCODERS.join(", ")
    )))
}

/// Checks that a ConvNet of `depth` blocks (each halving the side) fits
/// images of `image_size` px.
pub fn check_convnet_depth(depth: usize, image_size: usize) -> Result<()> {
    if depth >= usize::BITS as usize || image_size >> depth == 0 {
        return Err(Error::Config(format!(
            "ConvNet depth {depth} is too deep for {image_size} px images"
        )));
    }
    Ok(())
}

impl TextConfig {
    /// Checks the encoder name and that the options fit it (the model
    /// folder itself is read by [`crate::text::from_config`]).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        match self.encoder.as_str() {
            "hashed" => {
                if self.dim == 0 {
                    return bad("text.dim must be > 0".into());
                }
                let set: Vec<&str> = [
                    ("pooling", self.pooling.is_some()),
                    ("normalize", self.normalize.is_some()),
                    ("max_len", self.max_len.is_some()),
                ]
                .iter()
                .filter(|(_, on)| *on)
                .map(|(k, _)| *k)
                .collect();
                if !set.is_empty() {
                    return bad(format!(
                        "text.{} only applies to the bert and clip encoders, not hashed",
                        set.join(", text.")
                    ));
                }
            }
            "bert" | "clip" => {
                if self.path.is_none() {
                    return bad(format!(
                        "text.path must name the model folder of the {} encoder",
                        self.encoder
                    ));
                }
                match (self.encoder.as_str(), self.pooling.as_deref()) {
                    ("clip", Some(p)) => {
                        return bad(format!(
                            "text.pooling {p:?} does not apply to clip (it pools at the \
                             end-of-text token); leave it unset"
                        ))
                    }
                    (_, Some(p)) if p != "cls" && p != "mean" => {
                        return bad(format!(
                            "text.pooling {p:?} is not a pooling (choose \"cls\" or \"mean\")"
                        ))
                    }
                    _ => {}
                }
                if self.max_len.is_some_and(|m| m < 2) {
                    return bad("text.max_len must be >= 2 (the special tokens)".into());
                }
                if self.batch_size == 0 {
                    return bad("text.batch_size must be > 0".into());
                }
            }
            other => check_text_encoder(other)?,
        }
        Ok(())
    }
}

impl ImageEncoderConfig {
    fn validate(&self, image_size: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("model.image: {m}")));
        let size = self.size();
        match self {
            ImageEncoderConfig::ConvNet { width, depth } => {
                if *width == 0 || *depth == 0 {
                    return bad("width and depth must be > 0".into());
                }
                if let Err(Error::Config(m)) = check_convnet_depth(*depth, image_size) {
                    return bad(m);
                }
            }
            ImageEncoderConfig::Vit { .. } | ImageEncoderConfig::VitLora { .. } => {
                if size == Some(EncoderSize::Full) {
                    return bad(format!(
                        "{} sizes are scaled, tiny and base (not full)",
                        self.kind()
                    ));
                }
                if size != Some(EncoderSize::Scaled) && image_size != 224 {
                    return bad(format!(
                        "{} at size {} needs data.image_size = 224 (got {image_size})",
                        self.kind(),
                        size.unwrap_or_default().name()
                    ));
                }
                if size == Some(EncoderSize::Scaled) && !image_size.is_multiple_of(4) {
                    return bad(format!(
                        "the scaled ViT cuts images into 4×4 patches: data.image_size {image_size} is not a multiple of 4"
                    ));
                }
            }
            _ => {
                if matches!(size, Some(EncoderSize::Tiny | EncoderSize::Base)) {
                    return bad(format!(
                        "{} sizes are scaled and full (tiny/base are ViT sizes)",
                        self.kind()
                    ));
                }
                if image_size < 16 {
                    return bad(format!(
                        "{} needs images of at least 16 px (got {image_size})",
                        self.kind()
                    ));
                }
            }
        }
        if let Some(p) = self.checkpoint() {
            if !p.exists() {
                let hint = match self {
                    ImageEncoderConfig::EfficientnetLite0 { .. } => format!(
                        " (run {} to download EfficientNet-Lite0)",
                        EFFICIENTNET_FETCH_SCRIPT
                    ),
                    _ => String::new(),
                };
                return bad(format!("checkpoint {} does not exist{hint}", p.display()));
            }
        }
        Ok(())
    }
}

impl PretrainConfig {
    /// Checks the pretraining settings' ranges.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("pretrain: {m}")));
        if self.images < 2 || self.val_images == 0 || self.epochs == 0 || self.batch_size < 2 {
            return bad(format!(
                "images must be >= 2, val_images and epochs > 0, batch_size >= 2 (got {}, {}, {}, {})",
                self.images, self.val_images, self.epochs, self.batch_size
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be finite and > 0, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay must be >= 0, got {}",
                self.weight_decay
            ));
        }
        if !(self.warmup_epochs.is_finite()
            && (0.0..=self.epochs as f64).contains(&self.warmup_epochs))
        {
            return bad(format!(
                "warmup_epochs must lie in [0, epochs = {}], got {}",
                self.epochs, self.warmup_epochs
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Checks ranges and consistency of all fields.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.data.image_size < 8 {
            return bad(format!("data.image_size {} < 8", self.data.image_size));
        }
        self.model.image.validate(self.data.image_size as usize)?;
        if self.model.temperature.is_nan() || self.model.temperature <= 0.0 {
            return bad("model.temperature must be > 0".into());
        }
        self.text.validate()?;
        let e = &self.experts;
        if e.num_experts == 0 || e.epochs == 0 || e.batch_size < 2 {
            return bad("experts: num_experts and epochs must be > 0, batch_size >= 2".into());
        }
        if e.lr_image.is_nan() || e.lr_text.is_nan() || e.lr_image <= 0.0 || e.lr_text <= 0.0 {
            return bad("experts: learning rates must be > 0".into());
        }
        if e.captions_per_image == Some(0) {
            return bad("experts.captions_per_image must be > 0 (or unset: every caption)".into());
        }
        if !(0.0..1.0).contains(&e.momentum) {
            return bad("experts.momentum must be in [0, 1)".into());
        }
        self.pretrain.validate()?;
        if self.eval.num_seeds == 0 || self.eval.batch_size < 2 {
            return bad("eval: num_seeds must be > 0, batch_size >= 2".into());
        }
        if let Some(g) = &self.eval.student_grid {
            if g.is_empty() {
                return bad("eval.student_grid: lr_scales, momenta and epochs must each hold at least one value".into());
            }
            if g.lr_scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return bad(format!(
                    "eval.student_grid.lr_scales must be finite and > 0: {:?}",
                    g.lr_scales
                ));
            }
            if g.momenta.iter().any(|m| !(0.0..1.0).contains(m)) {
                return bad(format!(
                    "eval.student_grid.momenta must lie in [0, 1): {:?}",
                    g.momenta
                ));
            }
            if g.epochs.contains(&0) {
                return bad("eval.student_grid.epochs must be > 0".into());
            }
            if g.finalists == Some(0) {
                return bad("eval.student_grid.finalists must be > 0 when set".into());
            }
        }
        let d = &self.distill;
        if d.pairs < 2 || d.syn_steps == 0 || d.expert_epochs == 0 || d.max_start_epoch == 0 {
            return bad(
                "distill: pairs must be >= 2; syn_steps, expert_epochs, max_start_epoch > 0".into(),
            );
        }
        if d.checkpoint_every == 0 || d.log_every == 0 {
            return bad("distill: checkpoint_every and log_every must be > 0".into());
        }
        if d.batch_syn.is_some_and(|b| b < 2 || b > d.pairs) {
            return bad("distill.batch_syn must be in 2..=pairs".into());
        }
        if [d.lr_images, d.lr_texts, d.lr_lr]
            .iter()
            .any(|v| v.is_nan() || *v < 0.0)
            || !(0.0..1.0).contains(&d.momentum)
        {
            return bad("distill: learning rates must be >= 0 and momentum in [0, 1)".into());
        }
        if d.max_lr_step.is_some_and(|b| b.is_nan() || b <= 0.0) {
            return bad("distill.max_lr_step must be > 0 (or unset)".into());
        }
        if d.clip_spikes.is_some_and(|k| k.is_nan() || k < 1.0) {
            return bad(format!(
                "distill.clip_spikes = {:?}: a factor ≥ 1 of the median gradient norm (or unset)",
                d.clip_spikes.unwrap_or_default()
            ));
        }
        if d.backbone_chunk == Some(0) {
            return bad("distill.backbone_chunk must be > 0 (or unset)".into());
        }
        if let Some(b) = &d.blend {
            if !(b.alpha.is_finite() && b.alpha > 0.0) {
                return bad(format!(
                    "distill.blend.alpha = {}: the Beta distribution's parameter must be > 0",
                    b.alpha
                ));
            }
        }
        if let Some(l) = &d.similarity {
            if !l.full && (l.rank == 0 || l.rank > d.pairs) {
                return bad(format!(
                    "distill.similarity.rank = {}: between 1 and distill.pairs ({})",
                    l.rank, d.pairs
                ));
            }
            if !l.alpha.is_finite() || l.lr.is_nan() || l.lr < 0.0 {
                return bad(format!(
                    "distill.similarity: alpha must be finite and lr >= 0 (got alpha {}, lr {})",
                    l.alpha, l.lr
                ));
            }
        }
        if d.lr_features.is_nan() || d.lr_features < 0.0 {
            return bad("distill.lr_features must be >= 0".into());
        }
        if d.feature_iterations == Some(0) {
            return bad("distill.feature_iterations must be > 0".into());
        }
        if d.pixel_optimizer == PixelOptimizer::Adam && d.lr_images > MAX_ADAM_LR_IMAGES {
            return bad(format!(
                "distill.lr_images = {} with distill.pixel_optimizer = \"adam\": Adam's rate is a \
                 per-pixel step size in normalised pixel units (e.g. 0.01), at most {MAX_ADAM_LR_IMAGES}",
                d.lr_images
            ));
        }
        if self.model.backbone == Backbone::Frozen {
            if self.model.image_proj.is_none() {
                return bad(
                    "model.backbone = \"frozen\" needs model.image_proj (the image head that trains)"
                        .into(),
                );
            }
            if matches!(self.model.image, ImageEncoderConfig::VitLora { .. }) {
                return bad(
                    "model.backbone = \"frozen\" does not apply to vit_lora: its adapters train \
                     inside the backbone (use backbone = \"trained\", which trains only the adapters)"
                        .into(),
                );
            }
        }
        if d.space == SynthSpace::Features && self.model.backbone != Backbone::Frozen {
            return bad(
                "distill.space = \"features\" needs model.backbone = \"frozen\" (features of a \
                 backbone that trains change with it)"
                    .into(),
            );
        }
        if let TextTowerConfig::ProjectionHead { dropout } = self.model.text_tower {
            if !(0.0..1.0).contains(&dropout) {
                return bad("model.text_tower.dropout must be in [0, 1)".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::*;
    use std::path::Path;

    #[test]
    fn text_encoder_options_are_checked() {
        let err = |c: &Config| c.validate().unwrap_err().to_string();
        let mut c = Config::smoke();
        assert_eq!(c.text.batch_size, DEFAULT_TEXT_BATCH_SIZE);
        c.set("text.encoder", "bert").unwrap();
        assert!(err(&c).contains("text.path"), "{}", err(&c));
        c.set("text.path", "/models/minilm").unwrap();
        c.validate().unwrap();
        c.set("text.pooling", "mean").unwrap();
        c.set("text.max_len", "64").unwrap();
        c.set("text.normalize", "true").unwrap();
        c.validate().unwrap();
        assert_eq!(c.text.pooling.as_deref(), Some("mean"));
        assert_eq!((c.text.max_len, c.text.normalize), (Some(64), Some(true)));
        c.set("text.pooling", "max").unwrap();
        assert!(err(&c).contains("\"max\" is not a pooling"), "{}", err(&c));
        c.set("text.pooling", "cls").unwrap();
        c.set("text.encoder", "clip").unwrap();
        assert!(err(&c).contains("does not apply to clip"), "{}", err(&c));
        c.set("text.pooling", "null").unwrap();
        c.validate().unwrap();
        c.set("text.batch_size", "0").unwrap();
        assert!(err(&c).contains("batch_size"));
        c.set("text.batch_size", "8").unwrap();
        c.set("text.max_len", "1").unwrap();
        assert!(err(&c).contains("max_len"));
        c.set("text.encoder", "hashed").unwrap();
        assert!(
            err(&c).contains("text.normalize, text.max_len"),
            "{}",
            err(&c)
        );
        c.set("text.encoder", "word2vec").unwrap();
        assert!(err(&c).contains("hashed, bert, clip"), "{}", err(&c));

        // TOML: a [text] table with the new keys; unknown keys are refused
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "profile = \"smoke\"\n[text]\nencoder = \"bert\"\npath = \"m/bert\"\npooling = \"mean\"\n",
        )
        .unwrap();
        let c = Config::from_toml_file(&f).unwrap();
        c.validate().unwrap();
        assert_eq!(c.text.path.as_deref(), Some(Path::new("m/bert")));
        assert_eq!(c.text.batch_size, DEFAULT_TEXT_BATCH_SIZE);
        let again: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again, c);
        let again: Config = toml::from_str(&Config::smoke().to_toml()).unwrap();
        assert_eq!(again, Config::smoke());
        std::fs::write(&f, "[text]\nencoder = \"bert\"\nmodel = \"x\"\n").unwrap();
        assert!(Config::from_toml_file(&f).is_err());
        // a config written before these keys existed still reads
        let old = r#"{"encoder": "hashed", "dim": 32}"#;
        let t: TextConfig = serde_json::from_str(old).unwrap();
        assert_eq!(
            (t.dim, t.batch_size, t.path),
            (32, DEFAULT_TEXT_BATCH_SIZE, None)
        );
    }
}
