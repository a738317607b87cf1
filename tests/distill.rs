//! Stage 2 at the smoke profile: the matching loss falls, switches freeze a
//! modality, and bad settings give clear errors.

use candle_core::Device;
use vl_distill::config::{Config, InitKind};
use vl_distill::distill::{DistilledSet, Distiller};
use vl_distill::experiment::Experiment;
use vl_distill::expert::ExpertTrainer;
use vl_distill::train::TowerLr;
use vl_distill::trajectory::Trajectory;

fn setup(overrides: &[&str]) -> (Experiment, Vec<Trajectory>) {
    let mut c = Config::smoke();
    c.apply_overrides(&["experts.epochs=3"]).unwrap();
    c.apply_overrides(overrides).unwrap();
    let exp = Experiment::new(c, Device::Cpu, None).unwrap();
    let trajs = ExpertTrainer::new(&exp).unwrap().run().unwrap().to_vec();
    (exp, trajs)
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
    let mut c = exp.config.clone();
    c.apply_overrides(&["distill.distill_texts=false", "distill.iterations=2"])
        .unwrap();
    let exp2 = Experiment::with_dataset(
        c,
        Device::Cpu,
        exp.dataset.clone(),
        Default::default(),
        None,
    )
    .unwrap();
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
    c.distill.syn_steps = 3;
    // experts from another architecture
    let mut other = exp.config.clone();
    other
        .apply_overrides(&[r#"model.image={"kind":"conv_net","width":8,"depth":2}"#])
        .unwrap();
    let exp_other = Experiment::with_dataset(
        other,
        Device::Cpu,
        exp.dataset.clone(),
        Default::default(),
        None,
    )
    .unwrap();
    let err = Distiller::new(&exp_other, trajs).err().unwrap().to_string();
    assert!(err.contains("does not fit"), "{err}");
}
