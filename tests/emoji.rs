//! The emoji captions benchmark (`data-scripts/fetch_emoji.sh`): its small
//! CI-sized build (`--small 60`, the smoke profile's emoji set) loads with
//! held-out emoji in val/test, and `vl-distill run --dataset emoji` takes it
//! through every stage with the real all-MiniLM-L6-v2 and the ImageNet
//! EfficientNet-Lite0, the experts retrieving far above chance.
//!
//! The data and models are fetched by `data-scripts/fetch_all.sh --tests`;
//! without them the tests that need them print why and pass, unless
//! `VL_DISTILL_REQUIRE_DATA=1` (the README's test command) makes them fail.
//! What a missing set says is tested without any data.

use std::collections::HashSet;
use std::process::Command;
use vl_distill::config::{emoji_fetch_command, emoji_json};
use vl_distill::config::{Config, DataSource, MINILM_DIR};
use vl_distill::data::Split;
use vl_distill::experiment::load_dataset;
use vl_distill::model::retrieval::Recall;

mod common;
use common::{data, root};

/// The small emoji set, all-MiniLM-L6-v2 and EfficientNet-Lite0, when all
/// three are there.
fn fetched() -> bool {
    let small = emoji_json("smoke");
    [
        (small.to_str().unwrap(), emoji_fetch_command("smoke")),
        (
            &format!("{MINILM_DIR}/model.safetensors"),
            vl_distill::config::MINILM_FETCH_SCRIPT.to_string(),
        ),
        (
            vl_distill::config::EFFICIENTNET_CHECKPOINT,
            vl_distill::config::EFFICIENTNET_FETCH_SCRIPT.to_string(),
        ),
    ]
    .iter()
    .all(|(path, script)| data(path, script).is_some())
}

fn cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vl-distill"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("binary runs")
}

#[test]
fn the_small_emoji_set_holds_out_its_val_and_test_emoji() {
    let Some(json) = data(
        emoji_json("smoke").to_str().unwrap(),
        &emoji_fetch_command("smoke"),
    ) else {
        return;
    };
    let mut c = Config::smoke();
    c.set_dataset("emoji").unwrap();
    c.data.source = DataSource::Karpathy {
        json,
        image_root: None,
    };
    let (ds, report) = load_dataset(&c).unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(ds.name, "emoji");
    assert_eq!(ds.image_size(), Some((64, 64)), "the preset's 64 px");
    // an emoji's first caption is its CLDR name: the held-out ones never
    // appear in training, and each appears once in val/test (one style)
    let names =
        |s: Split| -> Vec<String> { ds.split(s).iter().map(|x| x.captions[0].clone()).collect() };
    let train: HashSet<String> = names(Split::Train).into_iter().collect();
    for s in [Split::Val, Split::Test] {
        let held = names(s);
        assert!(!held.is_empty(), "{s:?} is empty");
        let unique: HashSet<&String> = held.iter().collect();
        assert_eq!(unique.len(), held.len(), "{s:?} repeats an emoji");
        assert!(
            held.iter().all(|n| !train.contains(n)),
            "{s:?} has an emoji seen in training"
        );
    }
    // train has every emoji in the three styles (at most)
    assert!(ds.train.len() > train.len() && ds.train.len() <= 3 * train.len());
    for x in ds.train.iter().chain(&ds.test) {
        assert!((1..=5).contains(&x.captions.len()), "{}", x.filename);
    }
}

#[test]
fn run_dataset_emoji_trains_distils_and_evaluates_on_the_real_encoders() {
    if !fetched() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let o = cli(
        root(),
        &[
            "run",
            "--dataset",
            "emoji",
            "--profile",
            "smoke",
            "--out",
            out.path().to_str().unwrap(),
            "--quiet",
            // a shorter smoke run: the machinery, not the numbers
            "--set",
            "distill.iterations=4",
            "--set",
            "eval.num_seeds=1",
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("efficientnet_lite0 from data/models/efficientnet-lite0"),
        "{err}"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap())
            .unwrap();
    let rows = rows.as_array().unwrap();
    let methods: Vec<&str> = rows.iter().map(|r| r["method"].as_str().unwrap()).collect();
    // run's order: both distilled sets (pixels through the frozen
    // backbone, then its features), the four coresets, the full data
    let coresets = vl_distill::evaluate::coreset::CoresetMethod::ALL.map(|m| m.name());
    assert_eq!(methods[..2], ["distilled", "distilled_features"]);
    assert_eq!(methods[2..6], coresets);
    assert_eq!(methods[6..], ["full"]);
    assert_eq!(rows[0]["space"], "pixels");
    assert_eq!(rows[1]["space"], "features");
    for r in rows {
        assert_eq!(r["dataset"], "emoji");
        assert_eq!(r["image_encoder"], "efficientnet_lite0 (frozen)");
        assert_eq!(r["image_size"], 64);
        // every method's students were chosen on val
        let student = r["student"].as_str().unwrap_or_default();
        assert!(student.contains("val score"), "{r}");
        let text = r["text_encoder"].as_str().unwrap();
        assert!(text.starts_with("bert-all-MiniLM-L6-v2-mean-l2"), "{text}");
    }
    // the experts' heads retrieve the held-out emoji far above chance
    let cfg = Config::from_toml_file(&out.path().join("config.toml")).unwrap();
    let (ds, _) = load_dataset(&cfg).unwrap();
    let test = ds.split(Split::Test);
    let captions: usize = test.iter().map(|x| x.captions.len()).sum();
    let chance = Recall::chance(test.len(), captions);
    let full = rows.last().unwrap();
    let r1 = full["tr_r1"].as_f64().unwrap() + full["ir_r1"].as_f64().unwrap();
    assert!(
        r1 > 2.0 * (chance.tr_r1 + chance.ir_r1),
        "experts' TR+IR R@1 {r1} not above twice chance {chance}"
    );
    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(report.contains("emoji"), "{report}");
}

#[test]
fn a_missing_emoji_set_or_minilm_names_the_script_that_fetches_it() {
    let empty = tempfile::tempdir().unwrap();
    for (profile, script) in [
        ("smoke", "fetch_emoji.sh --small 60"),
        ("default", "fetch_emoji.sh"),
    ] {
        let o = cli(
            empty.path(),
            &[
                "experts",
                "--dataset",
                "emoji",
                "--profile",
                profile,
                "--text-encoder",
                "hashed",
                "--image-encoder",
                "convnet",
            ],
        );
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(emoji_json(profile).to_str().unwrap()) && err.contains(script),
            "{err}"
        );
    }
    let o = cli(
        empty.path(),
        &["experts", "--dataset", "coco", "--profile", "smoke"],
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("data prepare --dataset coco"));
    let o = cli(empty.path(), &["experts", "--dataset", "mnist"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("scenes, emoji, flickr30k, coco"));
    // MiniLM's folder, where the preset looks for it
    let mut c = Config::smoke();
    c.set_text_encoder("bert").unwrap();
    c.text.path = Some(empty.path().join(MINILM_DIR));
    let e = vl_distill::text::from_config(&c.text)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("fetch_minilm.sh"), "{e}");
}
