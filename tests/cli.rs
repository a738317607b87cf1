//! The command line at the smoke profile: `experts` then `eval --method full`
//! leave trajectories and a `full` row in results.json; `run` does every stage
//! (the four coresets included) and writes pictures of the distilled set
//! (`export` again); `baselines` leaves a row per method and size; bad input
//! fails clearly; `pretrain` writes weights where `--image-encoder` finds them.

use std::path::Path;
use std::process::Command;

mod common;

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vl-distill"))
        .args(args)
        .output()
        .expect("binary runs")
}

/// [`cli`] with `root` as the checkout (`VL_DISTILL_ROOT`), where
/// `pretrain` writes and `--image-encoder` looks.
fn cli_in(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vl-distill"))
        .args(args)
        .env("VL_DISTILL_ROOT", root)
        .output()
        .expect("binary runs")
}

#[test]
fn experts_then_eval_full_write_trajectories_and_results() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = cli(&["experts", "--profile", "smoke", "--out", out, "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for k in 0..2 {
        assert!(dir
            .path()
            .join(format!("expert_{k:03}.safetensors"))
            .exists());
        assert!(dir.path().join(format!("expert_{k:03}.json")).exists());
    }
    let o = cli(&[
        "eval",
        "--method",
        "full",
        "--profile",
        "smoke",
        "--out",
        out,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(dir.path().join("results.json")).unwrap();
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    let row = &rows[0];
    assert_eq!(row["method"], "full");
    assert!(row["pairs"].is_null());
    assert_eq!(row["profile"], "smoke");
    assert_eq!(row["dataset"], "scenes");
    for k in [
        "tr_r1",
        "tr_r5",
        "tr_r10",
        "ir_r1",
        "ir_r5",
        "ir_r10",
        "tr_r1_std",
        "ir_r10_std",
    ] {
        assert!(row[k].as_f64().is_some(), "{k} missing");
    }
    assert!(row["tr_r10"].as_f64().unwrap() >= row["tr_r1"].as_f64().unwrap());
    assert_eq!(row["seeds"], 2);
    assert!(row["image_encoder"]
        .as_str()
        .unwrap()
        .starts_with("convnet"));
    assert!(row["text_encoder"].as_str().unwrap().starts_with("hashed"));
    // --retrain trains fresh full-data models instead of reusing the experts
    let o = cli(&[
        "eval",
        "--method",
        "full",
        "--retrain",
        "--profile",
        "smoke",
        "--out",
        out,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("fresh seeds"));
    let text = std::fs::read_to_string(dir.path().join("results.json")).unwrap();
    let rows: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert_eq!(rows[1]["method"], "full");
    // the caption embeddings were cached and are reused
    let cached = std::fs::read_dir(dir.path().join("cache")).unwrap().count();
    assert_eq!(cached, 1);
}

#[test]
fn baselines_leave_a_row_per_method_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = cli(&[
        "baselines",
        "--method",
        "all",
        "--pairs",
        "100,200",
        "--profile",
        "smoke",
        "--out",
        out,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let got: Vec<(String, u64)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap().to_string(),
                r["pairs"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want = Vec::new();
    for n in [100, 200] {
        for m in ["random", "herding", "kcenter", "forgetting"] {
            want.push((m.to_string(), n));
        }
    }
    assert_eq!(got, want);
    // more pairs than the split has images: a clear error
    let o = cli(&[
        "baselines",
        "--method",
        "herding",
        "--pairs",
        "100000",
        "--profile",
        "smoke",
        "--out",
        out,
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("requested"));
}

#[test]
fn bad_settings_fail_with_a_message() {
    let o = cli(&["experts", "--profile", "huge"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown profile"));
    let o = cli(&["experts", "--profile", "smoke", "--set", "experts.epochs=0"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("epochs"));
    let o = cli(&["data", "inspect", "--json", "/nonexistent/dataset_x.json"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/dataset_x.json"));
}

#[test]
fn data_export_and_inspect_round_trip_with_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        "profile = \"smoke\"\n[data.source]\nkind = \"scenes\"\ntrain = 6\nval = 2\ntest = 3\n",
    )
    .unwrap();
    let out = dir.path().join("data");
    let o = cli(&[
        "data",
        "export",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = out.join("dataset_scenes.json");
    assert!(json.exists());
    assert_eq!(std::fs::read_dir(out.join("images")).unwrap().count(), 11);
    let o = cli(&[
        "data",
        "inspect",
        "--profile",
        "smoke",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("train: 6 images / 30 captions"), "{text}");
}

#[test]
fn run_does_every_stage_and_writes_rows_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = cli(&["run", "--profile", "smoke", "--out", out, "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.path().join("distilled.safetensors").exists());
    assert!(dir.path().join("distill_checkpoint.safetensors").exists());
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let methods: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        [
            "distilled",
            "random",
            "herding",
            "kcenter",
            "forgetting",
            "full"
        ]
    );
    for r in &rows.as_array().unwrap()[..5] {
        assert_eq!(r["pairs"], 20);
    }
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(report.contains("| distilled | 20 |") && report.contains("| full | all |"));
    assert!(
        report.contains("Distilled against the coresets") && report.contains("| scenes | 20 |")
    );
    // pictures of the set before and after, and the export folder
    let before = image::open(dir.path().join("distilled_before.png")).unwrap();
    let after = image::open(dir.path().join("distilled_after.png")).unwrap();
    assert_eq!(
        (before.width(), before.height()),
        (after.width(), after.height())
    );
    let index = |d: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("distilled/index.json")).unwrap())
            .unwrap()
    };
    assert_eq!(index(dir.path())["items"].as_array().unwrap().len(), 20);
    assert_eq!(index(dir.path())["nearest_k"], 3);
    assert!(dir.path().join("distilled/pair_019.png").exists());
    assert!(dir.path().join("distilled/index.md").exists());
    // `export` writes them again from the saved set, with the folder's config
    std::fs::remove_dir_all(dir.path().join("distilled")).unwrap();
    std::fs::remove_file(dir.path().join("distilled_after.png")).unwrap();
    let o = cli(&["export", "--out", out, "--nearest", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("distilled_after.png"));
    assert!(dir.path().join("distilled_after.png").exists());
    let again = index(dir.path());
    assert_eq!(again["nearest_k"], 2);
    assert_eq!(again["items"].as_array().unwrap().len(), 20);
    assert_eq!(again["items"][0]["nearest"].as_array().unwrap().len(), 2);

    // the stages also run on their own, reusing what the folder holds
    let o = cli(&[
        "eval",
        "--method",
        "distilled",
        "--profile",
        "smoke",
        "--out",
        out,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(&["distill", "--profile", "smoke", "--out", out, "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // a distill without experts is a clear error
    let empty = tempfile::tempdir().unwrap();
    let o = cli(&[
        "distill",
        "--profile",
        "smoke",
        "--out",
        empty.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no finished expert"));

    // cross-architecture: the ConvNet's set trains NF-ResNet students
    let o = cli(&[
        "eval",
        "--method",
        "distilled",
        "--profile",
        "smoke",
        "--out",
        out,
        "--image-encoder",
        "nf_resnet50",
        "--set",
        "eval.num_seeds=1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cross-architecture"));
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.json")).unwrap())
            .unwrap();
    let last = rows.as_array().unwrap().last().unwrap();
    assert_eq!(last["method"], "distilled");
    assert_eq!(last["image_encoder"], "nf_resnet50-scaled");
    assert!(last["distilled_with"]
        .as_str()
        .unwrap()
        .starts_with("convnet"));
    assert_eq!(last["seeds"], 1);
    // the evaluation did not rewrite the folder's configuration
    let saved = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(saved.contains("convnet"), "{saved}");
    // a distiller configured for another encoder refuses the ConvNet's trajectories
    let o = cli(&[
        "distill",
        "--profile",
        "smoke",
        "--out",
        out,
        "--image-encoder",
        "vit",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("was trained with image encoder convnet") && err.contains("vit-scaled"),
        "{err}"
    );
    // so does one for EfficientNet-Lite0, whose weights the CLI looks up
    // (and warns, naming the fetch script, when they are absent)
    let o = cli(&[
        "distill",
        "--profile",
        "smoke",
        "--out",
        out,
        "--image-encoder",
        "efficientnet_lite0",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("was trained with image encoder convnet")
            && err.contains("efficientnet_lite0")
            && (err.contains("data/models/efficientnet-lite0")),
        "{err}"
    );
    // an unknown encoder lists the known ones
    let o = cli(&[
        "experts",
        "--profile",
        "smoke",
        "--out",
        out,
        "--image-encoder",
        "resnet",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nfnet_l0"));
}

#[test]
fn tune_scores_candidates_on_val_and_writes_a_config_that_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let o = cli(&[
        "tune",
        "--profile",
        "smoke",
        "--out",
        out,
        "--quiet",
        "--candidates",
        "5",
        "--rungs",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("best on val"));
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("tune.json")).unwrap())
            .unwrap();
    let rung = |r: u64| rows.iter().filter(|x| x["rung"] == r).count();
    // 5 candidates, then the best ⌈5/3⌉ = 2 at the configured iterations
    assert_eq!((rung(0), rung(1)), (5, 2));
    assert_eq!(
        rows[0]["settings"]["lr_images"], 1000.0,
        "the configured values come first"
    );
    // scored on the 60 validation images: TR R@1 counts hits among them
    for r in &rows {
        let tr = r["val"]["mean"]["tr_r1"].as_f64().unwrap();
        let seeds = r["val"]["seeds"].as_f64().unwrap();
        let hits = tr * 60.0 * seeds / 100.0;
        assert!((hits - hits.round()).abs() < 1e-6, "{r}");
    }
    use vl_distill::config::Config;
    let tuned = Config::from_toml_file(&dir.path().join("tuned.toml")).unwrap();
    let best = rows
        .iter()
        .filter(|x| x["rung"] == 1)
        .max_by(|a, b| {
            a["score"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["score"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(
        serde_json::json!(tuned.distill.lr_texts),
        best["settings"]["lr_texts"]
    );
    assert_eq!(tuned.profile, "smoke");
    assert_eq!(tuned.distill.iterations, Config::smoke().distill.iterations);
}

#[test]
fn pretrain_writes_where_image_encoder_finds_it_and_the_experts_start_there() {
    let root = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cli_in(root.path(), args);
    let out = root.path().join("out");
    let out = out.to_str().unwrap();
    let common = [
        "--profile",
        "smoke",
        "--image-encoder",
        "nf_regnet_b1",
        "--out",
        out,
        "--quiet",
    ];
    // before: a warning that names the command (any subcommand prints it)
    let o = run(&[
        &["pretrain"][..],
        &common,
        &["--set", "pretrain.images=128", "--set", "pretrain.epochs=1"],
    ]
    .concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: no pretrained nf_regnet_b1")
            && err.contains("vl-distill pretrain --image-encoder nf_regnet_b1 --profile smoke"),
        "{err}"
    );
    let weights = root
        .path()
        .join("data/models/pretrained/nf_regnet_b1-scaled-24px.safetensors");
    assert!(weights.exists() && weights.with_extension("json").exists());
    // after: the experts load them (a new expert folder: the model differs)
    let out2 = root.path().join("out2");
    let o = run(&[
        "experts",
        "--profile",
        "smoke",
        "--image-encoder",
        "nf_regnet_b1",
        "--out",
        out2.to_str().unwrap(),
        "--quiet",
        "--set",
        "experts.epochs=1",
        "--set",
        "experts.num_experts=1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("image: nf_regnet_b1 from") && err.contains("nf_regnet_b1-scaled-24px"),
        "{err}"
    );
    let config = std::fs::read_to_string(out2.join("config.toml")).unwrap();
    assert!(
        config.contains("nf_regnet_b1-scaled-24px.safetensors"),
        "{config}"
    );
    // the ConvNet is not pretrained here
    let o = run(&["pretrain", "--profile", "smoke", "--out", out]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("from-scratch reference"));
}

#[test]
fn pretrained_vit_at_default_takes_its_own_expert_and_stage2_rates_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cli_in(root.path(), args);
    let out = root.path().join("out");
    let common = [
        "--profile",
        "default",
        "--image-encoder",
        "vit",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    // a short pretraining at the default resolution (32 px)
    let o = run(&[
        &["pretrain"][..],
        &common,
        &[
            "--set",
            "pretrain.images=128",
            "--set",
            "pretrain.val_images=32",
            "--set",
            "pretrain.epochs=1",
        ],
    ]
    .concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // the experts then fine-tune at the ViT's own rate and the config
    // carries its stage-2 settings
    // one short expert of the pretrained ViT into `dir`, with `extra` settings
    let experts_into = |dir: &Path, extra: &[&str]| {
        let args = [
            "experts",
            "--profile",
            "default",
            "--image-encoder",
            "vit",
            "--out",
            dir.to_str().unwrap(),
            "--quiet",
            "--set",
            "experts.epochs=1",
            "--set",
            "experts.num_experts=1",
            "--set",
            "data.source.train=100",
        ];
        run(&[&args[..], extra].concat())
    };
    let experts = root.path().join("experts");
    let o = experts_into(&experts, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("experts fine-tune at experts.lr_image = 0.0003")
            && err.contains(
                "distils at distill.lr_images = 3000, lr_texts = 3, lr_lr = 0.1, \
                 max_start_epoch = 2, max_lr_step = 0.1, iterations = 100, clip_spikes = none"
            ),
        "{err}"
    );
    let config = vl_distill::config::Config::from_toml_file(&experts.join("config.toml")).unwrap();
    assert_eq!(config.experts.lr_image, 0.0003);
    assert_eq!(config.distill.max_lr_step, Some(0.1));
    assert_eq!(
        (config.distill.lr_lr, config.distill.max_start_epoch),
        (0.1, 2)
    );
    assert!(config.model.image.checkpoint().is_some());
    // --set still wins over the encoder's own rates
    let experts2 = root.path().join("experts2");
    let o = experts_into(&experts2, &["--set", "experts.lr_image=0.001"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config = vl_distill::config::Config::from_toml_file(&experts2.join("config.toml")).unwrap();
    assert_eq!(config.experts.lr_image, 0.001);
}

#[test]
fn frozen_backbone_needs_pretrained_weights_then_trains_and_matches_only_the_heads() {
    let root = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| cli_in(root.path(), args);
    let out = root.path().join("out");
    let common = [
        "--profile",
        "smoke",
        "--image-encoder",
        "vit",
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    // no weights yet: refused, saying how to make them
    let o = run(&[&["run", "--frozen-backbone"][..], &common].concat());
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("needs pretrained weights")
            && err.contains("vl-distill pretrain --image-encoder vit --profile smoke"),
        "{err}"
    );
    // a LoRA ViT's adapters live inside the backbone: refused too
    let o = run(&[
        "run",
        "--frozen-backbone",
        "--profile",
        "smoke",
        "--image-encoder",
        "vit_lora",
        "--quiet",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("vit_lora"));

    let o = run(&[
        &["pretrain"][..],
        &common,
        &["--set", "pretrain.images=128", "--set", "pretrain.epochs=1"],
    ]
    .concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[&["run", "--frozen-backbone"][..], &common].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("backbone: vit frozen"), "{err}");

    let config = vl_distill::config::Config::from_toml_file(&out.join("config.toml")).unwrap();
    assert_eq!(config.model.backbone, vl_distill::config::Backbone::Frozen);
    assert_eq!(config.model.image_proj, Some(256));
    // the experts' trajectories hold the heads only: no backbone tensor
    let expert = candle_core::safetensors::load(
        out.join("expert_000.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    assert!(!expert.is_empty());
    assert!(
        expert
            .keys()
            .all(|k| k.contains("/image/proj.") || k.contains("/text/")),
        "{:?}",
        expert.keys().collect::<Vec<_>>()
    );
    // both distilled kinds are evaluated beside the coresets and full data
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let text = results.to_string();
    for method in [
        "\"distilled\"",
        "\"distilled_features\"",
        "\"herding\"",
        "\"full\"",
    ] {
        assert!(text.contains(method), "{method} missing: {text}");
    }
}

#[test]
fn compare_distils_each_option_at_equal_storage_and_reads_finished_sets_back() {
    use vl_distill::compare::{compared_dir, ComparedSet, StageTwoOption};
    use vl_distill::stage2::distilled_set::DistilledSet;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let args = [
        "compare",
        "--profile",
        "smoke",
        "--out",
        out,
        "--quiet",
        "--pairs",
        "12",
    ];
    let o = cli(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = || -> Vec<ComparedSet> {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("comparison.json")).unwrap())
            .unwrap()
    };
    let rows = read();
    let options: Vec<_> = rows.iter().map(|r| r.option).collect();
    assert_eq!(options, StageTwoOption::ALL.to_vec());
    let plain = &rows[0];
    assert_eq!(plain.pairs, 12);
    for r in &rows {
        // equal storage: a similarity costs a pair, never more floats than plain
        let want = if r.option.learns_similarity() { 11 } else { 12 };
        assert_eq!(r.pairs, want, "{:?}", r.option);
        assert!(
            r.floats <= plain.floats,
            "{:?}: {} floats",
            r.option,
            r.floats
        );
        let v = r.stats.mean.values();
        assert!(
            0.0 <= v[0] && v[0] <= v[1] && v[1] <= v[2] && v[2] <= 100.0,
            "{v:?}"
        );
        assert!(
            0.0 <= v[3] && v[3] <= v[4] && v[4] <= v[5] && v[5] <= 100.0,
            "{v:?}"
        );
        assert!(r.distill_seconds.is_some());
    }
    let set = |o: StageTwoOption| {
        let path = compared_dir(dir.path(), o, 12).join("distilled.safetensors");
        DistilledSet::load(&path, &candle_core::Device::Cpu).unwrap()
    };
    // the learned similarity moved away from the identity it starts at
    let lors = set(StageTwoOption::Lors);
    let s = lors
        .similarity
        .as_ref()
        .expect("a LoRS set keeps its similarity")
        .matrix()
        .unwrap();
    let eye =
        candle_core::Tensor::eye(11, candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    let moved = common::max_abs_diff(&s, &eye);
    assert!(moved > 0.0);
    assert!(set(StageTwoOption::Plain).similarity.is_none());
    // blended students pull the pixels elsewhere than plain ones
    let (p, b) = (set(StageTwoOption::Plain), set(StageTwoOption::Blend));
    let apart = common::max_abs_diff(&p.images, &b.images);
    assert!(apart > 0.0);
    // each folder records its set's own configuration, and a LoRS set's
    // export lists its learned partners
    let lors_dir = compared_dir(dir.path(), StageTwoOption::Lors, 12);
    let own = vl_distill::config::Config::from_toml_file(&lors_dir.join("config.toml")).unwrap();
    assert_eq!(own.distill.pairs, 11);
    assert!(own.distill.similarity.is_some() && own.distill.blend.is_none());
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(lors_dir.join("distilled").join("index.json")).unwrap(),
    )
    .unwrap();
    let items = index["items"].as_array().unwrap();
    assert_eq!(items.len(), 11);
    assert!(items
        .iter()
        .all(|p| !p["partners"].as_array().unwrap().is_empty()));
    let table = std::fs::read_to_string(dir.path().join("comparison.md")).unwrap();
    assert!(table.contains("+ LoRS + blending") && table.contains("against plain matching"));
    // again: every set and its test rows are read back, nothing distilled twice
    let o = cli(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = read();
    for (a, r) in again.iter().zip(&rows) {
        assert_eq!(a.stats, r.stats);
        assert_eq!(a.distill_seconds, None);
    }
    let o = cli(&[
        "compare",
        "--profile",
        "smoke",
        "--out",
        out,
        "--options",
        "plain,mixup",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown stage-2 option \"mixup\""));
}
