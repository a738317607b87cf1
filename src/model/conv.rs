//! CPU convolution as three bilinear candle ops that differentiate into
//! each other, each an unfold (im2col) or fold per sample plus one gemm.
//!
//! A k×k convolution (stride 1, zero padding) of `x: [B, C, H, W]` with
//! `w: [Cout, C, k, k]` is, per sample, `W [Cout, C·k·k] × unfold(x)
//! [C·k·k, H'·W']`. It is bilinear, and so are its two partial adjoints:
//!
//! | op | computes | backward, cotangent `a` |
//! |---|---|---|
//! | `Conv` `(x, w)` | `y = w ⋆ x` | `x̄ = ConvT(a, w)`, `w̄ = ConvW(x, a)` |
//! | `ConvT` `(dy, w)` | `dx = fold(Wᵀ·dy)` | `d̄y = Conv(a, w)`, `w̄ = ConvW(a, dy)` |
//! | `ConvW` `(x, dy)` | `dw = Σ_b dy·unfold(x)ᵀ` | `x̄ = ConvT(dy, a)`, `d̄y = Conv(x, a)` |
//!
//! so derivatives of any order are these three ops again. The unfolded
//! columns live only in a per-thread buffer while one sample's gemm runs:
//! nothing 9× the size of an activation is stored in the graph or
//! accumulated by candle's backward. Samples run in parallel on rayon's
//! pool, each gemm on one thread.

use super::kernel::{check, slice, Real};
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The geometry of a k×k, stride-1 convolution with zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    channels: usize,
    out_channels: usize,
    height: usize,
    width: usize,
    kernel: usize,
    padding: usize,
}

impl Geometry {
    fn out_h(&self) -> usize {
        self.height + 2 * self.padding + 1 - self.kernel
    }
    fn out_w(&self) -> usize {
        self.width + 2 * self.padding + 1 - self.kernel
    }
    /// Rows of the unfolded matrix: C·k·k.
    fn rows(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }
    /// Columns of the unfolded matrix: H'·W'.
    fn positions(&self) -> usize {
        self.out_h() * self.out_w()
    }
    fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }
    fn out_len(&self) -> usize {
        self.out_channels * self.positions()
    }
    fn weight_len(&self) -> usize {
        self.out_channels * self.rows()
    }
    fn image_dims(&self, b: usize) -> [usize; 4] {
        [b, self.channels, self.height, self.width]
    }
    fn out_dims(&self, b: usize) -> [usize; 4] {
        [b, self.out_channels, self.out_h(), self.out_w()]
    }
    fn weight_dims(&self) -> [usize; 4] {
        [self.out_channels, self.channels, self.kernel, self.kernel]
    }

    /// Calls `f(image_offset, column_offset, run_length)` for every
    /// contiguous run of (channel, kernel tap, output row) whose input
    /// pixels lie inside the image, with offsets within one sample.
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (oh, ow) = (self.out_h(), self.out_w());
        let (k, p) = (self.kernel, self.padding);
        for c in 0..self.channels {
            for ky in 0..k {
                for kx in 0..k {
                    let row = (c * k + ky) * k + kx;
                    // the range of ox whose input column is inside
                    let ox_lo = p.saturating_sub(kx);
                    let ox_hi = (self.width + p).saturating_sub(kx).min(ow);
                    if ox_lo >= ox_hi {
                        continue;
                    }
                    for oy in 0..oh {
                        let iy = oy + ky;
                        if iy < p || iy - p >= self.height {
                            continue;
                        }
                        let img = (c * self.height + iy - p) * self.width + (ox_lo + kx - p);
                        let col = (row * oh + oy) * ow + ox_lo;
                        f(img, col, ox_hi - ox_lo);
                    }
                }
            }
        }
    }

    /// One sample's image → its columns (`cols` fully overwritten).
    fn unfold<T: Copy + Default>(&self, img: &[T], cols: &mut [T]) {
        cols.fill(T::default());
        self.for_each_run(|i, o, n| cols[o..o + n].copy_from_slice(&img[i..i + n]));
    }

    /// One sample's columns summed back into its image (`img` overwritten).
    fn fold<T: Copy + Default + std::ops::AddAssign>(&self, cols: &[T], img: &mut [T]) {
        img.fill(T::default());
        self.for_each_run(|i, o, n| {
            for (d, s) in img[i..i + n].iter_mut().zip(&cols[o..o + n]) {
                *d += *s;
            }
        });
    }
}

