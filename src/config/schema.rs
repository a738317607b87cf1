//! The configuration's types: one struct for the whole pipeline and the
//! settings of each part. A leaf: it names no other module of the crate
//! (the profiles, presets, overrides and checks are in the sibling files).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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
    /// Pretraining of the image encoder (`vl-distill pretrain`).
    #[serde(default)]
    pub pretrain: PretrainConfig,
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

/// The names of the frozen text encoders (`text.encoder`).
pub const TEXT_ENCODERS: [&str; 3] = ["hashed", "bert", "clip"];

/// The default of [`TextConfig::batch_size`].
pub const DEFAULT_TEXT_BATCH_SIZE: usize = 64;

fn default_text_batch_size() -> usize {
    DEFAULT_TEXT_BATCH_SIZE
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
        lora: LoraConfig,
    },
    /// EfficientNet-Lite0 (one size), ImageNet-pretrained when `checkpoint`
    /// names the weights `data-scripts/fetch_efficientnet_lite0.sh` writes
    /// (`data/models/efficientnet-lite0/model.safetensors`): every expert
    /// starts from them and its batch norms use their frozen running
    /// statistics. Without a checkpoint it starts from random weights with
    /// statistics 0/1 (a warning is printed by the CLI). Images should be
    /// normalised with [`ImageNorm::efficientnet_lite0`], which
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

    /// Sets the pretrained checkpoint (no effect on the ConvNet, which
    /// takes none).
    pub fn set_checkpoint(&mut self, path: PathBuf) {
        match self {
            ImageEncoderConfig::ConvNet { .. } => {}
            ImageEncoderConfig::NfResnet50 { checkpoint, .. }
            | ImageEncoderConfig::NfRegnetB1 { checkpoint, .. }
            | ImageEncoderConfig::NfnetL0 { checkpoint, .. }
            | ImageEncoderConfig::Vit { checkpoint, .. }
            | ImageEncoderConfig::VitLora { checkpoint, .. }
            | ImageEncoderConfig::EfficientnetLite0 { checkpoint } => *checkpoint = Some(path),
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
}

/// LoRA settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    /// Rank r of each adapter.
    pub rank: usize,
    /// Scale numerator: the update is `(alpha / rank)·B A`.
    pub alpha: f64,
    /// The adapted linears of every block.
    pub targets: Vec<LoraTarget>,
    /// Seed of the frozen base weights when no checkpoint is given (every
    /// expert and student shares them).
    pub base_seed: u64,
}

impl Default for LoraConfig {
    /// Rank 8, α 16, every linear of each block (attention qkv and output
    /// projection, both MLP layers).
    fn default() -> Self {
        LoraConfig {
            rank: 8,
            alpha: 16.0,
            targets: vec![
                LoraTarget::Qkv,
                LoraTarget::Proj,
                LoraTarget::Fc1,
                LoraTarget::Fc2,
            ],
            base_seed: 0,
        }
    }
}

/// Which linear layers of each block get adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoraTarget {
    /// The attention's joint query/key/value projection.
    Qkv,
    /// The attention's output projection.
    Proj,
    /// The MLP's first layer.
    Fc1,
    /// The MLP's second layer.
    Fc2,
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
    /// Whether the image encoder trains with the heads (`trained`, the
    /// paper's regime) or stays frozen (`frozen`: head-only training and
    /// matching over precomputed, standardised backbone features; needs
    /// `image_proj`).
    #[serde(default, skip_serializing_if = "Backbone::is_trained")]
    pub backbone: Backbone,
}

/// Whether the image encoder's own parameters train.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backbone {
    /// Every parameter of both towers trains (experts fine-tune the encoder,
    /// stage 2 matches all of it).
    #[default]
    Trained,
    /// The image encoder is frozen (its pretrained weights, in eval mode);
    /// only the image projection and the text tower train. Real images are
    /// encoded once (and cached on disk); experts, coresets and evaluation
    /// train the heads on those features, and stage 2 matches the heads'
    /// trajectories only: RepBlend's head-only matching.
    Frozen,
}

