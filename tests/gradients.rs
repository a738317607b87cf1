//! Gradients against central finite differences in f64: InfoNCE, the ConvNet
//! tower, and stage 2's gradient of the bi-trajectory matching loss through
//! unrolled SGD steps (`stage2::matching::matching_gradient`, the reverse sweep) with
//! respect to the synthetic images, text embeddings and log learning rates,
//! and with respect to a learned similarity's factors (LoRS's soft-label
//! loss) when the student trains against one.

use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vl_distill::config::{
    ImageEncoderConfig, LoraConfig, LoraTarget, ModelConfig, TextTowerConfig,
};
use vl_distill::model::{
    EfficientNetLite0, ImageEncoder, NfCfg, NfNet, ParamSet, TwoTower, Vit, VitCfg,
};
use vl_distill::second_order::with_graph_gradients;
use vl_distill::stage1::sgd::TowerLr;
use vl_distill::stage2::matching::matching_gradient;
use vl_distill::stage2::matching::matching_loss;
use vl_distill::stage2::similarity::LearnedSimilarity;
use vl_distill::stage2::unroll::{unroll_forward, Blend, StepBatch};

/// CPU, or the GPU under `--features cuda` (see `device::for_tests`).
fn dev() -> Device {
    vl_distill::device::for_tests()
}

fn randn(rng: &mut ChaCha8Rng, shape: &[usize], scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| rng.random_range(-1.0..1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &dev()).unwrap()
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn perturb(t: &Tensor, i: usize, h: f64) -> Tensor {
    let mut v = to_vec(t);
    v[i] += h;
    Tensor::from_vec(v, t.shape(), &dev()).unwrap()
}

fn axpy(t: &Tensor, dir: &Tensor, h: f64) -> Tensor {
    (t + (dir * h).unwrap()).unwrap()
}

/// Relative error ‖a − b‖ / max(‖b‖, tiny).
fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt().max(1e-300);
    num / den
}

fn model(text_tower: TextTowerConfig, learn_temperature: bool, text_dim: usize) -> TwoTower {
    let cfg = ModelConfig {
        image: ImageEncoderConfig::ConvNet { width: 4, depth: 2 },
        image_proj: None,
        text_tower,
        temperature: 0.5,
        learn_temperature,
        backbone: Default::default(),
    };
    TwoTower::new(&cfg, 8, text_dim).unwrap()
}

#[test]
fn info_nce_gradient_matches_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let fi = randn(&mut rng, &[5, 7], 1.0);
    let ft = randn(&mut rng, &[5, 7], 1.0);
    let scale = Tensor::new(3.0f64, &dev()).unwrap();
    let loss = |a: &Tensor, b: &Tensor| -> f64 {
        vl_distill::model::loss::info_nce(a, b, &scale)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let vi = Var::from_tensor(&fi).unwrap();
    let vt = Var::from_tensor(&ft).unwrap();
    let l = vl_distill::model::loss::info_nce(vi.as_tensor(), vt.as_tensor(), &scale).unwrap();
    assert!(l.to_scalar::<f64>().unwrap() > 0.0);
    let g = l.backward().unwrap();
    let h = 1e-6;
    for (var, other, first) in [(&fi, &ft, true), (&ft, &fi, false)] {
        let ad = to_vec(
            g.get(if first {
                vi.as_tensor()
            } else {
                vt.as_tensor()
            })
            .unwrap(),
        );
        let fd: Vec<f64> = (0..var.elem_count())
            .map(|i| {
                let (p, m) = (perturb(var, i, h), perturb(var, i, -h));
                let (lp, lm) = if first {
                    (loss(&p, other), loss(&m, other))
                } else {
                    (loss(other, &p), loss(other, &m))
                };
                (lp - lm) / (2.0 * h)
            })
            .collect();
        let e = rel_err(&ad, &fd);
        assert!(e < 1e-5, "InfoNCE relative error {e}");
    }
}

#[test]
fn info_nce_prefers_matched_pairs() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let f = randn(&mut rng, &[8, 16], 1.0);
    let scale = Tensor::new(10.0f64, &dev()).unwrap();
    let matched = vl_distill::model::loss::info_nce(&f, &f, &scale).unwrap();
    let shuffled = f.roll(1, 0).unwrap();
    let wrong = vl_distill::model::loss::info_nce(&f, &shuffled, &scale).unwrap();
    assert!(matched.to_scalar::<f64>().unwrap() < 0.1);
    assert!(wrong.to_scalar::<f64>().unwrap() > 1.0);
    // shape mismatch is an error, not a panic
    assert!(vl_distill::model::loss::info_nce(&f, &f.narrow(1, 0, 4).unwrap(), &scale).is_err());
}

