//! Helpers shared by the integration tests: the real data fetched by
//! `data-scripts/` (not in the repository) and the comparison of tensors.
//! Each test crate uses only some of them.
#![allow(dead_code)]

use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// The repository root (where `data/` is).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `path` under the repository if it exists; otherwise `None` after saying
/// which script makes it, or a panic under `VL_DISTILL_REQUIRE_DATA=1`
/// (what the README's test command sets after fetching everything).
pub fn data(path: &str, script: &str) -> Option<PathBuf> {
    let p = root().join(path);
    if p.exists() {
        return Some(p);
    }
    let msg = format!("{} is missing: run {script}", p.display());
    if std::env::var("VL_DISTILL_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!("{msg} (VL_DISTILL_REQUIRE_DATA=1)");
    }
    eprintln!("skipped: {msg}");
    None
}

/// The largest absolute difference between two tensors of the same shape,
/// on any device and of any float type (compared as f32 on the CPU).
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let on_cpu = |t: &Tensor| {
        t.to_device(&Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    };
    (on_cpu(a) - on_cpu(b))
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
