//! The ConvNet block's tail, instance norm → ReLU → 2×2 average pool, as one
//! fused CPU op with hand-written first and second derivatives.
//!
//! Written as candle ops, this tail is about ten passes over the block's
//! largest tensor forward, more backward, and the reverse sweep of stage 2
//! differentiates that backward once more (DESIGN.md, "How the
//! second-order gradient is computed in candle"), each local gradient
//! accumulated into a fresh zero tensor. Here three kernels do it, each one
//! pass over every (sample, channel) group of pixels:
//!
//! - [`Block`] `F(z, γβ) = pool(relu(γ·x̂ + β))`, x̂ the instance-normalised `z`;
//! - its backward [`BlockVjp`] `G(z, γβ, dy) = (dz, dγβ)`, itself a candle op
//!   so that its result keeps a graph when the caller asks for one;
//! - `G`'s backward (`vjp_of_vjp`): the gradient of `⟨a, dz⟩ + ⟨p, dγ⟩ +
//!   ⟨q, dβ⟩` with respect to `z`, `γ` and `dy` (`β` only moves the ReLU
//!   mask, whose derivative is zero almost everywhere). It returns values
//!   without a graph: the block is differentiable **twice**, which is what
//!   stage 2's reverse sweep needs (its last backward runs detached).
//!
//! Per group of n pixels with mean μ and σ = √(var + ε) (biased variance),
//! `x̂ = (z − μ)/σ`, `u = γx̂ + β`, `m = [u > 0]`, g = the pooled gradient spread
//! over its 2×2 window (×¼), `du = g·m`:
//!
//! - `dβ = Σ du`, `dγ = Σ du·x̂` (summed over samples too),
//!   `dz = (γ/σ)(du − mean(du) − x̂·mean(du·x̂))`;
//! - with `k = γ/σ`, `ā = mean(a)`, `c = mean(a·x̂)`, `B = mean(du·x̂)`,
//!   `E = Σ du·(a − ā − c·x̂)`, `w = k(a − ā − c·x̂) + p·x̂ + q`:
//!   `∂/∂dy` = ¼ Σ over the window of `m·w`, `∂/∂γ = E/σ`, and with
//!   `h = −k(a·B + c·du) + p·du` (the gradient through x̂ at fixed σ) and
//!   `s = −γE/σ²` (through σ at fixed x̂):
//!   `∂/∂z = (h − mean(h) − x̂·mean(h·x̂))/σ + s·x̂/n`.
//!
//! A bias added to `z` before the norm cancels exactly, so the ConvNet
//! leaves the convolution's bias out of this path (its gradient is zero).

use super::kernel::{check, cpu, slice, storage_slice, Real};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};

/// The kernels' name in errors.
const OP: &str = "norm block";
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// The sizes of one call: `batch × channels` groups of `height × width`
/// pixels, pooled to `height/2 × width/2` (odd last rows / columns dropped).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Dims {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    eps: f64,
}

impl Dims {
    fn of(layout: &Layout, eps: f64) -> candle_core::Result<Self> {
        let (batch, channels, height, width) = layout.shape().dims4()?;
        if height < 2 || width < 2 {
            candle_core::bail!("{OP}: {height}×{width} is too small to pool 2×2");
        }
        Ok(Dims {
            batch,
            channels,
            height,
            width,
            eps,
        })
    }
    fn n(&self) -> usize {
        self.height * self.width
    }
    fn pooled(&self) -> (usize, usize) {
        (self.height / 2, self.width / 2)
    }
    fn pooled_n(&self) -> usize {
        let (h, w) = self.pooled();
        h * w
    }
}

