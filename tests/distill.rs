//! Stage 2 at the smoke profile: the matching loss falls, switches freeze a
//! modality, and bad settings give clear errors.

use vl_distill::config::{Config, InitKind};
use vl_distill::evaluate::protocol::Evaluator;
use vl_distill::experiment::Experiment;
use vl_distill::stage1::expert::ExpertTrainer;
use vl_distill::stage1::sgd::TowerLr;
use vl_distill::stage1::trajectory::Trajectory;
use vl_distill::stage2::distilled_set::DistilledSet;
use vl_distill::stage2::distiller::Distiller;

fn setup(overrides: &[&str]) -> (Experiment, Vec<Trajectory>) {
    let mut c = Config::smoke();
    c.apply_overrides(&["experts.epochs=3"]).unwrap();
    c.apply_overrides(overrides).unwrap();
    let exp = Experiment::new(c, vl_distill::device::for_tests(), None).unwrap();
    let trajs = ExpertTrainer::new(&exp).unwrap().run().unwrap().to_vec();
    (exp, trajs)
}

/// The same experiment (same data) with some settings changed.
fn variant(exp: &Experiment, overrides: &[&str]) -> Experiment {
    let mut c = exp.config.clone();
    c.apply_overrides(overrides).unwrap();
    Experiment::with_dataset(
        c,
        vl_distill::device::for_tests(),
        exp.dataset.clone(),
        Default::default(),
        None,
    )
    .unwrap()
}

/// A distillation with a checkpoint every 2 iterations stopped after 3
/// (iteration 3 is lost), then resumed from `ckpt` and run to its end.
fn interrupted_after_3_steps_then_resumed(
    exp: &Experiment,
    trajs: &[Trajectory],
    ckpt: &std::path::Path,
) -> Distiller {
    assert_eq!(exp.config.distill.checkpoint_every, 2);
    let mut first = Distiller::new(exp, trajs.to_vec())
        .unwrap()
        .with_checkpoint(ckpt)
        .unwrap();
    for _ in 0..3 {
        first.step().unwrap();
    }
    drop(first);
    let mut resumed = Distiller::new(exp, trajs.to_vec())
        .unwrap()
        .with_checkpoint(ckpt)
        .unwrap();
    assert_eq!(resumed.iteration, 2);
    resumed.run().unwrap();
    resumed
}

#[test]
fn matching_loss_falls_and_frozen_modalities_stay() {
    let (exp, trajs) = setup(&["distill.iterations=12"]);
    let mut d = Distiller::new(&exp, trajs.clone()).unwrap();
    let first_texts = d.set.texts.clone();
    d.run().unwrap();
    let losses: Vec<f64> = d.history.iter().map(|r| r.loss).collect();
    let head = losses[..4].iter().sum::<f64>() / 4.0;
    let tail = losses[losses.len() - 4..].iter().sum::<f64>() / 4.0;
    assert!(tail < head, "matching loss must fall: {losses:?}");
    assert!(d
        .history
        .iter()
        .all(|r| r.grad_norm_images > 0.0 && r.loss.is_finite()));
    let moved = (&d.set.texts - &first_texts)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap();
    assert!(moved.to_scalar::<f32>().unwrap() > 0.0);

    // image-only: the texts stay exactly at their initialisation
    let exp2 = variant(
        &exp,
        &["distill.distill_texts=false", "distill.iterations=2"],
    );
    let mut d = Distiller::new(&exp2, trajs).unwrap();
    let texts0 = d.set.texts.clone();
    let images0 = d.set.images.clone();
    d.run().unwrap();
    let t = (&d.set.texts - &texts0)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap();
    let i = (&d.set.images - &images0)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap();
    assert_eq!(t.to_scalar::<f32>().unwrap(), 0.0);
    assert!(i.to_scalar::<f32>().unwrap() > 0.0);
}

