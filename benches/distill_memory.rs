//! Peak memory of one outer distillation step against the number of
//! unrolled student steps: the reverse sweep keeps one step's graph alive at
//! a time plus N + 1 parameter snapshots, so memory should stay nearly flat
//! in `syn_steps` (a PyTorch-style unrolled graph grows linearly).
//!
//! `cargo bench --bench distill_memory [-- PROFILE]` (default profile
//! `default`). Each size runs in a fresh child process (peak RSS is per
//! process); the parent prints peak RSS and the ratio to the first size.

use std::process::Command;
use vl_distill::config::Config;

mod common;

const CHILD: &str = "VL_DISTILL_MEMORY_CHILD";
const SIZES: [usize; 3] = [10, 40, 80];

fn child(profile: &str, steps: usize) -> vl_distill::Result<()> {
    vl_distill::device::tune_allocator();
    let cfg = Config::profile(profile)?;
    let s = common::step_inputs(&cfg, steps)?;
    let before = common::peak_rss_mib();
    let t = std::time::Instant::now();
    s.gradient()?;
    println!(
        "{steps} {:.1} {before:.1} {:.2}",
        common::peak_rss_mib(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let profile = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_else(|| "default".into());
    if let Ok(n) = std::env::var(CHILD) {
        return Ok(child(&profile, n.parse()?)?);
    }
    let cfg = Config::profile(&profile)?;
    println!(
        "peak memory of one outer distillation step, profile {profile} ({} pairs, {})",
        cfg.distill.pairs,
        vl_distill::model::TwoTower::new(&cfg.model, cfg.data.image_size as usize, cfg.text.dim)?
            .describe()
    );
    println!(
        "| syn_steps | peak RSS (MiB) | inputs (MiB) | seconds | peak / peak at {} |",
        SIZES[0]
    );
    println!("|---|---|---|---|---|");
    let mut first = None;
    for n in SIZES {
        let out = Command::new(std::env::current_exe()?)
            .arg(&profile)
            .env(CHILD, n.to_string())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "child for {n} steps failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let line = String::from_utf8(out.stdout)?;
        let v: Vec<f64> = line
            .split_whitespace()
            .map(|x| x.parse())
            .collect::<Result<_, _>>()?;
        let base = *first.get_or_insert(v[1]);
        println!(
            "| {n} | {:.0} | {:.0} | {:.1} | {:.2} |",
            v[1],
            v[2],
            v[3],
            v[1] / base
        );
    }
    Ok(())
}