/// `Σ a` with eight partial sums in a fixed order (vectorisable, and the
/// same bits on every run).
fn total(a: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = a.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().sum();
    for c in chunks {
        for (s, v) in acc.iter_mut().zip(c) {
            *s += v;
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// `Σ a·b`, as [`total`].
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f64>() + rest
}

/// 2×2 average pooling of one group (`src`: `H × W`) into `out` (`H/2 × W/2`).
fn pool<T: Real>(src: &[f64], d: &Dims, out: &mut [T]) {
    let (ph, pw) = d.pooled();
    let w = d.width;
    for py in 0..ph {
        let (r0, r1) = (&src[2 * py * w..], &src[(2 * py + 1) * w..]);
        for (px, o) in out[py * pw..(py + 1) * pw].iter_mut().enumerate() {
            let x = 2 * px;
            *o = T::from_f64(0.25 * (r0[x] + r0[x + 1] + r1[x] + r1[x + 1]));
        }
    }
}

/// The adjoint of [`pool`]: each pooled value ×¼ on its 2×2 window, zero on
/// a dropped odd last row / column.
fn unpool<T: Real>(dy: &[T], d: &Dims, out: &mut [f64]) {
    let (ph, pw) = d.pooled();
    let w = d.width;
    out.fill(0.0);
    for py in 0..ph {
        for r in 0..2 {
            let row = &mut out[(2 * py + r) * w..(2 * py + r + 1) * w];
            for (px, v) in dy[py * pw..(py + 1) * pw].iter().enumerate() {
                let v = 0.25 * v.to_f64();
                row[2 * px] = v;
                row[2 * px + 1] = v;
            }
        }
    }
}

/// One group's normalisation: mean and 1/σ.
fn stats(z: &[f64], eps: f64) -> (f64, f64) {
    let n = z.len() as f64;
    let mean = total(z) / n;
    let var = (dot(z, z) / n - mean * mean).max(0.0);
    (mean, 1.0 / (var + eps).sqrt())
}

/// One group's x̂, ReLU mask and du, with scratch rows; reused across the
/// groups a worker thread handles.
#[derive(Default)]
struct Group {
    xhat: Vec<f64>,
    mask: Vec<f64>,
    du: Vec<f64>,
    tmp: Vec<f64>,
    rstd: f64,
}

impl Group {
    /// x̂ and the mask of `z`; `du` too when `dy` is given.
    fn fill<T: Real>(&mut self, z: &[T], dy: Option<&[T]>, gamma: f64, beta: f64, d: &Dims) {
        let n = z.len();
        self.xhat.clear();
        self.xhat.extend(z.iter().map(|v| v.to_f64()));
        let (mean, rstd) = stats(&self.xhat, d.eps);
        self.rstd = rstd;
        for x in self.xhat.iter_mut() {
            *x = (*x - mean) * rstd;
        }
        self.mask.clear();
        self.mask.extend(
            self.xhat
                .iter()
                .map(|x| if gamma * x + beta > 0.0 { 1.0 } else { 0.0 }),
        );
        self.du.resize(n, 0.0);
        self.tmp.resize(n, 0.0);
        if let Some(dy) = dy {
            unpool(dy, d, &mut self.du);
            for (u, m) in self.du.iter_mut().zip(&self.mask) {
                *u *= m;
            }
        }
    }
}

fn gamma_beta<T: Real>(gb: &[T], channels: usize, c: usize) -> (f64, f64) {
    (gb[c].to_f64(), gb[channels + c].to_f64())
}

/// F: the block's forward, `[B, C, H, W]` → `[B, C, H/2, W/2]`.
fn forward<T: Real>(z: &[T], gb: &[T], d: &Dims) -> Vec<T> {
    let (n, pn) = (d.n(), d.pooled_n());
    let mut y = vec![T::default(); d.batch * d.channels * pn];
    z.par_chunks(n)
        .zip(y.par_chunks_mut(pn))
        .enumerate()
        .for_each_init(Group::default, |grp, (g, (z, y))| {
            let (gamma, beta) = gamma_beta(gb, d.channels, g % d.channels);
            grp.fill(z, None, gamma, beta, d);
            for (t, x) in grp.tmp.iter_mut().zip(&grp.xhat) {
                *t = (gamma * x + beta).max(0.0);
            }
            pool(&grp.tmp, d, y);
        });
    y
}

/// Sums per-group pairs `[B·C, 2]` over the batch into `[2, C]` (γ row, β row).
fn per_channel<T: Real>(parts: &[(f64, f64)], channels: usize) -> Vec<T> {
    let mut out = vec![0.0f64; 2 * channels];
    for (g, (a, b)) in parts.iter().enumerate() {
        out[g % channels] += a;
        out[channels + g % channels] += b;
    }
    out.into_iter().map(T::from_f64).collect()
}

/// G: `(dz, [dγ; dβ])`.
fn vjp<T: Real>(z: &[T], gb: &[T], dy: &[T], d: &Dims) -> (Vec<T>, Vec<T>) {
    let (n, pn) = (d.n(), d.pooled_n());
    let mut dz = vec![T::default(); z.len()];
    let mut parts = vec![(0.0, 0.0); d.batch * d.channels];
    dz.par_chunks_mut(n)
        .zip(parts.par_iter_mut())
        .enumerate()
        .for_each_init(Group::default, |grp, (g, (dz, part))| {
            let (gamma, beta) = gamma_beta(gb, d.channels, g % d.channels);
            let (zg, dyg) = (&z[g * n..(g + 1) * n], &dy[g * pn..(g + 1) * pn]);
            grp.fill(zg, Some(dyg), gamma, beta, d);
            let sdu = total(&grp.du);
            let sdux = dot(&grp.du, &grp.xhat);
            *part = (sdux, sdu);
            let k = gamma * grp.rstd;
            let (ma, mb) = (sdu / n as f64, sdux / n as f64);
            for ((o, du), xh) in dz.iter_mut().zip(&grp.du).zip(&grp.xhat) {
                *o = T::from_f64(k * (du - ma - xh * mb));
            }
        });
    (dz, per_channel(&parts, d.channels))
}

/// The gradients of `⟨a, dz⟩ + ⟨p, dγ⟩ + ⟨q, dβ⟩` (G's backward), as
/// `(∂/∂z, ∂/∂γβ, ∂/∂dy)`. `a` is `None` for zero, `pq` is `[p; q]` or `None`.
fn vjp_of_vjp<T: Real>(
    z: &[T],
    gb: &[T],
    dy: &[T],
    d: &Dims,
    a: Option<&[T]>,
    pq: Option<&[T]>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (n, pn) = (d.n(), d.pooled_n());
    let groups = d.batch * d.channels;
    let nf = n as f64;
    let mut d_z = vec![T::default(); z.len()];
    let mut d_dy = vec![T::default(); dy.len()];
    let mut parts = vec![(0.0, 0.0); groups];
    d_z.par_chunks_mut(n)
        .zip(d_dy.par_chunks_mut(pn))
        .zip(parts.par_iter_mut())
        .enumerate()
        .for_each_init(
            || (Group::default(), Vec::<f64>::new()),
            |(grp, r), (g, ((d_z, d_dy), part))| {
                let ch = g % d.channels;
                let (gamma, beta) = gamma_beta(gb, d.channels, ch);
                let (p, q) = pq.map_or((0.0, 0.0), |pq| gamma_beta(pq, d.channels, ch));
                let (zg, dyg) = (&z[g * n..(g + 1) * n], &dy[g * pn..(g + 1) * pn]);
                grp.fill(zg, Some(dyg), gamma, beta, d);
                let k = gamma * grp.rstd;
                let b_mean = dot(&grp.du, &grp.xhat) / nf;
                // r = a − ā − c·x̂ (zero without `a`)
                r.clear();
                r.resize(n, 0.0);
                let (mut a_mean, mut c) = (0.0, 0.0);
                if let Some(a) = a {
                    for (r, v) in r.iter_mut().zip(&a[g * n..(g + 1) * n]) {
                        *r = v.to_f64();
                    }
                    a_mean = total(r) / nf;
                    c = dot(r, &grp.xhat) / nf;
                    for (r, x) in r.iter_mut().zip(&grp.xhat) {
                        *r -= a_mean + c * x;
                    }
                }
                let e = dot(&grp.du, r);
                // ∂/∂dy: ¼ Σ_window m·(k·r + p·x̂ + q)
                for (((t, r), x), m) in grp
                    .tmp
                    .iter_mut()
                    .zip(r.iter())
                    .zip(&grp.xhat)
                    .zip(&grp.mask)
                {
                    *t = m * (k * r + p * x + q);
                }
                pool(&grp.tmp, d, d_dy);
                *part = (e * grp.rstd, 0.0);
                // ∂/∂z: h = −k(a·B + c·du) + p·du through x̂, s through σ;
                // a = r + ā + c·x̂
                for (((t, r), x), du) in
                    grp.tmp.iter_mut().zip(r.iter()).zip(&grp.xhat).zip(&grp.du)
                {
                    let av = r + a_mean + c * x;
                    *t = -k * (av * b_mean + c * du) + p * du;
                }
                let h_mean = total(&grp.tmp) / nf;
                let hx_mean = dot(&grp.tmp, &grp.xhat) / nf;
                let s = -gamma * e * grp.rstd * grp.rstd / nf;
                for ((o, h), x) in d_z.iter_mut().zip(&grp.tmp).zip(&grp.xhat) {
                    *o = T::from_f64((h - h_mean - x * hx_mean) * grp.rstd + s * x);
                }
            },
        );
    (d_z, per_channel(&parts, d.channels), d_dy)
}

fn check_gb(d: &Dims, l: &Layout) -> candle_core::Result<()> {
    check(OP, "γβ", l, &[2, d.channels])
}

fn check_dy(d: &Dims, l: &Layout) -> candle_core::Result<()> {
    let (ph, pw) = d.pooled();
    check(OP, "gradient", l, &[d.batch, d.channels, ph, pw])
}

/// F as a candle op: inputs `z: [B, C, H, W]`, `γβ: [2, C]`.
#[derive(Debug, Clone, Copy)]
struct Block {
    eps: f64,
}

impl CustomOp2 for Block {
    fn name(&self) -> &'static str {
        "norm-relu-pool"
    }

    fn cpu_fwd(
        &self,
        zs: &CpuStorage,
        zl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let d = Dims::of(zl, self.eps)?;
        check_gb(&d, gl)?;
        let (ph, pw) = d.pooled();
        let out = match zs {
            CpuStorage::F32(_) => CpuStorage::F32(forward(
                slice::<f32>(OP, zs, zl)?,
                slice::<f32>(OP, gs, gl)?,
                &d,
            )),
            CpuStorage::F64(_) => CpuStorage::F64(forward(
                slice::<f64>(OP, zs, zl)?,
                slice::<f64>(OP, gs, gl)?,
                &d,
            )),
            _ => candle_core::bail!("{OP}: only f32 and f64"),
        };
        Ok((out, Shape::from((d.batch, d.channels, ph, pw))))
    }

    fn bwd(
        &self,
        z: &Tensor,
        gb: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (z, gb, dy) = (z.contiguous()?, gb.contiguous()?, dy.contiguous()?);
        let (dz, dgb) = {
            let (zs, zl) = z.storage_and_layout();
            let (gs, gl) = gb.storage_and_layout();
            let (ys, yl) = dy.storage_and_layout();
            vjp_storage(
                (cpu(OP, &zs)?, zl),
                (cpu(OP, &gs)?, gl),
                (cpu(OP, &ys)?, yl),
                self.eps,
            )?
        };
        let dz = z.apply_op3(&gb, &dy, BlockVjp::new(self.eps, true, Some(dz)))?;
        let dgb = z.apply_op3(&gb, &dy, BlockVjp::new(self.eps, false, Some(dgb)))?;
        Ok((Some(dz), Some(dgb)))
    }
}

/// G as a candle op: inputs `z`, `γβ`, `dy`; output `dz` or `[dγ; dβ]`.
/// One kernel computes both; [`Block`]'s backward runs it once and hands
/// each of the two ops its half (`ready`), so neither recomputes.
#[derive(Debug, Clone)]
struct BlockVjp {
    eps: f64,
    want_z: bool,
    ready: Arc<Mutex<Option<CpuStorage>>>,
}

impl BlockVjp {
    fn new(eps: f64, want_z: bool, ready: Option<CpuStorage>) -> Self {
        BlockVjp {
            eps,
            want_z,
            ready: Arc::new(Mutex::new(ready)),
        }
    }
}

/// G on CPU storages: `(dz, [dγ; dβ])`.
fn vjp_storage(
    (zs, zl): (&CpuStorage, &Layout),
    (gs, gl): (&CpuStorage, &Layout),
    (ys, yl): (&CpuStorage, &Layout),
    eps: f64,
) -> candle_core::Result<(CpuStorage, CpuStorage)> {
    let d = Dims::of(zl, eps)?;
    check_gb(&d, gl)?;
    check_dy(&d, yl)?;
    fn typed<T: Real>(
        s: [(&CpuStorage, &Layout); 3],
        d: &Dims,
    ) -> candle_core::Result<(Vec<T>, Vec<T>)> {
        let [z, g, y] = s.map(|(s, l)| slice::<T>(OP, s, l));
        Ok(vjp(z?, g?, y?, d))
    }
    let args = [(zs, zl), (gs, gl), (ys, yl)];
    Ok(match zs {
        CpuStorage::F32(_) => {
            let (a, b) = typed::<f32>(args, &d)?;
            (CpuStorage::F32(a), CpuStorage::F32(b))
        }
        CpuStorage::F64(_) => {
            let (a, b) = typed::<f64>(args, &d)?;
            (CpuStorage::F64(a), CpuStorage::F64(b))
        }
        _ => candle_core::bail!("{OP}: only f32 and f64"),
    })
}

impl CustomOp3 for BlockVjp {
    fn name(&self) -> &'static str {
        "norm-relu-pool-backward"
    }

    fn cpu_fwd(
        &self,
        zs: &CpuStorage,
        zl: &Layout,
        gs: &CpuStorage,
        gl: &Layout,
        ys: &CpuStorage,
        yl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let channels = Dims::of(zl, self.eps)?.channels;
        let shape = if self.want_z {
            Shape::from(zl.dims())
        } else {
            Shape::from((2, channels))
        };
        let ready = self
            .ready
            .lock()
            .map_err(|_| candle_core::Error::Msg(format!("{OP}: a lock was poisoned")))?
            .take();
        if let Some(out) = ready {
            return Ok((out, shape));
        }
        let (dz, dgb) = vjp_storage((zs, zl), (gs, gl), (ys, yl), self.eps)?;
        Ok((if self.want_z { dz } else { dgb }, shape))
    }

    fn bwd(
        &self,
        z: &Tensor,
        gb: &Tensor,
        dy: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dz, dg, ddy) = match z.dtype() {
            candle_core::DType::F32 => second::<f32>(z, gb, dy, grad, self.eps, self.want_z)?,
            candle_core::DType::F64 => second::<f64>(z, gb, dy, grad, self.eps, self.want_z)?,
            dt => candle_core::bail!("{OP}: {dt:?} is not supported"),
        };
        Ok((Some(dz), Some(dg), Some(ddy)))
    }
}

