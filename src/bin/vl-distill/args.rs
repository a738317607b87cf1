//! The command line's grammar: subcommands, their arguments, and how the
//! common ones become a [`Config`] and an [`Experiment`].

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use vl_distill::config::{
    pretrain_command, pretrained_checkpoint, Config, DataSource, EncoderStage2, ImageEncoderConfig,
};
use vl_distill::data::prepare;
use vl_distill::display::export::DEFAULT_NEAREST;
use vl_distill::experiment::Experiment;
use vl_distill::pipeline;

#[derive(Parser)]
#[command(
    name = "vl-distill",
    version,
    about = "Vision-language dataset distillation by bi-trajectory matching"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Generate, export or inspect a dataset.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// Pretrain an image encoder (nf_resnet50, nf_regnet_b1, nfnet_l0, vit,
    /// vit_lora) on built-in scenes that share no image with the train, val
    /// and test splits (contrastive, AdamW with warm-up; settings under
    /// `pretrain.*`), and write its weights (timm names) to
    /// data/models/pretrained/<architecture>-<size>px.safetensors, where
    /// --image-encoder then finds them: the experts fine-tune from them.
    Pretrain {
        #[command(flatten)]
        common: Common,
        /// Write the weights here instead (the record goes beside them, .json).
        #[arg(long, value_name = "FILE")]
        to: Option<PathBuf>,
    },
    /// Stage 1: train the experts and write their trajectories into --out.
    Experts(Common),
    /// Stage 2: distil a synthetic set from the experts in --out
    /// (checkpointed; resumes). Writes --out/distilled.safetensors, or with
    /// distill.space = "features" (frozen backbone)
    /// --out/distilled_features.safetensors.
    Distill(Common),
    /// Train fresh models and report test retrieval (appends to --out/results.json).
    Eval {
        #[command(flatten)]
        common: Common,
        /// What to train on: `full` = the whole train split (the upper bound),
        /// `distilled` = --out/distilled.safetensors, `distilled_features` =
        /// --out/distilled_features.safetensors, or a coreset of
        /// `distill.pairs` real pairs (`random`, `herding`, `kcenter`,
        /// `forgetting`; all but random need the experts in --out).
        #[arg(long, default_value = "full")]
        method: String,
        /// Train fresh full-data models even when --out holds finished experts.
        #[arg(long)]
        retrain: bool,
    },
    /// The whole pipeline: experts, distillation, then the distilled set,
    /// the four coresets (random, herding, k-center, forgetting) of the same
    /// size and the full data evaluated; writes results.json and report.md.
    /// With a frozen backbone (model.backbone = "frozen") it distils both
    /// pixels and features. Reuses what --out already holds.
    Run(Common),
    /// Evaluate coreset baselines of real pairs with the protocol of the
    /// distilled set (trains the experts first if --out has none: herding
    /// and k-center use the first expert's features, forgetting its
    /// counts); appends a row per method and size to --out/results.json.
    Baselines {
        #[command(flatten)]
        common: Common,
        /// Which coreset (random, herding, kcenter, forgetting), or `all` four.
        #[arg(long, default_value = "all")]
        method: String,
        /// Coreset sizes, comma-separated (default: `distill.pairs`).
        #[arg(long, value_delimiter = ',')]
        pairs: Vec<usize>,
    },
    /// Choose the stage-2 settings (distill.lr_images, lr_texts, lr_lr,
    /// syn_steps, max_start_epoch, and distill.similarity.lr and
    /// distill.blend.alpha when they are set) by validation recall: successive halving
    /// over a grid around the configured values, with the experts in --out
    /// (trained when missing). Writes --out/tune.json (every score) and
    /// --out/tuned.toml (the winner's whole configuration, for --config).
    /// Never reads the test split.
    Tune {
        #[command(flatten)]
        common: Common,
        /// Candidates in the first rung (the configured values among them).
        #[arg(long, default_value_t = 27)]
        candidates: usize,
        /// Rungs of successive halving (the last runs distill.iterations).
        #[arg(long, default_value_t = 3)]
        rungs: usize,
    },
    /// Compare the stage-2 options at equal storage: plain bi-trajectory
    /// matching, + LoRS's learned similarity (`distill.similarity`), +
    /// RepBlend's blended students (`distill.blend`) and both, each distilled
    /// from the experts in --out (trained when missing) in `distill.space`
    /// and evaluated like every method (students chosen on val with
    /// eval.student_grid, test read once). A set with a similarity gets
    /// the most pairs that fit the same floats (99 for 100 pixel pairs).
    /// Each set lives in --out/compare/<option>-<pairs>/ (resumable);
    /// the table goes to --out/comparison.md, the rows to comparison.json.
    Compare {
        #[command(flatten)]
        common: Common,
        /// Options, comma-separated: plain, lors, blend, lors_blend.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "plain,lors,blend,lors_blend"
        )]
        options: Vec<String>,
        /// Storage budgets in plain pairs, comma-separated (default:
        /// `distill.pairs`).
        #[arg(long, value_delimiter = ',')]
        pairs: Vec<usize>,
    },
    /// (Re)write the pictures of --out/distilled.safetensors:
    /// distilled_before.png, distilled_after.png and distilled/ (a PNG per
    /// pair, index.json, index.md with the nearest real captions). Uses
    /// --out/config.toml unless --config is given.
    Export {
        #[command(flatten)]
        common: Common,
        /// How many nearest real train captions to list per pair.
        #[arg(long, default_value_t = DEFAULT_NEAREST)]
        nearest: usize,
    },
}