#[test]
fn convnet_tower_gradient_matches_finite_differences() {
    check_first_order(&model(TextTowerConfig::Linear, false, 6), 8);
}

/// Every parameter of a whole ViT (all weights trained, class-token
/// pooling): first-order gradients against finite differences.
#[test]
fn vit_tower_gradient_matches_finite_differences() {
    let cfg = VitCfg {
        img_size: 8,
        patch_size: 4,
        embed_dim: 8,
        depth: 2,
        num_heads: 2,
        mlp_ratio: 2.0,
    };
    let vit = Vit::new("vit-test", cfg).unwrap();
    check_first_order(&tower_with(Box::new(vit), 6), 8);
}

/// The gradient of a scalar readout of the image features with respect to
/// every image-tower parameter and to the input, against central finite
/// differences (f64).
fn check_first_order(m: &TwoTower, side: usize) {
    let p = m.init(3, &dev(), DType::F64).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x = randn(&mut rng, &[3, 3, side, side], 1.0);
    let w_out = randn(&mut rng, &[3, m.encoder.out_dim()], 1.0);
    // a scalar readout of the features: Σ w ⊙ f(x)
    let readout = |params: &ParamSet, x: &Tensor| -> Tensor {
        (m.encode_images(params, x).unwrap() * &w_out)
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let (vars, _v) = p.image.to_vars().unwrap();
    let xv = Var::from_tensor(&x).unwrap();
    let g = readout(&vars, xv.as_tensor()).backward().unwrap();
    let h = 1e-6;
    let val = |params: &ParamSet, x: &Tensor| readout(params, x).to_scalar::<f64>().unwrap();
    // every parameter tensor: a random direction plus two coordinates
    for (k, name) in p.image.names().iter().enumerate() {
        let t = &p.image.tensors()[k];
        // No gradient at all means zero: on the CPU the ConvNet leaves a
        // conv bias that instance norm cancels out of the graph.
        let ad = match g.get(&vars.tensors()[k]) {
            Some(t) => to_vec(t),
            None => vec![0.0; t.elem_count()],
        };
        let dir = randn(&mut rng, t.dims(), 1.0);
        let with = |d: f64| {
            p.image
                .map(|n, u| {
                    Ok(if n == name {
                        axpy(u, &dir, d)
                    } else {
                        u.clone()
                    })
                })
                .unwrap()
        };
        let fd = (val(&with(h), &x) - val(&with(-h), &x)) / (2.0 * h);
        let ad_dir: f64 = ad.iter().zip(to_vec(&dir)).map(|(a, b)| a * b).sum();
        // A conv bias right before instance norm has zero gradient: compare
        // absolutely there, above the finite differences' rounding noise
        // (≈ ε·|value|/h ≈ 1e-9; the other gradients here are of order 1).
        if fd.abs() < 1e-7 {
            assert!(ad_dir.abs() < 1e-7, "{name}: {ad_dir} vs {fd}");
            continue;
        }
        let e = rel_err(&[ad_dir], &[fd]);
        assert!(e < 1e-5, "{name}: relative error {e} ({ad_dir} vs {fd})");
    }
    let ad_x = to_vec(g.get(xv.as_tensor()).unwrap());
    let idx: Vec<usize> = (0..12)
        .map(|_| rng.random_range(0..x.elem_count()))
        .collect();
    let fd: Vec<f64> = idx
        .iter()
        .map(|&i| {
            (val(&p.image, &perturb(&x, i, h)) - val(&p.image, &perturb(&x, i, -h))) / (2.0 * h)
        })
        .collect();
    let ad: Vec<f64> = idx.iter().map(|&i| ad_x[i]).collect();
    let e = rel_err(&ad, &fd);
    assert!(e < 1e-5, "input gradient relative error {e}");
}

/// ℓ = ‖θ₃ − θ_target‖² after 3 SGD steps; its gradient with respect to the
/// images, the text embeddings and both log learning rates, by the reverse
/// sweep, against central finite differences.
fn check_second_order(m: &TwoTower, text_dim: usize, side: usize) {
    check_second_order_with_steps(m, text_dim, side, 1e-5, 1e-5)
}

/// [`check_second_order`] with finite-difference step `h` along single
/// coordinates and `h_dir` along random directions of all coordinates (a
/// larger step lifts a small gradient above the rounding noise of ℓ; along
/// a direction of every pixel it would sooner cross a ReLU kink, where the
/// student's step, and so ℓ, jumps).
fn check_second_order_with_steps(m: &TwoTower, text_dim: usize, side: usize, h: f64, h_dir: f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let theta0 = m.init(6, &dev(), DType::F64).unwrap();
    let target = m.init(7, &dev(), DType::F64).unwrap();
    let images = randn(&mut rng, &[6, 3, side, side], 1.0);
    let texts = randn(&mut rng, &[6, text_dim], 1.0);
    let batches = vec![
        StepBatch {
            indices: vec![0, 1, 2, 3],
            seed: 11,
            blend: None,
        },
        StepBatch {
            indices: vec![2, 3, 4, 5],
            seed: 12,
            blend: None,
        },
        StepBatch {
            indices: vec![5, 0, 3, 1],
            seed: 13,
            blend: None,
        },
    ];
    let log_lr = [(0.3f64).ln(), (0.2f64).ln()];
    // ℓ = the bi-trajectory matching loss of the student after the steps,
    // each tower normalised by its own start–target distance
    let ell = |images: &Tensor, texts: &Tensor, log_lr: [f64; 2]| -> f64 {
        let lr = TowerLr {
            image: log_lr[0].exp(),
            text: log_lr[1].exp(),
        };
        let snaps = unroll_forward(m, &theta0, images, texts, None, &batches, lr, 0)
            .unwrap()
            .snapshots;
        let (li, lt) = matching_loss(snaps.last().unwrap(), &theta0, &target).unwrap();
        li + lt
    };
    let lr = TowerLr {
        image: log_lr[0].exp(),
        text: log_lr[1].exp(),
    };
    // exactly what Distiller::step computes; keeping 0, some or all of the
    // step graphs from the forward pass changes no value
    let run = |keep: usize| {
        with_graph_gradients(|| {
            matching_gradient(
                m, &theta0, &target, &images, &texts, None, &batches, lr, keep,
            )
        })
        .unwrap()
    };
    let mg = run(2);
    for other in [run(0), run(batches.len() + 1)] {
        assert_eq!(other.loss_image, mg.loss_image);
        assert_eq!(other.grads.log_lr_image, mg.grads.log_lr_image);
        assert_eq!(other.grads.log_lr_text, mg.grads.log_lr_text);
        assert_eq!(to_vec(&other.grads.images), to_vec(&mg.grads.images));
        assert_eq!(to_vec(&other.grads.texts), to_vec(&mg.grads.texts));
    }
    assert!((mg.loss_image + mg.loss_text - ell(&images, &texts, log_lr)).abs() < 1e-12);
    let grads = mg.grads;

    // images: a few coordinates and one random direction
    let gi = to_vec(&grads.images);
    let idx: Vec<usize> = (0..8)
        .map(|_| rng.random_range(0..images.elem_count()))
        .collect();
    let fd: Vec<f64> = idx
        .iter()
        .map(|&i| {
            (ell(&perturb(&images, i, h), &texts, log_lr)
                - ell(&perturb(&images, i, -h), &texts, log_lr))
                / (2.0 * h)
        })
        .collect();
    let ad: Vec<f64> = idx.iter().map(|&i| gi[i]).collect();
    let e = rel_err(&ad, &fd);
    assert!(
        e < 1e-4,
        "image coordinates: relative error {e}\nad {ad:?}\nfd {fd:?}"
    );
    let dir = randn(&mut rng, images.dims(), 1.0);
    let fd = (ell(&axpy(&images, &dir, h_dir), &texts, log_lr)
        - ell(&axpy(&images, &dir, -h_dir), &texts, log_lr))
        / (2.0 * h_dir);
    let ad: f64 = gi.iter().zip(to_vec(&dir)).map(|(a, b)| a * b).sum();
    let e = rel_err(&[ad], &[fd]);
    assert!(
        e < 1e-4,
        "image direction: relative error {e} ({ad} vs {fd})"
    );

    // text embeddings: a random direction and a few coordinates
    let gt = to_vec(&grads.texts);
    let dir = randn(&mut rng, texts.dims(), 1.0);
    let fd = (ell(&images, &axpy(&texts, &dir, h_dir), log_lr)
        - ell(&images, &axpy(&texts, &dir, -h_dir), log_lr))
        / (2.0 * h_dir);
    let ad: f64 = gt.iter().zip(to_vec(&dir)).map(|(a, b)| a * b).sum();
    let e = rel_err(&[ad], &[fd]);
    assert!(
        e < 1e-4,
        "text direction: relative error {e} ({ad} vs {fd})"
    );
    let idx: Vec<usize> = (0..6)
        .map(|_| rng.random_range(0..texts.elem_count()))
        .collect();
    let fd: Vec<f64> = idx
        .iter()
        .map(|&i| {
            (ell(&images, &perturb(&texts, i, h), log_lr)
                - ell(&images, &perturb(&texts, i, -h), log_lr))
                / (2.0 * h)
        })
        .collect();
    let ad: Vec<f64> = idx.iter().map(|&i| gt[i]).collect();
    let e = rel_err(&ad, &fd);
    assert!(e < 1e-4, "text coordinates: relative error {e}");

    // log learning rates
    let fd_img = (ell(&images, &texts, [log_lr[0] + h, log_lr[1]])
        - ell(&images, &texts, [log_lr[0] - h, log_lr[1]]))
        / (2.0 * h);
    let fd_txt = (ell(&images, &texts, [log_lr[0], log_lr[1] + h])
        - ell(&images, &texts, [log_lr[0], log_lr[1] - h]))
        / (2.0 * h);
    let e = rel_err(&[grads.log_lr_image, grads.log_lr_text], &[fd_img, fd_txt]);
    assert!(
        e < 1e-4,
        "log lr: relative error {e} ({} {} vs {fd_img} {fd_txt})",
        grads.log_lr_image,
        grads.log_lr_text
    );
    assert!(grads.log_lr_image.abs() > 1e-8 && grads.log_lr_text.abs() > 1e-8);
}

#[test]
fn second_order_gradient_through_three_sgd_steps() {
    check_second_order(&model(TextTowerConfig::Linear, false, 10), 10, 8);
}

#[test]
fn second_order_gradient_with_projection_head_and_learned_temperature() {
    check_second_order(
        &model(TextTowerConfig::ProjectionHead { dropout: 0.2 }, true, 10),
        10,
        8,
    );
}

/// An encoder whose initial parameters are jittered, so that no gain or
/// bias starts at exactly 0 or 1 (NF nets start each residual branch
/// silent) and every path carries gradient in a three-step check.
#[derive(Debug)]
struct Jittered(Box<dyn ImageEncoder>);

impl ImageEncoder for Jittered {
    fn name(&self) -> String {
        self.0.name()
    }
    fn out_dim(&self) -> usize {
        self.0.out_dim()
    }
    fn init(
        &self,
        rng: &mut ChaCha8Rng,
        device: &Device,
        dtype: DType,
    ) -> vl_distill::Result<ParamSet> {
        let p = self.0.init(rng, device, dtype)?;
        p.map(|_, t| {
            let noise = vl_distill::model::ops::uniform(rng, t.dims(), 0.3, dtype, device)?;
            Ok((t + noise)?)
        })
    }
    fn forward(&self, p: &ParamSet, x: &Tensor) -> vl_distill::Result<Tensor> {
        self.0.forward(p, x)
    }
}

fn tower_with(encoder: Box<dyn ImageEncoder>, text_dim: usize) -> TwoTower {
    let joint = encoder.out_dim();
    TwoTower {
        encoder: Box::new(Jittered(encoder)),
        image_proj: None,
        text: vl_distill::model::TextTower::new(TextTowerConfig::Linear, text_dim, joint),
        temperature: 0.5,
        learn_temperature: false,
        image_checkpoint: None,
    }
}

/// One NF block of each kind the paper's NF nets use, through three SGD
/// steps: a stride-2 stem, a grouped stride-2 3×3, the extra 3×3 of NFNet,
/// squeeze-excitation, the average-pool shortcut, SiLU, weight
/// standardisation.
#[test]
fn second_order_gradient_through_an_nf_block() {
    let cfg = NfCfg {
        depths: vec![1],
        channels: vec![16],
        stem_chs: Some(8),
        group_size: Some(2),
        bottle_ratio: 0.5,
        extra_conv: true,
        attn_layer: Some("se".into()),
        ch_div: 2,
        ..NfCfg::nfnet_l0_scaled()
    };
    let mut cfg = cfg;
    cfg.stem_type = "3x3".into();
    let net = NfNet::new("nf-test", cfg).unwrap();
    check_second_order(&tower_with(Box::new(net), 6), 6, 8);
}

/// The NF-ResNet stem (7×7 stride-2 convolution and 3×3 max pooling) and a
/// ReLU bottleneck with its projection shortcut.
#[test]
fn second_order_gradient_through_an_nf_resnet_stem_and_block() {
    let cfg = NfCfg {
        depths: vec![1],
        channels: vec![8],
        stem_chs: Some(4),
        ch_div: 2,
        ..NfCfg::nf_resnet50_scaled()
    };
    let net = NfNet::new("nf-resnet-test", cfg).unwrap();
    check_second_order(&tower_with(Box::new(net), 6), 6, 9);
}

/// One ViT block with LoRA on every linear: the matching gradient flows
/// through the adapters only (the base weights are frozen tensors).
#[test]
fn second_order_gradient_through_a_vit_block_with_lora() {
    let cfg = VitCfg {
        img_size: 8,
        patch_size: 4,
        embed_dim: 8,
        depth: 1,
        num_heads: 2,
        mlp_ratio: 2.0,
    };
    let lora = LoraConfig {
        rank: 2,
        alpha: 4.0,
        targets: vec![
            LoraTarget::Qkv,
            LoraTarget::Proj,
            LoraTarget::Fc1,
            LoraTarget::Fc2,
        ],
        base_seed: 3,
    };
    let vit = Vit::with_lora("vit-lora-test", cfg, lora, None).unwrap();
    check_second_order(&tower_with(Box::new(vit), 6), 6, 8);
}

/// EfficientNet-Lite0's stem, its depthwise-separable first block, an
/// expanding stride-2 inverted-residual block and a residual one, and the
/// head, through three SGD steps: TF "same" padding (asymmetric at stride 2),
/// the composed depthwise convolutions, 1×1 convolutions as matrix
/// products, ReLU6, and batch norm with frozen (here random) statistics and
/// trained γ, β.
#[test]
fn second_order_gradient_through_an_efficientnet_inverted_residual_block() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let template = EfficientNetLite0::first_blocks(3, None)
        .unwrap()
        .stats_template()
        .unwrap();
    let stats = template
        .map(|name, t| {
            let u =
                vl_distill::model::ops::uniform(&mut rng, t.dims(), 0.5, DType::F32, &Device::Cpu)?;
            Ok(if name.ends_with("running_var") {
                (u + 1.0)?
            } else {
                (u * 0.2)?
            })
        })
        .unwrap();
    let net = EfficientNetLite0::first_blocks(3, Some(stats)).unwrap();
    // single pixels' gradients are small here (~1e-6) next to the rounding
    // noise of ℓ over 40k parameters: with h = 1e-5 their difference
    // quotients are off by 3e-4 (5e-4 at h = 3e-6: noise, not the gradient),
    // so single coordinates take h = 1e-4
    check_second_order_with_steps(&tower_with(Box::new(net), 6), 6, 8, 1e-4, 1e-5);
}

