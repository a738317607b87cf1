//! One configuration struct for the whole pipeline ([`Config`]), with named
//! profiles (`smoke`, `default`, `paper`), presets for datasets and
//! encoders, overrides from TOML or `key=value`, and validation.
//!
//! - [`schema`](self) — the types (a leaf: it imports nothing of the crate);
//! - `profiles` — [`Config::profile`], [`Config::smoke`], [`Config::default_profile`], [`Config::paper`];
//! - `presets` — [`Config::set_dataset`], [`Config::set_image_encoder`], [`Config::set_text_encoder`] and the paths they use;
//! - `overrides` — [`Config::from_toml_file`], [`Config::set`], [`Config::apply_overrides`];
//! - `validate` — [`Config::validate`].

mod overrides;
mod presets;
mod profiles;
mod schema;
mod validate;

pub use presets::*;
pub use schema::*;
pub use validate::{check_convnet_depth, check_text_encoder};

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn profiles_are_valid_and_distinct() {
        for p in ["smoke", "default", "paper"] {
            let c = Config::profile(p).unwrap();
            c.validate().unwrap();
            assert_eq!(c.profile, p);
        }
        assert!(Config::profile("huge").is_err());
    }

    #[test]
    fn set_image_encoder_gives_scratch_nf_nets_their_epochs_at_default_only() {
        let mut c = Config::default_profile();
        for kind in ["nf_resnet50", "nf_regnet_b1", "nfnet_l0"] {
            c.set_image_encoder(kind).unwrap();
            assert_eq!((c.experts.epochs, c.eval.full_epochs), (10, 10), "{kind}");
        }
        for kind in ["convnet", "vit", "vit_lora"] {
            let mut c = Config::default_profile();
            c.set_image_encoder(kind).unwrap();
            assert_eq!(c.model.image.kind(), kind);
            assert_eq!((c.experts.epochs, c.eval.full_epochs), (4, 4), "{kind}");
        }
        // smoke keeps its epochs; a checkpoint needs no extra epochs
        let mut s = Config::smoke();
        s.set_image_encoder("nfnet_l0").unwrap();
        assert_eq!(s.experts.epochs, Config::smoke().experts.epochs);
        let e = ImageEncoderConfig::NfnetL0 {
            size: EncoderSize::Scaled,
            checkpoint: Some("w.safetensors".into()),
        };
        assert_eq!(e.scratch_epochs(), None);
        assert!(c.set_image_encoder("resnet").is_err());
    }

    #[test]
    fn named_datasets_set_their_files_encoders_and_sizes() {
        for profile in ["smoke", "default", "paper"] {
            let mut c = Config::profile(profile).unwrap();
            c.set_dataset("emoji").unwrap();
            let DataSource::Karpathy { json, .. } = &c.data.source else {
                panic!("emoji is a Karpathy set")
            };
            assert_eq!(json, &emoji_json(profile));
            assert_eq!(c.text.encoder, "bert");
            assert_eq!(c.text.path.as_deref(), Some(Path::new(MINILM_DIR)));
            assert_eq!(c.model.image.kind(), "efficientnet_lite0");
            assert_eq!(c.data.norm, ImageNorm::efficientnet_lite0());
            c.validate().unwrap_or_else(|e| {
                // only a missing checkpoint may stop it (not fetched here)
                assert!(e.to_string().contains("checkpoint"), "{e}")
            });
            // the from-scratch comparison: ImageNet scaling again, the
            // emoji sizes kept (no scenes epochs), MiniLM kept
            let epochs = c.experts.epochs;
            let scratch_lr = Config::profile(profile).unwrap().experts.lr_image;
            let fine_tune_lr = match c.model.image.checkpoint() {
                Some(_) => scratch_lr / FINE_TUNE_LR_DIVISOR,
                None => scratch_lr,
            };
            assert_eq!(c.experts.lr_image, fine_tune_lr);
            assert_eq!(c.experts.captions_per_image, Some(1));
            c.set_image_encoder("convnet").unwrap();
            assert_eq!(c.experts.lr_image, scratch_lr);
            assert_eq!(c.data.norm, ImageNorm::default());
            assert_eq!(c.experts.epochs, epochs);
            c.set_image_encoder("nfnet_l0").unwrap();
            assert_eq!(c.experts.epochs, epochs, "scratch epochs are the scenes'");
            assert_eq!(c.text.encoder, "bert");
            // back to the scenes
            c.set_dataset("scenes").unwrap();
            assert_eq!(c.data.source, Config::profile(profile).unwrap().data.source);
        }
        assert!(emoji_json("smoke").starts_with(EMOJI_SMALL_DIR));
        let mut c = Config::default_profile();
        c.set_dataset("flickr30k").unwrap();
        assert_eq!(c.data.source, Config::paper().data.source);
        c.set_dataset("coco").unwrap();
        let how = how_to_make(Path::new("data/coco/dataset_coco.json")).unwrap();
        assert!(how.contains("data prepare --dataset coco"), "{how}");
        let how = how_to_make(&emoji_json("smoke")).unwrap();
        assert!(how.contains("fetch_emoji.sh --small 60"), "{how}");
        assert_eq!(how_to_make(Path::new("mine/dataset_x.json")), None);
        let e = c.set_dataset("imagenet").unwrap_err().to_string();
        assert!(e.contains("scenes, emoji, flickr30k, coco"), "{e}");
    }

    #[test]
    fn set_text_encoder_checks_the_name_and_clears_folders_for_hashed() {
        let mut c = Config::smoke();
        assert!(c.set_text_encoder("word2vec").is_err());
        c.set_text_encoder("clip").unwrap();
        assert_eq!(c.text.path, None, "clip never takes MiniLM");
        c.text.path = Some("m/clip".into());
        c.text.max_len = Some(32);
        c.set_text_encoder("hashed").unwrap();
        assert_eq!((c.text.path.clone(), c.text.max_len), (None, None));
        c.validate().unwrap();
    }

    #[test]
    fn image_encoders_by_name_and_in_toml() {
        for kind in ImageEncoderConfig::KINDS {
            let e = ImageEncoderConfig::named(kind, "smoke").unwrap();
            assert_eq!(e.kind(), kind);
            let mut c = Config::smoke();
            c.model.image = e;
            c.validate().unwrap();
            // the TOML round trip keeps it
            let back = Config::from_toml_str(&c.to_toml()).unwrap();
            assert_eq!(back.model.image, c.model.image);
        }
        assert_eq!(
            ImageEncoderConfig::named("vit", "paper").unwrap().size(),
            Some(EncoderSize::Tiny)
        );
        let e = ImageEncoderConfig::named("resnet", "smoke").unwrap_err();
        assert!(e.to_string().contains("nf_regnet_b1"), "{e}");
        let mut c = Config::smoke();
        c.set("model.image", r#"{"kind":"conv_net","width":8,"depth":2}"#)
            .unwrap();
        assert_eq!(c.model.image.architecture(), "convnet-w8-d2");
        c.set("model.image", r#"{"kind":"nfnet_l0","size":"full"}"#)
            .unwrap();
        assert_eq!(c.model.image.architecture(), "nfnet_l0-full");
        // sizes that do not exist for an architecture, and wrong image sizes
        c.set("model.image", r#"{"kind":"nfnet_l0","size":"tiny"}"#)
            .unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("ViT sizes"));
        c.set("model.image", r#"{"kind":"vit","size":"base"}"#)
            .unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("224"));
        c.set(
            "model.image",
            r#"{"kind":"vit","checkpoint":"/no/such.safetensors"}"#,
        )
        .unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }

    #[test]
    fn overrides_and_toml() {
        let mut c = Config::smoke();
        c.apply_overrides(&["experts.epochs=7", "model.temperature=0.05"])
            .unwrap();
        assert_eq!(c.experts.epochs, 7);
        assert_eq!(c.model.temperature, 0.05);
        assert!(c.set("experts.nope", "1").is_err());
        assert!(c.set("experts.epochs", "\"many\"").is_err());
        assert!(c.apply_overrides(&["experts.epochs=0"]).is_err());

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "profile = \"smoke\"\nseed = 5\n[experts]\nepochs = 9\n[model.text_tower]\nkind = \"projection_head\"\ndropout = 0.1\n",
        )
        .unwrap();
        let c = Config::from_toml_file(&f).unwrap();
        assert_eq!((c.seed, c.experts.epochs), (5, 9));
        assert_eq!(c.experts.batch_size, Config::smoke().experts.batch_size);
        assert_eq!(
            c.model.text_tower,
            TextTowerConfig::ProjectionHead { dropout: 0.1 }
        );
        // round trip through TOML text
        let again: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(again, c);
    }

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