/// `distill.max_lr_step` bounds how far each log α moves per iteration
/// (unset, the step is the paper's unbounded one).
#[test]
fn the_learned_rate_step_can_be_bounded() {
    let (exp, trajs) = setup(&["distill.iterations=4", "distill.lr_lr=10"]);
    let bound = 0.01;
    let run = |max: Option<f64>| {
        let mut e = exp.clone();
        e.config.distill.max_lr_step = max;
        let mut d = Distiller::new(&e, trajs.clone()).unwrap();
        let start = (d.set.log_lr_image, d.set.log_lr_text);
        let mut moves = Vec::new();
        let mut last = start;
        while !d.is_done() {
            d.step().unwrap();
            moves.push(
                (d.set.log_lr_image - last.0)
                    .abs()
                    .max((d.set.log_lr_text - last.1).abs()),
            );
            last = (d.set.log_lr_image, d.set.log_lr_text);
        }
        moves
    };
    let bounded = run(Some(bound));
    assert!(bounded.iter().all(|m| *m <= bound + 1e-12), "{bounded:?}");
    let free = run(None);
    assert!(
        free.iter().any(|m| *m > bound),
        "with lr_lr 10 the unbounded steps should exceed {bound}: {free:?}"
    );
    let mut c = exp.config.clone();
    assert!(c.apply_overrides(&["distill.max_lr_step=0"]).is_err());
}

#[test]
fn spikes_of_the_matching_gradient_can_be_clipped() {
    let warm = vl_distill::config::SPIKE_WARMUP;
    let iterations = format!("distill.iterations={}", warm + 8);
    // texts only, plain SGD: each update is exactly lr_texts × the gradient
    let (exp, trajs) = setup(&[
        iterations.as_str(),
        "distill.momentum=0",
        "distill.distill_images=false",
    ]);
    let lr = exp.config.distill.lr_texts;
    let factor = 1.0;
    let run = |clip: Option<f64>| {
        let mut e = exp.clone();
        e.config.distill.clip_spikes = clip;
        let mut d = Distiller::new(&e, trajs.clone()).unwrap();
        let mut moves = Vec::new();
        while !d.is_done() {
            let before = d.set.texts.clone();
            d.step().unwrap();
            let m = (&d.set.texts - &before).unwrap().sqr().unwrap();
            moves.push(m.sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt() as f64);
        }
        (moves, d.history)
    };
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        let k = v.len();
        if k % 2 == 1 {
            v[k / 2]
        } else {
            0.5 * (v[k / 2 - 1] + v[k / 2])
        }
    };
    let (clipped, history) = run(Some(factor));
    let raw: Vec<f64> = history.iter().map(|r| r.grad_norm_texts).collect();
    for k in 0..raw.len() {
        let allowed = if k < warm {
            lr * raw[k]
        } else {
            lr * factor * median(&raw[..k]).min(raw[k] / factor)
        };
        assert!(
            (clipped[k] - allowed).abs() <= 1e-3 * allowed,
            "iteration {k}: moved {} where {allowed} was due",
            clipped[k]
        );
    }
    let n_clipped = history.iter().filter(|r| r.grad_scale_texts < 1.0).count();
    assert!(n_clipped > 0, "some gradient is above the running median");
    assert!(history.iter().all(|r| r.grad_scale_images == 1.0));
    let line = history
        .iter()
        .find(|r| r.grad_scale_texts < 1.0)
        .unwrap()
        .to_string();
    assert!(line.contains("spike clipped"), "{line}");

    // without clipping the same gradients move the texts by more
    let (free, free_history) = run(None);
    let first = history
        .iter()
        .position(|r| r.grad_scale_texts < 1.0)
        .unwrap();
    let free_raw: Vec<f64> = free_history.iter().map(|r| r.grad_norm_texts).collect();
    assert_eq!(
        free_raw[..=first],
        raw[..=first],
        "the same run up to the first clip"
    );
    assert!(free[first] > clipped[first] * 1.0001);

    let mut c = exp.config.clone();
    let err = c.apply_overrides(&["distill.clip_spikes=0.5"]).unwrap_err();
    assert!(err.to_string().contains("clip_spikes"), "{err}");
}

