//! What the hand-written CPU kernels (`conv`, `norm_block`) share: the float
//! types they run on, contiguous slices of candle storages, shape checks.

use candle_core::{CpuStorage, Layout, Storage, WithDType};

/// The float types the kernels run on (f32, f64); `to_f64` / `from_f64`
/// come from candle's `WithDType`.
pub(crate) trait Real: WithDType + Default + std::ops::AddAssign {}
impl Real for f32 {}
impl Real for f64 {}

/// The elements of a contiguous CPU storage as `&[T]`; `op` names the
/// kernel in errors.
pub(crate) fn slice<'a, T: WithDType>(
    op: &str,
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("{op}: inputs must be contiguous"),
    }
}

/// The CPU storage inside `s`, refusing other devices.
pub(crate) fn cpu<'a>(op: &str, s: &'a Storage) -> candle_core::Result<&'a CpuStorage> {
    match s {
        Storage::Cpu(c) => Ok(c),
        _ => candle_core::bail!("{op}: CPU tensors only"),
    }
}

/// [`slice`] of any storage, refusing non-CPU ones.
pub(crate) fn storage_slice<'a, T: WithDType>(
    op: &str,
    s: &'a Storage,
    l: &Layout,
) -> candle_core::Result<&'a [T]> {
    slice(op, cpu(op, s)?, l)
}

/// Checks that `l` has `dims`, naming the kernel and the operand in the error.
pub(crate) fn check(op: &str, what: &str, l: &Layout, dims: &[usize]) -> candle_core::Result<()> {
    if l.dims() != dims {
        candle_core::bail!("{op}: {what} is {:?}, expected {:?}", l.dims(), dims);
    }
    Ok(())
}

/// The largest absolute difference of two tensors of one shape (tests).
#[cfg(test)]
pub(crate) fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f64 {
    (a - b)
        .and_then(|d| {
            d.abs()?
                .flatten_all()?
                .max(0)?
                .to_dtype(candle_core::DType::F64)
        })
        .and_then(|d| d.to_scalar::<f64>())
        .expect("tensors of one shape")
}
