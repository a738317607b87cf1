//! Presets: the named datasets (`--dataset NAME`, [`Config::set_dataset`])
//! with where each prepared set lives and the settings it runs with at each
//! profile; the encoders by name (`--image-encoder`, `--text-encoder`) with
//! the folders the fetch scripts fill.
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

use super::*;
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
pub fn data_path(rel: impl AsRef<Path>) -> PathBuf {
    match std::env::var_os(ROOT_VAR).filter(|r| !r.is_empty()) {
        Some(root) => PathBuf::from(root).join(rel),
        None => rel.as_ref().to_path_buf(),
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
    data_path(emoji_json_rel(profile))
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
    /// - `emoji`: the emoji captions set ([`emoji_json`]) with
    ///   all-MiniLM-L6-v2 text embeddings (`bert`, mean-pooled and
    ///   normalised, from [`super::MINILM_DIR`]) and the ImageNet
    ///   EfficientNet-Lite0 ([`Config::set_image_encoder`]) **frozen**
    ///   (`model.backbone = "frozen"`) at 64 px (224 px at `paper`), with
    ///   256-d linear heads on both sides and the experts' and stage-2
    ///   settings of that regime.
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
                    json: data_path(format!("data/{name}/dataset_{name}.json")),
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
        // the pretrained regime: the ImageNet backbone frozen at a
        // resolution that suits it (the artwork's 64 px; 224 px, bilinear
        // from the 64-px art, at `paper`), two linear heads into a 256-d
        // joint space, both modalities standardised (README "The emoji
        // benchmark"); `model.backbone = "trained"` with 32 px is the
        // fine-tuned regime it replaced
        self.data.image_size = if self.profile == "paper" { 224 } else { 64 };
        self.set_text_encoder("bert")?;
        if self.text.path.is_none() {
            // not fetched yet: loading says which script fetches it
            self.text.path = Some(data_path(super::MINILM_DIR));
        }
        self.set_image_encoder("efficientnet_lite0")?;
        // the head-only regime's settings, chosen on this data's val split
        // (docs/measurements.md): the feature-space ones by `vl-distill
        // tune`, then the pixels' optimiser, rate and both sets' iterations
        // by val recall along the distillation
        self.apply_head_only_regime();
        self.distill.feature_iterations = (self.profile != "smoke").then_some(200);
        // at 224 px the graph of 100 images through the backbone held
        // 19.4 GB; 10 at a time, 3.0 GB (docs/measurements.md)
        self.distill.backbone_chunk = (self.profile == "paper").then_some(10);
        Ok(())
    }
}

/// What the profile's (from-scratch) image learning rate is divided by for
/// the experts of the pretrained EfficientNet-Lite0, which fine-tune an
/// ImageNet network rather than train one from scratch.
pub const FINE_TUNE_LR_DIVISOR: f64 = 10.0;

/// Where `data-scripts/fetch_minilm.sh` unpacks all-MiniLM-L6-v2, which
/// `bert` takes when no `text.path` is set ([`Config::set_text_encoder`]).
pub const MINILM_DIR: &str = "data/models/all-MiniLM-L6-v2";
/// The script that fetches all-MiniLM-L6-v2.
pub const MINILM_FETCH_SCRIPT: &str = "data-scripts/fetch_minilm.sh";

/// Where `data-scripts/fetch_efficientnet_lite0.sh` writes the
/// EfficientNet-Lite0 weights.
pub const EFFICIENTNET_CHECKPOINT: &str = "data/models/efficientnet-lite0/model.safetensors";
/// The script that downloads and converts the EfficientNet-Lite0 weights.
pub const EFFICIENTNET_FETCH_SCRIPT: &str = "data-scripts/fetch_efficientnet_lite0.sh";

/// The folder `vl-distill pretrain` writes pretrained image encoders to.
pub const PRETRAINED_DIR: &str = "data/models/pretrained";

