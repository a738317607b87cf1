//! One configuration struct for the whole pipeline, with named profiles.
//!
//! - `smoke`: seconds per stage; tests, CI and notebook execution in CI.
//! - `default`: the README's main command, minutes on a 2-core laptop CPU.
//! - `paper`: the paper's sizes (224 px, 20 experts × 10 epochs), for a GPU
//!   and a dataset the user prepared (Flickr30K / COCO).
//!
//! Every field can be overridden: from a TOML file (`Config::from_toml_file`,
//! whose optional `profile = "..."` key names the base profile) or with
//! dotted `key=value` pairs (`Config::set("experts.epochs", "5")`).

use crate::data::scenes::ScenesConfig;
use crate::data::ImageNorm;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub mod dataset;
pub use dataset::DATASETS;

/// The whole configuration of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The profile this configuration started from (`smoke`, `default`, `paper`).
    pub profile: String,
    /// The one seed that drives every random choice.
    pub seed: u64,
    /// Which dataset, at which image size.
    pub data: DataConfig,
    /// The frozen sentence encoder.
    pub text: TextConfig,
    /// The two-tower model.
    pub model: ModelConfig,
    /// Stage 1: expert training.
    pub experts: ExpertConfig,
    /// The evaluation protocol.
    pub eval: EvalConfig,
    /// Stage 2: distillation.
    pub distill: DistillConfig,
}

/// Where the images and captions come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSource {
    /// The built-in captioned scenes, generated from the config's seed.
    Scenes {
        /// Train / val / test sizes (the image size and seed come from the parent config).
        train: usize,
        /// Validation images.
        val: usize,
        /// Test images.
        test: usize,
    },
    /// A Karpathy-split `dataset_*.json` (Flickr30K, COCO, or a set written by `vl-distill data export`).
    Karpathy {
        /// The JSON file.
        json: PathBuf,
        /// Folder the image paths are relative to (default: the JSON's folder).
        image_root: Option<PathBuf>,
    },
    /// The paper's per-split annotation files.
    PerSplit {
        /// Dataset name used in results (e.g. `flickr30k`).
        name: String,
        /// `*_train.json`.
        train: PathBuf,
        /// `*_val.json`.
        val: PathBuf,
        /// `*_test.json`.
        test: PathBuf,
        /// Folder the `image` paths are relative to.
        image_root: PathBuf,
    },
}

/// Dataset choice and image preprocessing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The source of images and captions.
    pub source: DataSource,
    /// Images are resized to `image_size × image_size`.
    pub image_size: u32,
    /// Pixel normalisation.
    pub norm: ImageNorm,
    /// Skip (and report) unreadable images instead of failing.
    pub skip_unreadable: bool,
}

/// The frozen sentence encoder that turns captions into embeddings
/// (see [`crate::text`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// Encoder name: `hashed` (built in, offline, no weights), `bert` (the
    /// BERT family: bert-base-uncased, sentence-transformers checkpoints such
    /// as all-MiniLM-L6-v2) or `clip` (a CLIP text tower), the last two
    /// loaded from the folder `path`.
    pub encoder: String,
    /// Embedding dimension of the hashed encoder. `bert` and `clip` take
    /// theirs from the checkpoint (hidden size, or CLIP's projection
    /// dimension) and ignore this.
    pub dim: usize,
    /// The model folder of `bert` / `clip` (`config.json`,
    /// `model.safetensors`, `tokenizer.json`, ...); required for them.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `bert` only: `"cls"` or `"mean"`; unset takes the folder's default (a
    /// sentence-transformers folder's pooling mode, else `cls`).
    #[serde(default)]
    pub pooling: Option<String>,
    /// `bert` / `clip`: L2-normalise the embeddings; unset takes the folder's
    /// default (a sentence-transformers `Normalize` module; else off).
    #[serde(default)]
    pub normalize: Option<bool>,
    /// `bert` / `clip`: truncate captions to this many tokens (special tokens
    /// included); unset: BERT min(128, max positions) or a
    /// sentence-transformers folder's `max_seq_length`, CLIP its max positions.
    #[serde(default)]
    pub max_len: Option<usize>,
    /// `bert` / `clip`: captions per forward pass.
    #[serde(default = "default_text_batch_size")]
    pub batch_size: usize,
}