#[derive(Subcommand)]
pub enum DataAction {
    /// Generate (built-in scenes) or convert the configured dataset and write
    /// it in Karpathy's layout: DIR/dataset_NAME.json and DIR/images/.
    #[command(alias = "generate")]
    Export {
        #[command(flatten)]
        common: Common,
    },
    /// Print a summary and a few captions of the configured dataset, or of a
    /// Karpathy JSON given with --json.
    Inspect {
        #[command(flatten)]
        common: Common,
        /// A Karpathy-layout dataset_*.json to inspect instead.
        #[arg(long)]
        json: Option<PathBuf>,
        /// How many images to show.
        #[arg(long, default_value_t = 3)]
        show: usize,
    },
    /// Prepare Flickr30K or COCO from your own copy: checks it, resizes
    /// every image once and writes DEST/dataset_NAME.json with the images
    /// (resumable; a finished DEST is left alone).
    Prepare(PrepareArgs),
}

/// Which dataset `data prepare` prepares.
#[derive(Clone, Copy, ValueEnum)]
pub enum PrepareDataset {
    /// Flickr30K: flickr30k-images.tar.gz (or .zip, or the folder) and dataset_flickr30k.json.
    Flickr30k,
    /// COCO 2014: train2014.zip and val2014.zip (or the folders) and dataset_coco.json.
    Coco,
}

