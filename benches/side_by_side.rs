//! Ours against the PyTorch peer (`benches/peer/vl_peer.py`), in the same
//! run on the same machine:
//!
//! 1. **Parity**: one outer distillation step at the default sizes (3
//!    student steps, f64) from the same parameters and data, ours and the
//!    peer's: both matching-loss terms and the gradients with respect to the
//!    images, the text embeddings and both log learning rates must agree to
//!    1e-4 (relative, in norm), or the bench stops.
//! 2. **Time and memory** of each workload (median over repetitions, peak
//!    resident memory of the process that ran it), and the ratio ours / peer.
//! 3. **Memory against `syn_steps`** 10, 40 and 80: our reverse sweep keeps
//!    one student step's graph alive, the peer's unrolled graph keeps all.
//!
//! ```text
//! python3 -m venv .venv-peer && .venv-peer/bin/pip install -r benches/peer/requirements.txt
//! cargo bench --bench side_by_side            # 5 repetitions each; `-- --quick` for one
//! cargo bench --bench side_by_side -- --inputs DIR   # write the default outer step's input, print how to run each side on it
//! ```
//!
//! Every measurement runs in a fresh child process (ours: this binary again;
//! the peer: `VL_PEER_PYTHON`, else `.venv-peer/bin/python`), one at a time,
//! both on every core (`VL_PEER_THREADS` overrides the peer's thread count).
//! Without a Python that imports torch it prints our side alone and says how
//! to install the peer. The peer's memory is capped at `VL_PEER_MAX_GIB`
//! (default: 80 % of the machine's memory) so that an unroll too large for
//! the machine is reported as out of memory instead of stopping the machine.

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use vl_distill::config::{Config, ImageEncoderConfig};
use vl_distill::data::CaptionedImages;
use vl_distill::model::{ParamSet, TowerParams, TwoTower};
use vl_distill::stage1::sgd::TowerLr;
use vl_distill::stage1::sgd::{train_epoch, SgdConfig, SgdState};
use vl_distill::stage2::unroll::StepBatch;

mod common;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

const CHILD: &str = "VL_SIDE_BY_SIDE_CHILD";

/// What one child process measures.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    /// `outer` or `epoch`.
    kind: String,
    /// Input file (safetensors) shared with the peer.
    input: PathBuf,
    reps: usize,
    width: usize,
    depth: usize,
}

/// What a child reports (ours and the peer's print the same JSON fields).
#[derive(Debug, Clone, Deserialize)]
struct Measured {
    #[serde(default)]
    median: f64,
    peak_mib: f64,
    #[serde(default)]
    oom: bool,
}

/// A workload at some size.
struct Workload {
    name: String,
    kind: &'static str,
    width: usize,
    syn_steps: usize,
}

fn config(width: usize, depth: usize) -> BoxResult<Config> {
    let mut cfg = Config::profile("default")?;
    cfg.model.image = ImageEncoderConfig::ConvNet { width, depth };
    Ok(cfg)
}

fn model_of(cfg: &Config) -> BoxResult<TwoTower> {
    Ok(TwoTower::new(
        &cfg.model,
        cfg.data.image_size as usize,
        cfg.text.dim,
    )?)
}

fn prefixed(p: &TowerParams, prefix: &str, map: &mut HashMap<String, Tensor>) {
    map.extend(p.image.to_map(&format!("{prefix}/image/")));
    map.extend(p.text.to_map(&format!("{prefix}/text/")));
}

fn params_from(
    model: &TwoTower,
    map: &HashMap<String, Tensor>,
    prefix: &str,
) -> BoxResult<TowerParams> {
    let names = model.init(0, &Device::Cpu, DType::F32)?;
    Ok(TowerParams {
        image: ParamSet::from_map(names.image.names(), map, &format!("{prefix}/image/"))?,
        text: ParamSet::from_map(names.text.names(), map, &format!("{prefix}/text/"))?,
    })
}

