//! Stage 1 at the smoke profile: experts learn (loss down, recall far above
//! chance), trajectories are written, and an interrupted run resumes to the
//! same result without redoing finished work (forgetting counts included).

use candle_core::Device;
use vl_distill::config::Config;
use vl_distill::evaluate::coreset::{self, CoresetMethod};
use vl_distill::experiment::Experiment;
use vl_distill::model::retrieval::evaluate;
use vl_distill::model::retrieval::Recall;
use vl_distill::pipeline::finished_experts;
use vl_distill::stage1::expert::ExpertTrainer;
use vl_distill::stage1::trajectory::{load_all, Trajectory};

fn smoke(overrides: &[&str]) -> Experiment {
    let mut c = Config::smoke();
    c.apply_overrides(overrides).unwrap();
    Experiment::new(c, vl_distill::device::for_tests(), None).unwrap()
}

#[test]
fn smoke_experts_learn_and_beat_chance_by_a_wide_margin() {
    let exp = smoke(&[]);
    let mut trainer = ExpertTrainer::new(&exp).unwrap();
    let trajs = trainer.run().unwrap().to_vec();
    assert_eq!(trajs.len(), exp.config.experts.num_experts);
    let chance = Recall::chance(exp.test.num_images(), exp.test.num_pairs());
    for t in &trajs {
        assert_eq!(t.epochs.len(), exp.config.experts.epochs + 1);
        let losses = &t.meta.train_loss;
        assert!(
            losses.last().unwrap() < &(losses[0] * 0.9),
            "loss must go down: {losses:?}"
        );
        let r = evaluate(&exp.model, t.epochs.last().unwrap(), &exp.test, 256).unwrap();
        assert!(
            r.tr_r1 > 5.0 * chance.tr_r1 && r.ir_r1 > 5.0 * chance.ir_r1,
            "expert {}: {r} vs chance {chance}",
            t.meta.expert
        );
        assert!(
            r.tr_r10 > 2.5 * chance.tr_r10 && r.ir_r10 > 2.5 * chance.ir_r10,
            "{r} vs chance {chance}"
        );
    }
    // forgetting events are recorded for every training pair as it trains:
    // experts that learn get pairs right (and some of them forgotten again)
    for t in &trajs {
        let f = t.meta.forgetting.as_ref().expect("forgetting counts");
        assert_eq!(f.len(), exp.train.num_pairs());
        let learned = (0..f.len()).filter(|&p| f.ever_learned(p)).count();
        assert!(
            learned > f.len() / 10,
            "{learned} of {} pairs ever right",
            f.len()
        );
        assert!(f.events().iter().any(|&e| e > 0));
    }
    // the four coresets from these experts: M distinct images, valid pairs,
    // the same for the same seed, a clear error when M exceeds the split
    let n_img = exp.train.num_images();
    for method in CoresetMethod::ALL {
        let pick = |m: usize, seed: u64| {
            coreset::select_pairs(method, &exp.train, &exp.model, &trajs, m, seed)
        };
        let a = pick(20, 1).unwrap();
        assert_eq!(a.len(), 20, "{}", method.name());
        assert!(a.iter().all(|&p| (p as usize) < exp.train.num_pairs()));
        let mut images: Vec<u32> = a.iter().map(|&p| exp.train.owner[p as usize]).collect();
        images.sort_unstable();
        images.dedup();
        assert_eq!(images.len(), 20, "{}: one pair per image", method.name());
        assert_eq!(a, pick(20, 1).unwrap(), "{}", method.name());
        let err = pick(n_img + 1, 1).unwrap_err().to_string();
        assert!(err.contains("requested"), "{}: {err}", method.name());
        let set = coreset::select(method, &exp.train, &exp.model, &trajs, 5, 2).unwrap();
        assert_eq!(set.num_pairs(), 5);
    }
    assert!(
        coreset::select_pairs(CoresetMethod::Herding, &exp.train, &exp.model, &[], 5, 0).is_err()
    );
    // different seeds give different experts
    let d = trajs[0].epochs[0]
        .image
        .sq_dist(&trajs[1].epochs[0].image)
        .unwrap();
    assert!(d > 0.0);
}