/// Where the pretrained weights of `image` at `image_size` px live, under
/// the checkout ([`PRETRAINED_DIR`]`/{architecture}-{size}px.safetensors`,
/// relative like [`EFFICIENTNET_CHECKPOINT`]; a LoRA ViT's are its base
/// ViT's): what `vl-distill pretrain` writes and
/// [`Config::set_image_encoder`] reads. `None` for the ConvNet and
/// EfficientNet-Lite0, which are not pretrained here.
pub fn pretrained_checkpoint(image: &ImageEncoderConfig, image_size: u32) -> Option<PathBuf> {
    let base = match image {
        ImageEncoderConfig::ConvNet { .. } | ImageEncoderConfig::EfficientnetLite0 { .. } => {
            return None
        }
        ImageEncoderConfig::VitLora { size, .. } => ImageEncoderConfig::Vit {
            size: *size,
            checkpoint: None,
        }
        .architecture(),
        other => other.architecture(),
    };
    Some(PathBuf::from(PRETRAINED_DIR).join(format!("{base}-{image_size}px.safetensors")))
}

/// The command that pretrains `kind` at `profile`.
pub fn pretrain_command(kind: &str, profile: &str) -> String {
    format!("vl-distill pretrain --image-encoder {kind} --profile {profile}")
}

impl ImageEncoderConfig {
    /// The encoder `kind` at the size that fits `profile`: the profile's
    /// own ConvNet, the scaled timm architectures at `smoke` and `default`,
    /// the full ones (ViT: `tiny`) at `paper`; EfficientNet-Lite0 has one
    /// size and no checkpoint here (the CLI fills in the fetched weights).
    pub fn named(kind: &str, profile: &str) -> Result<ImageEncoderConfig> {
        let paper = profile == "paper";
        let size = match (paper, kind) {
            (false, _) => EncoderSize::Scaled,
            (true, "vit" | "vit_lora") => EncoderSize::Tiny,
            (true, _) => EncoderSize::Full,
        };
        Ok(match kind {
            "convnet" | "conv_net" => Config::profile(profile)?.model.image,
            "nf_resnet50" => ImageEncoderConfig::NfResnet50 {
                size,
                checkpoint: None,
            },
            "nf_regnet_b1" => ImageEncoderConfig::NfRegnetB1 {
                size,
                checkpoint: None,
            },
            "nfnet_l0" => ImageEncoderConfig::NfnetL0 {
                size,
                checkpoint: None,
            },
            "vit" => ImageEncoderConfig::Vit {
                size,
                checkpoint: None,
            },
            "vit_lora" => ImageEncoderConfig::VitLora {
                size,
                checkpoint: None,
                lora: Default::default(),
            },
            "efficientnet_lite0" => ImageEncoderConfig::EfficientnetLite0 { checkpoint: None },
            other => {
                return Err(Error::Config(format!(
                    "unknown image encoder {other:?} (available: {})",
                    Self::KINDS.join(", ")
                )))
            }
        })
    }

    /// Expert epochs this encoder needs to learn the default profile's
    /// scenes from scratch, where it differs from the profile's 4 (which suit
    /// the ConvNet): 10 for the scaled NF nets from scratch; `None` for the
    /// others (the ViTs, whose SGD training from scratch more epochs do not
    /// help, and any pretrained checkpoint).
    pub fn scratch_epochs(&self) -> Option<usize> {
        match self {
            ImageEncoderConfig::NfResnet50 {
                size: EncoderSize::Scaled,
                checkpoint: None,
            }
            | ImageEncoderConfig::NfRegnetB1 {
                size: EncoderSize::Scaled,
                checkpoint: None,
            }
            | ImageEncoderConfig::NfnetL0 {
                size: EncoderSize::Scaled,
                checkpoint: None,
            } => Some(10),
            _ => None,
        }
    }
}