impl Backbone {
    /// True for [`Backbone::Trained`].
    pub fn is_trained(&self) -> bool {
        *self == Backbone::Trained
    }

    /// `"trained"` or `"frozen"`.
    pub fn name(self) -> &'static str {
        match self {
            Backbone::Trained => "trained",
            Backbone::Frozen => "frozen",
        }
    }
}

/// What the distilled set's images are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynthSpace {
    /// Pixels `[M, 3, H, W]`, as in the paper: usable with any encoder.
    #[default]
    Pixels,
    /// Frozen-backbone features `[M, D]` (with `model.backbone = "frozen"`
    /// only): cheaper and stronger, but tied to that backbone and its
    /// weights (no cross-architecture use).
    Features,
}

impl SynthSpace {
    /// True for [`SynthSpace::Pixels`].
    pub fn is_pixels(&self) -> bool {
        *self == SynthSpace::Pixels
    }

    /// `"pixels"` or `"features"`.
    pub fn name(self) -> &'static str {
        match self {
            SynthSpace::Pixels => "pixels",
            SynthSpace::Features => "features",
        }
    }
}

/// Pretraining an image encoder before the experts fine-tune it
/// (`vl-distill pretrain`): contrastive training of both towers on a source
/// of built-in scenes drawn apart from the train, val and test splits, with
/// AdamW, a linear warm-up and a cosine decay; only the image encoder is
/// kept. One caption of each image per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PretrainConfig {
    /// Training images of the source.
    pub images: usize,
    /// Held-out images of the source, scored after every epoch.
    pub val_images: usize,
    /// Passes over the source's images.
    pub epochs: usize,
    /// Pairs per minibatch.
    pub batch_size: usize,
    /// AdamW's peak learning rate (reached at the end of the warm-up).
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Epochs of linear warm-up from 0 to `lr` (then a cosine decay to 0).
    pub warmup_epochs: f64,
}

impl Default for PretrainConfig {
    /// The default profile's: 10 000 source images (10× its train split),
    /// 200 held out, 8 epochs of 128 pairs, AdamW at 1e-3 with weight decay
    /// 0.05 and one epoch of warm-up.
    fn default() -> Self {
        PretrainConfig {
            images: 10_000,
            val_images: 200,
            epochs: 8,
            batch_size: 128,
            lr: 1e-3,
            weight_decay: 0.05,
            warmup_epochs: 1.0,
        }
    }
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
    /// shorter, straighter stretches of it (the emoji preset's choice).
    /// The full-data evaluation trains the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captions_per_image: Option<usize>,
}