#[derive(Args)]
pub struct PrepareArgs {
    /// The dataset.
    #[arg(long, value_enum)]
    pub dataset: PrepareDataset,
    /// Folder holding your copy under the original names: the image archives
    /// (flickr30k-images.tar.gz | train2014.zip, val2014.zip) or their
    /// extracted folders, and dataset_*.json or caption_datasets.zip.
    #[arg(long, value_name = "DIR")]
    pub source: PathBuf,
    /// Where the prepared set goes (default: data/flickr30k or data/coco,
    /// where the paper profile looks).
    #[arg(long, value_name = "DEST")]
    pub out: Option<PathBuf>,
    /// Side of the square images written (the loader's image size; 224 is
    /// the paper profile's).
    #[arg(long, default_value_t = prepare::DEFAULT_IMAGE_SIZE)]
    pub image_size: u32,
    /// Drop the images the split file names but the source lacks (or that
    /// cannot be decoded) instead of failing; they are listed.
    #[arg(long)]
    pub allow_missing: bool,
    /// No progress bar or log lines (the summary is still printed).
    #[arg(long)]
    pub quiet: bool,
    /// Also encode every caption with this text encoder (hashed, bert, clip)
    /// into DEST/cache/, where runs on DEST find them.
    #[arg(long, value_name = "KIND")]
    pub text_encoder: Option<String>,
    /// The profile whose `text` settings the encoder takes (they must be the
    /// run's for it to find the embeddings).
    #[arg(long, default_value = "paper")]
    pub profile: String,
    /// Override a setting of that profile, e.g. --set text.path=DIR (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Args, Clone)]
pub struct Common {
    /// Built-in profile: smoke, default or paper.
    #[arg(long, default_value = "default")]
    pub profile: String,
    /// TOML file of settings (its `profile` key picks the base profile).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. --set experts.epochs=5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Output folder (default: out/<profile>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Device: auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Named dataset with its settings at the profile: scenes (built in,
    /// the default), emoji (data/emoji from data-scripts/fetch_emoji.sh,
    /// data/emoji-small at smoke; switches to all-MiniLM-L6-v2 and the
    /// pretrained EfficientNet-Lite0 unless --text-encoder/--image-encoder
    /// say otherwise), flickr30k or coco (data/flickr30k, data/coco from
    /// `vl-distill data prepare`). Applied before the encoders and --set.
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<String>,
    /// Image encoder at the profile's size: convnet, nf_resnet50,
    /// nf_regnet_b1, nfnet_l0, vit, vit_lora or efficientnet_lite0 (refine
    /// it with --set model.image.size=… / model.image.checkpoint=…). On the
    /// scenes the NF nets and ViTs start from the weights `vl-distill
    /// pretrain` wrote to data/models/pretrained when they are there (at the
    /// default profile each pretrained encoder then takes stage-2
    /// settings of its own, which the command prints); from scratch, at the
    /// default profile the NF nets get the 10 expert epochs they need;
    /// efficientnet_lite0 reads data/models/efficientnet-lite0 when
    /// data-scripts/fetch_efficientnet_lite0.sh put it there, and sets
    /// data.norm to its input scaling.
    #[arg(long, value_name = "KIND")]
    pub image_encoder: Option<String>,
    /// Frozen text encoder: hashed, bert or clip (bert and clip read a local
    /// model folder: --set text.path=DIR; bert defaults to
    /// data/models/all-MiniLM-L6-v2 when data-scripts/fetch_minilm.sh put it there).
    #[arg(long, value_name = "KIND")]
    pub text_encoder: Option<String>,
    /// Freeze the pretrained image encoder and train and match only the
    /// heads (a linear image head and text tower into a 256-d space, on
    /// cached, standardised backbone features), with the head-only regime's
    /// experts, students and stage-2 settings (what the emoji preset uses);
    /// stage 2 then also distils a feature-space set. Needs pretrained
    /// weights (`vl-distill pretrain` on the scenes); not for vit_lora.
    /// Applied after the encoders, before --set.
    #[arg(long)]
    pub frozen_backbone: bool,
}

impl Common {
    pub fn config(&self) -> Result<Config> {
        let mut c = match &self.config {
            Some(f) => Config::from_toml_file(f)?,
            None => Config::profile(&self.profile)?,
        };
        self.apply_presets(&mut c)?;
        c.apply_overrides(&self.overrides)?;
        self.report_encoder_settings(&c);
        Ok(c)
    }

    /// With --image-encoder on the scenes at the default profile and a
    /// backbone that trains, the settings a pretrained encoder takes of its own
    /// ([`ImageEncoderConfig::pretrained_expert_lr_image`],
    /// [`ImageEncoderConfig::pretrained_stage2`]) with the values in effect
    /// after --set.
    fn report_encoder_settings(&self, c: &Config) {
        let (Some(kind), DataSource::Scenes { .. }) = (&self.image_encoder, &c.data.source) else {
            return;
        };
        if c.profile != "default" || !c.model.backbone.is_trained() {
            return;
        }
        let whose = |own: bool| {
            if own {
                "this encoder's own, chosen on val; --set to change"
            } else {
                "from --set"
            }
        };
        if let Some(lr) = c.model.image.pretrained_expert_lr_image() {
            eprintln!(
                "image: pretrained {kind}'s experts fine-tune at experts.lr_image = {} ({})",
                c.experts.lr_image,
                whose(c.experts.lr_image == lr)
            );
        }
        if let Some(dim) = c.model.image.pretrained_image_proj() {
            eprintln!(
                "image: pretrained {kind} embeds through model.image_proj = {} ({})",
                c.model
                    .image_proj
                    .map_or("none".to_string(), |d| d.to_string()),
                whose(c.model.image_proj == Some(dim))
            );
        }
        if let Some(own) = c.model.image.pretrained_stage2() {
            let d = &c.distill;
            let bound = |b: Option<f64>| b.map_or("none".to_string(), |v| v.to_string());
            eprintln!(
                "image: pretrained {kind} distils at distill.lr_images = {}, lr_texts = {}, lr_lr = {}, \
                 max_start_epoch = {}, max_lr_step = {}, iterations = {}, clip_spikes = {} ({})",
                d.lr_images,
                d.lr_texts,
                d.lr_lr,
                d.max_start_epoch,
                bound(d.max_lr_step),
                d.iterations,
                bound(d.clip_spikes),
                whose(EncoderStage2::of(d) == own)
            );
        }
    }

