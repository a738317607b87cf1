//! The frozen-backbone regime (`model.backbone = "frozen"`) on the built-in
//! scenes with a small ConvNet as the backbone: the feature cache (its key
//! follows the weights, the data and the preprocessing; a damaged file is
//! rebuilt with a message), the pixel gradient through the backbone against
//! finite differences in f64, a distillation step that moves the pixels and
//! not the backbone, and a feature-space set refused by another backbone.

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vl_distill::config::{Config, ImageEncoderConfig, ImageNorm, ModelConfig, TextTowerConfig};
use vl_distill::experiment::feature_cache;
use vl_distill::experiment::Experiment;
use vl_distill::model::frozen::digest_of;
use vl_distill::model::{image_encoder, FrozenBackbone, Standardisation, TwoTower};
use vl_distill::second_order::with_graph_gradients;
use vl_distill::stage1::expert::ExpertTrainer;
use vl_distill::stage1::sgd::TowerLr;
use vl_distill::stage2::distilled_set::DistilledSet;
use vl_distill::stage2::distiller::Distiller;
use vl_distill::stage2::matching::{matching_gradient_through, matching_loss};
use vl_distill::stage2::unroll::{unroll_forward, StepBatch};

fn dev() -> Device {
    vl_distill::device::for_tests()
}

/// The smoke profile with a frozen ConvNet backbone (random weights) under
/// a 16-wide image head.
fn frozen_config(extra: &[&str]) -> Config {
    let mut c = Config::smoke();
    c.apply_overrides(&[
        "model.backbone=\"frozen\"",
        "model.image_proj=16",
        "experts.epochs=3",
    ])
    .unwrap();
    c.apply_overrides(extra).unwrap();
    c
}

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vl-distill-frozen-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn feature_cache_key_follows_weights_data_and_preprocessing() {
    let c = frozen_config(&[]);
    let exp = Experiment::new(c.clone(), dev(), None).unwrap();
    let size = c.data.image_size as usize;
    let backbone = |seed| FrozenBackbone::new(&c.model, size, seed, &Device::Cpu).unwrap();
    let (a, b) = (backbone(1), backbone(2));
    let norm = c.data.norm;
    let key = feature_cache::cache_key(&a, &exp.dataset, &norm);
    assert_eq!(
        key,
        feature_cache::cache_key(&backbone(1), &exp.dataset, &norm)
    );
    // other weights
    assert_ne!(a.weights_digest, b.weights_digest);
    assert_ne!(key, feature_cache::cache_key(&b, &exp.dataset, &norm));
    // other preprocessing
    let other_norm = ImageNorm {
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    assert_ne!(key, feature_cache::cache_key(&a, &exp.dataset, &other_norm));
    // other data: one pixel of one training image changed
    let mut data = exp.dataset.clone();
    let first = &mut data.split_mut(vl_distill::data::Split::Train)[0].image;
    let p = first.get_pixel_mut(0, 0);
    p.0[0] = p.0[0].wrapping_add(1);
    assert_ne!(key, feature_cache::cache_key(&a, &data, &norm));
}

#[test]
fn feature_cache_is_reused_and_a_truncated_file_is_rebuilt() {
    let dir = tmp_dir("cache");
    let c = frozen_config(&[]);
    let first = Experiment::new(c.clone(), dev(), Some(&dir)).unwrap();
    let note = first.features_note.clone().unwrap();
    assert!(note.starts_with("computed"), "{note}");
    let key = first.features_key.clone().unwrap();
    let file = feature_cache::cache_file(&dir, first.backbone.as_ref().unwrap(), &key);
    assert!(file.exists(), "{} was not written", file.display());

    let again = Experiment::new(c.clone(), dev(), Some(&dir)).unwrap();
    let note = again.features_note.clone().unwrap();
    assert!(note.starts_with("from cache"), "{note}");
    assert_eq!(to_vec(&again.train.images), to_vec(&first.train.images));

    // cut the file in half: detected, reported and rebuilt to the same values
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let rebuilt = Experiment::new(c, dev(), Some(&dir)).unwrap();
    let note = rebuilt.features_note.clone().unwrap();
    assert!(note.contains("rebuilt"), "{note}");
    assert_eq!(to_vec(&rebuilt.train.images), to_vec(&first.train.images));
    assert_eq!(std::fs::read(&file).unwrap().len(), bytes.len());
    let _ = std::fs::remove_dir_all(&dir);
}

fn randn(rng: &mut ChaCha8Rng, shape: &[usize], scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n)
        .map(|_| rng.random_range(-1.0..1.0) * scale)
        .collect();
    Tensor::from_vec(v, shape, &dev()).unwrap()
}