/// What the profile's (from-scratch) image learning rate is divided by for
/// the experts of the pretrained EfficientNet-Lite0: fine-tuning an ImageNet
/// network at the scratch rate 0.1 with SGD bounces (on the emoji set, 64
/// steps at 0.1 lowered the loss less than at 0.01, and 3 epochs reached
/// test TR R@1 4.5 against 11.0 at 0.01 with text rate 0.3; README "The
/// emoji benchmark").
pub const FINE_TUNE_LR_DIVISOR: f64 = 10.0;

/// Where `data-scripts/fetch_minilm.sh` unpacks all-MiniLM-L6-v2, which
/// `bert` takes when no `text.path` is set ([`Config::set_text_encoder`]).
pub const MINILM_DIR: &str = "data/models/all-MiniLM-L6-v2";
/// The script that fetches all-MiniLM-L6-v2.
pub const MINILM_FETCH_SCRIPT: &str = "data-scripts/fetch_minilm.sh";

/// The default of [`TextConfig::batch_size`].
pub const DEFAULT_TEXT_BATCH_SIZE: usize = 64;

fn default_text_batch_size() -> usize {
    DEFAULT_TEXT_BATCH_SIZE
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
            other => {
                return bad(format!(
                    "unknown text encoder {other:?} (available: {})",
                    crate::text::ENCODERS.join(", ")
                ))
            }
        }
        Ok(())
    }
}

/// Which published size of an architecture an image encoder has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncoderSize {
    /// Fewer blocks and channels, for any small image size: what the smoke
    /// and default profiles run on a CPU (the same code as the full sizes).
    #[default]
    Scaled,
    /// The registered timm configuration of an NF net (`nf_resnet50`, …).
    Full,
    /// `vit_tiny_patch16_224` (ViT only, 224 px).
    Tiny,
    /// `vit_base_patch16_224` (ViT only, 224 px).
    Base,
}

impl EncoderSize {
    /// `scaled`, `full`, `tiny` or `base`.
    pub fn name(self) -> &'static str {
        match self {
            EncoderSize::Scaled => "scaled",
            EncoderSize::Full => "full",
            EncoderSize::Tiny => "tiny",
            EncoderSize::Base => "base",
        }
    }
}

/// The image encoder of the image tower. `kind` names it (`convnet`,
/// `nf_resnet50`, `nf_regnet_b1`, `nfnet_l0`, `vit`, `vit_lora`,
/// `efficientnet_lite0`); the timm architectures take a `size` and an
/// optional `checkpoint` (a safetensors file, or a folder with
/// `model.safetensors`, of timm's state dict) to start every expert from
/// pretrained weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ImageEncoderConfig {
    /// The trajectory-matching ConvNet: `depth` blocks of conv3×3 → instance
    /// norm → ReLU → 2×2 average pool, `width` channels.
    #[serde(rename = "convnet", alias = "conv_net")]
    ConvNet {
        /// Channels of every block.
        width: usize,
        /// Number of blocks.
        depth: usize,
    },
    /// timm's `nf_resnet50`: pre-activation NF-ResNet-50.
    NfResnet50 {
        /// `scaled` or `full`.
        #[serde(default)]
        size: EncoderSize,
        /// Pretrained weights (timm names).
        #[serde(default)]
        checkpoint: Option<PathBuf>,
    },
    /// timm's `nf_regnet_b1`: NF-RegNet-B1.
    NfRegnetB1 {
        /// `scaled` or `full`.
        #[serde(default)]
        size: EncoderSize,
        /// Pretrained weights (timm names).
        #[serde(default)]
        checkpoint: Option<PathBuf>,
    },
    /// timm's `nfnet_l0`: the paper's image encoder.
    NfnetL0 {
        /// `scaled` or `full`.
        #[serde(default)]
        size: EncoderSize,
        /// Pretrained weights (timm names).
        #[serde(default)]
        checkpoint: Option<PathBuf>,
    },
    /// timm's ViT, all weights trained.
    Vit {
        /// `scaled`, `tiny` or `base`.
        #[serde(default)]
        size: EncoderSize,
        /// Pretrained weights (timm names).
        #[serde(default)]
        checkpoint: Option<PathBuf>,
    },
    /// A ViT with frozen base weights and trained LoRA adapters: experts,
    /// trajectories and matching cover the adapters only.
    VitLora {
        /// `scaled`, `tiny` or `base`.
        #[serde(default)]
        size: EncoderSize,
        /// The frozen base weights (timm names); random from
        /// `lora.base_seed` when absent.
        #[serde(default)]
        checkpoint: Option<PathBuf>,
        /// Rank, scale, targets.
        #[serde(default)]
        lora: crate::model::vit::LoraConfig,
    },
    /// EfficientNet-Lite0 (one size), ImageNet-pretrained when `checkpoint`
    /// names the weights `data-scripts/fetch_efficientnet_lite0.sh` writes
    /// (`data/models/efficientnet-lite0/model.safetensors`): every expert
    /// starts from them and its batch norms use their frozen running
    /// statistics. Without a checkpoint it starts from random weights with
    /// statistics 0/1 (a warning is printed by the CLI). Images should be
    /// normalised with `model::efficientnet::input_norm()`, which
    /// `--image-encoder efficientnet_lite0` sets as `data.norm`.
    #[serde(rename = "efficientnet_lite0")]
    EfficientnetLite0 {
        /// The pretrained weights (names of the PyTorch port).
        #[serde(default)]
        checkpoint: Option<PathBuf>,
    },
}

