//! Per-channel ops on `[B, C, H, W]` activations whose derivatives (of any
//! order) stay cheap on the CPU: a per-channel bias and ReLU6.
//!
//! Written with candle's broadcasting, `x + t.reshape((1, C, 1, 1))` has a
//! backward that sums the gradient over the batch and pixel dimensions
//! together, which candle's CPU reduction does element by element with
//! index arithmetic (it is fast only over trailing dimensions); and
//! `min(relu(x), 6)` takes a comparison, a conversion and a product per
//! backward. Here each is one pass:
//!
//! | op | computes | backward, cotangent `a` |
//! |---|---|---|
//! | `add_bias(x, t)` | `x + t_c` | `x̄ = a`, `t̄ = Sum(a)` |
//! | `Sum(a)` | `Σ_{b,h,w} a` per channel | `ā = Expand(r)` |
//! | `Expand(r)` | `r_c` at every pixel | `r̄ = Sum(a)` |
//! | `relu6(x)` | `min(max(x, 0), 6)` | `x̄ = Gate(a, x)` |
//! | `Gate(a, x)` | `a · 1[0 < x < 6]` | `ā = Gate(r, x)`; none for `x` (a step function) |
//!
//! Off the CPU, or in other dtypes, the same functions are candle
//! compositions.

use super::kernel::{check, slice, Real};
use crate::error::Result;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

fn fast(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64)
}

/// Runs `f` on the f32 or f64 slices of two storages of one dtype.
macro_rules! dispatch2 {
    ($op:expr, $s1:expr, $l1:expr, $s2:expr, $l2:expr, $f:ident $(, $arg:expr)*) => {
        match ($s1, $s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => CpuStorage::F32($f(
                slice::<f32>($op, $s1, $l1)?,
                slice::<f32>($op, $s2, $l2)?
                $(, $arg)*
            )),
            (CpuStorage::F64(_), CpuStorage::F64(_)) => CpuStorage::F64($f(
                slice::<f64>($op, $s1, $l1)?,
                slice::<f64>($op, $s2, $l2)?
                $(, $arg)*
            )),
            _ => candle_core::bail!("{}: only f32 and f64 of one dtype", $op),
        }
    };
}

macro_rules! dispatch1 {
    ($op:expr, $s:expr, $l:expr, $f:ident $(, $arg:expr)*) => {
        match $s {
            CpuStorage::F32(_) => CpuStorage::F32($f(slice::<f32>($op, $s, $l)? $(, $arg)*)),
            CpuStorage::F64(_) => CpuStorage::F64($f(slice::<f64>($op, $s, $l)? $(, $arg)*)),
            _ => candle_core::bail!("{}: only f32 and f64", $op),
        }
    };
}

/// `[B, C, H, W]` as (B, C, H·W).
fn bchw(l: &Layout, op: &str) -> candle_core::Result<(usize, usize, usize)> {
    match l.dims() {
        &[b, c, h, w] => Ok((b, c, h * w)),
        d => candle_core::bail!("{op}: expected [B, C, H, W], got {d:?}"),
    }
}

fn add_bias_impl<T: Real>(x: &[T], t: &[T], c: usize, hw: usize) -> Vec<T> {
    let mut y = x.to_vec();
    y.par_chunks_mut(hw).enumerate().for_each(|(p, plane)| {
        let v = t[p % c];
        plane.iter_mut().for_each(|e| *e += v);
    });
    y
}

fn channel_sum_impl<T: Real>(a: &[T], c: usize, hw: usize) -> Vec<T> {
    let b = a.len() / (c * hw).max(1);
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut acc = T::default();
            for n in 0..b {
                let mut s = T::default();
                for &v in &a[(n * c + ch) * hw..][..hw] {
                    s += v;
                }
                acc += s;
            }
            acc
        })
        .collect()
}

fn expand_impl<T: Real>(r: &[T], b: usize, hw: usize) -> Vec<T> {
    let c = r.len();
    let mut y = vec![T::default(); b * c * hw];
    y.par_chunks_mut(hw)
        .enumerate()
        .for_each(|(p, plane)| plane.fill(r[p % c]));
    y
}

fn relu6_impl<T: Real>(x: &[T]) -> Vec<T> {
    let (zero, six) = (T::from_f64(0.0), T::from_f64(6.0));
    let mut y = x.to_vec();
    y.par_chunks_mut(1 << 14).for_each(|ch| {
        for e in ch {
            *e = if *e < zero {
                zero
            } else if *e > six {
                six
            } else {
                *e
            };
        }
    });
    y
}

fn gate_impl<T: Real>(a: &[T], x: &[T]) -> Vec<T> {
    let (zero, six) = (T::from_f64(0.0), T::from_f64(6.0));
    let mut y = a.to_vec();
    y.par_chunks_mut(1 << 14)
        .zip(x.par_chunks(1 << 14))
        .for_each(|(ys, xs)| {
            for (e, &v) in ys.iter_mut().zip(xs) {
                if !(v > zero && v < six) {
                    *e = zero;
                }
            }
        });
    y
}