/// Writes the inputs of one outer step (in `dtype`); [`read_outer_input`]
/// is its inverse and the peer reads the same file.
fn write_outer_input(cfg: &Config, syn_steps: usize, dtype: DType, path: &Path) -> BoxResult<()> {
    let s = common::step_inputs(cfg, syn_steps)?;
    let s = common::StepInputs {
        theta0: s.theta0.map(|_, p| p.to_dtype(dtype))?,
        target: s.target.map(|_, p| p.to_dtype(dtype))?,
        images: s.images.to_dtype(dtype)?,
        texts: s.texts.to_dtype(dtype)?,
        ..s
    };
    let mut map = HashMap::new();
    prefixed(&s.theta0, "theta0", &mut map);
    prefixed(&s.target, "target", &mut map);
    map.insert("images".into(), s.images.clone());
    map.insert("texts".into(), s.texts.clone());
    let rows: Vec<i64> = s
        .batches
        .iter()
        .flat_map(|b| b.indices.iter().map(|&i| i as i64))
        .collect();
    let b = s.batches[0].indices.len();
    map.insert(
        "batches".into(),
        Tensor::from_vec(rows, (s.batches.len(), b), &Device::Cpu)?,
    );
    map.insert(
        "lr".into(),
        Tensor::new(&[s.lr.image, s.lr.text], &Device::Cpu)?,
    );
    map.insert(
        "temperature".into(),
        Tensor::new(&[cfg.model.temperature], &Device::Cpu)?,
    );
    candle_core::safetensors::save(&map, path)?;
    Ok(())
}

/// The outer step's inputs written by [`write_outer_input`].
fn read_outer_input(
    cfg: &Config,
    map: &HashMap<String, Tensor>,
    lr: TowerLr,
) -> BoxResult<common::StepInputs> {
    let model = model_of(cfg)?;
    Ok(common::StepInputs {
        theta0: params_from(&model, map, "theta0")?,
        target: params_from(&model, map, "target")?,
        images: map["images"].clone(),
        texts: map["texts"].clone(),
        batches: batches_from(map)?,
        lr,
        model,
        similarity: None,
    })
}

/// Writes the inputs of one expert epoch over random data of the default
/// profile's sizes (values do not change the work).
fn write_epoch_input(cfg: &Config, path: &Path) -> BoxResult<()> {
    let dev = Device::Cpu;
    let model = model_of(cfg)?;
    let size = cfg.data.image_size as usize;
    let images = match cfg.data.source {
        vl_distill::config::DataSource::Scenes { train, .. } => train,
        _ => 1000,
    };
    let pairs = images * 5;
    let mut map = HashMap::new();
    prefixed(&model.init(0, &dev, DType::F32)?, "theta0", &mut map);
    map.insert(
        "images".into(),
        Tensor::randn(0f32, 1.0, (images, 3, size, size), &dev)?,
    );
    map.insert(
        "texts".into(),
        Tensor::randn(0f32, 0.05, (pairs, cfg.text.dim), &dev)?,
    );
    let owner: Vec<i64> = (0..pairs as i64).map(|i| i / 5).collect();
    map.insert("owner".into(), Tensor::from_vec(owner, pairs, &dev)?);
    map.insert(
        "lr".into(),
        Tensor::new(&[cfg.experts.lr_image, cfg.experts.lr_text], &dev)?,
    );
    map.insert(
        "batch_size".into(),
        Tensor::new(&[cfg.experts.batch_size as i64], &dev)?,
    );
    map.insert(
        "temperature".into(),
        Tensor::new(&[cfg.model.temperature], &dev)?,
    );
    candle_core::safetensors::save(&map, path)?;
    Ok(())
}

fn batches_from(map: &HashMap<String, Tensor>) -> candle_core::Result<Vec<StepBatch>> {
    Ok(map["batches"]
        .to_vec2::<i64>()?
        .into_iter()
        .enumerate()
        .map(|(i, row)| StepBatch {
            indices: row.into_iter().map(|x| x as u32).collect(),
            seed: i as u64,
            blend: None,
        })
        .collect())
}

