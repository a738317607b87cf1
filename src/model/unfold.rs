//! Convolution as unfold (im2col) + matrix product, with unfold and its
//! adjoint fold as candle custom ops whose backward passes are each other.
//!
//! candle's CPU convolution differentiates into a `conv_transpose2d` (a
//! direct loop of dot products) and a convolution with an image-sized
//! kernel; the reverse sweep of stage 2 differentiates those once more. Here
//! a k×k convolution (stride 1, zero padding) of `x: [B, C, H, W]` is
//! `W [Cout, C·k·k] × unfold(x) [B, C·k·k, H'·W']`, so every derivative of
//! any order is a matrix product (gemm) or an unfold / fold, which are
//! single passes over memory. Both ops are linear, so their backward passes
//! are the adjoint op applied to the incoming gradient — recorded in the
//! graph like any op, hence differentiable again.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The geometry of a k×k, stride-1 patch extraction (see [`Patches`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    channels: usize,
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

    /// Calls `f(image_offset, column_offset)` for every (channel, kernel
    /// tap, output position) whose input pixel lies inside the image, with
    /// offsets relative to one sample.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize)) {
        let (oh, ow) = (self.out_h(), self.out_w());
        let (k, p) = (self.kernel, self.padding);
        for c in 0..self.channels {
            for ky in 0..k {
                for kx in 0..k {
                    let row = (c * k + ky) * k + kx;
                    for oy in 0..oh {
                        let iy = oy + ky;
                        if iy < p || iy - p >= self.height {
                            continue;
                        }
                        let iy = iy - p;
                        // the range of ox whose input column is inside
                        let ox_lo = p.saturating_sub(kx);
                        let ox_hi = (self.width + p - kx).min(ow);
                        if ox_lo >= ox_hi {
                            continue;
                        }
                        let img = (c * self.height + iy) * self.width + (ox_lo + kx - p);
                        let col = (row * oh + oy) * ow + ox_lo;
                        // one contiguous run per (c, ky, kx, oy)
                        for j in 0..(ox_hi - ox_lo) {
                            f(img + j, col + j);
                        }
                    }
                }
            }
        }
    }
}

fn contiguous_f<'a, T>(s: &'a [T], l: &Layout) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("unfold/fold: the input must be contiguous"),
    }
}

/// Which way [`transfer`] moves values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// image → columns (copy)
    Unfold,
    /// columns → image (sum)
    Fold,
}

fn transfer_typed<T: Copy + Default + Send + Sync + std::ops::AddAssign>(
    src: &[T],
    g: Geometry,
    batch: usize,
    direction: Direction,
) -> Vec<T> {
    let img_len = g.channels * g.height * g.width;
    let col_len = g.channels * g.kernel * g.kernel * g.out_h() * g.out_w();
    let (src_len, dst_len) = match direction {
        Direction::Unfold => (img_len, col_len),
        Direction::Fold => (col_len, img_len),
    };
    let mut dst = vec![T::default(); batch * dst_len];
    src.par_chunks(src_len)
        .zip(dst.par_chunks_mut(dst_len))
        .for_each(|(s, d)| match direction {
            Direction::Unfold => g.for_each_tap(|i, o| d[o] = s[i]),
            Direction::Fold => g.for_each_tap(|i, o| d[i] += s[o]),
        });
    dst
}

/// Unfold or fold a contiguous f32 / f64 storage of `batch` samples.
fn transfer(
    storage: &CpuStorage,
    layout: &Layout,
    g: Geometry,
    batch: usize,
    direction: Direction,
) -> candle_core::Result<CpuStorage> {
    Ok(match storage {
        CpuStorage::F32(s) => CpuStorage::F32(transfer_typed(
            contiguous_f(s, layout)?,
            g,
            batch,
            direction,
        )),
        CpuStorage::F64(s) => CpuStorage::F64(transfer_typed(
            contiguous_f(s, layout)?,
            g,
            batch,
            direction,
        )),
        _ => candle_core::bail!("unfold/fold: only f32 and f64 are supported"),
    })
}

/// One of the two linear maps, as a candle op:
/// - [`Direction::Unfold`]: `[B, C, H, W]` → `[B, C·k·k, H'·W']`, the k×k
///   patches (zero padding, stride 1) as columns;
/// - [`Direction::Fold`], its adjoint: `[B, C·k·k, H'·W']` → `[B, C, H, W]`,
///   summing every column entry into the pixel it was taken from.
///
/// The backward of each is the other applied to the incoming gradient.
#[derive(Debug, Clone, Copy)]
struct Patches {
    geometry: Geometry,
    direction: Direction,
}

impl Patches {
    fn unfold(geometry: Geometry) -> Self {
        Patches {
            geometry,
            direction: Direction::Unfold,
        }
    }