#[test]
fn clamped_pixels_stay_in_the_range_of_real_ones() {
    let (exp, trajs) = setup(&["distill.iterations=3", "distill.lr_images=1e6"]);
    // pixel 0 and pixel 255 under the data's normalisation, per channel
    let norm = exp.config.data.norm;
    let range: Vec<(f32, f32)> = (0..3)
        .map(|c| {
            (
                (0.0 - norm.mean[c]) / norm.std[c],
                (1.0 - norm.mean[c]) / norm.std[c],
            )
        })
        .collect();
    let outside = |clamp: bool| -> usize {
        let mut e = exp.clone();
        e.config.distill.clamp_pixels = clamp;
        let mut d = Distiller::new(&e, trajs.clone()).unwrap();
        d.run().unwrap();
        (0..3)
            .map(|c| {
                let (lo, hi) = range[c];
                let plane: Vec<f32> = d
                    .set
                    .images
                    .narrow(1, c, 1)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap();
                plane
                    .iter()
                    .filter(|&&v| v < lo - 1e-5 || v > hi + 1e-5)
                    .count()
            })
            .sum()
    };
    assert_eq!(outside(true), 0);
    assert!(
        outside(false) > 0,
        "a huge pixel rate should leave the range unclamped"
    );
}

#[test]
fn initialisations_and_bad_settings() {
    let (exp, trajs) = setup(&["experts.num_experts=1"]);
    let lr = TowerLr {
        image: 0.1,
        text: 0.1,
    };
    let real = DistilledSet::init(&exp, 10, InitKind::Real, InitKind::Real, lr, 1).unwrap();
    let noise = DistilledSet::init(&exp, 10, InitKind::Noise, InitKind::Noise, lr, 1).unwrap();
    assert_eq!(real.images.dims(), noise.images.dims());
    assert_eq!(real.texts.dims(), noise.texts.dims());
    assert!((real.lr().image - 0.1).abs() < 1e-12);
    // the same seed gives the same set
    let again = DistilledSet::init(&exp, 10, InitKind::Noise, InitKind::Noise, lr, 1).unwrap();
    let d = (&again.images - &noise.images)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap();
    assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
    // M larger than the train split
    let err = DistilledSet::init(&exp, 100_000, InitKind::Real, InitKind::Real, lr, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("100000"), "{err}");
    // zero steps, negative learning rates
    let mut c = exp.config.clone();
    assert!(c.apply_overrides(&["distill.syn_steps=0"]).is_err());
    let mut c2 = exp.config.clone();
    assert!(c2.apply_overrides(&["distill.lr_images=-1"]).is_err());
    // experts from another architecture
    let exp_other = variant(
        &exp,
        &[r#"model.image={"kind":"conv_net","width":8,"depth":2}"#],
    );
    let err = Distiller::new(&exp_other, trajs.clone()).err().unwrap();
    assert!(matches!(err, vl_distill::Error::Incompatible(_)), "{err}");
    let err = err.to_string();
    assert!(
        err.contains("was trained with image encoder convnet-w16-d2")
            && err.contains("configured for convnet-w8-d2"),
        "{err}"
    );
    // experts trained on another dataset
    let mut c = exp.config.clone();
    c.apply_overrides(&[r#"data.source={"kind":"scenes","train":250,"val":60,"test":100}"#])
        .unwrap();
    let exp_data = Experiment::new(c, vl_distill::device::for_tests(), None).unwrap();
    let err = Distiller::new(&exp_data, trajs).err().unwrap().to_string();
    assert!(err.contains("another dataset"), "{err}");
}

#[test]
fn killed_and_resumed_equals_uninterrupted_and_nan_keeps_the_checkpoint() {
    let (exp, trajs) = setup(&[
        "distill.iterations=5",
        "distill.checkpoint_every=2",
        "distill.batch_syn=10",
    ]);
    let whole = tempfile::tempdir().unwrap();
    let parts = tempfile::tempdir().unwrap();
    let mut a = Distiller::new(&exp, trajs.clone())
        .unwrap()
        .with_checkpoint(whole.path().join("ckpt.safetensors"))
        .unwrap();
    a.run().unwrap();

    let ckpt = parts.path().join("ckpt.safetensors");
    let c = interrupted_after_3_steps_then_resumed(&exp, &trajs, &ckpt);
    assert_eq!(c.history.len(), 5);
    for (x, y) in [(&a.set.images, &c.set.images), (&a.set.texts, &c.set.texts)] {
        let d = (x - y).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0);
    }
    assert_eq!(a.set.log_lr_image, c.set.log_lr_image);
    assert_eq!(
        a.history,
        c.history
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.seconds = a.history[r.iteration].seconds;
                r
            })
            .collect::<Vec<_>>()
    );

    // a finished run continues with more iterations from its checkpoint
    let more = variant(&exp, &["distill.iterations=6"]);
    let mut e = Distiller::new(&more, trajs.clone())
        .unwrap()
        .with_checkpoint(whole.path().join("ckpt.safetensors"))
        .unwrap();
    assert_eq!(e.iteration, 5);
    assert_eq!(e.history.len(), 5);
    e.run().unwrap();
    assert_eq!((e.iteration, e.history.len()), (6, 6));

    // a checkpoint of another setup is refused
    let exp2 = variant(&exp, &["distill.lr_texts=5"]);
    let err = Distiller::new(&exp2, trajs.clone())
        .unwrap()
        .with_checkpoint(&ckpt)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("ckpt.safetensors") && err.contains("another"),
        "{err}"
    );

    // NaN in the loss: a clear error naming the iteration; the last good checkpoint stays
    let exp3 = variant(&exp, &["distill.checkpoint_every=1"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let mut d = Distiller::new(&exp3, trajs.clone())
        .unwrap()
        .with_checkpoint(&path)
        .unwrap();
    d.step().unwrap();
    d.step().unwrap();
    d.set.images = (&d.set.images * f64::NAN).unwrap();
    let err = d.step().map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("non-finite") && err.contains("iteration 2"),
        "{err}"
    );
    let resumed = Distiller::new(&exp3, trajs.clone())
        .unwrap()
        .with_checkpoint(&path)
        .unwrap();
    assert_eq!(resumed.iteration, 2);
    let norm = resumed
        .set
        .images
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(norm.is_finite());

    // an update that overflows the set is refused before it is applied
    let exp4 = variant(&exp, &["distill.lr_images=1e38", "distill.lr_texts=1e38"]);
    let mut d = Distiller::new(&exp4, trajs).unwrap();
    let before = d.set.images.clone();
    let err = d.step().map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("iteration 0") && err.contains("learning rate"),
        "{err}"
    );
    let same = (&d.set.images - &before)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap();
    assert_eq!(same.to_scalar::<f32>().unwrap(), 0.0);
    assert_eq!(d.iteration, 0);
}

