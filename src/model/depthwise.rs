//! CPU depthwise convolution (one k×k filter per channel, any stride, any
//! zero padding before the image; the output size is given) as three
//! bilinear candle ops that differentiate into each other, like the dense
//! convolution of `model::conv`:
//!
//! | op | computes | backward, cotangent `a` |
//! |---|---|---|
//! | `Dw` `(x, w)` | `y = w ⋆ x` per channel | `x̄ = DwT(a, w)`, `w̄ = DwW(x, a)` |
//! | `DwT` `(dy, w)` | `dx`, the adjoint of `Dw` in `x` | `d̄y = Dw(a, w)`, `w̄ = DwW(a, dy)` |
//! | `DwW` `(x, dy)` | `dw = Σ_b,o dy·x` per tap | `x̄ = DwT(dy, a)`, `d̄y = Dw(x, a)` |
//!
//! so derivatives of any order are these three ops again. Each is a loop
//! over the k² taps with an axpy (or a dot product) along output rows,
//! parallel over (sample, channel) planes (`DwW`: over channels, summing
//! the samples in order, so results do not depend on the thread count).
//! Unlike a composition of k² shifted slices (`narrow` × per-channel
//! weight), it keeps no slice in the graph and its backward pads nothing
//! back to the input's size.

use super::kernel::{check, slice, Real};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The geometry of one depthwise convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    /// Zero rows before the image (rows after follow from `out_h`).
    pub pad_top: usize,
    /// Zero columns before the image.
    pub pad_left: usize,
    pub out_h: usize,
    pub out_w: usize,
}

impl Geometry {
    fn plane(&self) -> usize {
        self.height * self.width
    }
    fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }
    fn taps(&self) -> usize {
        self.kernel * self.kernel
    }

    /// The output columns `lo..hi` whose input column for tap column `kx`
    /// lies inside the image, and that input column for `lo`.
    fn cols(&self, kx: usize) -> (usize, usize, usize) {
        let s = self.stride;
        let lo = self.pad_left.saturating_sub(kx).div_ceil(s);
        let last = self.width + self.pad_left;
        if last <= kx {
            return (0, 0, 0);
        }
        let hi = ((last - kx - 1) / s + 1).min(self.out_w);
        if lo >= hi {
            return (0, 0, 0);
        }
        (lo, hi, s * lo + kx - self.pad_left)
    }

    /// The input row of output row `oy` for tap row `ky`, if inside.
    fn row(&self, oy: usize, ky: usize) -> Option<usize> {
        let iy = (self.stride * oy + ky).checked_sub(self.pad_top)?;
        (iy < self.height).then_some(iy)
    }

    /// Calls `f(tap, input_offset, output_offset, run_length)` for every
    /// run of output pixels in one row whose inputs for one tap are inside
    /// the image (input pixels `stride` apart, output pixels adjacent).
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize, usize)) {
        let k = self.kernel;
        for kx in 0..k {
            let (lo, hi, ix) = self.cols(kx);
            if lo == hi {
                continue;
            }
            for ky in 0..k {
                for oy in 0..self.out_h {
                    if let Some(iy) = self.row(oy, ky) {
                        f(
                            ky * k + kx,
                            iy * self.width + ix,
                            oy * self.out_w + lo,
                            hi - lo,
                        );
                    }
                }
            }
        }
    }
}

/// `y[p] = Σ_taps w[c, t] · x[p] shifted`, every plane `p = (b, c)`.
fn dw<T: Real>(g: &Geometry, x: &[T], w: &[T]) -> Vec<T> {
    let planes = x.len() / g.plane();
    let mut y = vec![T::default(); planes * g.out_plane()];
    let s = g.stride;
    y.par_chunks_mut(g.out_plane())
        .zip(x.par_chunks(g.plane()))
        .enumerate()
        .for_each(|(p, (y, x))| {
            let wc = &w[(p % g.channels) * g.taps()..][..g.taps()];
            g.for_each_run(|t, i, o, n| {
                let wt = wc[t];
                for (j, d) in y[o..o + n].iter_mut().enumerate() {
                    *d += wt * x[i + s * j];
                }
            });
        });
    y
}

/// The adjoint of [`dw`] in `x`: every output gradient spread back over
/// its input pixels.
fn dw_t<T: Real>(g: &Geometry, dy: &[T], w: &[T]) -> Vec<T> {
    let planes = dy.len() / g.out_plane();
    let mut dx = vec![T::default(); planes * g.plane()];
    let s = g.stride;
    dx.par_chunks_mut(g.plane())
        .zip(dy.par_chunks(g.out_plane()))
        .enumerate()
        .for_each(|(p, (dx, dy))| {
            let wc = &w[(p % g.channels) * g.taps()..][..g.taps()];
            g.for_each_run(|t, i, o, n| {
                let wt = wc[t];
                for (j, v) in dy[o..o + n].iter().enumerate() {
                    dx[i + s * j] += wt * *v;
                }
            });
        });
    dx
}

