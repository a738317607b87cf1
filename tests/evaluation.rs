//! The evaluation protocol scores on the split it is asked for: the test
//! split by default, the validation split for choosing settings.

use vl_distill::config::Config;
use vl_distill::data::{CaptionedImages, Split};
use vl_distill::evaluate::coreset;
use vl_distill::evaluate::protocol::Evaluator;
use vl_distill::experiment::Experiment;
use vl_distill::stage1::sgd::{SgdConfig, TowerLr};

#[test]
fn scored_on_val_trains_the_same_students_and_tests_them_on_val() {
    let mut c = Config::smoke();
    c.apply_overrides(&["eval.num_seeds=2", "eval.small_set_epochs=10"])
        .unwrap();
    let exp = Experiment::new(c, vl_distill::device::for_tests(), None).unwrap();
    assert_ne!(exp.val.num_images(), exp.test.num_images());
    let pairs = coreset::random(&exp.train, 20, 0).unwrap();
    let lr = TowerLr::from(&exp.config.experts);

    let mut on_test = Evaluator::for_small_set(&exp, pairs.clone(), lr);
    assert_eq!(on_test.split(), Split::Test);
    let test = on_test.run().unwrap();
    let mut on_val = Evaluator::for_small_set(&exp, pairs.clone(), lr).scored_on(&exp, Split::Val);
    assert_eq!(on_val.split(), Split::Val);
    let val = on_val.run().unwrap();

    // the same students as an evaluator built explicitly on the val split
    let batch = exp.config.eval.batch_size.min(pairs.num_pairs()).max(2);
    let sgd = SgdConfig {
        lr,
        momentum: 0.0,
        weight_decay: 0.0,
        batch_size: batch,
        captions_per_image: None,
    };
    let mut explicit = Evaluator::new(
        exp.model.clone(),
        pairs,
        exp.val.clone(),
        sgd,
        exp.config.eval.small_set_epochs,
        exp.config.eval.num_seeds,
        exp.config.seed,
    );
    assert_eq!(explicit.run().unwrap(), val);
    assert_ne!(
        val, test,
        "val and test have different sizes: recalls differ"
    );
    // TR R@1 on val counts hits among the val images
    let per_image = 100.0 / exp.val.num_images() as f64;
    for r in &on_val.runs {
        let hits = r.recall.tr_r1 / per_image;
        assert!((hits - hits.round()).abs() < 1e-6, "{}", r.recall.tr_r1);
    }
}

/// The smoke experiment with 2 evaluation seeds, 20 random pairs of it and
/// the experts' rates: what the students' searches below run on.
fn smoke_random_pairs_with_two_seeds() -> (Experiment, CaptionedImages, TowerLr) {
    let mut c = Config::smoke();
    c.apply_overrides(&["eval.num_seeds=2"]).unwrap();
    let exp = Experiment::new(c, vl_distill::device::for_tests(), None).unwrap();
    let pairs = coreset::random(&exp.train, 20, 0).unwrap();
    let lr = TowerLr::from(&exp.config.experts);
    (exp, pairs, lr)
}

#[test]
fn student_settings_are_chosen_by_val_score_over_the_whole_grid() {
    use vl_distill::config::StudentGrid;
    use vl_distill::evaluate::student_settings::{choose_on_val, val_score, StudentSetting};
    let (exp, pairs, lr) = smoke_random_pairs_with_two_seeds();
    // a rate 1000× too small teaches nothing in 2 epochs: it must lose
    let grid = StudentGrid {
        lr_scales: vec![0.001, 1.0],
        momenta: vec![0.0, 0.9],
        epochs: vec![2, 20],
        finalists: None,
    };
    let mut seen = 0;
    let choice = choose_on_val(&exp, &pairs, lr, &grid, |_, _| seen += 1).unwrap();
    assert_eq!((seen, choice.tried.len()), (8, 8));
    // without finalists every pair trains every seed, and the chosen
    // setting's students are kept for the test
    assert!(choice.tried.iter().all(|(_, st)| st.seeds == 2));
    assert_eq!(choice.student_runs, 4 * 2);
    assert_eq!(choice.students.as_ref().map(Vec::len), Some(2));
    let best = choice
        .tried
        .iter()
        .map(|(_, s)| val_score(s))
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(val_score(&choice.val), best);
    assert_ne!(choice.chosen.lr_scale, 0.001);
    // the chosen setting's val score is reproduced by its own evaluator
    let again = choice
        .chosen
        .evaluator(&exp, pairs.clone(), lr, Split::Val)
        .run()
        .unwrap();
    assert_eq!(again, choice.val);
    // and the plain setting is the fixed protocol
    let plain = StudentSetting::plain(exp.config.eval.small_set_epochs)
        .evaluator(&exp, pairs.clone(), lr, Split::Test)
        .run()
        .unwrap();
    let fixed = Evaluator::for_small_set(&exp, pairs, lr).run().unwrap();
    assert_eq!(plain, fixed);
}