impl ImageEncoderConfig {
    /// The encoders of the paper's vision-encoder table (every kind but the
    /// pretrained `efficientnet_lite0`), in its order: what notebooks 09 and
    /// 12 compare.
    pub const PAPER_KINDS: [&'static str; 6] = [
        "convnet",
        "nf_resnet50",
        "nf_regnet_b1",
        "nfnet_l0",
        "vit",
        "vit_lora",
    ];

    /// Every `kind` name: the paper's, then `efficientnet_lite0`.
    pub const KINDS: [&'static str; 7] = [
        "convnet",
        "nf_resnet50",
        "nf_regnet_b1",
        "nfnet_l0",
        "vit",
        "vit_lora",
        "efficientnet_lite0",
    ];

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

    /// The `kind` name.
    pub fn kind(&self) -> &'static str {
        match self {
            ImageEncoderConfig::ConvNet { .. } => "convnet",
            ImageEncoderConfig::NfResnet50 { .. } => "nf_resnet50",
            ImageEncoderConfig::NfRegnetB1 { .. } => "nf_regnet_b1",
            ImageEncoderConfig::NfnetL0 { .. } => "nfnet_l0",
            ImageEncoderConfig::Vit { .. } => "vit",
            ImageEncoderConfig::VitLora { .. } => "vit_lora",
            ImageEncoderConfig::EfficientnetLite0 { .. } => "efficientnet_lite0",
        }
    }

    /// The size, for the timm architectures.
    pub fn size(&self) -> Option<EncoderSize> {
        match self {
            ImageEncoderConfig::ConvNet { .. } | ImageEncoderConfig::EfficientnetLite0 { .. } => {
                None
            }
            ImageEncoderConfig::NfResnet50 { size, .. }
            | ImageEncoderConfig::NfRegnetB1 { size, .. }
            | ImageEncoderConfig::NfnetL0 { size, .. }
            | ImageEncoderConfig::Vit { size, .. }
            | ImageEncoderConfig::VitLora { size, .. } => Some(*size),
        }
    }

    /// Expert epochs this encoder needs to learn the default profile's
    /// scenes from scratch, where it differs from the profile's 4 (which suit
    /// the ConvNet): the scaled NF nets take 10.
    ///
    /// Measured at the default profile (one expert, SGD, validation TR R@1
    /// on 200 images, chance 0.5; README "Encoders"): after 4 / 10 epochs at
    /// lr 0.1, NF-ResNet-50 8.0 / 21.0, NF-RegNet-B1 2.5 / 5.5, NFNet-L0
    /// 2.5 / 17.5 (lr 0.3 and 1.0 were no better; 1.0 diverged for NFNet-L0).
    /// The ViTs from scratch stay at chance with SGD at any rate tried
    /// (0.1 to 10, 10 epochs), so more epochs would buy nothing: `None`.
    /// A pretrained checkpoint needs no more epochs either.
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

    /// The pretrained checkpoint, when one is configured.
    pub fn checkpoint(&self) -> Option<&Path> {
        match self {
            ImageEncoderConfig::ConvNet { .. } => None,
            ImageEncoderConfig::NfResnet50 { checkpoint, .. }
            | ImageEncoderConfig::NfRegnetB1 { checkpoint, .. }
            | ImageEncoderConfig::NfnetL0 { checkpoint, .. }
            | ImageEncoderConfig::Vit { checkpoint, .. }
            | ImageEncoderConfig::VitLora { checkpoint, .. }
            | ImageEncoderConfig::EfficientnetLite0 { checkpoint } => checkpoint.as_deref(),
        }
    }

    /// The architecture without its weights, e.g. `convnet-w64-d3`,
    /// `nfnet_l0-scaled`, `vit_lora-tiny-r8`: two configurations with the
    /// same label have parameters of the same names and shapes (for the
    /// same image size), so one's trajectories can train the other.
    pub fn architecture(&self) -> String {
        match self {
            ImageEncoderConfig::ConvNet { width, depth } => format!("convnet-w{width}-d{depth}"),
            ImageEncoderConfig::EfficientnetLite0 { .. } => "efficientnet_lite0".into(),
            ImageEncoderConfig::VitLora { size, lora, .. } => {
                let targets: Vec<String> = lora
                    .targets
                    .iter()
                    .map(|t| format!("{t:?}").to_lowercase())
                    .collect();
                format!(
                    "vit_lora-{}-r{}-{}",
                    size.name(),
                    lora.rank,
                    targets.join("+")
                )
            }
            other => format!(
                "{}-{}",
                other.kind(),
                other.size().unwrap_or_default().name()
            ),
        }
    }

    fn validate(&self, image_size: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("model.image: {m}")));
        let size = self.size();
        match self {
            ImageEncoderConfig::ConvNet { width, depth } => {
                if *width == 0 || *depth == 0 {
                    return bad("width and depth must be > 0".into());
                }
                if image_size >> depth == 0 {
                    return bad(format!(
                        "ConvNet depth {depth} is too deep for {image_size} px images"
                    ));
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
                        crate::model::efficientnet::FETCH_SCRIPT
                    ),
                    _ => String::new(),
                };
                return bad(format!("checkpoint {} does not exist{hint}", p.display()));
            }
        }
        Ok(())
    }
}