/// `dw[c, t] = Σ_b Σ_o dy[b, c, o] · x[b, c, input of o for t]`, the
/// samples summed in order for each channel.
fn dw_w<T: Real>(g: &Geometry, x: &[T], dy: &[T]) -> Vec<T> {
    let planes = x.len() / g.plane();
    let batch = planes / g.channels.max(1);
    let s = g.stride;
    let per_channel: Vec<Vec<T>> = (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![T::default(); g.taps()];
            for b in 0..batch {
                let p = b * g.channels + c;
                let x = &x[p * g.plane()..][..g.plane()];
                let dy = &dy[p * g.out_plane()..][..g.out_plane()];
                g.for_each_run(|t, i, o, n| {
                    let mut sum = T::default();
                    for (j, v) in dy[o..o + n].iter().enumerate() {
                        sum += *v * x[i + s * j];
                    }
                    acc[t] += sum;
                });
            }
            acc
        })
        .collect();
    per_channel.concat()
}

/// Which of the three ops (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `(x, w) → y`
    Dw,
    /// `(dy, w) → dx`
    DwT,
    /// `(x, dy) → dw`
    DwW,
}

#[derive(Debug, Clone, Copy)]
struct Depthwise {
    geometry: Geometry,
    kind: Kind,
}

impl Depthwise {
    fn with(self, kind: Kind) -> Self {
        Depthwise { kind, ..self }
    }

    fn run<T: Real>(&self, a: &[T], b: &[T]) -> Vec<T> {
        let g = &self.geometry;
        match self.kind {
            Kind::Dw => dw(g, a, b),
            Kind::DwT => dw_t(g, a, b),
            Kind::DwW => dw_w(g, a, b),
        }
    }
}

impl CustomOp2 for Depthwise {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Dw => "depthwise-conv2d",
            Kind::DwT => "depthwise-conv2d-input-grad",
            Kind::DwW => "depthwise-conv2d-weight-grad",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = &self.geometry;
        let b = l1.dims().first().copied().unwrap_or(0);
        let image = [b, g.channels, g.height, g.width];
        let out = [b, g.channels, g.out_h, g.out_w];
        let kernel = [g.channels, 1, g.kernel, g.kernel];
        let (first, second, result) = match self.kind {
            Kind::Dw => (("input", image), ("kernel", kernel), out),
            Kind::DwT => (("output gradient", out), ("kernel", kernel), image),
            Kind::DwW => (("input", image), ("output gradient", out), kernel),
        };
        let op = "depthwise";
        check(op, first.0, l1, &first.1)?;
        check(op, second.0, l2, &second.1)?;
        let storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                CpuStorage::F32(self.run(slice::<f32>(op, s1, l1)?, slice::<f32>(op, s2, l2)?))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                CpuStorage::F64(self.run(slice::<f64>(op, s1, l1)?, slice::<f64>(op, s2, l2)?))
            }
            _ => candle_core::bail!("depthwise: only f32 and f64 of one dtype"),
        };
        Ok((storage, Shape::from(result.to_vec())))
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let op =
            |k, x: &Tensor, y: &Tensor| x.contiguous()?.apply_op2(&y.contiguous()?, self.with(k));
        let (da, db) = match self.kind {
            // (x, w): x̄ = DwT(ḡ, w), w̄ = DwW(x, ḡ)
            Kind::Dw => (op(Kind::DwT, grad, b)?, op(Kind::DwW, a, grad)?),
            // (dy, w): d̄y = Dw(ḡ, w), w̄ = DwW(ḡ, dy)
            Kind::DwT => (op(Kind::Dw, grad, b)?, op(Kind::DwW, grad, a)?),
            // (x, dy): x̄ = DwT(dy, ḡ), d̄y = Dw(x, ḡ)
            Kind::DwW => (op(Kind::DwT, b, grad)?, op(Kind::Dw, a, grad)?),
        };
        Ok((Some(da), Some(db)))
    }
}

/// Depthwise convolution of `x: [B, C, H, W]` with `w: [C, 1, k, k]`,
/// `stride`, `pad_top`/`pad_left` zeros before the image and an
/// `out_h × out_w` output (zeros after the image as needed),
/// differentiable to any order (CPU, f32 or f64).
pub(crate) fn depthwise_cpu(
    x: &Tensor,
    w: &Tensor,
    stride: usize,
    (pad_top, pad_left): (usize, usize),
    (out_h, out_w): (usize, usize),
) -> candle_core::Result<Tensor> {
    let (_, c, h, wd) = x.dims4()?;
    let (cw, one, k, k2) = w.dims4()?;
    if cw != c || one != 1 || k != k2 || stride == 0 {
        candle_core::bail!(
            "depthwise: input {:?} and kernel {:?} do not fit",
            x.dims(),
            w.dims()
        );
    }
    let geometry = Geometry {
        channels: c,
        height: h,
        width: wd,
        kernel: k,
        stride,
        pad_top,
        pad_left,
        out_h,
        out_w,
    };
    x.contiguous()?.apply_op2(
        &w.contiguous()?,
        Depthwise {
            geometry,
            kind: Kind::Dw,
        },
    )
}