/// Stage-2 settings a pretrained encoder takes on the built-in scenes at
/// the default profile, where the profile's (chosen by `vl-distill tune`
/// for the ConvNet trained from scratch) do not suit it:
/// [`Config::set_image_encoder`] applies them.
///
/// The matching gradient's scale depends on the image encoder. At the first
/// outer iterations NFNet-L0's gradient with respect to the pixels is about
/// 200 times NF-ResNet-50's and with respect to the text embeddings about 40
/// times (docs/measurements.md, "pretraining"), so the ConvNet's SGD rates
/// throw the set out of the range the student can learn from within three
/// iterations, and both learned rates α fall to 0: NFNet-L0 takes rates
/// divided by those ratios. Each encoder's settings here were kept after a
/// check of the validation recall along the distillation
/// (docs/measurements.md), made with the learned-rate step (`lr_lr` 0.1) and
/// start epochs (`max_start_epoch` 2) the profile had then, which they keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderStage2 {
    /// `distill.lr_images`.
    pub lr_images: f64,
    /// `distill.lr_texts`.
    pub lr_texts: f64,
    /// `distill.lr_lr`.
    pub lr_lr: f64,
    /// `distill.max_start_epoch`.
    pub max_start_epoch: usize,
    /// `distill.max_lr_step`.
    pub max_lr_step: Option<f64>,
    /// `distill.iterations`.
    pub iterations: usize,
    /// `distill.clip_spikes`.
    pub clip_spikes: Option<f64>,
}

impl EncoderStage2 {
    /// The values of these settings in `d`.
    pub fn of(d: &DistillConfig) -> EncoderStage2 {
        EncoderStage2 {
            lr_images: d.lr_images,
            lr_texts: d.lr_texts,
            lr_lr: d.lr_lr,
            max_start_epoch: d.max_start_epoch,
            max_lr_step: d.max_lr_step,
            iterations: d.iterations,
            clip_spikes: d.clip_spikes,
        }
    }

    /// Writes these settings into `d`.
    fn apply(&self, d: &mut DistillConfig) {
        d.lr_images = self.lr_images;
        d.lr_texts = self.lr_texts;
        d.lr_lr = self.lr_lr;
        d.max_start_epoch = self.max_start_epoch;
        d.max_lr_step = self.max_lr_step;
        d.iterations = self.iterations;
        d.clip_spikes = self.clip_spikes;
    }

    /// The default profile's stage-2 settings before `vl-distill tune`
    /// chose the ConvNet's (`lr_images` 3000, `lr_texts` 3, `lr_lr` 0.1,
    /// `max_start_epoch` 2, 100 iterations, no bound, no clipping): the base around
    /// which the pretrained encoders' own were checked on val.
    const CHECKED_BASE: EncoderStage2 = EncoderStage2 {
        lr_images: 3000.0,
        lr_texts: 3.0,
        lr_lr: 0.1,
        max_start_epoch: 2,
        max_lr_step: None,
        iterations: 100,
        clip_spikes: None,
    };
}

/// The experts' image learning rate of the pretrained ViT, fully
/// fine-tuned on the built-in scenes at the default profile: with the
/// profile's SGD rate 0.1 its experts forget the pretrained weights and stay
/// at chance; chosen by the experts' validation recall among 0.1, 0.01,
/// 0.001, 0.0003 and 0.0001 (docs/measurements.md).
pub const PRETRAINED_VIT_EXPERT_LR: f64 = 0.0003;

/// The experts' image learning rate of the pretrained NF-RegNet-B1,
/// fine-tuned on the built-in scenes at the default profile: at the
/// profile's SGD rate 0.1 its experts end far apart (validation TR R@1 8 to
/// 22.5 after 4 epochs) and stage 2 drives the learned rate α to 0; chosen by
/// the experts' validation recall among 0.1, 0.03, 0.01, 0.003 and 0.001
/// (docs/measurements.md).
pub const PRETRAINED_NF_REGNET_B1_EXPERT_LR: f64 = 0.01;

impl ImageEncoderConfig {
    /// The experts' image learning rate this encoder takes when it
    /// fine-tunes pretrained weights on the built-in scenes at the default
    /// profile, where the profile's (chosen for training from scratch) does
    /// not suit it: [`PRETRAINED_VIT_EXPERT_LR`] for the fully fine-tuned
    /// ViT, [`PRETRAINED_NF_REGNET_B1_EXPERT_LR`] for NF-RegNet-B1; `None`
    /// for the others (the other NF nets fine-tune at the profile's rate, a
    /// LoRA ViT trains only its adapters).
    pub fn pretrained_expert_lr_image(&self) -> Option<f64> {
        match self {
            ImageEncoderConfig::Vit {
                size: EncoderSize::Scaled,
                checkpoint: Some(_),
            } => Some(PRETRAINED_VIT_EXPERT_LR),
            ImageEncoderConfig::NfRegnetB1 {
                size: EncoderSize::Scaled,
                checkpoint: Some(_),
            } => Some(PRETRAINED_NF_REGNET_B1_EXPERT_LR),
            _ => None,
        }
    }