impl ExpertConfig {
    /// True when an expert trained under `other` follows the same
    /// trajectory as one trained under `self`: every setting but how many
    /// experts there are, so raising `num_experts` keeps the experts
    /// already trained.
    pub fn trains_like(&self, other: &ExpertConfig) -> bool {
        let same_count = ExpertConfig {
            num_experts: self.num_experts,
            ..other.clone()
        };
        *self == same_count
    }
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
    /// one forward and one backward pass of a step and holds its
    /// activations and gradient graph in memory until the sweep reaches it,
    /// so memory is flat in `syn_steps` beyond this. 0 rebuilds every step.
    /// Changes no result.
    #[serde(default = "default_cached_steps")]
    pub cached_steps: usize,
    /// The largest change of each log learning rate (log α) in one
    /// iteration; `None` leaves the step unbounded, as the paper does. A
    /// bound keeps one spike of the matching loss from driving α to 0, from
    /// where it cannot recover; 0.1 lets α change by at most ~10% per
    /// iteration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lr_step: Option<f64>,
    /// Keep the synthetic pixels inside the range real pixels have (0–255
    /// under `data.norm`) after every update; off by default, as in the
    /// paper. On images with saturated backgrounds (the emoji, mostly
    /// white) an unclamped update pushes the background beyond white,
    /// where a pretrained network with frozen batch-norm statistics sees
    /// inputs unlike any real image.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clamp_pixels: bool,
    /// What the synthetic images are: pixels (default) or, with a frozen
    /// backbone, its features. `vl-distill run` with a frozen backbone
    /// distils both.
    #[serde(default, skip_serializing_if = "SynthSpace::is_pixels")]
    pub space: SynthSpace,
    /// Learning rate of the synthetic features when `space` is `features`
    /// (`lr_images` is the pixels'); standardised features move on another
    /// scale than pixels.
    #[serde(
        default = "default_lr_features",
        skip_serializing_if = "is_default_lr_features"
    )]
    pub lr_features: f64,
    /// Outer iterations of a feature-space distillation (`iterations` when
    /// absent): without a backbone pass an iteration costs a fraction of a
    /// pixel set's, so a run can afford more of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_iterations: Option<usize>,
    /// How the synthetic pixels are updated: SGD with `momentum` (the
    /// paper's) or Adam. Features, text embeddings and the log learning
    /// rates always take SGD steps with `momentum`.
    #[serde(default, skip_serializing_if = "PixelOptimizer::is_sgd")]
    pub pixel_optimizer: PixelOptimizer,
    /// Spike clipping of the matching gradient: each modality's gradient
    /// (∂ℓ/∂x̂, ∂ℓ/∂ê) is scaled down to at most this many times the median
    /// of its norms over the previous [`SPIKE_WINDOW`] iterations (from
    /// iteration [`SPIKE_WARMUP`] on). One unroll from an expert whose start
    /// the set fits badly can give a gradient tens of times the usual,
    /// and one such step can wreck a set for good; `None` leaves the
    /// gradients as they are, as the paper does. The median is of the
    /// unclipped norms, which the history (and the checkpoint) keeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_spikes: Option<f64>,
    /// With a frozen backbone, pass the synthetic pixels through it this
    /// many images at a time: their features without a graph, then the
    /// gradient back chunk by chunk, each chunk's forward rebuilt (the
    /// backbone runs forward twice per iteration, and only one chunk's
    /// activations are held). `None` passes them all at once and keeps
    /// their graph for the whole iteration: one forward fewer, memory in
    /// proportion to the set and the resolution. The results agree within
    /// rounding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone_chunk: Option<usize>,
    /// LoRS's learned image–text similarity over the synthetic pairs
    /// ([`LorsConfig`]): when set, the set also learns which of its pairs
    /// match each other, and every student trained on it (in the matching
    /// and in evaluation) trains against that matrix with the soft-label
    /// loss instead of InfoNCE. `None` (the default): the paper's method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<LorsConfig>,
    /// RepBlend's representation blending ([`BlendConfig`]): in every
    /// unrolled student step of the matching, the pairs of the batch are
    /// mixed with each other. `None` (the default): no blending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blend: Option<BlendConfig>,
}

/// Representation blending of RepBlend (Zhang et al., NeurIPS 2025),
/// `distill.blend` in a config: in each unrolled student step of the
/// matching, a weight λ ~ Beta(alpha, alpha) and a random partner for each
/// pair of the batch are drawn, and each pair's student input (pixels for
/// an encoder that trains, backbone features for a frozen one) and text
/// embedding become λ times its own plus (1 − λ) times its partner's; the
/// targets (InfoNCE's identity or a learned similarity) stay. Against the
/// collapse of the synthetic pairs onto a few directions. Only the
/// distillation's students blend: students trained on the finished set for
/// evaluation do not, as in the authors' evaluation loop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlendConfig {
    /// The Beta distribution's parameter (1, the authors' default: λ
    /// uniform in [0, 1]).
    #[serde(default = "default_blend_alpha")]
    pub alpha: f64,
}

