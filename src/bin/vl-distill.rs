//! `vl-distill`: the command line over the library's stages.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Instant;
use vl_distill::config::{Config, ImageEncoderConfig};
use vl_distill::coreset::{self, CoresetMethod};
use vl_distill::data::{karpathy, prepare};
use vl_distill::display::comparison::ComparisonTable;
use vl_distill::display::export::DEFAULT_NEAREST;
use vl_distill::display::{distilled_grid, export_distilled};
use vl_distill::distill::{DistilledSet, Distiller};
use vl_distill::eval::{append_result, Recall, RecallStats, ResultRow};
use vl_distill::evaluator::{evaluate_experts, Evaluator};
use vl_distill::experiment::{load_dataset, Experiment};
use vl_distill::expert::ExpertTrainer;
use vl_distill::train::SgdConfig;
use vl_distill::trajectory;

#[derive(Parser)]
#[command(
    name = "vl-distill",
    version,
    about = "Vision-language dataset distillation by bi-trajectory matching"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate, export or inspect a dataset.
    Data {
        #[command(subcommand)]
        action: DataAction,
    },
    /// Stage 1: train the experts and write their trajectories into --out.
    Experts(Common),
    /// Stage 2: distil a synthetic set from the experts in --out
    /// (checkpointed; resumes). Writes --out/distilled.safetensors.
    Distill(Common),
    /// Train fresh models and report test retrieval (appends to --out/results.json).
    Eval {
        #[command(flatten)]
        common: Common,
        /// What to train on: `full` = the whole train split (the upper bound),
        /// `distilled` = --out/distilled.safetensors, or a coreset of
        /// `distill.pairs` real pairs (`random`, `herding`, `kcenter`,
        /// `forgetting`; all but random need the experts in --out).
        #[arg(long, value_enum, default_value = "full")]
        method: EvalMethod,
        /// Train fresh full-data models even when --out holds finished experts.
        #[arg(long)]
        retrain: bool,
    },
    /// The whole pipeline: experts, distillation, then the distilled set,
    /// the four coresets (random, herding, k-center, forgetting) of the same
    /// size and the full data evaluated; writes results.json and report.md.
    /// Reuses what --out already holds.
    Run(Common),
    /// Evaluate coreset baselines of real pairs with the protocol of the
    /// distilled set (trains the experts first if --out has none: herding
    /// and k-center use the first expert's features, forgetting its
    /// counts); appends a row per method and size to --out/results.json.
    Baselines {
        #[command(flatten)]
        common: Common,
        /// Which coreset, or `all` four.
        #[arg(long, value_enum, default_value = "all")]
        method: BaselineMethod,
        /// Coreset sizes, comma-separated (default: `distill.pairs`).
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

#[derive(Clone, Copy, ValueEnum)]
enum EvalMethod {
    /// The full training split.
    Full,
    /// The distilled set in --out.
    Distilled,
    /// A random coreset of `distill.pairs` real pairs.
    Random,
    /// A herding coreset of `distill.pairs` real pairs.
    Herding,
    /// A k-center coreset of `distill.pairs` real pairs.
    Kcenter,
    /// A forgetting coreset of `distill.pairs` real pairs.
    Forgetting,
}

#[derive(Clone, Copy, ValueEnum)]
enum BaselineMethod {
    /// Uniformly drawn pairs.
    Random,
    /// Herding in the first expert's feature space.
    Herding,
    /// k-center greedy in the same space.
    Kcenter,
    /// The pairs the first expert forgot most.
    Forgetting,
    /// All four.
    All,
}

impl BaselineMethod {
    fn methods(self) -> Vec<CoresetMethod> {
        match self {
            BaselineMethod::Random => vec![CoresetMethod::Random],
            BaselineMethod::Herding => vec![CoresetMethod::Herding],
            BaselineMethod::Kcenter => vec![CoresetMethod::KCenter],
            BaselineMethod::Forgetting => vec![CoresetMethod::Forgetting],
            BaselineMethod::All => CoresetMethod::ALL.to_vec(),
        }
    }
}

#[derive(Subcommand)]
enum DataAction {
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
enum PrepareDataset {
    /// Flickr30K: flickr30k-images.tar.gz (or .zip, or the folder) and dataset_flickr30k.json.
    Flickr30k,
    /// COCO 2014: train2014.zip and val2014.zip (or the folders) and dataset_coco.json.
    Coco,
}

#[derive(Args)]
struct PrepareArgs {
    /// The dataset.
    #[arg(long, value_enum)]
    dataset: PrepareDataset,
    /// Folder holding your copy under the original names: the image archives
    /// (flickr30k-images.tar.gz | train2014.zip, val2014.zip) or their
    /// extracted folders, and dataset_*.json or caption_datasets.zip.
    #[arg(long, value_name = "DIR")]
    source: PathBuf,
    /// Where the prepared set goes (default: data/flickr30k or data/coco,
    /// where the paper profile looks).
    #[arg(long, value_name = "DEST")]
    out: Option<PathBuf>,
    /// Side of the square images written (the loader's image size; 224 is
    /// the paper profile's).
    #[arg(long, default_value_t = prepare::DEFAULT_IMAGE_SIZE)]
    image_size: u32,
    /// Drop the images the split file names but the source lacks (or that
    /// cannot be decoded) instead of failing; they are listed.
    #[arg(long)]
    allow_missing: bool,
    /// No progress bar or log lines (the summary is still printed).
    #[arg(long)]
    quiet: bool,
    /// Also encode every caption with this text encoder (hashed, bert, clip)
    /// into DEST/cache/, where runs on DEST find them.
    #[arg(long, value_name = "KIND")]
    text_encoder: Option<String>,
    /// The profile whose `text` settings the encoder takes (they must be the
    /// run's for it to find the embeddings).
    #[arg(long, default_value = "paper")]
    profile: String,
    /// Override a setting of that profile, e.g. --set text.path=DIR (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

#[derive(Args, Clone)]
struct Common {
    /// Built-in profile: smoke, default or paper.
    #[arg(long, default_value = "default")]
    profile: String,
    /// TOML file of settings (its `profile` key picks the base profile).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override one setting, e.g. --set experts.epochs=5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Output folder (default: out/<profile>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Device: auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: String,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Named dataset with its settings at the profile: scenes (built in,
    /// the default), emoji (data/emoji from data-scripts/fetch_emoji.sh,
    /// data/emoji-small at smoke; switches to all-MiniLM-L6-v2 and the
    /// pretrained EfficientNet-Lite0 unless --text-encoder/--image-encoder
    /// say otherwise), flickr30k or coco (data/flickr30k, data/coco from
    /// `vl-distill data prepare`). Applied before the encoders and --set.
    #[arg(long, value_name = "NAME")]
    dataset: Option<String>,
    /// Image encoder at the profile's size: convnet, nf_resnet50,
    /// nf_regnet_b1, nfnet_l0, vit, vit_lora or efficientnet_lite0 (refine
    /// it with --set model.image.size=… / model.image.checkpoint=…). At the
    /// default profile the NF nets get the 10 expert epochs they need from
    /// scratch; efficientnet_lite0 reads data/models/efficientnet-lite0 when
    /// data-scripts/fetch_efficientnet_lite0.sh put it there, and sets
    /// data.norm to its input scaling.
    #[arg(long, value_name = "KIND")]
    image_encoder: Option<String>,
    /// Frozen text encoder: hashed, bert or clip (bert and clip read a local
    /// model folder: --set text.path=DIR; bert defaults to
    /// data/models/all-MiniLM-L6-v2 when data-scripts/fetch_minilm.sh put it there).
    #[arg(long, value_name = "KIND")]
    text_encoder: Option<String>,
}

impl Common {
    fn config(&self) -> Result<Config> {
        let mut c = match &self.config {
            Some(f) => Config::from_toml_file(f)?,
            None => Config::profile(&self.profile)?,
        };
        self.apply_presets(&mut c)?;
        c.apply_overrides(&self.overrides)?;
        Ok(c)
    }

    /// --dataset, then --image-encoder and --text-encoder (all applied
    /// before --set).
    fn apply_presets(&self, c: &mut Config) -> Result<()> {
        if let Some(name) = &self.dataset {
            c.set_dataset(name)?;
        }
        if let Some(kind) = &self.image_encoder {
            c.set_image_encoder(kind)?;
        }
        if self.image_encoder.is_some() || self.dataset.is_some() {
            if let ImageEncoderConfig::EfficientnetLite0 { checkpoint } = &c.model.image {
                use vl_distill::model::efficientnet;
                match checkpoint {
                    Some(weights) => eprintln!(
                        "image: efficientnet_lite0 from {} (set model.image.checkpoint for another file)",
                        weights.display()
                    ),
                    None => eprintln!(
                        "image: warning: no EfficientNet-Lite0 weights at {} (run {}): \
                         starting from random weights",
                        efficientnet::DEFAULT_CHECKPOINT,
                        efficientnet::FETCH_SCRIPT
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
        Ok(())
    }

    fn out(&self, cfg: &Config) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("out").join(&cfg.profile))
    }

    /// The configuration of an earlier run in --out (its config.toml, with
    /// --set applied), unless --config is given or there is none.
    fn saved_config(&self) -> Result<Config> {
        if self.config.is_none() {
            if let Some(file) = self.out.as_ref().map(|o| o.join("config.toml")) {
                if file.exists() {
                    let mut c = Config::from_toml_file(&file)?;
                    self.apply_presets(&mut c)?;
                    c.apply_overrides(&self.overrides)?;
                    return Ok(c);
                }
            }
        }
        self.config()
    }

    fn experiment(&self) -> Result<(Experiment, PathBuf)> {
        self.experiment_with(self.config()?, true)
    }

    /// The experiment of `cfg`; `record` writes `cfg` to --out/config.toml
    /// (the stages that make artefacts do; evaluations, which may use
    /// another encoder than the run they read, do not).
    fn experiment_with(&self, cfg: Config, record: bool) -> Result<(Experiment, PathBuf)> {
        let out = self.out(&cfg);
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        if record {
            std::fs::write(out.join("config.toml"), cfg.to_toml())
                .with_context(|| format!("writing {}/config.toml", out.display()))?;
        }
        let device = vl_distill::device::by_name(&self.device)?;
        let t = Instant::now();
        let exp = Experiment::new(cfg, device, Some(&out.join("cache")))?;
        eprintln!(
            "data: {} [{:.1} s, embeddings {}]",
            exp.dataset.summary(),
            t.elapsed().as_secs_f64(),
            if exp.embeddings_cached {
                "from cache"
            } else {
                "computed"
            }
        );
        if !exp.load_report.skipped.is_empty() {
            eprintln!(
                "data: skipped {} unreadable images (data.skip_unreadable)",
                exp.load_report.skipped.len()
            );
        }
        eprintln!(
            "model: {} ({} parameters), device {}",
            exp.model.describe(),
            exp.model
                .init(0, &exp.device, candle_core::DType::F32)?
                .num_elements(),
            vl_distill::device::describe(&exp.device)
        );
        Ok((exp, out))
    }
}

fn run_experts(exp: &Experiment, out: &Path, quiet: bool) -> Result<()> {
    let t = Instant::now();
    let e = &exp.config.experts;
    eprintln!(
        "stage 1: {} experts × {} epochs on {} → {}",
        e.num_experts,
        e.epochs,
        vl_distill::train::describe_epoch(&exp.train, e.captions_per_image),
        out.display()
    );
    let mut trainer = ExpertTrainer::new(exp)?
        .with_output(out)
        .with_progress(!quiet);
    if quiet {
        // no bar, but still a line per epoch
        while let Some(r) = trainer.step()? {
            eprintln!("{r}");
        }
    } else {
        trainer.run()?;
    }
    for t in trainer.trajectories() {
        if let Some(Some(v)) = t.meta.val_recall.last() {
            eprintln!("expert {}: final val {v}", t.meta.expert);
        }
    }
    eprintln!("stage 1 done in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}

/// The full-data upper bound: the finished experts in `out` (each one is a
/// model trained on the full train split from its own seed) when they match
/// this experiment, else `eval.num_seeds` fresh models.
fn run_full_eval(exp: &Experiment, out: &Path, retrain: bool) -> Result<RecallStats> {
    let t = Instant::now();
    let c = &exp.config;
    let experts = if retrain {
        None
    } else {
        trajectory::load_all(out, &exp.device)
            .ok()
            .filter(|ts| ts.iter().all(|t| t.meta.fits(exp)))
    };
    let stats = match experts {
        Some(trajs) => {
            eprintln!(
                "eval full: final epochs of the {} experts in {} (--retrain trains fresh models)",
                trajs.len(),
                out.display()
            );
            evaluate_experts(&exp.model, &trajs, &exp.test)?
        }
        None => train_full(exp)?,
    };
    let row = ResultRow::new(
        "full",
        None,
        &stats,
        &c.profile,
        &exp.dataset.name,
        &exp.image_encoder(),
        &exp.text_encoder,
    );
    append_result(out, &row)?;
    let chance = Recall::chance(exp.test.num_images(), exp.test.num_pairs());
    println!("full data ({}): {stats}", exp.dataset.name);
    println!("chance:            {chance}");
    eprintln!(
        "eval done in {:.1} s; appended to {}",
        t.elapsed().as_secs_f64(),
        out.join("results.json").display()
    );
    Ok(stats)
}

/// Stage 2 from the experts in `out`; the set goes to `out/distilled.safetensors`.
fn run_distill(exp: &Experiment, out: &Path, quiet: bool) -> Result<DistilledSet> {
    let path = out.join("distilled.safetensors");
    let d = &exp.config.distill;
    let experts = trajectory::load_all(out, &exp.device)?;
    eprintln!(
        "stage 2: {} pairs, {} iterations × {} student steps, {} experts",
        d.pairs,
        d.iterations,
        d.syn_steps,
        experts.len()
    );
    let t = Instant::now();
    let mut distiller = Distiller::new(exp, experts)?
        .with_checkpoint(out.join("distill_checkpoint.safetensors"))?
        .with_progress(!quiet);
    if distiller.iteration > 0 {
        eprintln!("resuming at iteration {}", distiller.iteration);
    }
    if quiet {
        // no bar, but still a line every distill.log_every iterations
        while !distiller.is_done() {
            let r = distiller.step()?;
            if (r.iteration + 1).is_multiple_of(d.log_every) {
                eprintln!("{r}");
            }
        }
    } else {
        distiller.run()?;
    }
    let set = distiller.set.clone();
    set.save(&path)?;
    eprintln!(
        "stage 2 done in {:.1} s: α image {:.4}, text {:.4} → {}",
        t.elapsed().as_secs_f64(),
        set.lr().image,
        set.lr().text,
        path.display()
    );
    let after = format!("after {} iterations", distiller.iteration);
    write_pictures(exp, out, &set, &after, DEFAULT_NEAREST)?;
    Ok(set)
}

/// Pictures of the distilled set `set` in `out`: `distilled_before.png` (the
/// initial set, made again from the seed), `distilled_after.png` (`set`) and
/// the export folder `distilled/`. `after` says what `set` is.
fn write_pictures(
    exp: &Experiment,
    out: &Path,
    set: &DistilledSet,
    after: &str,
    nearest: usize,
) -> Result<()> {
    let d = &exp.config.distill;
    let kind = |k: vl_distill::config::InitKind| format!("{k:?}").to_lowercase();
    let initial = DistilledSet::init(
        exp,
        d.pairs,
        d.init_images,
        d.init_texts,
        exp.config.experts.lr(),
        exp.config.seed,
    )?;
    let before_png = out.join("distilled_before.png");
    let title = format!(
        "before distillation: {} pairs (images {}, texts {}); captions: nearest real",
        initial.len(),
        kind(d.init_images),
        kind(d.init_texts)
    );
    distilled_grid(&initial, exp, &title)?.save_png(&before_png)?;
    let after_png = out.join("distilled_after.png");
    let title = format!(
        "{after}: {} pairs, lr image {:.4} text {:.4}; captions: nearest real",
        set.len(),
        set.lr().image,
        set.lr().text
    );
    distilled_grid(set, exp, &title)?.save_png(&after_png)?;
    let summary = export_distilled(set, exp, &out.join("distilled"), nearest)?;
    eprintln!(
        "pictures: {} and {}; pairs with their {nearest} nearest real captions: {summary}",
        before_png.display(),
        after_png.display()
    );
    Ok(())
}

#[derive(Clone, Copy)]
enum SmallSet {
    Distilled,
    /// A coreset of this many pairs.
    Coreset(CoresetMethod, usize),
}

/// Trains fresh models on the distilled set (with its learned α) or on a
/// coreset (with the experts' learning rates).
fn run_small_eval(exp: &Experiment, out: &Path, which: SmallSet) -> Result<RecallStats> {
    let c = &exp.config;
    let mut distilled_with = None;
    let (method, pairs, lr) = match which {
        SmallSet::Distilled => {
            let path = out.join("distilled.safetensors");
            let set = DistilledSet::load(&path, &exp.device)
                .with_context(|| "no distilled set: run `vl-distill distill` first".to_string())?;
            set.check_fits(exp)
                .with_context(|| format!("{}", path.display()))?;
            let (lr, source) = set.student_lr(exp);
            if let Some(theirs) = &source {
                // the learned image α belongs to the encoder it was distilled with
                eprintln!(
                    "cross-architecture: distilled with {theirs}, evaluated with {} \
                     (image lr {} from experts.lr_image, text lr {:.4} learned)",
                    exp.config.model.image.architecture(),
                    lr.image,
                    lr.text
                );
            }
            distilled_with = source;
            ("distilled", set.as_pairs()?, lr)
        }
        SmallSet::Coreset(m, n) => {
            let experts = if m == CoresetMethod::Random {
                Vec::new()
            } else {
                trajectory::load_all(out, &exp.device).with_context(|| {
                    format!(
                        "the {} coreset needs the experts in {}",
                        m.name(),
                        out.display()
                    )
                })?
            };
            let t0 = Instant::now();
            let set = coreset::select(m, &exp.train, &exp.model, &experts, n, c.seed)?;
            eprintln!(
                "{} coreset: {n} pairs selected in {:.1} s",
                m.name(),
                t0.elapsed().as_secs_f64()
            );
            (m.name(), set, c.experts.lr())
        }
    };
    eprintln!(
        "eval {method}: {} pairs, {} seeds × {} epochs (α image {:.4}, text {:.4})",
        pairs.num_pairs(),
        c.eval.num_seeds,
        c.eval.small_set_epochs,
        lr.image,
        lr.text
    );
    let n = pairs.num_pairs();
    let mut ev = Evaluator::for_small_set(exp, pairs, lr);
    while let Some(r) = ev.step()? {
        eprintln!(
            "  seed {}: test {} ({:.1} s)",
            r.seed_index, r.recall, r.seconds
        );
    }
    let stats = ev.stats()?;
    append_result(
        out,
        &ResultRow::new(
            method,
            Some(n),
            &stats,
            &c.profile,
            &exp.dataset.name,
            &exp.image_encoder(),
            &exp.text_encoder,
        )
        .distilled_with(distilled_with),
    )?;
    println!("{method} ({n} pairs): {stats}");
    Ok(stats)
}

/// The recall table of a run as Markdown.
fn report_markdown(
    exp: &Experiment,
    rows: &[(&str, Option<usize>, RecallStats)],
    times: &[(String, f64)],
) -> String {
    let mut s = format!(
        "# vl-distill run: {} ({} profile)\n\n{}\n\nModel: {}; text encoder {}.\n\n",
        exp.dataset.name,
        exp.config.profile,
        exp.dataset.summary(),
        exp.model.describe(),
        exp.text_encoder
    );
    s.push_str("| method | pairs | TR R@1 | TR R@5 | TR R@10 | IR R@1 | IR R@5 | IR R@10 |\n");
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for (method, pairs, st) in rows {
        let (m, d) = (st.mean.values(), st.std.values());
        let cells: Vec<String> = (0..6)
            .map(|i| format!("{:.1} ± {:.1}", m[i], d[i]))
            .collect();
        let pairs = pairs.map_or("all".to_string(), |p| p.to_string());
        s.push_str(&format!("| {method} | {pairs} | {} |\n", cells.join(" | ")));
    }
    let chance = Recall::chance(exp.test.num_images(), exp.test.num_pairs());
    s.push_str(&format!(
        "\nChance: {chance}. Mean ± std over {} seeds.\n\n",
        exp.config.eval.num_seeds
    ));
    s.push_str("| stage | seconds |\n|---|---|\n");
    for (name, secs) in times {
        s.push_str(&format!("| {name} | {secs:.1} |\n"));
    }
    s
}

/// Trains `eval.num_seeds` fresh models on the full train split and tests them.
fn train_full(exp: &Experiment) -> Result<RecallStats> {
    let c = &exp.config;
    let sgd = SgdConfig {
        batch_size: c.eval.batch_size,
        ..c.experts.sgd()
    };
    eprintln!(
        "eval full: {} fresh seeds × {} epochs on all {} train pairs",
        c.eval.num_seeds,
        c.eval.full_epochs,
        exp.train.num_pairs()
    );
    let mut ev = Evaluator::new(
        exp.model.clone(),
        exp.train.clone(),
        exp.test.clone(),
        sgd,
        c.eval.full_epochs,
        c.eval.num_seeds,
        c.seed,
    );
    while let Some(r) = ev.step()? {
        eprintln!(
            "  seed {}: test {} (loss {:.3}, {:.1} s)",
            r.seed_index, r.recall, r.final_loss, r.seconds
        );
    }
    Ok(ev.stats()?)
}

/// `data prepare`: the dataset, then (with --text-encoder) its caption embeddings.
fn run_prepare(args: PrepareArgs) -> Result<()> {
    let dataset = match args.dataset {
        PrepareDataset::Flickr30k => prepare::Corpus::Flickr30k,
        PrepareDataset::Coco => prepare::Corpus::Coco,
    };
    // the text settings first, so that a bad --set fails before hours of work
    let text = match &args.text_encoder {
        Some(kind) => {
            let common = Common {
                profile: args.profile.clone(),
                config: None,
                overrides: args.overrides.clone(),
                out: None,
                device: "cpu".into(),
                quiet: args.quiet,
                dataset: None,
                image_encoder: None,
                text_encoder: Some(kind.clone()),
            };
            Some(common.config()?.text)
        }
        None => None,
    };
    let opts = prepare::PrepareOptions {
        dataset,
        source: args.source.clone(),
        dest: args.out.clone().unwrap_or_else(|| dataset.default_dest()),
        image_size: args.image_size,
        allow_missing: args.allow_missing,
        progress: !args.quiet,
    };
    let report = prepare::prepare(&opts).with_context(|| {
        format!(
            "preparing {} from {}",
            dataset.title(),
            args.source.display()
        )
    })?;
    println!("{report}");
    if let Some(text) = text {
        let t = Instant::now();
        let encoder = vl_distill::text::from_config(&text)?;
        let (file, hit) = prepare::cache_embeddings(&report.json, encoder.as_ref())?;
        println!(
            "caption embeddings ({}): {} {} ({:.1} s)",
            encoder.id(),
            if hit { "already in" } else { "written to" },
            file.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let paper_json = match vl_distill::config::Config::paper().data.source {
        vl_distill::config::DataSource::Karpathy { json, .. } => Some(json),
        _ => None,
    };
    if paper_json.as_deref() == Some(report.json.as_path()) {
        println!("run on it: vl-distill run --profile paper");
    } else {
        println!(
            "run on it: vl-distill run --profile paper --set data.source.json={}",
            report.json.display()
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Data { action } => match action {
            DataAction::Export { common } => {
                let cfg = common.config()?;
                let out = common.out(&cfg);
                let (ds, report) = load_dataset(&cfg)?;
                let json = karpathy::write_karpathy(&ds, &out)?;
                println!("{}", ds.summary());
                println!("wrote {}", json.display());
                if !report.skipped.is_empty() {
                    println!("skipped {} unreadable images", report.skipped.len());
                }
            }
            DataAction::Prepare(args) => run_prepare(args)?,
            DataAction::Inspect { common, json, show } => {
                let cfg = common.config()?;
                let (ds, report) = match json {
                    Some(j) => karpathy::load_karpathy(
                        &j,
                        None,
                        &karpathy::LoadOptions {
                            image_size: cfg.data.image_size,
                            skip_unreadable: cfg.data.skip_unreadable,
                        },
                    )?,
                    None => load_dataset(&cfg)?,
                };
                println!("{}", ds.summary());
                println!("content hash {}", ds.content_hash());
                for s in ds.train.iter().take(show) {
                    println!("{}:", s.filename);
                    for c in &s.captions {
                        println!("  - {c}");
                    }
                }
                if !report.skipped.is_empty() {
                    println!("skipped {} unreadable images", report.skipped.len());
                }
            }
        },
        Command::Experts(common) => {
            let (exp, out) = common.experiment()?;
            run_experts(&exp, &out, common.quiet)?;
        }
        Command::Eval {
            common,
            method,
            retrain,
        } => {
            let (exp, out) = common.experiment_with(common.config()?, false)?;
            match method {
                EvalMethod::Full => {
                    run_full_eval(&exp, &out, retrain)?;
                }
                EvalMethod::Distilled => {
                    run_small_eval(&exp, &out, SmallSet::Distilled)?;
                }
                EvalMethod::Random
                | EvalMethod::Herding
                | EvalMethod::Kcenter
                | EvalMethod::Forgetting => {
                    let m = match method {
                        EvalMethod::Random => CoresetMethod::Random,
                        EvalMethod::Herding => CoresetMethod::Herding,
                        EvalMethod::Kcenter => CoresetMethod::KCenter,
                        _ => CoresetMethod::Forgetting,
                    };
                    let n = exp.config.distill.pairs;
                    run_small_eval(&exp, &out, SmallSet::Coreset(m, n))?;
                }
            }
        }
        Command::Baselines {
            common,
            method,
            pairs,
        } => {
            let (exp, out) = common.experiment()?;
            let methods = method.methods();
            if methods.iter().any(|m| *m != CoresetMethod::Random) {
                run_experts(&exp, &out, common.quiet)?;
            }
            let sizes = if pairs.is_empty() {
                vec![exp.config.distill.pairs]
            } else {
                pairs
            };
            for n in sizes {
                for m in &methods {
                    run_small_eval(&exp, &out, SmallSet::Coreset(*m, n))?;
                }
            }
        }
        Command::Distill(common) => {
            let (exp, out) = common.experiment()?;
            run_distill(&exp, &out, common.quiet)?;
        }
        Command::Export { common, nearest } => {
            let (exp, out) = common.experiment_with(common.saved_config()?, false)?;
            let path = out.join("distilled.safetensors");
            let set = DistilledSet::load(&path, &exp.device)
                .with_context(|| "no distilled set: run `vl-distill distill` first".to_string())?;
            write_pictures(&exp, &out, &set, "distilled set", nearest)?;
        }
        Command::Run(common) => {
            let t = Instant::now();
            let (exp, out) = common.experiment()?;
            let mut times = Vec::new();
            let mut timed = |name: &str, t0: Instant| {
                times.push((name.to_string(), t0.elapsed().as_secs_f64()))
            };
            let t0 = Instant::now();
            run_experts(&exp, &out, common.quiet)?;
            timed("experts", t0);
            let t0 = Instant::now();
            run_distill(&exp, &out, common.quiet)?;
            timed("distillation", t0);
            let t0 = Instant::now();
            let distilled = run_small_eval(&exp, &out, SmallSet::Distilled)?;
            timed("evaluate distilled", t0);
            let n = exp.config.distill.pairs;
            let mut rows = vec![("distilled", Some(n), distilled)];
            for m in CoresetMethod::ALL {
                let t0 = Instant::now();
                let stats = run_small_eval(&exp, &out, SmallSet::Coreset(m, n))?;
                timed(&format!("evaluate {} coreset", m.name()), t0);
                rows.push((m.name(), Some(n), stats));
            }
            let t0 = Instant::now();
            let full = run_full_eval(&exp, &out, false)?;
            timed("evaluate full data", t0);
            rows.push(("full", None, full));
            let mut report = report_markdown(&exp, &rows, &times);
            let table = ComparisonTable::from_results(&out, 1)?;
            report.push_str(&format!(
                "\n## Distilled against the coresets (Recall@1, mean ± std; best in bold)\n\n{table}"
            ));
            std::fs::write(out.join("report.md"), report)
                .with_context(|| format!("writing {}/report.md", out.display()))?;
            eprintln!(
                "pipeline done in {:.1} s; report in {}",
                t.elapsed().as_secs_f64(),
                out.join("report.md").display()
            );
        }
    }
    Ok(())
}