    /// This encoder's own stage-2 settings ([`EncoderStage2`]) on the
    /// built-in scenes at the default profile when it starts from
    /// pretrained weights: NF-ResNet-50's are the base the encoders' own
    /// settings were checked around (the default profile's before `tune`),
    /// NFNet-L0's that base with rates scaled to its gradients,
    /// NF-RegNet-B1's and the ViTs' with bounded log-α steps (the LoRA
    /// ViT's also with 75 iterations and its gradient spikes clipped);
    /// `None` where the profile's suit it (the ConvNet).
    pub fn pretrained_stage2(&self) -> Option<EncoderStage2> {
        let base = EncoderStage2::CHECKED_BASE;
        match self {
            ImageEncoderConfig::NfResnet50 {
                size: EncoderSize::Scaled,
                checkpoint: Some(_),
            } => Some(base),
            ImageEncoderConfig::NfnetL0 {
                size: EncoderSize::Scaled,
                checkpoint: Some(_),
            } => Some(EncoderStage2 {
                lr_images: 15.0,
                lr_texts: 0.075,
                max_lr_step: Some(0.1),
                ..base
            }),
            // the image α starts at the experts' rate, 300× below the
            // text tower's (NF-RegNet-B1's: 10× below)
            ImageEncoderConfig::NfRegnetB1 {
                size: EncoderSize::Scaled,
                checkpoint: Some(_),
            }
            | ImageEncoderConfig::Vit {
                size: EncoderSize::Scaled,
                checkpoint: Some(_),
            } => Some(EncoderStage2 {
                max_lr_step: Some(0.1),
                ..base
            }),
            // unclipped, val recall along the distillation peaked at 50
            // iterations and fell by 100; with spikes clipped at 3× the
            // median gradient norm it rose to 75 (docs/measurements.md)
            ImageEncoderConfig::VitLora {
                size: EncoderSize::Scaled,
                checkpoint: Some(_),
                ..
            } => Some(EncoderStage2 {
                max_lr_step: Some(0.1),
                iterations: 75,
                clip_spikes: Some(3.0),
                ..base
            }),
            _ => None,
        }
    }

    /// The image projection head (`model.image_proj`) this encoder takes
    /// when it fine-tunes pretrained weights on the built-in scenes at the
    /// default profile: a linear head into 256 dimensions for the LoRA ViT,
    /// kept after a check of the validation recall along the distillation
    /// (docs/measurements.md); `None` for the others, which embed directly.
    pub fn pretrained_image_proj(&self) -> Option<usize> {
        match self {
            ImageEncoderConfig::VitLora {
                size: EncoderSize::Scaled,
                checkpoint: Some(_),
                ..
            } => Some(LORA_VIT_IMAGE_PROJ),
            _ => None,
        }
    }
}

/// The width of the pretrained LoRA ViT's image projection head on the
/// scenes at the default profile ([`ImageEncoderConfig::pretrained_image_proj`]),
/// the head-only regime's joint dimension.
pub const LORA_VIT_IMAGE_PROJ: usize = super::HEAD_ONLY_JOINT_DIM;