#[test]
fn pixel_gradient_through_the_frozen_backbone_matches_finite_differences() {
    let side = 8;
    let text_dim = 5;
    let cfg = ModelConfig {
        image: ImageEncoderConfig::ConvNet { width: 4, depth: 2 },
        image_proj: Some(6),
        text_tower: TextTowerConfig::Linear,
        temperature: 0.5,
        learn_temperature: false,
        backbone: vl_distill::config::Backbone::Frozen,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let encoder = image_encoder(&cfg.image, side).unwrap();
    let params = encoder.init(&mut rng, &dev(), DType::F64).unwrap();
    let dim = encoder.out_dim();
    let backbone = FrozenBackbone {
        weights_digest: digest_of(&params.to_dtype(DType::F32).unwrap()).unwrap(),
        encoder,
        params,
        image_size: side,
        pretrained: false,
        standardisation: Some(Standardisation {
            mean: randn(&mut rng, &[1, dim], 0.1),
            std: (randn(&mut rng, &[1, dim], 0.2) + 1.0).unwrap(),
        }),
    };
    let model = TwoTower::new(&cfg, side, text_dim).unwrap();
    let theta0 = model.init(6, &dev(), DType::F64).unwrap();
    let target = model.init(7, &dev(), DType::F64).unwrap();
    let pixels = randn(&mut rng, &[6, 3, side, side], 1.0);
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
    ];
    let lr = TowerLr {
        image: 0.3,
        text: 0.2,
    };
    let before = digest_of(&backbone.params.to_dtype(DType::F32).unwrap()).unwrap();
    let through = |chunk: Option<usize>| {
        with_graph_gradients(|| {
            matching_gradient_through(
                &backbone, &model, &theta0, &target, &pixels, &texts, None, &batches, lr, 1, chunk,
            )
        })
        .unwrap()
    };
    let mg = through(None);
    // the pixels passed 4 at a time (chunks of 4 and 2): the same gradient
    let chunked = through(Some(4));
    assert!((chunked.loss_image - mg.loss_image).abs() < 1e-12);
    assert!((chunked.loss_text - mg.loss_text).abs() < 1e-12);
    let max_abs = |t: &Tensor| {
        t.abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let diff = max_abs(&(&chunked.grads.images - &mg.grads.images).unwrap());
    let scale = max_abs(&mg.grads.images);
    assert!(
        diff <= 1e-12 * scale,
        "chunked gradient differs by {diff} (scale {scale})"
    );
    // ℓ(pixels): features through the backbone, then the student's steps
    let ell = |x: &Tensor| -> f64 {
        let f = backbone.features(x).unwrap();
        let snaps = unroll_forward(&model, &theta0, &f, &texts, None, &batches, lr, 0)
            .unwrap()
            .snapshots;
        let (li, lt) = matching_loss(snaps.last().unwrap(), &theta0, &target).unwrap();
        li + lt
    };
    assert!((mg.loss_image + mg.loss_text - ell(&pixels)).abs() < 1e-12);
    let g = to_vec(&mg.grads.images);
    assert_eq!(mg.grads.images.dims(), pixels.dims());
    assert!(
        g.iter().any(|v| v.abs() > 1e-8),
        "the pixels got no gradient"
    );
    let h = 1e-5;
    let base = to_vec(&pixels);
    let at = |i: usize, d: f64| {
        let mut v = base.clone();
        v[i] += d;
        Tensor::from_vec(v, pixels.shape(), &dev()).unwrap()
    };
    let idx: Vec<usize> = (0..8).map(|_| rng.random_range(0..base.len())).collect();
    for &i in &idx {
        let fd = (ell(&at(i, h)) - ell(&at(i, -h))) / (2.0 * h);
        let err = (g[i] - fd).abs() / fd.abs().max(1e-6);
        assert!(
            err < 1e-4,
            "pixel {i}: autodiff {} vs finite difference {fd}",
            g[i]
        );
    }
    let dir = randn(&mut rng, pixels.dims(), 1.0);
    let step = |s: f64| (&pixels + (&dir * s).unwrap()).unwrap();
    let fd = (ell(&step(h)) - ell(&step(-h))) / (2.0 * h);
    let ad: f64 = g.iter().zip(to_vec(&dir)).map(|(a, b)| a * b).sum();
    assert!((ad - fd).abs() / fd.abs() < 1e-4, "direction: {ad} vs {fd}");
    // the backbone's weights are untouched
    let after = digest_of(&backbone.params.to_dtype(DType::F32).unwrap()).unwrap();
    assert_eq!(before, after);
}

#[test]
fn distilling_pixels_moves_them_and_not_the_backbone() {
    let exp = Experiment::new(frozen_config(&["distill.iterations=3"]), dev(), None).unwrap();
    let experts = ExpertTrainer::new(&exp).unwrap().run().unwrap().to_vec();
    let backbone = exp.backbone.clone().unwrap();
    let weights = digest_of(&backbone.params).unwrap();
    let mut d = Distiller::new(&exp, experts).unwrap();
    let start = d.set.images.clone();
    // the pixel set holds images of the dataset's size, not features
    assert_eq!(
        start.dims()[1..],
        [3, backbone.image_size, backbone.image_size]
    );
    d.run().unwrap();
    assert!(d.history.iter().all(|r| r.grad_norm_images > 0.0));
    let moved: f64 = to_vec(&(&d.set.images - &start).unwrap().abs().unwrap())
        .iter()
        .sum();
    assert!(moved > 0.0, "the pixels did not move");
    assert_eq!(digest_of(&backbone.params).unwrap(), weights);
    assert_eq!(backbone.weights_digest, weights);
}

#[test]
fn a_feature_space_set_is_refused_by_another_backbone() {
    let dir = tmp_dir("space");
    let exp = Experiment::new(
        frozen_config(&["distill.iterations=2", "distill.space=\"features\""]),
        dev(),
        None,
    )
    .unwrap();
    let experts = ExpertTrainer::new(&exp).unwrap().run().unwrap().to_vec();
    // distill.feature_iterations sets a feature set's length (and only its)
    let mut longer = exp.config.distill.clone();
    longer.feature_iterations = Some(3);
    let d3 = Distiller::with_config(&exp, experts.clone(), longer.clone()).unwrap();
    assert_eq!(d3.config().iterations, 3);
    longer.space = vl_distill::config::SynthSpace::Pixels;
    let pixels_exp =
        Experiment::new(frozen_config(&["distill.iterations=2"]), dev(), None).unwrap();
    let dp = Distiller::with_config(&pixels_exp, experts.clone(), longer).unwrap();
    assert_eq!(dp.config().iterations, 2);
    let mut d = Distiller::new(&exp, experts).unwrap();
    d.run().unwrap();
    assert_eq!(d.iteration, 2);
    let path = dir.join("set.safetensors");
    d.set.save(&path).unwrap();
    let back = DistilledSet::load(&path, &dev()).unwrap();
    back.check_fits(&exp).unwrap();
    assert!(back.training_pairs(&exp).is_ok());

    // another backbone: same architecture, other weights (another seed)
    let other = Experiment::new(
        frozen_config(&["seed=99", "distill.space=\"features\""]),
        dev(),
        None,
    )
    .unwrap();
    let err = back.check_fits(&other).unwrap_err().to_string();
    assert!(err.contains("works only with that backbone"), "{err}");
    // a model that reads pixels
    let pixels = Experiment::new(Config::smoke(), dev(), None).unwrap();
    assert!(back.check_fits(&pixels).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