/// The text tower: a trainable projection of the frozen sentence embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TextTowerConfig {
    /// One linear layer.
    Linear,
    /// The paper's head: linear → GELU → linear → dropout → residual → LayerNorm.
    ProjectionHead {
        /// Dropout probability (0.1 in the paper).
        dropout: f64,
    },
}

/// The two-tower contrastive model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The image encoder.
    pub image: ImageEncoderConfig,
    /// Optional linear projection of image features to this dimension; `None`
    /// uses the image features directly (as the paper does) and the text tower
    /// projects to their dimension.
    pub image_proj: Option<usize>,
    /// The text tower.
    pub text_tower: TextTowerConfig,
    /// Softmax temperature τ of InfoNCE (the paper fixes 0.07).
    pub temperature: f64,
    /// Learn τ (as log(1/τ), stored in the text tower's parameters) instead of fixing it.
    pub learn_temperature: bool,
}

/// Stage 1: training the experts and recording their trajectories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpertConfig {
    /// Number of experts (each from its own seed).
    pub num_experts: usize,
    /// Epochs per expert (the trajectory holds epochs + 1 snapshots).
    pub epochs: usize,
    /// Image–caption pairs per minibatch.
    pub batch_size: usize,
    /// SGD learning rate of the image tower.
    pub lr_image: f64,
    /// SGD learning rate of the text tower.
    pub lr_text: f64,
    /// SGD momentum (0 in the paper).
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Compute validation recall after every epoch (for the log line).
    pub val_every_epoch: bool,
    /// Captions of each image an epoch trains on, drawn afresh every epoch;
    /// unset: every caption (an epoch visits every pair). With 1, an epoch
    /// is one pass over the images: 5x shorter on 5-caption sets, so the
    /// trajectory records the parameters 5x as often and stage 2 matches
    /// shorter, straighter stretches of it (the emoji preset's choice,
    /// README "The emoji benchmark"). The full-data evaluation trains the
    /// same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captions_per_image: Option<usize>,
}