#[test]
fn soft_label_loss_matches_its_formula_and_finite_differences() {
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let logits = randn(&mut rng, &[4, 4], 3.0);
    // soft targets around the identity, one off-diagonal entry above ½
    let mut y = to_vec(&Tensor::eye(4, DType::F64, &dev()).unwrap());
    y[1] = 0.7;
    y[6] = 0.2;
    y[15] = 0.4;
    let targets = Tensor::from_vec(y.clone(), (4, 4), &dev()).unwrap();
    let loss = |l: &Tensor, t: &Tensor| -> f64 {
        vl_distill::model::loss::soft_label_bce(l, t)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    // the formula, written out: positives (y > ½) and the rest averaged apart
    let z = to_vec(&logits);
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let (mut pos, mut npos, mut neg, mut nneg) = (0.0, 0.0, 0.0, 0.0);
    for (zi, yi) in z.iter().zip(&y) {
        let l = -yi * sig(*zi).ln() - (1.0 - yi) * (1.0 - sig(*zi)).ln();
        if *yi > 0.5 {
            pos += l;
            npos += 1.0;
        } else {
            neg += l;
            nneg += 1.0;
        }
    }
    let expected = 0.5 * (pos / npos + neg / nneg);
    assert!((loss(&logits, &targets) - expected).abs() < 1e-12);
    // no overflow far out in the tails
    let far = (logits.clone() * 100.0).unwrap();
    assert!(loss(&far, &targets).is_finite());
    // gradients in the logits and in the targets
    let vl = Var::from_tensor(&logits).unwrap();
    let vy = Var::from_tensor(&targets).unwrap();
    let g = vl_distill::model::loss::soft_label_bce(vl.as_tensor(), vy.as_tensor())
        .unwrap()
        .backward()
        .unwrap();
    let h = 1e-6;
    for (var, is_logits) in [(&logits, true), (&targets, false)] {
        let ad = to_vec(
            g.get(if is_logits {
                vl.as_tensor()
            } else {
                vy.as_tensor()
            })
            .unwrap(),
        );
        let fd: Vec<f64> = (0..var.elem_count())
            .map(|i| {
                let (p, m) = (perturb(var, i, h), perturb(var, i, -h));
                if is_logits {
                    (loss(&p, &targets) - loss(&m, &targets)) / (2.0 * h)
                } else {
                    (loss(&logits, &p) - loss(&logits, &m)) / (2.0 * h)
                }
            })
            .collect();
        let e = rel_err(&ad, &fd);
        assert!(
            e < 1e-6,
            "soft-label loss relative error {e} (logits: {is_logits})"
        );
    }
}

/// The gradient of the matching loss through three student steps that
/// train against a learned similarity, with respect to its factors (and,
/// still, the images and texts), against central differences.
fn check_similarity_gradient(similarity: &LearnedSimilarity) {
    check_option_gradients(Some(similarity), false)
}

/// Three student steps with the stage-2 options: against a learned
/// similarity when given, with the pairs blended (RepBlend) when `blend`.
/// The gradient of the matching loss in the images, the texts and the
/// similarity's factors against central differences.
fn check_option_gradients(similarity: Option<&LearnedSimilarity>, blend: bool) {
    let m = model(TextTowerConfig::Linear, false, 10);
    let mut rng = ChaCha8Rng::seed_from_u64(31);
    let theta0 = m.init(6, &dev(), DType::F64).unwrap();
    let target = m.init(7, &dev(), DType::F64).unwrap();
    let images = randn(&mut rng, &[6, 3, 8, 8], 1.0);
    let texts = randn(&mut rng, &[6, 10], 1.0);
    let partners = [[1u32, 0, 3, 2], [2, 3, 1, 0], [3, 2, 0, 1]];
    let batches: Vec<StepBatch> = [[0u32, 1, 2, 3], [2, 3, 4, 5], [5, 0, 3, 1]]
        .iter()
        .zip(11..)
        .zip(partners)
        .map(|((i, seed), partner)| StepBatch {
            indices: i.to_vec(),
            seed,
            blend: blend.then(|| Blend {
                lambda: 0.3 + 0.1 * (seed - 11) as f64,
                partner: partner.to_vec(),
            }),
        })
        .collect();
    let lr = TowerLr {
        image: 0.3,
        text: 0.2,
    };
    let ell3 = |s: Option<&LearnedSimilarity>, images: &Tensor, texts: &Tensor| -> f64 {
        let snaps = unroll_forward(&m, &theta0, images, texts, s, &batches, lr, 0)
            .unwrap()
            .snapshots;
        let (li, lt) = matching_loss(snaps.last().unwrap(), &theta0, &target).unwrap();
        li + lt
    };
    let ell = |s: &LearnedSimilarity, images: &Tensor| ell3(Some(s), images, &texts);
    let mg = with_graph_gradients(|| {
        matching_gradient(
            &m, &theta0, &target, &images, &texts, similarity, &batches, lr, 2,
        )
    })
    .unwrap();
    assert!((mg.loss_image + mg.loss_text - ell3(similarity, &images, &texts)).abs() < 1e-12);
    let h = 1e-5;
    // images and texts along random directions
    let gi = to_vec(&mg.grads.images);
    let dir = randn(&mut rng, images.dims(), 1.0);
    let fd = (ell3(similarity, &axpy(&images, &dir, h), &texts)
        - ell3(similarity, &axpy(&images, &dir, -h), &texts))
        / (2.0 * h);
    let ad: f64 = gi.iter().zip(to_vec(&dir)).map(|(a, b)| a * b).sum();
    let e = rel_err(&[ad], &[fd]);
    assert!(e < 1e-4, "images: relative error {e} ({ad} vs {fd})");
    let gt = to_vec(&mg.grads.texts);
    let dir = randn(&mut rng, texts.dims(), 1.0);
    let fd = (ell3(similarity, &images, &axpy(&texts, &dir, h))
        - ell3(similarity, &images, &axpy(&texts, &dir, -h)))
        / (2.0 * h);
    let ad: f64 = gt.iter().zip(to_vec(&dir)).map(|(a, b)| a * b).sum();
    let e = rel_err(&[ad], &[fd]);
    assert!(e < 1e-4, "texts: relative error {e} ({ad} vs {fd})");
    // the option changes the student: without it the loss differs
    let plain_batches: Vec<StepBatch> = batches
        .iter()
        .map(|b| StepBatch {
            blend: None,
            ..b.clone()
        })
        .collect();
    let plain = unroll_forward(&m, &theta0, &images, &texts, None, &plain_batches, lr, 0)
        .unwrap()
        .snapshots;
    let (pi, pt) = matching_loss(plain.last().unwrap(), &theta0, &target).unwrap();
    assert!((pi + pt - ell3(similarity, &images, &texts)).abs() > 1e-6);
    let Some(similarity) = similarity else {
        assert!(mg.grads.similarity.is_none());
        return;
    };
    let grads = mg.grads.similarity.expect("a gradient for the similarity");
    assert_eq!(grads.len(), similarity.factors().len());
    for (k, (factor, grad)) in similarity.factors().iter().zip(&grads).enumerate() {
        let with = |f: Tensor| {
            let mut fs = similarity.factors().to_vec();
            fs[k] = f;
            similarity.with_factors(fs).unwrap()
        };
        let dir = randn(&mut rng, factor.dims(), 1.0);
        let fd = (ell(&with(axpy(factor, &dir, h)), &images)
            - ell(&with(axpy(factor, &dir, -h)), &images))
            / (2.0 * h);
        let ad: f64 = to_vec(grad)
            .iter()
            .zip(to_vec(&dir))
            .map(|(a, b)| a * b)
            .sum();
        let e = rel_err(&[ad], &[fd]);
        assert!(
            e < 1e-4,
            "factor {k} direction: relative error {e} ({ad} vs {fd})"
        );
        assert!(ad.abs() > 1e-8, "factor {k} gets a gradient");
    }
}

#[test]
fn second_order_gradient_through_three_steps_against_a_low_rank_similarity() {
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    // away from the start (R = 0), so that every factor has a gradient
    let a = (randn(&mut rng, &[6], 0.2) + 1.0).unwrap();
    let l = randn(&mut rng, &[6, 2], 1.0);
    let r = randn(&mut rng, &[6, 2], 0.5);
    let s = LearnedSimilarity::from_factors(vec![a, l, r], Some(3.0 / 2.0)).unwrap();
    check_similarity_gradient(&s);
}

#[test]
fn second_order_gradient_through_three_blended_steps() {
    check_option_gradients(None, true);
}

#[test]
fn second_order_gradient_through_three_blended_steps_against_a_low_rank_similarity() {
    let mut rng = ChaCha8Rng::seed_from_u64(47);
    let a = (randn(&mut rng, &[6], 0.2) + 1.0).unwrap();
    let l = randn(&mut rng, &[6, 2], 1.0);
    let r = randn(&mut rng, &[6, 2], 0.5);
    let s = LearnedSimilarity::from_factors(vec![a, l, r], Some(1.5)).unwrap();
    check_option_gradients(Some(&s), true);
}

#[test]
fn second_order_gradient_through_three_steps_against_a_full_similarity() {
    let mut rng = ChaCha8Rng::seed_from_u64(43);
    let eye = Tensor::eye(6, DType::F64, &dev()).unwrap();
    let s = (eye + randn(&mut rng, &[6, 6], 0.3)).unwrap();
    check_similarity_gradient(&LearnedSimilarity::from_factors(vec![s], None).unwrap());
}