/// G's backward on tensors: `grad` is the cotangent of `dz` (`want_z`) or of
/// `[dγ; dβ]`. The results carry no graph (see the module doc).
fn second<T: Real>(
    z: &Tensor,
    gb: &Tensor,
    dy: &Tensor,
    grad: &Tensor,
    eps: f64,
    want_z: bool,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let (z, gb, dy, grad) = (
        z.contiguous()?,
        gb.contiguous()?,
        dy.contiguous()?,
        grad.contiguous()?,
    );
    let d = Dims::of(z.layout(), eps)?;
    let (zs, zl) = z.storage_and_layout();
    let (gs, gl) = gb.storage_and_layout();
    let (ys, yl) = dy.storage_and_layout();
    let (cs, cl) = grad.storage_and_layout();
    let (z_, g_, y_, c_) = (
        storage_slice::<T>(OP, &zs, zl)?,
        storage_slice::<T>(OP, &gs, gl)?,
        storage_slice::<T>(OP, &ys, yl)?,
        storage_slice::<T>(OP, &cs, cl)?,
    );
    let (dz, dg, ddy) = if want_z {
        vjp_of_vjp(z_, g_, y_, &d, Some(c_), None)
    } else {
        vjp_of_vjp(z_, g_, y_, &d, None, Some(c_))
    };
    let dev = z.device();
    Ok((
        Tensor::from_vec(dz, z.dims(), dev)?,
        Tensor::from_vec(dg, gb.dims(), dev)?,
        Tensor::from_vec(ddy, dy.dims(), dev)?,
    ))
}