/// How one modality of the distilled set starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitKind {
    /// From real training pairs (an image and one of its captions' embeddings).
    Real,
    /// From noise: images N(0, 1) in normalised pixel space; text embeddings
    /// with the per-dimension mean and standard deviation of the real
    /// training embeddings.
    Noise,
}

/// Stage 2: bi-trajectory matching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// Number of synthetic pairs M.
    pub pairs: usize,
    /// Student SGD steps per outer iteration (N, `syn_steps`).
    pub syn_steps: usize,
    /// Expert epochs the student must cover (R, `expert_epochs`).
    pub expert_epochs: usize,
    /// Start epochs are drawn from `0..max_start_epoch`.
    pub max_start_epoch: usize,
    /// Synthetic pairs per student step (`None`: all M).
    pub batch_syn: Option<usize>,
    /// Outer iterations.
    pub iterations: usize,
    /// Learning rate of the synthetic pixels.
    pub lr_images: f64,
    /// Learning rate of the synthetic text embeddings.
    pub lr_texts: f64,
    /// Learning rate of the log student learning rates.
    pub lr_lr: f64,
    /// Momentum of the three outer SGD optimisers (0.5 in the paper's code).
    pub momentum: f64,
    /// How the images start.
    pub init_images: InitKind,
    /// How the text embeddings start.
    pub init_texts: InitKind,
    /// Optimise the images (false: they stay at their initialisation).
    pub distill_images: bool,
    /// Optimise the text embeddings (false: they stay at their initialisation).
    pub distill_texts: bool,
    /// Save a checkpoint every this many iterations (and at the end).
    pub checkpoint_every: usize,
    /// Print a log line every this many iterations.
    pub log_every: usize,
    /// Student steps whose graphs the forward pass keeps for the reverse
    /// sweep (the last ones), which then skips rebuilding them: each saves
    /// about a fifth of a step's time and costs its activations and
    /// gradient graph in memory (≈ 80 MB at the default profile), so memory
    /// is flat in `syn_steps` beyond this. 0 rebuilds every step. Changes
    /// no result.
    #[serde(default = "default_cached_steps")]
    pub cached_steps: usize,
    /// The largest change of each log learning rate (log α) in one
    /// iteration; `None` leaves the step unbounded, as the paper does. A
    /// bound keeps one spike of the matching loss from driving α to 0, from
    /// where it cannot recover (seen with the ViTs and NFNet-L0 in notebook
    /// 09); 0.1 lets α change by at most ~10% per iteration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lr_step: Option<f64>,
    /// Keep the synthetic pixels inside the range real pixels have (0–255
    /// under `data.norm`) after every update; off by default, as in the
    /// paper. On images with saturated backgrounds (the emoji, mostly
    /// white) an unclamped update pushes the background beyond white,
    /// where a pretrained network with frozen batch-norm statistics sees
    /// inputs unlike any real image (README "The emoji benchmark").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clamp_pixels: bool,
}

/// The default of [`DistillConfig::cached_steps`].
pub const DEFAULT_CACHED_STEPS: usize = 5;

fn default_cached_steps() -> usize {
    DEFAULT_CACHED_STEPS
}

/// How a set of pairs (full data, coreset, distilled set) is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    /// Number of fresh models (seeds) trained and evaluated; results are mean ± std.
    pub num_seeds: usize,
    /// Epochs of training on the full train split (`eval --method full`).
    pub full_epochs: usize,
    /// Epochs of training on a small set of pairs (a distilled set or a coreset).
    pub small_set_epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
}

impl ExpertConfig {
    /// The experts' learning rates per tower (also the student's initial α
    /// and the rates coresets are trained with).
    pub fn lr(&self) -> crate::train::TowerLr {
        crate::train::TowerLr {
            image: self.lr_image,
            text: self.lr_text,
        }
    }

