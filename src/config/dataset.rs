//! Named datasets (`--dataset NAME`, [`Config::set_dataset`]): where each
//! prepared set lives and the settings it runs with at each profile.
//!
//! | name | files | encoders it sets |
//! |---|---|---|
//! | `scenes` | none: generated from the seed (the profiles' default) | the profile's |
//! | `emoji` | `data/emoji` (`data-scripts/fetch_emoji.sh`); at `smoke`, `data/emoji-small` (`fetch_emoji.sh --small 60`) | all-MiniLM-L6-v2 and the pretrained EfficientNet-Lite0 |
//! | `flickr30k`, `coco` | `data/flickr30k`, `data/coco` (`vl-distill data prepare`) | the profile's |
//!
//! The emoji set is the one real image–caption benchmark these machines can
//! fetch (emoji artwork and Unicode CLDR names from the npm registry, see
//! `data-scripts/README.md`), and it was made for real pretrained encoders:
//! its preset switches to MiniLM text embeddings and the ImageNet
//! EfficientNet-Lite0, fine-tuned as the paper fine-tunes NFNet. Choose
//! other encoders after the preset (`--image-encoder convnet` trains the
//! ConvNet from scratch as the comparison).

use super::{Config, DataSource};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The names [`Config::set_dataset`] takes.
pub const DATASETS: [&str; 4] = ["scenes", "emoji", "flickr30k", "coco"];

/// `data-scripts/fetch_emoji.sh`'s output folder.
pub const EMOJI_DIR: &str = "data/emoji";
/// `data-scripts/fetch_emoji.sh --small 60`'s output folder (the smoke
/// profile's emoji set).
pub const EMOJI_SMALL_DIR: &str = "data/emoji-small";
/// The identities `--small` keeps for the smoke profile's emoji set.
pub const EMOJI_SMALL_IDENTITIES: usize = 60;
/// The script that builds the emoji set.
pub const EMOJI_FETCH_SCRIPT: &str = "data-scripts/fetch_emoji.sh";

/// The environment variable naming the folder that holds `data/` (the
/// checkout) when the working folder is elsewhere: the paths of the
/// presets ([`Config::set_dataset`], the fetched MiniLM and
/// EfficientNet-Lite0) are relative to it when it is set, else to the
/// working folder. The notebook kernel sets it, since notebooks run in
/// `notebooks/`.
pub const ROOT_VAR: &str = "VL_DISTILL_ROOT";

/// `rel` (a path under the checkout such as `data/emoji`) against
/// [`ROOT_VAR`] when set, else as it is (relative to the working folder).
pub fn data_path(rel: &str) -> PathBuf {
    match std::env::var_os(ROOT_VAR).filter(|r| !r.is_empty()) {
        Some(root) => PathBuf::from(root).join(rel),
        None => PathBuf::from(rel),
    }
}

/// The emoji set's split file under the checkout at `profile`: the small
/// set at `smoke`.
fn emoji_json_rel(profile: &str) -> PathBuf {
    let dir = if profile == "smoke" {
        EMOJI_SMALL_DIR
    } else {
        EMOJI_DIR
    };
    Path::new(dir).join("dataset_emoji.json")
}

/// The emoji set's split file at `profile` (the small set at `smoke`), as
/// the preset names it ([`data_path`]).
pub fn emoji_json(profile: &str) -> PathBuf {
    data_path(emoji_json_rel(profile).to_str().expect("ASCII path"))
}

/// The command that writes [`emoji_json`]`(profile)`.
pub fn emoji_fetch_command(profile: &str) -> String {
    if profile == "smoke" {
        format!("{EMOJI_FETCH_SCRIPT} --small {EMOJI_SMALL_IDENTITIES}")
    } else {
        EMOJI_FETCH_SCRIPT.to_string()
    }
}

/// How to make a named dataset's split file `json` (one of the paths the
/// presets use), for the error a missing one gives; `None` for other paths.
pub fn how_to_make(json: &Path) -> Option<String> {
    if json.ends_with(emoji_json_rel("smoke")) {
        Some(format!("run {}", emoji_fetch_command("smoke")))
    } else if json.ends_with(emoji_json_rel("default")) {
        Some(format!("run {}", emoji_fetch_command("default")))
    } else {
        ["flickr30k", "coco"].iter().find_map(|name| {
            json.ends_with(format!("data/{name}/dataset_{name}.json"))
                .then(|| {
                    format!(
                        "prepare your own copy with `vl-distill data prepare --dataset {name} \
                         --source DIR` (README, \"Flickr30K and COCO\")"
                    )
                })
        })
    }
}

