//! Cost of the EfficientNet-Lite0 tower on the CPU: its depthwise
//! convolution (ours, composed of shifted slices, against candle's grouped
//! `conv2d`, forward + backward), and one expert SGD step (batch 128,
//! forward + backward of the two-tower loss) at several image sizes, next
//! to the default ConvNet at 32 px. Random weights (the cost does not
//! depend on their values).
//!
//! Run with `cargo bench --bench efficientnet [-- SIDE…]` (default sides
//! 32 64 96 128). Prints medians of 2 runs after one warm-up.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{expert_step_seconds, student_step_seconds, time};
use vl_distill::config::{Config, ImageEncoderConfig};
use vl_distill::model::efficientnet::{depthwise, depthwise_composed, same_padding};
use vl_distill::model::TwoTower;

/// Forward + backward of one depthwise layer in seconds: the crate's op,
/// the composition of shifted slices, candle's grouped convolution.
fn depthwise_seconds(b: usize, c: usize, side: usize, k: usize, stride: usize) -> [f64; 3] {
    let dev = Device::Cpu;
    let x = Var::randn(0f32, 1.0, (b, c, side, side), &dev).unwrap();
    let w = Var::randn(0f32, 1.0, (c, 1, k, k), &dev).unwrap();
    let ours = time(2, || {
        let y = depthwise(&x, &w, stride).unwrap();
        y.sqr().unwrap().sum_all().unwrap().backward().unwrap()
    });
    let composed = time(2, || {
        let y = depthwise_composed(&x, &w, stride).unwrap();
        y.sqr().unwrap().sum_all().unwrap().backward().unwrap()
    });
    let (t, bo) = same_padding(side, k, stride);
    let theirs = time(2, || {
        let xp = x
            .pad_with_zeros(2, t, bo)
            .unwrap()
            .pad_with_zeros(3, t, bo)
            .unwrap();
        let y = xp.conv2d(&w, 0, stride, 1, c).unwrap();
        y.sqr().unwrap().sum_all().unwrap().backward().unwrap()
    });
    [ours, composed, theirs]
}

fn expert_step(cfg: &Config, side: usize) -> f64 {
    let dev = Device::Cpu;
    let model = TwoTower::new(&cfg.model, side, cfg.text.dim).unwrap();
    let theta = model.init(0, &dev, DType::F32).unwrap();
    let x = Tensor::randn(0f32, 1.0, (128, 3, side, side), &dev).unwrap();
    let e = Tensor::randn(0f32, 1.0, (128, cfg.text.dim), &dev).unwrap();
    expert_step_seconds(&model, &theta, &x, &e, 2)
}

fn main() {
    vl_distill::device::tune_allocator();
    let mut sides: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sides.is_empty() {
        sides = vec![32, 64, 96, 128];
    }
    println!("| depthwise layer (batch 128, fwd + bwd) | model::depthwise op | composed slices | candle grouped conv2d |");
    println!("|---|---|---|---|");
    for (c, side, k, stride) in [(96, 32, 3, 2), (144, 16, 5, 1), (480, 4, 3, 1)] {
        let [a, b, g] = depthwise_seconds(128, c, side, k, stride);
        println!(
            "| {c} ch, {side}×{side}, k{k} s{stride} | {:.0} ms | {:.0} ms | {:.0} ms |",
            a * 1e3,
            b * 1e3,
            g * 1e3
        );
    }
    let mut cfg = Config::default_profile();
    let convnet = expert_step(&cfg, 32);
    cfg.model.image = ImageEncoderConfig::named("efficientnet_lite0", "default").unwrap();
    println!();
    println!(
        "| expert step, batch 128 | seconds | ratio to convnet-w64-d3 at 32 px ({convnet:.2} s) |"
    );
    println!("|---|---|---|");
    for side in sides {
        let s = expert_step(&cfg, side);
        println!(
            "| efficientnet_lite0, {side} px | {s:.2} | {:.1} |",
            s / convnet
        );
    }
    if std::env::var("EFFNET_BENCH_STAGE2").is_ok() {
        let model = TwoTower::new(&cfg.model, 64, cfg.text.dim).unwrap();
        let theta = model.init(0, &Device::Cpu, DType::F32).unwrap();
        let (fwd, rev) = student_step_seconds(&model, &theta, 100, 64, cfg.text.dim, 1).unwrap();
        println!();
        println!(
            "stage 2 at 64 px, 100 pairs: student step {fwd:.2} s, reverse-sweep step {rev:.2} s"
        );
    }
}