    /// The experts' SGD settings.
    pub fn sgd(&self) -> crate::train::SgdConfig {
        crate::train::SgdConfig {
            lr: self.lr(),
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            batch_size: self.batch_size,
            captions_per_image: self.captions_per_image,
        }
    }
}

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
        // tuned on the default data with 40-iteration sweeps (README,
        // "Results at the default profile"); 100 iterations of 5 student
        // steps fit the main command's 30-minute budget on 2 cores
        c.distill.pairs = 100;
        c.distill.syn_steps = 5;
        c.distill.iterations = 100;
        c.distill.lr_images = 3000.0;
        c.distill.lr_texts = 3.0;
        c.distill.checkpoint_every = 10;
        c.distill.log_every = 10;
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

    /// Reads a TOML file: its `profile` key (default `default`) picks the base,
    /// every other key overrides that profile's value.
    pub fn from_toml_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse_toml(&text, path)
    }

    /// [`from_toml_file`](Self::from_toml_file) on a string.
    pub fn from_toml_str(text: &str) -> Result<Config> {
        Self::parse_toml(text, Path::new("<toml>"))
    }

    fn parse_toml(text: &str, path: &Path) -> Result<Config> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| Error::Json {
            path: path.into(),
            message: format!("TOML: {e}"),
        })?;
        let overrides = serde_json::to_value(&table).map_err(|e| Error::Json {
            path: path.into(),
            message: e.to_string(),
        })?;
        let base = overrides
            .get("profile")
            .and_then(|v| v.as_str())
            .unwrap_or("default");
        let mut value = serde_json::to_value(Self::profile(base)?).expect("config serialises");
        merge(&mut value, &overrides);
        serde_json::from_value(value).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Switches the image encoder to `kind` at the profile's size
    /// ([`ImageEncoderConfig::named`]) and, at the `default` profile, gives
    /// its experts and its full-data evaluation the epochs it needs to learn
    /// from scratch ([`ImageEncoderConfig::scratch_epochs`]; the ConvNet and
    /// the ViTs keep the profile's). The smoke profile keeps its epochs: it
    /// checks the machinery in CI, not the encoders' quality.
    /// `efficientnet_lite0` also gets the pretrained weights when
    /// `data-scripts/fetch_efficientnet_lite0.sh` put them in
    /// `data/models/efficientnet-lite0/` (under [`dataset::ROOT_VAR`] when set, else the working folder)
    /// and their input scaling as `data.norm`, and with them the experts
    /// fine-tune at the profile's image learning rate divided by
    /// [`FINE_TUNE_LR_DIVISOR`] (switching from it to another encoder restores the
    /// profile's rate; other switches leave `experts.lr_image` alone). What
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
        self.model.image = ImageEncoderConfig::named(kind, &self.profile)?;
        if let ImageEncoderConfig::EfficientnetLite0 { checkpoint } = &mut self.model.image {
            // the pretrained weights where the fetch script puts them, and
            // the input scaling they were trained with
            let weights = dataset::data_path(crate::model::efficientnet::DEFAULT_CHECKPOINT);
            if weights.exists() {
                *checkpoint = Some(weights);
            }
            self.data.norm = crate::model::efficientnet::input_norm();
        } else {
            // every other encoder takes ImageNet's mean and std (switching
            // away from efficientnet_lite0 must not keep its scaling)
            self.data.norm = ImageNorm::default();
        }
        let profile_lr = Config::profile(&self.profile)?.experts.lr_image;
        if self.fine_tunes_efficientnet() {
            self.experts.lr_image = profile_lr / FINE_TUNE_LR_DIVISOR;
        } else if was_pretrained {
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
        Ok(())
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
    /// `data-scripts/fetch_minilm.sh` put it there (under [`dataset::ROOT_VAR`] when set, else the working
    /// folder); `hashed` drops a model folder set for another encoder.
    /// Returns the folder chosen for `bert` this way, if any.
    pub fn set_text_encoder(&mut self, kind: &str) -> Result<Option<PathBuf>> {
        if !crate::text::ENCODERS.contains(&kind) {
            return Err(Error::Config(format!(
                "unknown text encoder {kind:?} (available: {})",
                crate::text::ENCODERS.join(", ")
            )));
        }
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
                let minilm = dataset::data_path(MINILM_DIR);
                if minilm.join("model.safetensors").exists() {
                    self.text.path = Some(minilm.clone());
                    chosen = Some(minilm);
                }
            }
            _ => {}
        }
        Ok(chosen)
    }

    /// Overrides one field by its dotted path, e.g. `set("experts.epochs", "5")`
    /// or `set("data.source", r#"{"kind":"karpathy","json":"d.json"}"#)`.
    /// The value is read as JSON when it parses as JSON, else as a string.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let parsed: serde_json::Value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        let mut root = serde_json::to_value(&*self).expect("config serialises");
        let mut slot = &mut root;
        let parts: Vec<&str> = key.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            slot = match slot.as_object_mut() {
                // an optional setting left out of the serialised form is
                // added; a misspelt one is refused by deserialisation below
                Some(o) if last => o.entry(part.to_string()).or_insert(serde_json::Value::Null),
                Some(o) => o
                    .get_mut(*part)
                    .ok_or_else(|| Error::Config(format!("no setting {key:?} (at {part:?})")))?,
                None => return Err(Error::Config(format!("no setting {key:?} (at {part:?})"))),
            };
        }
        *slot = parsed;
        *self = serde_json::from_value(root)
            .map_err(|e| Error::Config(format!("{key}={value}: {e}")))?;
        Ok(())
    }

    /// Applies `key=value` strings in order (see [`set`](Self::set)).
    pub fn apply_overrides<S: AsRef<str>>(&mut self, pairs: &[S]) -> Result<()> {
        for p in pairs {
            let p = p.as_ref();
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| Error::Config(format!("override {p:?} is not key=value")))?;
            self.set(k.trim(), v.trim())?;
        }
        self.validate()
    }

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
        if self.eval.num_seeds == 0 || self.eval.batch_size < 2 {
            return bad("eval: num_seeds must be > 0, batch_size >= 2".into());
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
        if let TextTowerConfig::ProjectionHead { dropout } = self.model.text_tower {
            if !(0.0..1.0).contains(&dropout) {
                return bad("model.text_tower.dropout must be in [0, 1)".into());
            }
        }
        Ok(())
    }

    /// The scenes generator settings implied by this config, when the source is scenes.
    pub fn scenes(&self) -> Option<ScenesConfig> {
        match &self.data.source {
            DataSource::Scenes { train, val, test } => Some(ScenesConfig {
                seed: self.seed,
                image_size: self.data.image_size,
                train: *train,
                val: *val,
                test: *test,
            }),
            _ => None,
        }
    }

    /// The config as pretty TOML (what `--print-config` shows).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                // A tagged enum (with "kind") is replaced whole when the kind changes.
                match b.get_mut(k) {
                    Some(slot)
                        if slot.get("kind").is_some()
                            && v.get("kind").is_some()
                            && slot.get("kind") != v.get("kind") =>
                    {
                        *slot = v.clone()
                    }
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(json, &dataset::emoji_json(profile));
            assert_eq!(c.text.encoder, "bert");
            assert_eq!(c.text.path.as_deref(), Some(Path::new(MINILM_DIR)));
            assert_eq!(c.model.image.kind(), "efficientnet_lite0");
            assert_eq!(c.data.norm, crate::model::efficientnet::input_norm());
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
        assert!(dataset::emoji_json("smoke").starts_with(dataset::EMOJI_SMALL_DIR));
        let mut c = Config::default_profile();
        c.set_dataset("flickr30k").unwrap();
        assert_eq!(c.data.source, Config::paper().data.source);
        c.set_dataset("coco").unwrap();
        let how = dataset::how_to_make(Path::new("data/coco/dataset_coco.json")).unwrap();
        assert!(how.contains("data prepare --dataset coco"), "{how}");
        let how = dataset::how_to_make(&dataset::emoji_json("smoke")).unwrap();
        assert!(how.contains("fetch_emoji.sh --small 60"), "{how}");
        assert_eq!(dataset::how_to_make(Path::new("mine/dataset_x.json")), None);
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