impl Config {
    /// Switches to the named dataset (one of [`DATASETS`]) with the
    /// settings it runs with at this config's profile: what `--dataset`
    /// does. Apply it first, then encoders and overrides.
    ///
    /// - `scenes`: the profile's built-in scenes (nothing else changes).
    /// - `emoji`: the emoji captions set ([`emoji_json`]) at 32 px, with
    ///   all-MiniLM-L6-v2 text embeddings (`bert`, mean-pooled and
    ///   normalised, from [`super::MINILM_DIR`]) and the ImageNet
    ///   EfficientNet-Lite0 ([`Config::set_image_encoder`]); at `default`
    ///   also its expert epochs and stage-2 rates (see the README's
    ///   "The emoji benchmark" for how they were chosen).
    /// - `flickr30k`, `coco`: the sets `vl-distill data prepare` writes to
    ///   `data/flickr30k`, `data/coco` (the paper profile reads Flickr30K).
    ///
    /// The files are not opened here; loading names the missing one and
    /// the command that makes it.
    ///
    /// ```
    /// use vl_distill::config::Config;
    /// let mut c = Config::default_profile();
    /// c.set_dataset("emoji").unwrap();
    /// assert_eq!(c.model.image.kind(), "efficientnet_lite0");
    /// assert_eq!(c.text.encoder, "bert");
    /// c.set_image_encoder("convnet").unwrap(); // the from-scratch comparison
    /// assert!(c.set_dataset("imagenet").is_err());
    /// ```
    pub fn set_dataset(&mut self, name: &str) -> Result<()> {
        match name {
            "scenes" => {
                self.data.source = Config::profile(&self.profile)?.data.source;
            }
            "emoji" => self.set_emoji()?,
            "flickr30k" | "coco" => {
                self.data.source = DataSource::Karpathy {
                    json: data_path(&format!("data/{name}/dataset_{name}.json")),
                    image_root: None,
                };
            }
            other => {
                return Err(Error::Config(format!(
                    "unknown dataset {other:?} (available: {})",
                    DATASETS.join(", ")
                )))
            }
        }
        Ok(())
    }

    fn set_emoji(&mut self) -> Result<()> {
        self.data.source = DataSource::Karpathy {
            json: emoji_json(&self.profile),
            image_root: None,
        };
        // the emoji are drawn at 64 px; EfficientNet-Lite0 costs 4x more
        // per step at 64 than at 32 (README "Encoders"), which the default
        // profile's 45-minute budget cannot pay for
        self.data.image_size = if self.profile == "paper" { 64 } else { 32 };
        self.set_text_encoder("bert")?;
        if self.text.path.is_none() {
            // not fetched yet: loading says which script fetches it
            self.text.path = Some(data_path(super::MINILM_DIR));
        }
        self.set_image_encoder("efficientnet_lite0")?;
        // an epoch is a pass over the images (one of their up to 5 captions
        // each): the trajectory records the experts 5x as often, and stage 2
        // matches stretches of 26 expert steps instead of 128, short enough
        // to be nearly straight (README "The emoji benchmark")
        self.experts.captions_per_image = Some(1);
        // the text tower projects MiniLM embeddings from a random start: a
        // higher rate than the image tower's fine-tuning rate
        self.experts.lr_text = 0.3;
        // stage 2: the matching loss's gradients are ~100x the scenes' here
        // (the image tower moves little per stretch, and the loss divides
        // by that distance), so the rates are ~100x smaller, and pixels stay
        // in the real range (white backgrounds); sweeps in the README
        let d = &mut self.distill;
        d.lr_images = 10.0;
        d.lr_texts = 0.01;
        d.lr_lr = 0.01;
        d.clamp_pixels = true;
        if self.profile == "smoke" {
            // the small set's epoch is 2 batches of its 125 images
            self.experts.epochs = 10;
            self.eval.full_epochs = 10;
        }
        if self.profile == "default" {
            let e = &mut self.experts;
            e.num_experts = 3;
            e.epochs = 10;
            self.eval.full_epochs = 10;
            let d = &mut self.distill;
            d.iterations = 150;
            d.log_every = 10;
        }
        Ok(())
    }
}