/// `x + t_c`.
struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add-channel-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (_, c, hw) = bchw(l1, op)?;
        check(op, "bias", l2, &[c])?;
        let y = dispatch2!(op, s1, l1, s2, l2, add_bias_impl, c, hw);
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.clone()), Some(grad.contiguous()?.apply_op1(Sum)?)))
    }
}

/// `Σ_{b,h,w} a` per channel: `[B, C, H, W]` → `[C]`.
struct Sum;

impl CustomOp1 for Sum {
    fn name(&self) -> &'static str {
        "channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let (_, c, hw) = bchw(l, op)?;
        Ok((
            dispatch1!(op, s, l, channel_sum_impl, c, hw),
            Shape::from(c),
        ))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let (b, _, h, w) = arg.dims4()?;
        Ok(Some(grad.contiguous()?.apply_op1(Expand { b, h, w })?))
    }
}

/// `r_c` at every pixel: `[C]` → `[b, C, h, w]`.
struct Expand {
    b: usize,
    h: usize,
    w: usize,
}

impl CustomOp1 for Expand {
    fn name(&self) -> &'static str {
        "channel-expand"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        let c = match l.dims() {
            &[c] => c,
            d => candle_core::bail!("{op}: expected [C], got {d:?}"),
        };
        let y = dispatch1!(op, s, l, expand_impl, self.b, self.h * self.w);
        Ok((y, Shape::from((self.b, c, self.h, self.w))))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Sum)?))
    }
}

/// `min(max(x, 0), 6)`.
struct Relu6;

impl CustomOp1 for Relu6 {
    fn name(&self) -> &'static str {
        "relu6"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        Ok((dispatch1!(op, s, l, relu6_impl), l.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(
            grad.contiguous()?.apply_op2(&arg.contiguous()?, Gate)?,
        ))
    }
}

/// `a · 1[0 < x < 6]`, the gradient of ReLU6 at `x` applied to `a`.
struct Gate;

impl CustomOp2 for Gate {
    fn name(&self) -> &'static str {
        "relu6-gate"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let op = self.name();
        check(op, "activation", l2, l1.dims())?;
        Ok((
            dispatch2!(op, s1, l1, s2, l2, gate_impl),
            l1.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        _a: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // linear in `a`; a step function of `x`, whose derivative is 0
        Ok((
            Some(grad.contiguous()?.apply_op2(&x.contiguous()?, Gate)?),
            None,
        ))
    }
}

/// `x + t` with `t: [C]` added to every pixel of channel `c` of `x: [B, C, H, W]`.
pub fn add_bias(x: &Tensor, t: &Tensor) -> Result<Tensor> {
    if fast(x) && t.dtype() == x.dtype() {
        return Ok(x.contiguous()?.apply_op2(&t.contiguous()?, AddBias)?);
    }
    let c = t.elem_count();
    Ok(x.broadcast_add(&t.reshape((1, c, 1, 1))?)?)
}

/// `min(max(x, 0), 6)`.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    if fast(x) {
        return Ok(x.contiguous()?.apply_op1(Relu6)?);
    }
    Ok(x.relu()?.minimum(6.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernel::max_diff;
    use candle_core::{Device, Var};

    /// Values, gradients and Hessian-vector products against the candle
    /// compositions.
    #[test]
    fn match_the_compositions_to_second_order() {
        let dev = Device::Cpu;
        let x0 = (Tensor::randn(0f64, 1.0, (2, 3, 4, 5), &dev).unwrap() * 4.0).unwrap();
        let t0 = Tensor::randn(0f64, 1.0, 3, &dev).unwrap();
        let r = Tensor::randn(0f64, 1.0, (2, 3, 4, 5), &dev).unwrap();
        let v = [
            x0.randn_like(0.0, 1.0).unwrap(),
            t0.randn_like(0.0, 1.0).unwrap(),
        ];
        let run = |ours: bool| {
            let (x0, t0, r, v) = (x0.clone(), t0.clone(), r.clone(), v.clone());
            crate::second_order::with_graph_gradients(move || {
                let vars = [Var::from_tensor(&x0)?, Var::from_tensor(&t0)?];
                let (x, t) = (vars[0].as_tensor(), vars[1].as_tensor());
                let y = if ours {
                    relu6(&add_bias(&(x * 1.5)?, t)?)?
                } else {
                    (x * 1.5)?
                        .broadcast_add(&t.reshape((1, 3, 1, 1))?)?
                        .relu()?
                        .minimum(6.0)?
                };
                let loss = (y.sqr()? * &r)?.sum_all()?;
                let grads = loss.backward()?;
                let mut s = Tensor::zeros((), DType::F64, &Device::Cpu)?;
                let mut out = vec![y.detach()];
                for (var, v) in vars.iter().zip(&v) {
                    let g = grads.get(var.as_tensor()).expect("grad");
                    out.push(g.detach());
                    s = (s + (g * v)?.sum_all()?)?;
                }
                let h = crate::second_order::detached_backward(&s)?;
                for var in &vars {
                    out.push(h.get(var.as_tensor()).expect("hvp").clone());
                }
                Ok(out)
            })
            .unwrap()
        };
        for (a, b) in run(true).iter().zip(&run(false)) {
            assert!(max_diff(a, b) < 1e-12, "{}", max_diff(a, b));
        }
    }
}
