//! Device choice, in one place: CUDA when the crate is built with
//! `--features cuda` and a GPU is present, else the CPU.

use crate::error::{Error, Result};
use candle_core::Device;

/// The best available device: CUDA GPU 0 when built with `cuda` and one is
/// present, otherwise the CPU.
pub fn best() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return d;
    }
    Device::Cpu
}

/// Tunes the memory allocator for candle on the CPU (what building an
/// [`Experiment`](crate::experiment::Experiment) does): for programs that
/// build models directly, such as the benches.
pub fn tune_allocator() {
    crate::alloc::tune();
}

/// The device named `cpu`, `cuda` (GPU 0; an error when unavailable) or `auto` ([`best`]).
pub fn by_name(name: &str) -> Result<Device> {
    match name {
        "auto" => Ok(best()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| {
            Error::Config(format!(
                "no CUDA device ({e}); build with `--features cuda` on a machine with a GPU"
            ))
        }),
        other => Err(Error::Config(format!(
            "unknown device {other:?}: choose auto, cpu or cuda"
        ))),
    }
}

/// The device the test suite runs on: `VL_TEST_DEVICE` (`cpu`, `cuda` or
/// `auto`), else [`best`] — so `cargo test --features cuda` on a machine
/// with a GPU runs the numerical tests there, and CI (no `cuda` feature)
/// on the CPU. Panics on a bad `VL_TEST_DEVICE`: it is for tests.
pub fn for_tests() -> Device {
    match std::env::var("VL_TEST_DEVICE") {
        Ok(name) => by_name(&name).unwrap_or_else(|e| panic!("VL_TEST_DEVICE: {e}")),
        Err(_) => best(),
    }
}

/// `"cpu"` or `"cuda:N"`.
pub fn describe(d: &Device) -> String {
    match d {
        Device::Cpu => "cpu".into(),
        Device::Cuda(_) => "cuda".into(),
        Device::Metal(_) => "metal".into(),
    }
}
