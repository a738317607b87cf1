//! The notebooks' `Workspace`: experts trained once and then loaded,
//! distillations found again by their setup whatever name they were given,
//! and a changed setting never reusing an earlier result.

mod common;

use common::max_abs_diff;
use vl_distill::notebook::Workspace;

#[test]
fn experts_and_distillations_are_cached_by_setup() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspace::new("smoke", tmp.path()).unwrap();
    let mut config = ws.config().unwrap();
    config
        .apply_overrides(&["experts.epochs=3", "distill.iterations=3"])
        .unwrap();
    let exp = ws.experiment(config).unwrap();

    // experts: trained into the setup's folder, then loaded from it
    let experts = ws.experts(&exp).unwrap();
    let dir = ws.experts_dir(&exp);
    assert_eq!(experts.len(), exp.config.experts.num_experts);
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert!(files >= experts.len(), "{files} files in {}", dir.display());
    let again = ws.experts(&exp).unwrap();
    for (a, b) in experts.iter().zip(&again) {
        let (x, y) = (a.epochs.last().unwrap(), b.epochs.last().unwrap());
        for (p, q) in x.image.tensors().iter().zip(y.image.tensors()) {
            assert_eq!(max_abs_diff(p, q), 0.0);
        }
    }
    // other expert settings: another folder
    let mut other = exp.clone();
    other.config.experts.lr_image *= 2.0;
    assert_ne!(ws.experts_dir(&other), dir);

    // a distillation, then the same setup under another name: loaded, equal
    let first = ws.distill(&exp, &experts, "first").unwrap();
    assert!(first.is_done());
    assert_eq!(first.history.len(), 3);
    let loaded = ws.distill(&exp, &experts, "second name").unwrap();
    assert_eq!(loaded.history.len(), 3);
    assert_eq!(max_abs_diff(&loaded.set.images, &first.set.images), 0.0);
    assert_eq!(max_abs_diff(&loaded.set.texts, &first.set.texts), 0.0);
    let ckpts = std::fs::read_dir(ws.dir.join("distill")).unwrap().count();
    assert_eq!(ckpts, 1);

    // experts trained with another learning rate (same seeds, same
    // distillation settings): another distillation, not the first one's
    let mut other_lr = exp.clone();
    other_lr.config.experts.lr_image *= 2.0;
    let other_experts = ws.experts(&other_lr).unwrap();
    let digest = |e: &vl_distill::experiment::Experiment,
                  t: &[vl_distill::stage1::trajectory::Trajectory]| {
        vl_distill::stage2::distiller::Distiller::new(e, t.to_vec())
            .unwrap()
            .fingerprint_digest()
    };
    assert_ne!(digest(&other_lr, &other_experts), digest(&exp, &experts));
    // ... also when only the trajectories differ
    assert_ne!(digest(&exp, &other_experts), digest(&exp, &experts));
    // but a longer run of the same experts may reuse it
    let mut longer_experts = experts.clone();
    for t in &mut longer_experts {
        t.meta.training.epochs += 5;
    }
    assert_eq!(digest(&exp, &longer_experts), digest(&exp, &experts));

    // a changed setting: a new run beside the old one, with another result
    let mut e = exp.clone();
    e.config.distill.lr_images *= 10.0;
    let changed = ws.distill(&e, &experts, "faster").unwrap();
    assert!(max_abs_diff(&changed.set.images, &first.set.images) > 0.0);
    let ckpts = std::fs::read_dir(ws.dir.join("distill")).unwrap().count();
    assert_eq!(ckpts, 2);

    // another text encoder: its own experts and its own distillation (not
    // the hashed-128 run of the same name and settings)
    let mut tc = exp.config.clone();
    tc.text.dim = 64;
    let text_exp = ws.experiment(tc).unwrap();
    assert_ne!(ws.experts_dir(&text_exp), dir);
    let text_experts = ws.experts(&text_exp).unwrap();
    let other_text = ws.distill(&text_exp, &text_experts, "first").unwrap();
    assert_eq!(other_text.set.texts.dim(1).unwrap(), 64);

    // more iterations of the same setup continue the finished run
    let mut longer = exp.clone();
    longer.config.distill.iterations = 5;
    let continued = ws.distill(&longer, &experts, "first").unwrap();
    assert_eq!(continued.history.len(), 5);
    let losses = |h: &[vl_distill::stage2::distiller::DistillReport]| {
        h.iter().map(|r| r.loss).collect::<Vec<_>>()
    };
    assert_eq!(losses(&continued.history[..3]), losses(&first.history));
}

#[test]
fn evaluation_of_a_coreset_beats_chance_at_the_smoke_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Workspace::new("smoke", tmp.path()).unwrap();
    let exp = ws.experiment(ws.config().unwrap()).unwrap();
    let stats = ws
        .evaluate_coreset(
            &exp,
            &[],
            vl_distill::evaluate::coreset::CoresetMethod::Random,
            100,
        )
        .unwrap();
    let chance =
        vl_distill::model::retrieval::Recall::chance(exp.test.num_images(), exp.test.num_pairs());
    assert!(
        stats.mean.tr_r10 > chance.tr_r10,
        "{stats} vs chance {chance}"
    );
    let row = ws.row(&exp, "random", Some(100), &stats);
    assert_eq!(row.stats(), stats);
    assert_eq!(row.profile, "smoke");
}