impl Config {
    /// Switches the image encoder to `kind` at the profile's size
    /// ([`ImageEncoderConfig::named`]) and, at the `default` profile, gives
    /// its experts and its full-data evaluation the epochs it needs to learn
    /// from scratch ([`ImageEncoderConfig::scratch_epochs`]; the ConvNet and
    /// the ViTs keep the profile's). The smoke profile keeps its epochs: it
    /// checks the machinery in CI, not the encoders' quality.
    /// `efficientnet_lite0` also gets the pretrained weights when
    /// `data-scripts/fetch_efficientnet_lite0.sh` put them in
    /// `data/models/efficientnet-lite0/` (under [`ROOT_VAR`] when set, else the working folder)
    /// and their input scaling as `data.norm`, and with them the experts
    /// fine-tune at the profile's image learning rate divided by
    /// [`FINE_TUNE_LR_DIVISOR`] (switching from it to another encoder restores the
    /// profile's rate; other switches leave `experts.lr_image` alone). On the
    /// built-in scenes, the NF nets and ViTs (a LoRA ViT: as its frozen base)
    /// start from the weights `vl-distill pretrain` wrote for their
    /// architecture at `data.image_size` ([`pretrained_checkpoint`], under
    /// [`ROOT_VAR`] when set) when they are there, and then keep the
    /// profile's epochs: they fine-tune; at the default profile an encoder
    /// the profile's rates do not suit takes its own stage-2 rates
    /// ([`ImageEncoderConfig::pretrained_stage2`]), expert rate
    /// ([`ImageEncoderConfig::pretrained_expert_lr_image`]) and image head
    /// ([`ImageEncoderConfig::pretrained_image_proj`]) (at `smoke`,
    /// only the stage-2 bound on each log-α step), and a switch away from it
    /// restores the profile's. What
    /// `--image-encoder` does; set `experts.epochs` / `experts.lr_image`
    /// afterwards to override.
    ///
    /// ```
    /// use vl_distill::config::Config;
    /// let mut c = Config::default_profile();
    /// c.set_image_encoder("nfnet_l0").unwrap();
    /// assert_eq!(c.model.image.architecture(), "nfnet_l0-scaled");
    /// assert_eq!((c.experts.epochs, c.eval.full_epochs), (10, 10));
    /// ```
    pub fn set_image_encoder(&mut self, kind: &str) -> Result<()> {
        let was_pretrained = self.fine_tunes_efficientnet();
        let previous_stage2 = self.own_stage2()?;
        let had_own_expert_lr = self.own_expert_lr_image().is_some();
        let had_own_image_proj = self.own_image_proj().is_some();
        self.model.image = ImageEncoderConfig::named(kind, &self.profile)?;
        if let ImageEncoderConfig::EfficientnetLite0 { checkpoint } = &mut self.model.image {
            // the pretrained weights where the fetch script puts them, and
            // the input scaling they were trained with
            let weights = data_path(EFFICIENTNET_CHECKPOINT);
            if weights.exists() {
                *checkpoint = Some(weights);
            }
            self.data.norm = ImageNorm::efficientnet_lite0();
        } else {
            // every other encoder takes ImageNet's mean and std (switching
            // away from efficientnet_lite0 must not keep its scaling)
            self.data.norm = ImageNorm::default();
        }
        if matches!(self.data.source, DataSource::Scenes { .. }) {
            // the weights `vl-distill pretrain` wrote for this encoder, size
            // and resolution, when they are there
            if let Some(rel) = pretrained_checkpoint(&self.model.image, self.data.image_size) {
                let weights = data_path(rel);
                if weights.exists() {
                    self.model.image.set_checkpoint(weights);
                }
            }
        }
        if self.model.backbone == Backbone::Frozen && self.model.image.checkpoint().is_none() {
            // a frozen backbone must be a pretrained one: an encoder without
            // weights trains from scratch (the emoji preset's comparison)
            self.model.backbone = Backbone::Trained;
        }
        let frozen = self.model.backbone == Backbone::Frozen;
        let profile_lr = Config::profile(&self.profile)?.experts.lr_image;
        if frozen {
            // the rate is the image head's, set by the dataset's preset
        } else if self.fine_tunes_efficientnet() {
            self.experts.lr_image = profile_lr / FINE_TUNE_LR_DIVISOR;
        } else if let Some(lr) = self.own_expert_lr_image() {
            self.experts.lr_image = lr;
        } else if was_pretrained || had_own_expert_lr {
            self.experts.lr_image = profile_lr;
        }
        // the scratch epochs were measured on the built-in scenes; another
        // dataset's preset ([`Config::set_dataset`]) sizes its own epochs
        let scenes = matches!(self.data.source, DataSource::Scenes { .. });
        if self.profile == "default" && scenes {
            if let Some(e) = self.model.image.scratch_epochs() {
                self.experts.epochs = e;
                self.eval.full_epochs = e;
            }
        }
        if scenes && !frozen {
            // the head-only regime ([`Config::freeze_backbone`]) has
            // stage-2 settings and heads of its own
            self.switch_encoder_stage2(previous_stage2)?;
            if let Some(dim) = self.own_image_proj() {
                self.model.image_proj = Some(dim);
            } else if had_own_image_proj {
                self.model.image_proj = Config::profile(&self.profile)?.model.image_proj;
            }
        }
        Ok(())
    }