/// Instance norm (per-channel affine `gamma`, `beta`) → ReLU → 2×2 average
/// pool of `z: [B, C, H, W]` as one fused op, differentiable twice (see
/// the module doc). CPU, f32 / f64 only: callers fall back to the
/// composition of candle ops elsewhere.
pub fn norm_relu_pool(
    z: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let gb = Tensor::stack(&[gamma, beta], 0)?;
    z.contiguous()?.apply_op2(&gb, Block { eps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernel::max_diff;
    use crate::model::ops;
    use candle_core::{Device, Var};

    fn composite(z: &Tensor, g: &Tensor, b: &Tensor) -> Tensor {
        let h = ops::instance_norm(z, g, b, 1e-5).unwrap().relu().unwrap();
        ops::avg_pool2x2(&h).unwrap()
    }

    #[test]
    fn forward_and_gradients_match_the_composition() -> candle_core::Result<()> {
        let dev = Device::Cpu;
        for (h, w) in [(6, 4), (5, 7)] {
            let z = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 3, h, w), &dev)?)?;
            let g = Var::from_tensor(&Tensor::randn(1f64, 0.5, 3, &dev)?)?;
            let b = Var::from_tensor(&Tensor::randn(0f64, 0.5, 3, &dev)?)?;
            let ours = norm_relu_pool(&z, &g, &b, 1e-5)?;
            let theirs = composite(&z, &g, &b);
            assert!(max_diff(&ours, &theirs) < 1e-12);
            let r = ours.randn_like(0.0, 1.0)?;
            let ga = (ours * &r)?.sum_all()?.backward()?;
            let gb = (theirs * &r)?.sum_all()?.backward()?;
            for v in [z.as_tensor(), g.as_tensor(), b.as_tensor()] {
                let d = max_diff(ga.get(v).unwrap(), gb.get(v).unwrap());
                assert!(d < 1e-10, "{h}×{w}: {d}");
            }
        }
        Ok(())
    }

    /// Hessian-vector products through the block (the reverse sweep's use:
    /// a backward with graph, then a detached backward of `⟨v, ∇⟩`) agree
    /// with the composition of candle ops, on a loss whose gradient reaches
    /// the block's output through a nonlinearity.
    #[test]
    fn second_derivatives_match_the_composition() -> crate::Result<()> {
        let dev = Device::Cpu;
        let z0 = Tensor::randn(0f64, 1.0, (3, 2, 5, 6), &dev)?;
        let g0 = Tensor::randn(1f64, 0.5, 2, &dev)?;
        let b0 = Tensor::randn(0f64, 0.5, 2, &dev)?;
        let r = Tensor::randn(0f64, 1.0, (3, 2, 2, 3), &dev)?;
        let v: Vec<Tensor> = [&z0, &g0, &b0]
            .iter()
            .map(|t| t.randn_like(0.0, 1.0))
            .collect::<candle_core::Result<_>>()?;
        let hvp = |fused: bool| {
            let (z0, g0, b0, r, v) = (z0.clone(), g0.clone(), b0.clone(), r.clone(), v.clone());
            let dev = dev.clone();
            crate::second_order::with_graph_gradients(move || {
                let vars = [
                    Var::from_tensor(&z0)?,
                    Var::from_tensor(&g0)?,
                    Var::from_tensor(&b0)?,
                ];
                let (z, g, b) = (
                    vars[0].as_tensor(),
                    vars[1].as_tensor(),
                    vars[2].as_tensor(),
                );
                let y = if fused {
                    norm_relu_pool(z, g, b, 1e-5)?
                } else {
                    composite(z, g, b)
                };
                let loss = (y * &r)?.tanh()?.sqr()?.sum_all()?;
                let grads = loss.backward()?;
                let mut s = Tensor::zeros((), candle_core::DType::F64, &dev)?;
                for (var, v) in vars.iter().zip(&v) {
                    let g = grads.get(var.as_tensor()).expect("gradient");
                    s = (s + (g * v)?.sum_all()?)?;
                }
                let h = crate::second_order::detached_backward(&s)?;
                Ok(vars
                    .iter()
                    .map(|var| h.get(var.as_tensor()).expect("hvp").clone())
                    .collect::<Vec<_>>())
            })
        };
        let (ours, theirs) = (hvp(true)?, hvp(false)?);
        for (name, (a, b)) in ["z", "gamma", "beta"].iter().zip(ours.iter().zip(&theirs)) {
            let scale = b
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f64>()?
                .max(1e-3);
            let d = max_diff(a, b);
            assert!(d < 1e-9 * scale, "{name}: {d} (scale {scale})");
        }
        Ok(())
    }
}