/// `distill.pixel_optimizer = "adam"`: the first step moves every pixel by
/// the rate against its gradient (the texts keep their SGD), the matching
/// loss falls, a resumed run (second moments in the checkpoint) equals an
/// uninterrupted one, and an SGD-sized rate is refused.
#[test]
fn adam_on_the_pixels() {
    let (exp, trajs) = setup(&[
        "distill.pixel_optimizer=\"adam\"",
        "distill.lr_images=0.01",
        "distill.iterations=12",
        "distill.checkpoint_every=2",
    ]);
    let mut d = Distiller::new(&exp, trajs.clone()).unwrap();
    let (x0, t0) = (d.set.images.clone(), d.set.texts.clone());
    d.step().unwrap();
    let moved = (&d.set.images - &x0).unwrap().abs().unwrap();
    let moved = moved.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let at_rate = moved.iter().filter(|m| (**m - 0.01).abs() < 1e-4).count();
    assert!(
        moved.iter().all(|m| *m < 0.01 + 1e-4) && at_rate > moved.len() * 9 / 10,
        "{at_rate} of {} pixels moved by the rate",
        moved.len()
    );
    // the texts take their SGD step: not a uniform ±rate
    let text_moves = (&d.set.texts - &t0).unwrap().abs().unwrap();
    let text_moves = text_moves.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(text_moves
        .iter()
        .any(|m| *m > 0.0 && (*m - 0.01).abs() > 1e-3));
    d.run().unwrap();
    let losses: Vec<f64> = d.history.iter().map(|r| r.loss).collect();
    let head = losses[..4].iter().sum::<f64>() / 4.0;
    let tail = losses[losses.len() - 4..].iter().sum::<f64>() / 4.0;
    assert!(
        tail < head,
        "matching loss must fall under Adam: {losses:?}"
    );

    let short = variant(&exp, &["distill.iterations=5"]);
    let mut whole = Distiller::new(&short, trajs.clone()).unwrap();
    whole.run().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt.safetensors");
    let resumed = interrupted_after_3_steps_then_resumed(&short, &trajs, &ckpt);
    for (x, y) in [
        (&whole.set.images, &resumed.set.images),
        (&whole.set.texts, &resumed.set.texts),
    ] {
        let diff = (x - y).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    let mut c = exp.config.clone();
    let err = c
        .apply_overrides(&["distill.lr_images=1000"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("adam") && err.contains("lr_images"), "{err}");
}

/// `distill.similarity` (LoRS): the set starts with S = I and learns the
/// factors with the rest (the matching loss still falls); the set's file
/// and the checkpoint keep them, so a resumed run equals an uninterrupted
/// one bit for bit; students trained on the set's pairs see the matrix;
/// bad settings are refused.
#[test]
fn a_learned_similarity_moves_is_saved_and_resumes_bit_identically() {
    let (exp, trajs) = setup(&[
        r#"distill.similarity={"rank":4}"#,
        "distill.iterations=5",
        "distill.checkpoint_every=2",
    ]);
    let fresh = Distiller::new(&exp, trajs.clone()).unwrap();
    let s0 = fresh.set.similarity.clone().expect("a similarity");
    let m0 = s0.matrix().unwrap().to_vec2::<f32>().unwrap();
    for (i, row) in m0.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            assert_eq!(*v, if i == j { 1.0 } else { 0.0 }, "S starts at I");
        }
    }
    let pairs = exp.config.distill.pairs;
    let floats_plain = fresh.set.images.elem_count() + fresh.set.texts.elem_count() + 2;
    assert_eq!(fresh.set.num_floats(), floats_plain + pairs * (1 + 2 * 4));
    // the bytes it reports are what its file holds, but for a small header
    let file = tempfile::tempdir().unwrap();
    let path = file.path().join("set.safetensors");
    fresh.set.save(&path).unwrap();
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(
        (fresh.set.num_bytes()..fresh.set.num_bytes() + 16 * 1024).contains(&len),
        "{len} bytes on disk, {} reported",
        fresh.set.num_bytes()
    );

    let whole = tempfile::tempdir().unwrap();
    let mut a = Distiller::new(&exp, trajs.clone())
        .unwrap()
        .with_checkpoint(whole.path().join("ckpt.safetensors"))
        .unwrap();
    a.run().unwrap();
    let gs: Vec<_> = a.history.iter().map(|r| r.grad_norm_similarity).collect();
    assert!(gs.iter().all(|g| g.unwrap() > 0.0), "{gs:?}");
    let s = a.set.similarity.clone().unwrap();
    let moved: f32 = s
        .matrix()
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
        .iter()
        .flatten()
        .zip(m0.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .sum();
    assert!(moved > 0.0, "the similarity learns");

    let parts = tempfile::tempdir().unwrap();
    let c = interrupted_after_3_steps_then_resumed(&exp, &trajs, &parts.path().join("c.st"));
    let sc = c.set.similarity.clone().unwrap();
    for (x, y) in s.factors().iter().zip(sc.factors()) {
        let d = (x - y).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(
            d.to_scalar::<f32>().unwrap(),
            0.0,
            "resumed = uninterrupted"
        );
    }
    assert_eq!(
        (&a.set.images - &c.set.images)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );

    // the set's file keeps the factors; its pairs carry the matrix
    let file = whole.path().join("set.safetensors");
    a.set.save(&file).unwrap();
    let back = DistilledSet::load(&file, &candle_core::Device::Cpu).unwrap();
    let sb = back.similarity.clone().expect("loaded with its similarity");
    assert_eq!(sb.low_rank_scale(), s.low_rank_scale());
    assert_eq!(
        sb.matrix().unwrap().to_vec2::<f32>().unwrap(),
        s.matrix().unwrap().to_vec2::<f32>().unwrap()
    );
    let training = back.training_pairs(&exp).unwrap();
    let block = training.batch_targets(&[0, 2]).unwrap().unwrap();
    let m = s.matrix().unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(
        block.to_vec2::<f32>().unwrap(),
        vec![vec![m[0][0], m[0][2]], vec![m[2][0], m[2][2]]]
    );
    // students train against it: the same pairs without it train others
    let lr = back.lr();
    let without = {
        let mut p = training.clone();
        p.similarity = None;
        p
    };
    let with = Evaluator::for_small_set(&exp, training, lr).run().unwrap();
    let plain_students = Evaluator::for_small_set(&exp, without, lr).run().unwrap();
    assert_ne!(with.mean.values(), plain_students.mean.values());

    // a plain set's pairs carry none
    let plain = Distiller::new(&variant(&exp, &["distill.similarity=null"]), trajs)
        .unwrap()
        .set;
    assert!(plain.similarity.is_none());
    assert!(plain.as_pairs().unwrap().similarity.is_none());

    // bad settings
    let mut bad = exp.config.clone();
    let e = bad
        .apply_overrides(&[r#"distill.similarity={"rank":0}"#])
        .unwrap_err();
    assert!(e.to_string().contains("distill.similarity.rank"), "{e}");
    let e = bad
        .apply_overrides(&[r#"distill.similarity={"rank":2,"lr":-1}"#])
        .unwrap_err();
    assert!(e.to_string().contains("lr >= 0"), "{e}");
    let e = bad
        .apply_overrides(&[r#"distill.similarity={"rnak":2}"#])
        .unwrap_err();
    assert!(e.to_string().contains("rnak"), "{e}");
}

/// `distill.blend` (RepBlend): the students of the matching blend their
/// pairs, so the first iteration's matching loss differs from the plain
/// one's on the same draws; the loss still falls over the run, a resumed
/// run equals an uninterrupted one, and a bad alpha is refused.
#[test]
fn blended_students_match_differently_resume_exactly_and_refuse_a_bad_alpha() {
    let (exp, trajs) = setup(&[
        r#"distill.blend={"alpha":1.0}"#,
        "distill.iterations=12",
        "distill.checkpoint_every=2",
    ]);
    let plain = variant(&exp, &["distill.blend=null"]);
    let first_plain = Distiller::new(&plain, trajs.clone())
        .unwrap()
        .step()
        .unwrap();
    let mut d = Distiller::new(&exp, trajs.clone()).unwrap();
    d.run().unwrap();
    let first = &d.history[0];
    assert_eq!(
        (first.expert, first.start_epoch),
        (first_plain.expert, first_plain.start_epoch)
    );
    assert_ne!(
        first.loss, first_plain.loss,
        "blending changes the students"
    );
    let losses: Vec<f64> = d.history.iter().map(|r| r.loss).collect();
    let head = losses[..4].iter().sum::<f64>() / 4.0;
    let tail = losses[losses.len() - 4..].iter().sum::<f64>() / 4.0;
    assert!(tail < head, "matching loss must fall: {losses:?}");

    let short = variant(&exp, &["distill.iterations=5"]);
    let whole = Distiller::new(&short, trajs.clone())
        .unwrap()
        .run()
        .unwrap()
        .clone();
    let dir = tempfile::tempdir().unwrap();
    let c = interrupted_after_3_steps_then_resumed(&short, &trajs, &dir.path().join("c.st"));
    for (x, y) in [(&whole.images, &c.set.images), (&whole.texts, &c.set.texts)] {
        let diff = (x - y).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
    }

    let mut bad = exp.config.clone();
    for alpha in ["0", "-1"] {
        let e = bad
            .apply_overrides(&[format!(r#"distill.blend={{"alpha":{alpha}}}"#)])
            .unwrap_err();
        assert!(e.to_string().contains("distill.blend.alpha"), "{e}");
    }
}