/// Where our side of the parity check writes its results.
fn check_output(input: &Path) -> PathBuf {
    input.with_extension("ours.safetensors")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Our side of a job, in this (child) process.
fn run_child(job: &Job) -> BoxResult<()> {
    vl_distill::device::tune_allocator();
    let cfg = config(job.width, job.depth)?;
    let map = candle_core::safetensors::load(&job.input, &Device::Cpu)?;
    let lr_v = map["lr"].to_vec1::<f64>()?;
    let lr = TowerLr {
        image: lr_v[0],
        text: lr_v[1],
    };
    let before = common::peak_rss_mib();
    let mut times = Vec::new();
    match job.kind.as_str() {
        "outer" => {
            let inputs = read_outer_input(&cfg, &map, lr)?;
            for _ in 0..job.reps {
                let t = Instant::now();
                inputs.gradient()?;
                times.push(t.elapsed().as_secs_f64());
            }
        }
        "epoch" => {
            let model = model_of(&cfg)?;
            let theta0 = params_from(&model, &map, "theta0")?;
            let owner: Vec<u32> = map["owner"]
                .to_vec1::<i64>()?
                .into_iter()
                .map(|x| x as u32)
                .collect();
            let data = CaptionedImages::new(map["images"].clone(), map["texts"].clone(), owner)?;
            let sgd = SgdConfig {
                lr,
                momentum: 0.0,
                weight_decay: 0.0,
                batch_size: map["batch_size"].to_vec1::<i64>()?[0] as usize,
                captions_per_image: None,
            };
            for rep in 0..job.reps {
                let mut params = theta0.clone();
                let mut state = SgdState::default();
                let t = Instant::now();
                train_epoch(
                    &model,
                    &mut params,
                    &mut state,
                    &data,
                    &sgd,
                    rep as u64,
                    None,
                    |_, _, _| {},
                )?;
                times.push(t.elapsed().as_secs_f64());
            }
        }
        "check" => {
            let m = read_outer_input(&cfg, &map, lr)?.gradient()?;
            let dev = Device::Cpu;
            let out: HashMap<String, Tensor> = [
                (
                    "loss".to_string(),
                    Tensor::new(&[m.loss_image, m.loss_text], &dev)?,
                ),
                ("images".to_string(), m.grads.images),
                ("texts".to_string(), m.grads.texts),
                (
                    "log_lr".to_string(),
                    Tensor::new(&[m.grads.log_lr_image, m.grads.log_lr_text], &dev)?,
                ),
            ]
            .into_iter()
            .collect();
            candle_core::safetensors::save(&out, check_output(&job.input))?;
            times.push(0.0);
        }
        other => return Err(format!("unknown job kind {other}").into()),
    }
    println!(
        "{}",
        serde_json::json!({
            "seconds": times,
            "median": median(times.clone()),
            "peak_mib": common::peak_rss_mib(),
            "before_mib": before,
        })
    );
    Ok(())
}

fn last_json_line(out: &std::process::Output, who: &str) -> BoxResult<Measured> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{who} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("{who} printed no result: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

fn ours(job: &Job) -> BoxResult<Measured> {
    let out = Command::new(std::env::current_exe()?)
        .env(CHILD, serde_json::to_string(job)?)
        .output()?;
    last_json_line(&out, "our child")
}

/// The peer's interpreter, when one imports torch.
struct Peer {
    python: PathBuf,
    script: PathBuf,
    threads: usize,
    max_gib: f64,
}

impl Peer {
    fn find() -> Option<Peer> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = std::env::var_os("VL_PEER_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv-peer/bin/python"));
        let ok = Command::new(&python)
            .args(["-c", "import torch, safetensors"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            return None;
        }
        let threads = std::env::var("VL_PEER_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let max_gib = std::env::var("VL_PEER_MAX_GIB")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| 0.8 * total_memory_gib());
        Some(Peer {
            python,
            script: root.join("benches/peer/vl_peer.py"),
            threads,
            max_gib,
        })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.python);
        c.arg(&self.script)
            .env("VL_PEER_THREADS", self.threads.to_string())
            .env("VL_PEER_MAX_GIB", format!("{:.1}", self.max_gib));
        c
    }

    fn measure(&self, job: &Job) -> BoxResult<Measured> {
        let out = self
            .command()
            .arg(&job.kind)
            .arg(&job.input)
            .arg(job.reps.to_string())
            .output()?;
        last_json_line(&out, "the peer")
    }

    fn version(&self) -> String {
        Command::new(&self.python)
            .args(["-c", "import torch; print(torch.__version__)"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    }
}

fn total_memory_gib() -> f64 {
    common::proc_kib("/proc/meminfo", "MemTotal:").map_or(16.0, |kb| kb / (1024.0 * 1024.0))
}

/// ‖a − b‖ / ‖b‖ over all elements.
fn rel_err(a: &Tensor, b: &Tensor) -> BoxResult<f64> {
    let a = a.to_dtype(DType::F64)?.flatten_all()?;
    let b = b.to_dtype(DType::F64)?.flatten_all()?;
    let d = (&a - &b)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
    let n = b.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
    Ok(d / n.max(f64::MIN_POSITIVE))
}

fn parity(peer: &Peer, dir: &Path) -> BoxResult<()> {
    let cfg = config(64, 3)?;
    let input = dir.join("parity_in.safetensors");
    let output = dir.join("parity_out.safetensors");
    write_outer_input(&cfg, 3, DType::F64, &input)?;
    // ours in a child too, so this process stays small while the others run
    ours(&Job {
        kind: "check".into(),
        input: input.clone(),
        reps: 1,
        width: 64,
        depth: 3,
    })?;
    let m = candle_core::safetensors::load(check_output(&input), &Device::Cpu)?;
    let out = peer
        .command()
        .arg("check")
        .arg(&input)
        .arg(&output)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "peer check failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let p = candle_core::safetensors::load(&output, &Device::Cpu)?;
    let checks = [
        ("matching loss (image, text terms)", "loss"),
        ("∂ℓ/∂images", "images"),
        ("∂ℓ/∂texts", "texts"),
        ("∂ℓ/∂log α (image, text)", "log_lr"),
    ]
    .map(|(what, key)| (what, rel_err(&m[key], &p[key])));
    println!("parity, one outer step at the default sizes with 3 student steps in f64 (relative error in norm, must be < 1e-4):");
    let mut ok = true;
    for (what, e) in checks {
        let e = e?;
        println!("  {what}: {e:.2e}");
        ok &= e < 1e-4;
    }
    if !ok {
        return Err("ours and the peer compute different things".into());
    }
    Ok(())
}

fn fmt_cell(m: &Option<Measured>, f: impl Fn(&Measured) -> String) -> String {
    match m {
        Some(m) if m.oom => "out of memory".into(),
        Some(m) => f(m),
        None => "–".into(),
    }
}

fn ratio(a: f64, b: &Option<Measured>, field: impl Fn(&Measured) -> f64) -> String {
    match b {
        Some(b) if !b.oom => format!("{:.2}", a / field(b)),
        _ => "–".into(),
    }
}

/// `--inputs DIR`: writes the default outer step's input and prints the
/// commands that run one side on it (for a profiler, say).
fn write_inputs_only(dir: &Path) -> BoxResult<()> {
    std::fs::create_dir_all(dir)?;
    let parity = dir.join("parity_in.safetensors");
    write_outer_input(&config(64, 3)?, 3, DType::F64, &parity)?;
    let check = Job {
        kind: "check".into(),
        input: parity.clone(),
        reps: 1,
        width: 64,
        depth: 3,
    };
    println!(
        "parity input: {}\n  ours: {CHILD}='{}' {} (writes {})\n  peer: .venv-peer/bin/python benches/peer/vl_peer.py check {} OUT",
        parity.display(),
        serde_json::to_string(&check)?,
        std::env::current_exe()?.display(),
        check_output(&parity).display(),
        parity.display()
    );
    let input = dir.join("outer_64_5.safetensors");
    write_outer_input(&config(64, 3)?, 5, DType::F32, &input)?;
    let job = Job {
        kind: "outer".into(),
        input,
        reps: 5,
        width: 64,
        depth: 3,
    };
    let spec = serde_json::to_string(&job)?;
    let exe = std::env::current_exe()?;
    println!("ours: {CHILD}='{spec}' {}", exe.display());
    println!(
        "peer: .venv-peer/bin/python benches/peer/vl_peer.py outer {} 5",
        job.input.display()
    );
    Ok(())
}

fn main() -> BoxResult<()> {
    if let Ok(spec) = std::env::var(CHILD) {
        return run_child(&serde_json::from_str(&spec)?);
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--inputs") {
        let dir = PathBuf::from(args.get(i + 1).ok_or("--inputs needs a directory")?);
        return write_inputs_only(&dir);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let reps = if quick { 1 } else { 5 };
    let dir = std::env::temp_dir().join(format!("vl-distill-side-by-side-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let peer = Peer::find();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    match &peer {
        Some(p) => println!(
            "peer: PyTorch {} ({}), {} threads, memory capped at {:.1} GiB; ours: candle, {threads} threads",
            p.version(),
            p.python.display(),
            p.threads,
            p.max_gib
        ),
        None => println!(
            "no peer: no Python with torch at VL_PEER_PYTHON or .venv-peer/bin/python; install it with\n  python3 -m venv .venv-peer && .venv-peer/bin/pip install -r benches/peer/requirements.txt\nour side only:"
        ),
    }
    if let Some(p) = &peer {
        parity(p, &dir)?;
    }

    let workloads = [
        Workload {
            name: "outer step, default (100 pairs, ConvNet w64 d3, 32 px, 5 steps)".into(),
            kind: "outer",
            width: 64,
            syn_steps: 5,
        },
        Workload {
            name: "outer step, larger (100 pairs, ConvNet w128 d3, 32 px, 10 steps)".into(),
            kind: "outer",
            width: 128,
            syn_steps: 10,
        },
        Workload {
            name: "expert epoch, default (5000 pairs, batch 128)".into(),
            kind: "epoch",
            width: 64,
            syn_steps: 0,
        },
    ];
    println!();
    println!("| workload | ours median (s) | peer median (s) | time ours / peer | ours peak (MiB) | peer peak (MiB) | memory ours / peer |");
    println!("|---|---|---|---|---|---|---|");
    for w in &workloads {
        let cfg = config(w.width, 3)?;
        let input = dir.join(format!(
            "{}_{}_{}.safetensors",
            w.kind, w.width, w.syn_steps
        ));
        if w.kind == "outer" {
            write_outer_input(&cfg, w.syn_steps, DType::F32, &input)?;
        } else {
            write_epoch_input(&cfg, &input)?;
        }
        let job = Job {
            kind: w.kind.into(),
            input,
            reps,
            width: w.width,
            depth: 3,
        };
        let o = ours(&job)?;
        let p = peer.as_ref().map(|p| p.measure(&job)).transpose()?;
        println!(
            "| {} | {:.3} | {} | {} | {:.0} | {} | {} |",
            w.name,
            o.median,
            fmt_cell(&p, |m| format!("{:.3}", m.median)),
            ratio(o.median, &p, |m| m.median),
            o.peak_mib,
            fmt_cell(&p, |m| format!("{:.0}", m.peak_mib)),
            ratio(o.peak_mib, &p, |m| m.peak_mib),
        );
    }

    println!();
    println!("peak memory of one outer step against syn_steps (default sizes, one repetition):");
    println!("| syn_steps | ours (MiB) | ours / ours at 10 | peer (MiB) | peer / peer at 10 | ours / peer |");
    println!("|---|---|---|---|---|---|");
    let cfg = config(64, 3)?;
    let (mut ours10, mut peer10) = (None, None);
    for n in [10, 40, 80] {
        let input = dir.join(format!("memory_{n}.safetensors"));
        write_outer_input(&cfg, n, DType::F32, &input)?;
        let job = Job {
            kind: "outer".into(),
            input,
            reps: 1,
            width: 64,
            depth: 3,
        };
        let o = ours(&job)?;
        let p = peer.as_ref().map(|p| p.measure(&job)).transpose()?;
        let o10 = *ours10.get_or_insert(o.peak_mib);
        if let Some(p) = &p {
            if !p.oom && peer10.is_none() {
                peer10 = Some(p.peak_mib);
            }
        }
        println!(
            "| {n} | {:.0} | {:.2} | {} | {} | {} |",
            o.peak_mib,
            o.peak_mib / o10,
            fmt_cell(&p, |m| format!("{:.0}", m.peak_mib)),
            match (&p, peer10) {
                (Some(p), Some(p10)) if !p.oom => format!("{:.2}", p.peak_mib / p10),
                _ => "–".into(),
            },
            ratio(o.peak_mib, &p, |m| m.peak_mib),
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