/// With finalists, every (rate, momentum) pair trains the first seed and
/// only the best pairs the others; the students the search kept for the
/// chosen setting test exactly as fresh students of that setting.
#[test]
fn finalists_train_every_seed_and_the_kept_students_test_as_fresh_ones() {
    use vl_distill::config::StudentGrid;
    use vl_distill::evaluate::student_settings::{choose_on_val, val_score, StudentSetting};
    let (exp, pairs, lr) = smoke_random_pairs_with_two_seeds();
    let grid = StudentGrid {
        lr_scales: vec![0.001, 1.0, 3.0],
        momenta: vec![0.0],
        epochs: vec![2, 20],
        finalists: Some(1),
    };
    let mut reports = Vec::new();
    let choice = choose_on_val(&exp, &pairs, lr, &grid, |s, st| {
        reports.push((*s, st.seeds, val_score(st)))
    })
    .unwrap();
    // 3 pairs × 2 epoch counts on the first seed, then the finalist's 2 on both
    assert_eq!(reports.len(), 8);
    assert!(reports[..6].iter().all(|(_, n, _)| *n == 1));
    assert!(reports[6..]
        .iter()
        .all(|(s, n, _)| *n == 2 && s.lr_scale == choice.chosen.lr_scale));
    assert_eq!(choice.student_runs, 4);
    assert_ne!(choice.chosen.lr_scale, 0.001);
    // the finalist was the best pair on the first seed
    let (best_on_first, _, _) = reports[..6]
        .iter()
        .fold(None::<&(StudentSetting, usize, f64)>, |b, r| match b {
            Some(b) if b.2 >= r.2 => Some(b),
            _ => Some(r),
        })
        .unwrap();
    assert_eq!(best_on_first.lr_scale, choice.chosen.lr_scale);
    // the chosen setting's val recall is that of its own evaluator
    let again = choice
        .chosen
        .evaluator(&exp, pairs.clone(), lr, Split::Val)
        .run()
        .unwrap();
    assert_eq!(again, choice.val);
    // the kept students are the models a fresh run of the setting trains
    let kept = choice
        .students
        .expect("smoke models are small enough to keep");
    assert_eq!(kept.len(), 2);
    let mut from_kept = choice
        .chosen
        .evaluator(&exp, pairs.clone(), lr, Split::Test);
    for s in &kept {
        from_kept.step_trained(s).unwrap().unwrap();
    }
    let fresh = choice
        .chosen
        .evaluator(&exp, pairs, lr, Split::Test)
        .run()
        .unwrap();
    assert_eq!(from_kept.stats().unwrap(), fresh);
    // a student scored without its parameters cannot be tested
    let mut bare = kept[0].clone();
    bare.params = None;
    let err = choice
        .chosen
        .evaluator(
            &exp,
            coreset::random(&exp.train, 20, 0).unwrap(),
            lr,
            Split::Test,
        )
        .step_trained(&bare)
        .unwrap_err()
        .to_string();
    assert!(err.contains("without keeping its parameters"), "{err}");
}

#[test]
fn a_bad_student_grid_is_refused() {
    for bad in [
        "eval.student_grid={\"lr_scales\":[], \"momenta\":[0.0], \"epochs\":[5]}",
        "eval.student_grid={\"lr_scales\":[-1.0], \"momenta\":[0.0], \"epochs\":[5]}",
        "eval.student_grid={\"lr_scales\":[1.0], \"momenta\":[1.0], \"epochs\":[5]}",
        "eval.student_grid={\"lr_scales\":[1.0], \"momenta\":[0.0], \"epochs\":[0]}",
        "eval.student_grid={\"lr_scales\":[1.0], \"momenta\":[0.0], \"epochs\":[5], \"finalists\":0}",
    ] {
        let mut c = Config::smoke();
        let err = c.apply_overrides(&[bad]).unwrap_err().to_string();
        assert!(err.contains("eval.student_grid"), "{bad}: {err}");
    }
    let mut c = Config::smoke();
    c.apply_overrides(&[
        "eval.student_grid={\"lr_scales\":[1.0, 3.0], \"momenta\":[0.0], \"epochs\":[5]}",
    ])
    .unwrap();
    assert_eq!(c.eval.student_grid.unwrap().len(), 2);
}

/// Scoring one run at several epoch counts gives exactly what separate
/// runs of those lengths give (the val search trains each rate once).
#[test]
fn recall_after_several_epoch_counts_equals_separate_runs() {
    let mut c = Config::smoke();
    c.apply_overrides(&["eval.num_seeds=2", "eval.small_set_epochs=6"])
        .unwrap();
    let exp = Experiment::new(c, vl_distill::device::for_tests(), None).unwrap();
    let pairs = coreset::random(&exp.train, 20, 0).unwrap();
    let lr = TowerLr::from(&exp.config.experts);
    let long = Evaluator::for_small_set(&exp, pairs.clone(), lr).scored_on(&exp, Split::Val);
    let at = [2, 6];
    let shared = long.recall_after(&at).unwrap();
    assert!(long.runs.is_empty());
    for (epochs, stats) in at.iter().zip(&shared) {
        let mut c = exp.config.clone();
        c.eval.small_set_epochs = *epochs;
        let mut e = exp.clone();
        e.config = c;
        let separate = Evaluator::for_small_set(&e, pairs.clone(), lr)
            .scored_on(&e, Split::Val)
            .run()
            .unwrap();
        assert_eq!(&separate, stats, "after {epochs} epochs");
    }
    assert_ne!(shared[0], shared[1], "training went on between the two");
    let err = long.recall_after(&[7]).unwrap_err().to_string();
    assert!(err.contains("7 epochs"), "{err}");
}