/// Row-major `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)`, where `lhs` and
/// `rhs` are given by their (row, column) strides, on the calling thread.
#[allow(clippy::too_many_arguments)]
fn matmul<T: Real>(
    dst: &mut [T],
    accumulate: bool,
    (m, n, k): (usize, usize, usize),
    lhs: &[T],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[T],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    debug_assert!(dst.len() >= m * n);
    debug_assert!(m == 0 || k == 0 || lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
    debug_assert!(k == 0 || n == 0 || rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    // SAFETY: the slices cover every element the strides reach (checked
    // above in debug builds; the callers size them from one Geometry).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            T::from_f64(1.0),
            T::from_f64(1.0),
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `y_b = W · unfold(x_b)` for every sample.
fn conv<T: Real>(g: &Geometry, x: &[T], w: &[T]) -> Vec<T> {
    let (rows, pos, cout) = (g.rows(), g.positions(), g.out_channels);
    let mut y = vec![T::default(); x.len() / g.image_len() * g.out_len()];
    y.par_chunks_mut(g.out_len())
        .zip(x.par_chunks(g.image_len()))
        .for_each_init(
            || vec![T::default(); rows * pos],
            |cols, (y, x)| {
                g.unfold(x, cols);
                matmul(y, false, (cout, pos, rows), w, (rows, 1), cols, (pos, 1));
            },
        );
    y
}

/// `dx_b = fold(Wᵀ · dy_b)` for every sample.
fn conv_t<T: Real>(g: &Geometry, dy: &[T], w: &[T]) -> Vec<T> {
    let (rows, pos, cout) = (g.rows(), g.positions(), g.out_channels);
    let mut dx = vec![T::default(); dy.len() / g.out_len() * g.image_len()];
    dx.par_chunks_mut(g.image_len())
        .zip(dy.par_chunks(g.out_len()))
        .for_each_init(
            || vec![T::default(); rows * pos],
            |cols, (dx, dy)| {
                matmul(cols, false, (rows, pos, cout), w, (1, rows), dy, (pos, 1));
                g.fold(cols, dx);
            },
        );
    dx
}

/// Samples per partial sum of [`conv_w`]: fixed, so that the summation
/// order, hence every bit of the result, does not depend on threads.
const WEIGHT_GRAD_CHUNK: usize = 4;

/// `dW = Σ_b dy_b · unfold(x_b)ᵀ`, summed per chunk of samples in
/// parallel, then over the chunks in order (deterministic).
fn conv_w<T: Real>(g: &Geometry, x: &[T], dy: &[T]) -> Vec<T> {
    let (rows, pos, cout) = (g.rows(), g.positions(), g.out_channels);
    let partials: Vec<Vec<T>> = x
        .par_chunks(g.image_len() * WEIGHT_GRAD_CHUNK)
        .zip(dy.par_chunks(g.out_len() * WEIGHT_GRAD_CHUNK))
        .map_init(
            || vec![T::default(); rows * pos],
            |cols, (x, dy)| {
                let mut dw = vec![T::default(); g.weight_len()];
                for (x, dy) in x.chunks(g.image_len()).zip(dy.chunks(g.out_len())) {
                    g.unfold(x, cols);
                    matmul(
                        &mut dw,
                        true,
                        (cout, rows, pos),
                        dy,
                        (pos, 1),
                        cols,
                        (1, pos),
                    );
                }
                dw
            },
        )
        .collect();
    let mut dw = vec![T::default(); g.weight_len()];
    for p in partials {
        for (a, b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
    dw
}

/// Which of the three ops (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `(x, w) → y`
    Conv,
    /// `(dy, w) → dx`
    ConvT,
    /// `(x, dy) → dw`
    ConvW,
}

/// One of the three bilinear ops for one geometry, as a candle op.
#[derive(Debug, Clone, Copy)]
struct BilinearConv {
    geometry: Geometry,
    kind: Kind,
}

impl BilinearConv {
    fn with(self, kind: Kind) -> Self {
        BilinearConv { kind, ..self }
    }

    fn run<T: Real>(&self, a: &[T], b: &[T]) -> Vec<T> {
        let g = &self.geometry;
        match self.kind {
            Kind::Conv => conv(g, a, b),
            Kind::ConvT => conv_t(g, a, b),
            Kind::ConvW => conv_w(g, a, b),
        }
    }
}

impl CustomOp2 for BilinearConv {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Conv => "conv2d",
            Kind::ConvT => "conv2d-input-grad",
            Kind::ConvW => "conv2d-weight-grad",
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
        let (first, second, out): (_, _, Vec<usize>) = match self.kind {
            Kind::Conv => (
                ("input", g.image_dims(b)),
                ("kernel", g.weight_dims()),
                g.out_dims(b).into(),
            ),
            Kind::ConvT => (
                ("output gradient", g.out_dims(b)),
                ("kernel", g.weight_dims()),
                g.image_dims(b).into(),
            ),
            Kind::ConvW => (
                ("input", g.image_dims(b)),
                ("output gradient", g.out_dims(b)),
                g.weight_dims().into(),
            ),
        };
        check("conv", first.0, l1, &first.1)?;
        check("conv", second.0, l2, &second.1)?;
        let out_storage = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32(
                self.run(slice::<f32>("conv", s1, l1)?, slice::<f32>("conv", s2, l2)?),
            ),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64(
                self.run(slice::<f64>("conv", s1, l1)?, slice::<f64>("conv", s2, l2)?),
            ),
            _ => candle_core::bail!("conv: only f32 and f64 of one dtype"),
        };
        Ok((out_storage, Shape::from(out)))
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
            // (x, w): x̄ = ConvT(ḡ, w), w̄ = ConvW(x, ḡ)
            Kind::Conv => (op(Kind::ConvT, grad, b)?, op(Kind::ConvW, a, grad)?),
            // (dy, w): d̄y = Conv(ḡ, w), w̄ = ConvW(ḡ, dy)
            Kind::ConvT => (op(Kind::Conv, grad, b)?, op(Kind::ConvW, grad, a)?),
            // (x, dy): x̄ = ConvT(dy, ḡ), d̄y = Conv(x, ḡ)
            Kind::ConvW => (op(Kind::ConvT, b, grad)?, op(Kind::Conv, a, grad)?),
        };
        Ok((Some(da), Some(db)))
    }
}

/// k×k convolution of `x: [B, C, H, W]` with `w: [Cout, C, k, k]`, stride 1,
/// `padding` zeros on each side, differentiable to any order (CPU only; the
/// caller uses candle's convolution on other devices).
pub fn conv2d_cpu(x: &Tensor, w: &Tensor, padding: usize) -> candle_core::Result<Tensor> {
    let (_, c, h, wd) = x.dims4()?;
    let (cout, cin, k, k2) = w.dims4()?;
    if cin != c || k != k2 || h + 2 * padding < k || wd + 2 * padding < k {
        candle_core::bail!(
            "conv2d: input {:?} and kernel {:?} (padding {padding}) do not fit",
            x.dims(),
            w.dims()
        );
    }
    let geometry = Geometry {
        channels: c,
        out_channels: cout,
        height: h,
        width: wd,
        kernel: k,
        padding,
    };
    x.contiguous()?.apply_op2(
        &w.contiguous()?,
        BilinearConv {
            geometry,
            kind: Kind::Conv,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernel::max_diff;
    use candle_core::{DType, Device, Var};

    #[test]
    fn matches_candle_conv() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1.0, (2, 3, 7, 5), &dev)?;
        let w = Tensor::randn(0f64, 1.0, (4, 3, 3, 3), &dev)?;
        for padding in [0, 1, 2] {
            let ours = conv2d_cpu(&x, &w, padding)?;
            let theirs = x.conv2d(&w, padding, 1, 1, 1)?;
            assert_eq!(ours.dims(), theirs.dims());
            assert!(max_diff(&ours, &theirs) < 1e-12, "padding {padding}");
        }
        assert!(conv2d_cpu(&x, &w.narrow(1, 0, 2)?, 1).is_err());
        Ok(())
    }

    #[test]
    fn gradients_match_candle_conv() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 6, 6), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev)?)?;
        let a = conv2d_cpu(&x, &w, 1)?.sqr()?.sum_all()?.backward()?;
        let b = x.conv2d(&w, 1, 1, 1, 1)?.sqr()?.sum_all()?.backward()?;
        for v in [x.as_tensor(), w.as_tensor()] {
            let (ga, gb) = (a.get(v).unwrap(), b.get(v).unwrap());
            let s = gb.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()? as f64;
            assert!(max_diff(ga, gb) < 1e-4 * s);
        }
        Ok(())
    }

    /// Second derivatives, the reverse sweep's use: ConvT and ConvW
    /// differentiate into the right ops (against candle's convolution).
    #[test]
    fn hessian_vector_products_match_candle_conv() -> crate::Result<()> {
        let dev = Device::Cpu;
        let x0 = Tensor::randn(0f64, 1.0, (2, 3, 5, 6), &dev)?;
        let w0 = Tensor::randn(0f64, 1.0, (4, 3, 3, 3), &dev)?;
        let r = Tensor::randn(0f64, 1.0, (2, 4, 5, 6), &dev)?;
        let v = [x0.randn_like(0.0, 1.0)?, w0.randn_like(0.0, 1.0)?];
        let hvp = |ours: bool| {
            let (x0, w0, r, v, dev) = (x0.clone(), w0.clone(), r.clone(), v.clone(), dev.clone());
            crate::second_order::with_graph_gradients(move || {
                let vars = [Var::from_tensor(&x0)?, Var::from_tensor(&w0)?];
                let (x, w) = (vars[0].as_tensor(), vars[1].as_tensor());
                let y = if ours {
                    conv2d_cpu(x, w, 1)?
                } else {
                    x.conv2d(w, 1, 1, 1, 1)?
                };
                let loss = (y * &r)?.tanh()?.sum_all()?;
                let grads = loss.backward()?;
                let mut s = Tensor::zeros((), DType::F64, &dev)?;
                for (var, v) in vars.iter().zip(&v) {
                    s = (s + (grads.get(var.as_tensor()).expect("grad") * v)?.sum_all()?)?;
                }
                let h = crate::second_order::detached_backward(&s)?;
                Ok(vars
                    .iter()
                    .map(|var| h.get(var.as_tensor()).expect("hvp").clone())
                    .collect::<Vec<_>>())
            })
        };
        let (ours, theirs) = (hvp(true)?, hvp(false)?);
        for (a, b) in ours.iter().zip(&theirs) {
            let s = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
            assert!(max_diff(a, b) < 1e-10 * s.max(1.0));
        }
        Ok(())
    }
}
