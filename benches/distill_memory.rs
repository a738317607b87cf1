//! Peak memory of one outer distillation step against the number of
//! unrolled student steps: the reverse sweep keeps one step's graph alive at
//! a time plus N + 1 parameter snapshots, so memory should stay nearly flat
//! in `syn_steps` (a PyTorch-style unrolled graph grows linearly).
//!
//! A second table holds the stage-2 options at the profile's `syn_steps`:
//! plain, with a learned similarity (LoRS), with blended students
//! (RepBlend) and with both, each against plain.
//!
//! `cargo bench --bench distill_memory [-- PROFILE]` (default profile
//! `default`). Each size and option runs in a fresh child process (peak
//! RSS is per process); the parent prints peak RSS and the ratio to the
//! first row.

use std::process::Command;
use vl_distill::config::Config;

mod common;

const CHILD: &str = "VL_DISTILL_MEMORY_CHILD";
const OPTION: &str = "VL_DISTILL_MEMORY_OPTION";
const OPTIONS: [&str; 4] = ["plain", "lors", "blend", "lors_blend"];
const SIZES: [usize; 3] = [10, 40, 80];

fn child(profile: &str, steps: usize, option: &str) -> vl_distill::Result<()> {
    vl_distill::device::tune_allocator();
    let cfg = Config::profile(profile)?;
    let s = common::option_inputs(&cfg, option, steps)?;
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
        let option = std::env::var(OPTION).unwrap_or_else(|_| "plain".into());
        return Ok(child(&profile, n.parse()?, &option)?);
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
        let v = measure(&profile, n, "plain")?;
        let base = *first.get_or_insert(v[1]);
        println!(
            "| {n} | {:.0} | {:.0} | {:.1} | {:.2} |",
            v[1],
            v[2],
            v[3],
            v[1] / base
        );
    }
    let n = cfg.distill.syn_steps;
    println!("\nthe stage-2 options at {n} steps\n");
    println!(
        "| option | peak RSS (MiB) | inputs (MiB) | seconds | peak / plain | seconds / plain |"
    );
    println!("|---|---|---|---|---|---|");
    let mut plain = None;
    for option in OPTIONS {
        let v = measure(&profile, n, option)?;
        let (p, t) = *plain.get_or_insert((v[1], v[3]));
        println!(
            "| {option} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} |",
            v[1],
            v[2],
            v[3],
            v[1] / p,
            v[3] / t
        );
    }
    Ok(())
}

/// One child's line for `steps` unrolled steps of `option`: steps, peak
/// RSS, RSS before the step, seconds.
fn measure(
    profile: &str,
    steps: usize,
    option: &str,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let out = Command::new(std::env::current_exe()?)
        .arg(profile)
        .env(CHILD, steps.to_string())
        .env(OPTION, option)
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "child for {steps} steps of {option} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let line = String::from_utf8(out.stdout)?;
    Ok(line
        .split_whitespace()
        .map(|x| x.parse())
        .collect::<Result<_, _>>()?)
}
