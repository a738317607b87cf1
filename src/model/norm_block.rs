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
//! x̂ = (z − μ)/σ, u = γx̂ + β, m = [u > 0], g = the pooled gradient spread
//! over its 2×2 window (×¼), du = g·m:
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

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The float types the kernels run on.
trait Real: Copy + Default + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    fn of(v: f64) -> Self;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn of(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn of(v: f64) -> Self {
        v
    }
}

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
            candle_core::bail!("norm block: {height}×{width} is too small to pool 2×2");
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
    /// For every pixel of a group, the index of its pooling window in the
    /// pooled group, or `NONE` for the dropped odd last row / column.
    fn windows(&self) -> Vec<u32> {
        let (ph, pw) = self.pooled();
        let mut w = Vec::with_capacity(self.n());
        for y in 0..self.height {
            for x in 0..self.width {
                w.push(if y / 2 < ph && x / 2 < pw {
                    ((y / 2) * pw + x / 2) as u32
                } else {
                    NONE
                });
            }
        }
        w
    }
}

/// Marks a pixel outside every pooling window.
const NONE: u32 = u32::MAX;

/// One group's normalisation: mean and 1/σ.
fn stats<T: Real>(z: &[T], eps: f64) -> (f64, f64) {
    let n = z.len() as f64;
    let mean = z.iter().map(|v| v.to_f64()).sum::<f64>() / n;
    let var = z
        .iter()
        .map(|v| {
            let d = v.to_f64() - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// One group's x̂, ReLU mask and du (for G and its backward); reused
/// across the groups a worker thread handles.
#[derive(Default)]
struct Group {
    xhat: Vec<f64>,
    du: Vec<f64>,
    mask: Vec<f64>,
    rstd: f64,
}

impl Group {
    fn fill<T: Real>(&mut self, z: &[T], dy: &[T], gamma: f64, beta: f64, win: &[u32], eps: f64) {
        let (mean, rstd) = stats(z, eps);
        self.rstd = rstd;
        self.xhat.clear();
        self.xhat
            .extend(z.iter().map(|v| (v.to_f64() - mean) * rstd));
        self.mask.clear();
        self.mask.extend(
            self.xhat
                .iter()
                .map(|x| if gamma * x + beta > 0.0 { 1.0 } else { 0.0 }),
        );
        self.du.clear();
        self.du.extend(win.iter().zip(&self.mask).map(|(&j, m)| {
            if j == NONE {
                0.0
            } else {
                0.25 * dy[j as usize].to_f64() * m
            }
        }));
    }
}

fn gamma_beta<T: Real>(gb: &[T], channels: usize, c: usize) -> (f64, f64) {
    (gb[c].to_f64(), gb[channels + c].to_f64())
}

/// F: the block's forward, `[B, C, H, W]` → `[B, C, H/2, W/2]`.
fn forward<T: Real>(z: &[T], gb: &[T], d: &Dims) -> Vec<T> {
    let (n, pn) = (d.n(), d.pooled_n());
    let mut y = vec![T::default(); d.batch * d.channels * pn];
    let win = d.windows();
    z.par_chunks(n)
        .zip(y.par_chunks_mut(pn))
        .enumerate()
        .for_each(|(g, (z, y))| {
            let (gamma, beta) = gamma_beta(gb, d.channels, g % d.channels);
            let (mean, rstd) = stats(z, d.eps);
            let mut acc = vec![0.0f64; pn];
            for (v, &j) in z.iter().zip(&win) {
                let u = gamma * (v.to_f64() - mean) * rstd + beta;
                if j != NONE && u > 0.0 {
                    acc[j as usize] += 0.25 * u;
                }
            }
            for (o, a) in y.iter_mut().zip(acc) {
                *o = T::of(a);
            }
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
    out.into_iter().map(T::of).collect()
}

/// G: `dz` (`want_z`) or `[dγ; dβ]`.
fn vjp<T: Real>(z: &[T], gb: &[T], dy: &[T], d: &Dims, want_z: bool) -> Vec<T> {
    let (n, pn) = (d.n(), d.pooled_n());
    let groups = d.batch * d.channels;
    let mut dz = if want_z {
        vec![T::default(); z.len()]
    } else {
        Vec::new()
    };
    let mut parts = vec![(0.0, 0.0); groups];
    let win = d.windows();
    let work = |grp: &mut Group, g: usize, dz: Option<&mut [T]>, part: &mut (f64, f64)| {
        let (gamma, beta) = gamma_beta(gb, d.channels, g % d.channels);
        let (zg, dyg) = (&z[g * n..(g + 1) * n], &dy[g * pn..(g + 1) * pn]);
        grp.fill(zg, dyg, gamma, beta, &win, d.eps);
        let sdu: f64 = grp.du.iter().sum();
        let sdux: f64 = grp.du.iter().zip(&grp.xhat).map(|(a, b)| a * b).sum();
        *part = (sdux, sdu);
        if let Some(dz) = dz {
            let k = gamma * grp.rstd;
            let (ma, mb) = (sdu / n as f64, sdux / n as f64);
            for ((o, du), xh) in dz.iter_mut().zip(&grp.du).zip(&grp.xhat) {
                *o = T::of(k * (du - ma - xh * mb));
            }
        }
    };
    if want_z {
        dz.par_chunks_mut(n)
            .zip(parts.par_iter_mut())
            .enumerate()
            .for_each_init(Group::default, |grp, (g, (dz, part))| {
                work(grp, g, Some(dz), part)
            });
        dz
    } else {
        parts
            .par_iter_mut()
            .enumerate()
            .for_each_init(Group::default, |grp, (g, part)| work(grp, g, None, part));
        per_channel(&parts, d.channels)
    }
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
    let win = d.windows();
    d_z.par_chunks_mut(n)
        .zip(d_dy.par_chunks_mut(pn))
        .zip(parts.par_iter_mut())
        .enumerate()
        .for_each_init(Group::default, |grp, (g, ((d_z, d_dy), part))| {
            let ch = g % d.channels;
            let (gamma, beta) = gamma_beta(gb, d.channels, ch);
            let (p, q) = pq.map_or((0.0, 0.0), |pq| gamma_beta(pq, d.channels, ch));
            let (zg, dyg) = (&z[g * n..(g + 1) * n], &dy[g * pn..(g + 1) * pn]);
            grp.fill(zg, dyg, gamma, beta, &win, d.eps);
            let a = a.map(|a| &a[g * n..(g + 1) * n]);
            let av = |i: usize| a.map_or(0.0, |a| a[i].to_f64());
            let k = gamma * grp.rstd;
            let b_mean = grp
                .du
                .iter()
                .zip(&grp.xhat)
                .map(|(u, x)| u * x)
                .sum::<f64>()
                / nf;
            let (a_mean, c) = match a {
                Some(a) => {
                    let s: f64 = a.iter().map(|v| v.to_f64()).sum();
                    let sx: f64 = a.iter().zip(&grp.xhat).map(|(v, x)| v.to_f64() * x).sum();
                    (s / nf, sx / nf)
                }
                None => (0.0, 0.0),
            };
            // ∂/∂dy and E
            let mut e = 0.0;
            let mut acc = vec![0.0f64; pn];
            for (i, &j) in win.iter().enumerate() {
                let r = av(i) - a_mean - c * grp.xhat[i];
                e += grp.du[i] * r;
                if j != NONE {
                    acc[j as usize] += 0.25 * grp.mask[i] * (k * r + p * grp.xhat[i] + q);
                }
            }
            for (o, v) in d_dy.iter_mut().zip(acc) {
                *o = T::of(v);
            }
            *part = (e * grp.rstd, 0.0);
            // ∂/∂z: through x̂ (h) and through σ (s)
            let h = |i: usize| -k * (av(i) * b_mean + c * grp.du[i]) + p * grp.du[i];
            let (mut hs, mut hx) = (0.0, 0.0);
            for i in 0..n {
                let hi = h(i);
                hs += hi;
                hx += hi * grp.xhat[i];
            }
            let (h_mean, hx_mean) = (hs / nf, hx / nf);
            let s = -gamma * e * grp.rstd * grp.rstd;
            for (i, o) in d_z.iter_mut().enumerate() {
                let x = grp.xhat[i];
                *o = T::of((h(i) - h_mean - x * hx_mean) * grp.rstd + s * x / nf);
            }
        });
    (d_z, per_channel(&parts, d.channels), d_dy)
}

fn slice<'a, T>(s: &'a [T], l: &Layout) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s[a..b]),
        None => candle_core::bail!("norm block: inputs must be contiguous"),
    }
}

fn check_gb(d: &Dims, l: &Layout) -> candle_core::Result<()> {
    if l.dims() != [2, d.channels] {
        candle_core::bail!(
            "norm block: γβ is {:?}, expected [2, {}]",
            l.dims(),
            d.channels
        );
    }
    Ok(())
}

fn check_dy(d: &Dims, l: &Layout) -> candle_core::Result<()> {
    let (ph, pw) = d.pooled();
    if l.dims() != [d.batch, d.channels, ph, pw] {
        candle_core::bail!(
            "norm block: gradient is {:?}, expected {:?}",
            l.dims(),
            [d.batch, d.channels, ph, pw]
        );
    }
    Ok(())
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
        let out = match (zs, gs) {
            (CpuStorage::F32(z), CpuStorage::F32(g)) => {
                CpuStorage::F32(forward(slice(z, zl)?, slice(g, gl)?, &d))
            }
            (CpuStorage::F64(z), CpuStorage::F64(g)) => {
                CpuStorage::F64(forward(slice(z, zl)?, slice(g, gl)?, &d))
            }
            _ => candle_core::bail!("norm block: only f32 and f64 of one dtype"),
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
        let dy = dy.contiguous()?;
        let dz = z.apply_op3(gb, &dy, BlockVjp::new(self.eps, true))?;
        let dgb = z.apply_op3(gb, &dy, BlockVjp::new(self.eps, false))?;
        Ok((Some(dz), Some(dgb)))
    }
}

/// G as a candle op: inputs `z`, `γβ`, `dy`; output `dz` or `[dγ; dβ]`.
#[derive(Debug, Clone, Copy)]
struct BlockVjp {
    eps: f64,
    want_z: bool,
}

impl BlockVjp {
    fn new(eps: f64, want_z: bool) -> Self {
        BlockVjp { eps, want_z }
    }
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
        let d = Dims::of(zl, self.eps)?;
        check_gb(&d, gl)?;
        check_dy(&d, yl)?;
        let out =
            match (zs, gs, ys) {
                (CpuStorage::F32(z), CpuStorage::F32(g), CpuStorage::F32(y)) => CpuStorage::F32(
                    vjp(slice(z, zl)?, slice(g, gl)?, slice(y, yl)?, &d, self.want_z),
                ),
                (CpuStorage::F64(z), CpuStorage::F64(g), CpuStorage::F64(y)) => CpuStorage::F64(
                    vjp(slice(z, zl)?, slice(g, gl)?, slice(y, yl)?, &d, self.want_z),
                ),
                _ => candle_core::bail!("norm block: only f32 and f64 of one dtype"),
            };
        let shape = if self.want_z {
            Shape::from(zl.dims())
        } else {
            Shape::from((2, d.channels))
        };
        Ok((out, shape))
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
            dt => candle_core::bail!("norm block: {dt:?} is not supported"),
        };
        Ok((Some(dz), Some(dg), Some(ddy)))
    }
}

/// G's backward on tensors: `grad` is the cotangent of `dz` (`want_z`) or of
/// `[dγ; dβ]`. The results carry no graph (see the module doc).
fn second<T: Real + candle_core::WithDType>(
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
        cpu_slice::<T>(&zs, zl)?,
        cpu_slice::<T>(&gs, gl)?,
        cpu_slice::<T>(&ys, yl)?,
        cpu_slice::<T>(&cs, cl)?,
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

fn cpu_slice<'a, T: candle_core::WithDType>(
    s: &'a candle_core::Storage,
    l: &Layout,
) -> candle_core::Result<&'a [T]> {
    match s {
        candle_core::Storage::Cpu(c) => slice(c.as_slice::<T>()?, l),
        _ => candle_core::bail!("norm block: CPU tensors only"),
    }
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
    use crate::model::ops;
    use candle_core::{Device, Var};

    fn composite(z: &Tensor, g: &Tensor, b: &Tensor) -> Tensor {
        let h = ops::instance_norm(z, g, b, 1e-5).unwrap().relu().unwrap();
        ops::avg_pool2x2(&h).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
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