    /// The image projection head of the image encoder when it fine-tunes
    /// pretrained weights on the built-in scenes at the default profile
    /// ([`ImageEncoderConfig::pretrained_image_proj`]).
    fn own_image_proj(&self) -> Option<usize> {
        (self.on_default_scenes() && self.model.backbone.is_trained())
            .then(|| self.model.image.pretrained_image_proj())
            .flatten()
    }

    /// Whether this config runs the built-in scenes at the default profile,
    /// where the pretrained encoders' own settings were chosen.
    fn on_default_scenes(&self) -> bool {
        self.profile == "default" && matches!(self.data.source, DataSource::Scenes { .. })
    }

    /// The image encoder's own stage-2 settings on the built-in scenes at
    /// this profile: at `default`, [`ImageEncoderConfig::pretrained_stage2`];
    /// at `smoke`, only its bound on each log-α step, with the profile's
    /// rates (smoke checks the machinery, but without the bound a
    /// pretrained ViT's first matching gradients threw its image α from
    /// 0.08 to 8·10⁹ within 3 iterations at 40 pairs); none at `paper`,
    /// whose encoders are the full-size ones.
    fn own_stage2(&self) -> Result<Option<EncoderStage2>> {
        let scenes = matches!(self.data.source, DataSource::Scenes { .. });
        let Some(own) = self.model.image.pretrained_stage2().filter(|_| scenes) else {
            return Ok(None);
        };
        Ok(match self.profile.as_str() {
            "default" => Some(own),
            "smoke" => Some(EncoderStage2 {
                max_lr_step: own.max_lr_step,
                ..EncoderStage2::of(&Config::profile("smoke")?.distill)
            }),
            _ => None,
        })
    }

    /// Gives the image encoder its own stage-2 settings
    /// ([`Config::own_stage2`]) in place of the profile's, or restores the
    /// profile's when the encoder before the switch had its own
    /// (`previous`) and this one has none.
    fn switch_encoder_stage2(&mut self, previous: Option<EncoderStage2>) -> Result<()> {
        if previous.is_some() {
            EncoderStage2::of(&Config::profile(&self.profile)?.distill).apply(&mut self.distill);
        }
        if let Some(own) = self.own_stage2()? {
            own.apply(&mut self.distill);
        }
        Ok(())
    }

    /// The experts' image learning rate of the image encoder when it
    /// fine-tunes pretrained weights on the built-in scenes at the default
    /// profile and the profile's rate does not suit it
    /// ([`ImageEncoderConfig::pretrained_expert_lr_image`]).
    fn own_expert_lr_image(&self) -> Option<f64> {
        self.on_default_scenes()
            .then(|| self.model.image.pretrained_expert_lr_image())
            .flatten()
    }

    /// Whether the image encoder is EfficientNet-Lite0 with pretrained weights.
    fn fine_tunes_efficientnet(&self) -> bool {
        matches!(
            self.model.image,
            ImageEncoderConfig::EfficientnetLite0 {
                checkpoint: Some(_)
            }
        )
    }