fn default_blend_alpha() -> f64 {
    1.0
}

impl Default for BlendConfig {
    fn default() -> Self {
        BlendConfig {
            alpha: default_blend_alpha(),
        }
    }
}

/// The learned similarity of LoRS (Xu et al., ICML 2024), `distill.similarity`
/// in a config: `S = diag(a) + (alpha / rank) · L Rᵀ` over the N synthetic
/// pairs, or the full `N × N` matrix with `full = true`, started at the
/// identity and updated by the outer SGD (momentum `distill.momentum`) at
/// rate `lr`. The defaults are the authors' settings for 100 pairs on
/// Flickr30K (rank 10, alpha 3, lr 10). It stores `N (1 + 2·rank)` floats
/// (`N²` when full), less than one pair's worth at rank 10 and N = 100,
/// which is why LoRS compares N − 1 pairs against N at equal storage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LorsConfig {
    /// Rank r of `L Rᵀ` (ignored when `full`).
    #[serde(default = "default_lors_rank")]
    pub rank: usize,
    /// Scaling α of `L Rᵀ`, applied as α / r.
    #[serde(default = "default_lors_alpha")]
    pub alpha: f64,
    /// Learning rate of the similarity's factors.
    #[serde(default = "default_lors_lr")]
    pub lr: f64,
    /// Learn the full matrix instead of the low-rank form.
    #[serde(default)]
    pub full: bool,
}

fn default_lors_rank() -> usize {
    10
}

fn default_lors_alpha() -> f64 {
    3.0
}

fn default_lors_lr() -> f64 {
    10.0
}

impl LorsConfig {
    /// Floats the similarity of `pairs` pairs stores: `N (1 + 2·rank)`, or
    /// `N²` when full.
    pub fn num_floats(&self, pairs: usize) -> usize {
        match self.full {
            true => pairs * pairs,
            false => pairs * (1 + 2 * self.rank),
        }
    }
}

impl Default for LorsConfig {
    fn default() -> Self {
        LorsConfig {
            rank: default_lors_rank(),
            alpha: default_lors_alpha(),
            lr: default_lors_lr(),
            full: false,
        }
    }
}

/// The iterations whose gradient norms [`DistillConfig::clip_spikes`] takes
/// the median of.
pub const SPIKE_WINDOW: usize = 50;
/// Iterations before [`DistillConfig::clip_spikes`] starts clipping (the
/// median of fewer norms is too uncertain).
pub const SPIKE_WARMUP: usize = 10;

/// The optimiser of a distilled set's pixels.
///
/// Under SGD the rate multiplies the gradient, so it must match the
/// gradient's scale (`lr_images` of 10³ are usual). Under Adam the step of
/// every pixel is `lr_images` times m̂ / (√v̂ + ε), at most about
/// `lr_images` itself whatever the gradient's scale: the rate becomes a
/// per-pixel step size in normalised pixel units, e.g. 0.01.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PixelOptimizer {
    /// SGD with momentum `distill.momentum` (PyTorch's convention
    /// `v = μv + g`, `x -= lr·v`), as in the paper's code.
    #[default]
    Sgd,
    /// Adam with β₁ = 0.9, β₂ = 0.999, ε = 1e-8 and bias correction
    /// (Kingma & Ba): each pixel steps by the sign and relative size of its
    /// own gradient, so the few pixels with large gradients (edges of the
    /// artwork against a flat background) cannot dominate the update.
    Adam,
}

impl PixelOptimizer {
    /// True for [`PixelOptimizer::Sgd`].
    pub fn is_sgd(&self) -> bool {
        *self == PixelOptimizer::Sgd
    }
}

/// The largest `lr_images` `validate` accepts under Adam, whose rate is a
/// per-pixel step size: a larger one is an SGD rate left in place.
pub const MAX_ADAM_LR_IMAGES: f64 = 10.0;