#[test]
fn interrupted_run_resumes_to_identical_trajectories() {
    let overrides = [
        "experts.num_experts=2",
        "experts.epochs=2",
        "experts.momentum=0.5",
    ];
    let exp = smoke(&overrides);
    let whole = tempfile::tempdir().unwrap();
    let parts = tempfile::tempdir().unwrap();

    ExpertTrainer::new(&exp)
        .unwrap()
        .with_output(whole.path())
        .run()
        .unwrap();

    // Stop after expert 0 and one epoch of expert 1 (its momentum is in the file).
    let mut first = ExpertTrainer::new(&exp).unwrap().with_output(parts.path());
    for _ in 0..3 {
        first.step().unwrap().unwrap();
    }
    drop(first);
    let partial = Trajectory::load(&Trajectory::path(parts.path(), 1), &Device::Cpu).unwrap();
    assert!(!partial.meta.complete);
    assert_eq!(partial.epochs_done(), 1);
    assert!(partial.velocity.is_some());

    let mut second = ExpertTrainer::new(&exp).unwrap().with_output(parts.path());
    second.run().unwrap();
    // only the one missing epoch was trained
    assert_eq!(second.history.len(), 1);
    assert_eq!((second.history[0].expert, second.history[0].epoch), (1, 2));

    let a = load_all(whole.path(), &Device::Cpu).unwrap();
    let b = load_all(parts.path(), &Device::Cpu).unwrap();
    assert_eq!(a.len(), 2);
    for (ta, tb) in a.iter().zip(&b) {
        assert_eq!(ta.meta, tb.meta);
        for (pa, pb) in ta.epochs.iter().zip(&tb.epochs) {
            assert_eq!(pa.image.sq_dist(&pb.image).unwrap(), 0.0);
            assert_eq!(pa.text.sq_dist(&pb.text).unwrap(), 0.0);
        }
    }
}

#[test]
fn raising_the_number_of_experts_trains_only_the_new_ones() {
    let two = smoke(&["experts.num_experts=2", "experts.epochs=1"]);
    let three = smoke(&["experts.num_experts=3", "experts.epochs=1"]);
    let grown = tempfile::tempdir().unwrap();
    ExpertTrainer::new(&two)
        .unwrap()
        .with_output(grown.path())
        .run()
        .unwrap();
    let mut more = ExpertTrainer::new(&three)
        .unwrap()
        .with_output(grown.path());
    more.run().unwrap();
    assert_eq!(more.history.len(), 1, "only the new expert trains");
    assert_eq!((more.history[0].expert, more.history[0].epoch), (2, 1));
    assert_eq!(more.trajectories().len(), 3);

    // the same trajectories as three experts trained in one go
    let at_once = tempfile::tempdir().unwrap();
    ExpertTrainer::new(&three)
        .unwrap()
        .with_output(at_once.path())
        .run()
        .unwrap();
    let a = load_all(grown.path(), &Device::Cpu).unwrap();
    let b = load_all(at_once.path(), &Device::Cpu).unwrap();
    assert_eq!(a.len(), 3);
    for (ta, tb) in a.iter().zip(&b) {
        assert_eq!(ta.meta.seed, tb.meta.seed);
        for (pa, pb) in ta.epochs.iter().zip(&tb.epochs) {
            assert_eq!(pa.image.sq_dist(&pb.image).unwrap(), 0.0);
            assert_eq!(pa.text.sq_dist(&pb.text).unwrap(), 0.0);
        }
    }

    // a run with fewer experts finds its own among them; one with more
    // finds them missing
    let found = finished_experts(&two, grown.path()).expect("experts 0 and 1 are there");
    assert_eq!(
        found.iter().map(|t| t.meta.expert).collect::<Vec<_>>(),
        [0, 1]
    );
    let four = smoke(&["experts.num_experts=4", "experts.epochs=1"]);
    assert!(finished_experts(&four, grown.path()).is_none());
}

#[test]
fn resuming_with_another_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let exp = smoke(&["experts.num_experts=1", "experts.epochs=1"]);
    ExpertTrainer::new(&exp)
        .unwrap()
        .with_output(dir.path())
        .run()
        .unwrap();
    let other = smoke(&[
        "experts.num_experts=1",
        "experts.epochs=1",
        "experts.lr_image=0.05",
    ]);
    let err = ExpertTrainer::new(&other)
        .unwrap()
        .with_output(dir.path())
        .run()
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expert_000") && err.contains("training config"),
        "{err}"
    );
}

#[test]
fn a_corrupt_trajectory_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = Trajectory::path(dir.path(), 0);
    std::fs::write(&path, b"not a safetensors file").unwrap();
    let err = Trajectory::load(&path, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("expert_000.safetensors"), "{err}");
    let err = load_all(tempfile::tempdir().unwrap().path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no finished expert"), "{err}");
}

#[test]
fn diverging_training_stops_with_an_error_naming_the_expert_and_epoch() {
    let exp = smoke(&[
        "experts.num_experts=1",
        "experts.epochs=2",
        "experts.lr_image=1e38",
        "experts.lr_text=1e38",
    ]);
    let err = ExpertTrainer::new(&exp)
        .unwrap()
        .run()
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("non-finite") && err.contains("expert 0, epoch 1"),
        "{err}"
    );
}