    /// Switches the frozen text encoder to `kind` (`hashed`, `bert`,
    /// `clip`): what `--text-encoder` does. `bert` without a `text.path`
    /// takes all-MiniLM-L6-v2 from [`MINILM_DIR`] when
    /// `data-scripts/fetch_minilm.sh` put it there (under [`ROOT_VAR`] when set, else the working
    /// folder); `hashed` drops a model folder set for another encoder.
    /// Returns the folder chosen for `bert` this way, if any.
    pub fn set_text_encoder(&mut self, kind: &str) -> Result<Option<PathBuf>> {
        check_text_encoder(kind)?;
        self.text.encoder = kind.into();
        let mut chosen = None;
        match kind {
            "hashed" => {
                self.text.path = None;
                self.text.pooling = None;
                self.text.normalize = None;
                self.text.max_len = None;
            }
            "bert" if self.text.path.is_none() => {
                let minilm = data_path(MINILM_DIR);
                if minilm.join("model.safetensors").exists() {
                    self.text.path = Some(minilm.clone());
                    chosen = Some(minilm);
                }
            }
            _ => {}
        }
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::*;
    use std::path::Path;

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
    fn pretrained_nfnet_takes_its_own_stage2_rates_and_a_switch_restores_the_profiles() {
        let profile = Config::default_profile();
        let mut c = Config::default_profile();
        // from scratch NFNet-L0 keeps the profile's rates
        c.set_image_encoder("nfnet_l0").unwrap();
        assert_eq!(c.model.image.pretrained_stage2(), None);
        assert_eq!(c.distill, profile.distill);
        c.model
            .image
            .set_checkpoint("nfnet_l0-scaled-32px.safetensors".into());
        c.switch_encoder_stage2(None).unwrap();
        let own = c.model.image.pretrained_stage2().unwrap();
        assert_eq!(
            (
                c.distill.lr_images,
                c.distill.lr_texts,
                c.distill.max_lr_step
            ),
            (own.lr_images, own.lr_texts, own.max_lr_step)
        );
        assert!(own.lr_images < profile.distill.lr_images);
        // switching to the ConvNet brings the profile's back, and nothing else moved
        let before = c.model.image.pretrained_stage2();
        c.set_image_encoder("convnet").unwrap();
        assert!(before.is_some());
        assert_eq!(c.distill, profile.distill);
    }

    #[test]
    fn pretrained_nf_regnet_b1_takes_its_own_expert_rate_and_bound_and_a_switch_restores_them() {
        let profile = Config::default_profile();
        let mut c = Config::default_profile();
        c.set_image_encoder("nf_regnet_b1").unwrap();
        assert_eq!(c.own_expert_lr_image(), None);
        c.model
            .image
            .set_checkpoint("nf_regnet_b1-scaled-32px.safetensors".into());
        assert_eq!(
            c.own_expert_lr_image(),
            Some(PRETRAINED_NF_REGNET_B1_EXPERT_LR)
        );
        assert!(PRETRAINED_NF_REGNET_B1_EXPERT_LR < profile.experts.lr_image);
        c.experts.lr_image = PRETRAINED_NF_REGNET_B1_EXPERT_LR;
        c.switch_encoder_stage2(None).unwrap();
        assert_eq!(c.distill.max_lr_step, Some(0.1));
        assert_ne!(c.distill, profile.distill);
        c.set_image_encoder("convnet").unwrap();
        assert_eq!(c.experts.lr_image, profile.experts.lr_image);
        assert_eq!(c.distill, profile.distill);
    }

    #[test]
    fn pretrained_vit_experts_take_their_own_rate_at_default_and_a_switch_restores_it() {
        let profile = Config::default_profile();
        let mut c = Config::default_profile();
        c.set_image_encoder("vit").unwrap();
        // from scratch the ViT keeps the profile's rate
        assert_eq!(c.own_expert_lr_image(), None);
        assert_eq!(c.experts, profile.experts);
        let pretrained = ImageEncoderConfig::Vit {
            size: EncoderSize::Scaled,
            checkpoint: Some("vit-scaled-32px.safetensors".into()),
        };
        c.model.image = pretrained.clone();
        assert_eq!(c.own_expert_lr_image(), Some(PRETRAINED_VIT_EXPERT_LR));
        let stage2 = c.model.image.pretrained_stage2().unwrap();
        assert_eq!(stage2.max_lr_step, Some(0.1));
        assert!(PRETRAINED_VIT_EXPERT_LR < profile.experts.lr_image);
        c.experts.lr_image = PRETRAINED_VIT_EXPERT_LR;
        c.set_image_encoder("convnet").unwrap();
        assert_eq!(c.experts, profile.experts);
        // only at the default profile, and not for the LoRA ViT; at smoke
        // stage 2 takes only the bound on the log-α step
        let mut s = Config::smoke();
        s.model.image = pretrained;
        assert_eq!(s.own_expert_lr_image(), None);
        let smoke_own = s.own_stage2().unwrap().unwrap();
        assert_eq!(smoke_own.max_lr_step, Some(0.1));
        assert_eq!(
            (smoke_own.lr_images, smoke_own.lr_texts),
            (
                Config::smoke().distill.lr_images,
                Config::smoke().distill.lr_texts
            )
        );
        s.switch_encoder_stage2(None).unwrap();
        assert_eq!(s.distill.max_lr_step, Some(0.1));
        s.set_image_encoder("convnet").unwrap();
        assert_eq!(s.distill, Config::smoke().distill);
        let lora = ImageEncoderConfig::VitLora {
            size: EncoderSize::Scaled,
            checkpoint: Some("vit-scaled-32px.safetensors".into()),
            lora: Default::default(),
        };
        assert_eq!(lora.pretrained_expert_lr_image(), None);
    }

    #[test]
    fn pretrained_encoders_keep_the_stage2_base_they_were_checked_with_and_the_lora_vit_its_head() {
        let profile = Config::default_profile();
        // the tuned profile differs from the base the encoders were checked with
        let base = EncoderStage2::CHECKED_BASE;
        assert_ne!(EncoderStage2::of(&profile.distill), base);
        let resnet = ImageEncoderConfig::NfResnet50 {
            size: EncoderSize::Scaled,
            checkpoint: Some("nf_resnet50-scaled-32px.safetensors".into()),
        };
        assert_eq!(resnet.pretrained_stage2(), Some(base));
        assert_eq!(resnet.pretrained_image_proj(), None);
        let lora = ImageEncoderConfig::VitLora {
            size: EncoderSize::Scaled,
            checkpoint: Some("vit-scaled-32px.safetensors".into()),
            lora: Default::default(),
        };
        let own = lora.pretrained_stage2().unwrap();
        assert_eq!(
            (own.iterations, own.max_lr_step, own.clip_spikes),
            (75, Some(0.1), Some(3.0))
        );
        assert_eq!(
            (own.lr_lr, own.max_start_epoch),
            (base.lr_lr, base.max_start_epoch)
        );
        let mut c = Config::default_profile();
        c.model.image = lora.clone();
        assert_eq!(c.own_image_proj(), Some(LORA_VIT_IMAGE_PROJ));
        c.switch_encoder_stage2(None).unwrap();
        c.model.image_proj = c.own_image_proj();
        assert_eq!(EncoderStage2::of(&c.distill), own);
        // a switch away restores the profile's head and stage 2
        c.set_image_encoder("convnet").unwrap();
        assert_eq!(c.model.image_proj, profile.model.image_proj);
        assert_eq!(c.distill, profile.distill);
        // from scratch, at smoke, or with a frozen backbone: no head of its own
        let scratch = ImageEncoderConfig::named("vit_lora", "default").unwrap();
        assert_eq!(scratch.pretrained_image_proj(), None);
        let mut s = Config::smoke();
        s.model.image = lora;
        assert_eq!(s.own_image_proj(), None);
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
            // the frozen backbone: heads on its features at the emoji rate
            assert_eq!(c.model.backbone, Backbone::Frozen);
            assert_eq!(c.experts.lr_image, 0.1);
            assert_eq!(c.experts.captions_per_image, Some(1));
            assert_eq!(c.data.image_size, if profile == "paper" { 224 } else { 64 });
            assert_eq!(c.distill.backbone_chunk, (profile == "paper").then_some(10));
            c.set_image_encoder("convnet").unwrap();
            assert_eq!(
                c.model.backbone,
                Backbone::Trained,
                "a scratch encoder trains"
            );
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
}