/// The default of [`DistillConfig::lr_features`].
pub const DEFAULT_LR_FEATURES: f64 = 1000.0;

fn default_lr_features() -> f64 {
    DEFAULT_LR_FEATURES
}

fn is_default_lr_features(v: &f64) -> bool {
    *v == DEFAULT_LR_FEATURES
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
    /// When set, every method's student settings (rate scale, momentum,
    /// epochs) are chosen from this grid by validation recall before its
    /// test number is computed once; when absent, every method trains
    /// `small_set_epochs` epochs of plain SGD at its own rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub student_grid: Option<StudentGrid>,
}

/// The student settings tried on the validation split for each method
/// (every combination of the three lists). The same grid serves every
/// method, so a coreset gets the same care as a distilled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentGrid {
    /// Factors applied to the method's own rates (the learned α of a
    /// distilled set, the experts' rates for real pairs).
    pub lr_scales: Vec<f64>,
    /// SGD momentum values.
    pub momenta: Vec<f64>,
    /// Epoch counts.
    pub epochs: Vec<usize>,
    /// With `Some(k)`, every (rate, momentum) pair first trains one student
    /// (the first seed), and only the `k` pairs whose student scored best
    /// on val (at its best epoch count) train the other seeds; the setting
    /// is chosen among those on all seeds. `None`: every pair trains every
    /// seed.
    #[serde(default)]
    pub finalists: Option<usize>,
}

impl StudentGrid {
    /// The grid the default profile and the head-only regime search: a
    /// factor 0.3, 1, 3 or 10 on the method's own rates, momentum 0 or 0.9,
    /// 25, 50 or 100 epochs (24 settings, one student run per rate and
    /// momentum scored at each epoch count), of which the 2 best (rate,
    /// momentum) pairs on the first seed go on to the other seeds.
    pub fn standard() -> StudentGrid {
        StudentGrid {
            lr_scales: vec![0.3, 1.0, 3.0, 10.0],
            momenta: vec![0.0, 0.9],
            epochs: vec![25, 50, 100],
            finalists: Some(2),
        }
    }

    /// Number of (rate, momentum) pairs, each one student run per seed.
    pub fn num_runs(&self) -> usize {
        self.lr_scales.len() * self.momenta.len()
    }

    /// How many pairs go on to all `seeds` after the first seed has
    /// screened every pair: `Some(k)` when `finalists` leaves some pair
    /// out, `None` when every pair trains every seed anyway.
    pub fn screened_finalists(&self, seeds: usize) -> Option<usize> {
        self.finalists.filter(|&k| k < self.num_runs() && seeds > 1)
    }

    /// Number of settings in the grid.
    pub fn len(&self) -> usize {
        self.lr_scales.len() * self.momenta.len() * self.epochs.len()
    }

    /// True when the grid holds no setting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-channel normalisation applied when pixels become tensors:
/// `x = (pixel / 255 - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageNorm {
    /// Channel means (RGB), in [0, 1] units.
    pub mean: [f32; 3],
    /// Channel standard deviations (RGB), in [0, 1] units.
    pub std: [f32; 3],
}

impl Default for ImageNorm {
    /// ImageNet statistics, as timm and the paper's code use.
    fn default() -> Self {
        ImageNorm {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

impl ImageNorm {
    /// The normalised value of intensity `v` in channel `c` (0 is black,
    /// 1 is white).
    pub fn normalise(&self, c: usize, v: f32) -> f32 {
        (v - self.mean[c]) / self.std[c]
    }

    /// The input scaling of the pretrained EfficientNet-Lite0 weights,
    /// `(pixel − 127) / 128` (what `--image-encoder efficientnet_lite0`
    /// sets as `data.norm`).
    pub fn efficientnet_lite0() -> Self {
        let m = (127.0 / 255.0) as f32;
        let s = (128.0 / 255.0) as f32;
        ImageNorm {
            mean: [m; 3],
            std: [s; 3],
        }
    }
}