    fn fold(geometry: Geometry) -> Self {
        Patches {
            geometry,
            direction: Direction::Fold,
        }
    }

    /// The per-sample shapes of the image side and the column side.
    fn image_dims(&self) -> (usize, usize, usize) {
        let g = self.geometry;
        (g.channels, g.height, g.width)
    }

    fn column_dims(&self) -> (usize, usize) {
        let g = self.geometry;
        (g.channels * g.kernel * g.kernel, g.out_h() * g.out_w())
    }
}

impl CustomOp1 for Patches {
    fn name(&self) -> &'static str {
        match self.direction {
            Direction::Unfold => "unfold",
            Direction::Fold => "fold",
        }
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (c, h, w) = self.image_dims();
        let (rows, cols) = self.column_dims();
        let (b, fits, out_shape) = match self.direction {
            Direction::Unfold => {
                let (b, ci, hi, wi) = layout.shape().dims4()?;
                (b, (ci, hi, wi) == (c, h, w), Shape::from((b, rows, cols)))
            }
            Direction::Fold => {
                let (b, r, k) = layout.shape().dims3()?;
                (b, (r, k) == (rows, cols), Shape::from((b, c, h, w)))
            }
        };
        if !fits {
            candle_core::bail!(
                "{}: input {:?} does not fit {:?}",
                self.name(),
                layout.dims(),
                self.geometry
            );
        }
        let out = transfer(storage, layout, self.geometry, b, self.direction)?;
        Ok((out, out_shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let adjoint = match self.direction {
            Direction::Unfold => Patches::fold(self.geometry),
            Direction::Fold => Patches::unfold(self.geometry),
        };
        Ok(Some(grad.contiguous()?.apply_op1(adjoint)?))
    }
}

/// k×k convolution of `x: [B, C, H, W]` with `w: [Cout, C, k, k]`, stride 1,
/// `padding` zeros on each side, as `W × unfold(x)`: differentiable to any
/// order through matrix products and unfold / fold (CPU only; the caller
/// uses candle's convolution on other devices).
pub fn conv2d_unfold(x: &Tensor, w: &Tensor, padding: usize) -> candle_core::Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let (cout, cin, k, k2) = w.dims4()?;
    if cin != c || k != k2 {
        candle_core::bail!(
            "conv2d: input {:?} and kernel {:?} do not fit",
            x.dims(),
            w.dims()
        );
    }
    let g = Geometry {
        channels: c,
        height: h,
        width: wd,
        kernel: k,
        padding,
    };
    let cols = x.contiguous()?.apply_op1(Patches::unfold(g))?; // [B, C·k·k, H'·W']
    let wm = w.reshape((cout, c * k * k))?;
    let y = wm.broadcast_left(b)?.matmul(&cols)?; // [B, Cout, H'·W']
    y.reshape((b, cout, g.out_h(), g.out_w()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn matches_candle_conv_and_fold_is_the_adjoint() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f64, 1.0, (2, 3, 7, 5), &dev)?;
        let w = Tensor::randn(0f64, 1.0, (4, 3, 3, 3), &dev)?;
        for padding in [0, 1, 2] {
            let ours = conv2d_unfold(&x, &w, padding)?;
            let theirs = x.conv2d(&w, padding, 1, 1, 1)?;
            assert_eq!(ours.dims(), theirs.dims());
            let d = (ours - theirs)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(d < 1e-12, "padding {padding}: {d}");
        }
        // <unfold(x), y> = <x, fold(y)>
        let g = Geometry {
            channels: 3,
            height: 7,
            width: 5,
            kernel: 3,
            padding: 1,
        };
        let ux = x.apply_op1(Patches::unfold(g))?;
        let y = ux.randn_like(0.0, 1.0)?;
        let lhs = (ux * &y)?.sum_all()?.to_scalar::<f64>()?;
        let rhs = (x.clone() * y.apply_op1(Patches::fold(g))?)?
            .sum_all()?
            .to_scalar::<f64>()?;
        assert!((lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0));
        Ok(())
    }

    #[test]
    fn gradients_match_candle_conv() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 6, 6), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 3, 3, 3), &dev)?)?;
        let a = conv2d_unfold(&x, &w, 1)?.sqr()?.sum_all()?.backward()?;
        let b = x.conv2d(&w, 1, 1, 1, 1)?.sqr()?.sum_all()?.backward()?;
        for v in [x.as_tensor(), w.as_tensor()] {
            let ga = a.get(v).unwrap().to_dtype(DType::F64)?;
            let gb = b.get(v).unwrap().to_dtype(DType::F64)?;
            let d = (&ga - &gb)?.abs()?.max_all()?.to_scalar::<f64>()?;
            let s = gb.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(d < 1e-4 * s, "{d} vs {s}");
        }
        Ok(())
    }
}