    /// --dataset, then --image-encoder and --text-encoder (all applied
    /// before --set), saying which fetched weights they chose.
    pub fn apply_presets(&self, c: &mut Config) -> Result<()> {
        if let Some(name) = &self.dataset {
            c.set_dataset(name)?;
        }
        if let Some(kind) = &self.image_encoder {
            c.set_image_encoder(kind)?;
        }
        let preset = self.image_encoder.is_some() || self.dataset.is_some();
        if let (true, ImageEncoderConfig::EfficientnetLite0 { checkpoint }) =
            (preset, &c.model.image)
        {
            match checkpoint {
                Some(w) => eprintln!(
                    "image: efficientnet_lite0 from {} (set model.image.checkpoint for another file)",
                    w.display()
                ),
                None => eprintln!(
                    "image: warning: no EfficientNet-Lite0 weights at {} (run {}): starting from random weights",
                    vl_distill::config::EFFICIENTNET_CHECKPOINT,
                    vl_distill::config::EFFICIENTNET_FETCH_SCRIPT
                ),
            }
        }
        if let (Some(kind), DataSource::Scenes { .. }) = (&self.image_encoder, &c.data.source) {
            if let Some(rel) = pretrained_checkpoint(&c.model.image, c.data.image_size) {
                match c.model.image.checkpoint() {
                    Some(w) => eprintln!(
                        "image: {kind} from {} (vl-distill pretrain; set model.image.checkpoint for another file)",
                        w.display()
                    ),
                    None => eprintln!(
                        "image: warning: no pretrained {kind} at {} (run `{}`): training from scratch",
                        rel.display(),
                        pretrain_command(kind, &c.profile)
                    ),
                }
            }
        }
        if let Some(kind) = &self.text_encoder {
            if let Some(minilm) = c.set_text_encoder(kind)? {
                eprintln!(
                    "text: bert from {} (set text.path for another folder)",
                    minilm.display()
                );
            }
        }
        if self.frozen_backbone {
            c.freeze_backbone()?;
            eprintln!(
                "backbone: {} frozen; only the heads train and stage 2 matches them \
                 (the head-only regime's settings; --set to change)",
                c.model.image.kind()
            );
        }
        Ok(())
    }

    pub fn out(&self, cfg: &Config) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("out").join(&cfg.profile))
    }

    /// The configuration of an earlier run in --out (its config.toml, with
    /// the presets and --set applied), unless --config is given or there is none.
    pub fn saved_config(&self) -> Result<Config> {
        let saved = self.out.as_ref().map(|o| o.join("config.toml"));
        match saved.filter(|f| self.config.is_none() && f.exists()) {
            Some(file) => {
                let mut c = Config::from_toml_file(&file)?;
                self.apply_presets(&mut c)?;
                c.apply_overrides(&self.overrides)?;
                self.report_encoder_settings(&c);
                Ok(c)
            }
            None => self.config(),
        }
    }

    /// The experiment of `cfg` in --out; `record` writes `cfg` to --out/config.toml.
    pub fn experiment_with(&self, cfg: Config, record: bool) -> Result<(Experiment, PathBuf)> {
        let out = self.out(&cfg);
        let device = vl_distill::device::by_name(&self.device)?;
        Ok((pipeline::open_experiment(cfg, device, &out, record)?, out))
    }

    pub fn experiment(&self) -> Result<(Experiment, PathBuf)> {
        self.experiment_with(self.config()?, true)
    }
}
