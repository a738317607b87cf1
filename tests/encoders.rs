//! Every image encoder through the whole pipeline at a reduced smoke
//! profile on the CPU: experts learn (loss falls, validation recall above
//! chance), stage 2 runs and moves the synthetic images, and students
//! trained on the distilled set evaluate to finite recall.

use vl_distill::config::{Config, ImageEncoderConfig};
use vl_distill::evaluate::protocol::Evaluator;
use vl_distill::experiment::Experiment;
use vl_distill::model::retrieval::Recall;
use vl_distill::stage1::expert::ExpertTrainer;
use vl_distill::stage2::distiller::Distiller;

fn pipeline(kind: &str) {
    let mut c = Config::smoke();
    c.model.image = ImageEncoderConfig::named(kind, "smoke").unwrap();
    c.apply_overrides(&[
        "experts.num_experts=1",
        "experts.epochs=3",
        "distill.iterations=4",
        "eval.num_seeds=1",
        "eval.small_set_epochs=10",
    ])
    .unwrap();
    let exp = Experiment::new(c, vl_distill::device::for_tests(), None).unwrap();
    assert!(
        exp.image_encoder().starts_with(kind),
        "{}",
        exp.image_encoder()
    );
    let trajs = ExpertTrainer::new(&exp).unwrap().run().unwrap().to_vec();
    let chance = Recall::chance(exp.val.num_images(), exp.val.num_pairs());
    for t in &trajs {
        let l = &t.meta.train_loss;
        assert!(
            l[l.len() - 1] < l[0],
            "{kind}: expert loss must fall: {l:?}"
        );
        let v = t.meta.val_recall.last().unwrap().unwrap();
        // a LoRA ViT adapts a frozen base that is random here (no pretrained
        // ViT is reachable offline): three epochs of adapters need not
        // retrieve above chance
        assert!(
            kind == "vit_lora" || v.tr_r10 + v.ir_r10 > chance.tr_r10 + chance.ir_r10,
            "{kind}: val recall {v} not above chance {chance}"
        );
    }
    let mut d = Distiller::new(&exp, trajs).unwrap();
    let images0 = d.set.images.clone();
    d.run().unwrap();
    assert!(d.history.iter().all(|r| r.loss.is_finite()));
    let moved: f32 = (&d.set.images - &images0)
        .unwrap()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(moved > 0.0, "{kind}: the synthetic images did not move");
    let stats = Evaluator::for_small_set(&exp, d.set.as_pairs().unwrap(), d.set.lr())
        .run()
        .unwrap();
    assert!(stats.mean.values().iter().all(|v| v.is_finite()));
}

#[test]
fn nf_resnet50_runs_the_pipeline() {
    pipeline("nf_resnet50");
}

#[test]
fn nf_regnet_b1_runs_the_pipeline() {
    pipeline("nf_regnet_b1");
}

#[test]
fn nfnet_l0_runs_the_pipeline() {
    pipeline("nfnet_l0");
}

/// From random weights (statistics 0/1): the pretrained path is covered by
/// `tests/efficientnet.rs`.
#[test]
fn efficientnet_lite0_runs_the_pipeline() {
    pipeline("efficientnet_lite0");
}

#[test]
fn vit_runs_the_pipeline() {
    pipeline("vit");
}

/// With LoRA only the adapters are parameters: the experts' trajectories
/// (and so the matching) cover them alone.
#[test]
fn vit_lora_runs_the_pipeline_over_the_adapters_only() {
    pipeline("vit_lora");
    let mut c = Config::smoke();
    c.model.image = ImageEncoderConfig::named("vit_lora", "smoke").unwrap();
    let exp = Experiment::new(c, vl_distill::device::for_tests(), None).unwrap();
    let p = exp
        .model
        .init(0, &exp.device, candle_core::DType::F32)
        .unwrap();
    assert!(p
        .image
        .names()
        .iter()
        .all(|n| n.contains(".lora_A.") || n.contains(".lora_B.")));
}

/// A ViT expert's weights become the frozen base of a LoRA ViT, which then
/// starts exactly where that expert ended.
#[test]
fn a_vit_expert_is_the_base_of_a_lora_vit() {
    let mut c = Config::smoke();
    c.model.image = ImageEncoderConfig::named("vit", "smoke").unwrap();
    c.apply_overrides(&["experts.num_experts=1", "experts.epochs=1"])
        .unwrap();
    let exp = Experiment::new(c.clone(), vl_distill::device::for_tests(), None).unwrap();
    let trajs = ExpertTrainer::new(&exp).unwrap().run().unwrap().to_vec();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("vit_base.safetensors");
    trajs[0].save_image_weights(1, &base).unwrap();
    let mut lc = c.clone();
    lc.set(
        "model.image",
        &format!(
            r#"{{"kind":"vit_lora","checkpoint":{}}}"#,
            serde_json::to_string(&base).unwrap()
        ),
    )
    .unwrap();
    let lora = Experiment::with_dataset(
        lc,
        vl_distill::device::for_tests(),
        exp.dataset.clone(),
        Default::default(),
        None,
    )
    .unwrap();
    let adapters = lora
        .model
        .init(3, &lora.device, candle_core::DType::F32)
        .unwrap();
    let x = lora.test.images.narrow(0, 0, 4).unwrap();
    let a = lora.model.encode_images(&adapters.image, &x).unwrap();
    let b = exp
        .model
        .encode_images(&trajs[0].epoch(1).unwrap().image, &x)
        .unwrap();
    let d: f32 = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!(d < 1e-5, "LoRA ViT differs from its base expert by {d}");
}
