//! Dataset loading: Karpathy round trip, the paper's per-split layout, and a
//! clear error (naming the file) for every kind of bad input.

use std::path::Path;
use vl_distill::data::karpathy::{load_karpathy, load_per_split, write_karpathy, LoadOptions};
use vl_distill::data::scenes::{generate, ScenesConfig};
use vl_distill::Error;

fn scenes() -> vl_distill::data::Dataset {
    generate(&ScenesConfig {
        seed: 9,
        image_size: 24,
        train: 12,
        val: 4,
        test: 5,
    })
    .unwrap()
}

fn opts() -> LoadOptions {
    LoadOptions {
        image_size: 24,
        skip_unreadable: false,
    }
}

#[test]
fn karpathy_round_trip_is_identical() {
    let ds = scenes();
    let dir = tempfile::tempdir().unwrap();
    let json = write_karpathy(&ds, dir.path()).unwrap();
    assert!(json.ends_with("dataset_scenes.json"));
    let (back, report) = load_karpathy(&json, None, &opts()).unwrap();
    assert!(report.skipped.is_empty());
    assert_eq!(back, ds);
    // reading it back twice gives identical bytes
    let (again, _) = load_karpathy(&json, None, &opts()).unwrap();
    assert_eq!(again.content_hash(), back.content_hash());
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn png(path: &Path, size: u32, v: u8) {
    image::RgbImage::from_pixel(size, size, image::Rgb([v, 255 - v, 7]))
        .save(path)
        .unwrap();
}

#[test]
fn per_split_layout_groups_captions_and_resizes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (i, n) in ["a.png", "b.png", "c.png", "d.png"].iter().enumerate() {
        png(&d.join(n), 40 + i as u32, 30 * i as u8);
    }
    write(
        &d.join("t_train.json"),
        r#"[{"image":"a.png","caption":"one","image_id":"0"},
            {"image":"b.png","caption":"two","image_id":"1"},
            {"image":"a.png","caption":"three","image_id":"0"}]"#,
    );
    write(
        &d.join("t_val.json"),
        r#"[{"image":"c.png","caption":["x","y"]}]"#,
    );
    write(
        &d.join("t_test.json"),
        r#"[{"image":"d.png","caption":"only"}]"#,
    );
    let (ds, _) = load_per_split(
        "tiny",
        &d.join("t_train.json"),
        &d.join("t_val.json"),
        &d.join("t_test.json"),
        d,
        &opts(),
    )
    .unwrap();
    assert_eq!(ds.name, "tiny");
    assert_eq!(ds.train.len(), 2);
    assert_eq!(ds.train[0].captions, vec!["one", "three"]);
    assert_eq!(ds.val[0].captions, vec!["x", "y"]);
    assert_eq!(ds.test[0].image.dimensions(), (24, 24));
}

/// A Karpathy file with one image per split, the first one named `first`.
fn karpathy_dir(first: &str, first_sentences: &str, val_split: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in ["a.png", "b.png", "c.png"] {
        png(&dir.path().join(n), 24, 100);
    }
    write(
        &dir.path().join("dataset_t.json"),
        &format!(
            r#"{{"dataset":"t","images":[
              {{"filename":"{first}","split":"restval","sentences":{first_sentences}}},
              {{"filename":"b.png","split":"{val_split}","sentences":[{{"raw":"b"}}]}},
              {{"filename":"c.png","split":"test","sentences":[{{"raw":"c"}}]}}]}}"#
        ),
    );
    dir
}

fn load_err(dir: &tempfile::TempDir) -> Error {
    load_karpathy(&dir.path().join("dataset_t.json"), None, &opts()).unwrap_err()
}

#[test]
fn restval_joins_train() {
    let dir = karpathy_dir("a.png", r#"[{"raw":"a"}]"#, "val");
    let (ds, _) = load_karpathy(&dir.path().join("dataset_t.json"), None, &opts()).unwrap();
    assert_eq!(ds.train.len(), 1);
    assert_eq!(ds.name, "t");
}

#[test]
fn missing_image_is_named() {
    let dir = karpathy_dir("nope.png", r#"[{"raw":"a"}]"#, "val");
    let e = load_err(&dir);
    assert!(matches!(e, Error::MissingImage { .. }), "{e}");
    assert!(e.to_string().contains("nope.png"), "{e}");
    // opting in skips and reports it — but then train is empty, which is its own error
    let mut o = opts();
    o.skip_unreadable = true;
    let e = load_karpathy(&dir.path().join("dataset_t.json"), None, &o).unwrap_err();
    assert!(
        matches!(e, Error::EmptySplit { ref split, .. } if split == "train"),
        "{e}"
    );
}

#[test]
fn undecodable_image_is_named_and_can_be_skipped() {
    let dir = karpathy_dir("a.png", r#"[{"raw":"a"}]"#, "val");
    // a second train image that is not an image at all
    let json = dir.path().join("dataset_t.json");
    let text = std::fs::read_to_string(&json).unwrap().replace(
        r#"{"filename":"b.png""#,
        r#"{"filename":"bad.png","split":"train","sentences":[{"raw":"z"}]},{"filename":"b.png""#,
    );
    write(&json, &text);
    write(&dir.path().join("bad.png"), "definitely not a png");
    let e = load_err(&dir);
    assert!(matches!(e, Error::BadImage { .. }), "{e}");
    assert!(e.to_string().contains("bad.png"), "{e}");
    let mut o = opts();
    o.skip_unreadable = true;
    let (ds, report) = load_karpathy(&json, None, &o).unwrap();
    assert_eq!(report.skipped.len(), 1);
    assert!(report.skipped[0].0.ends_with("bad.png"));
    assert_eq!(ds.train.len(), 1);
}

#[test]
fn malformed_json_is_named_with_position() {
    let dir = karpathy_dir("a.png", r#"[{"raw":"a"}]"#, "val");
    write(
        &dir.path().join("dataset_t.json"),
        "{\"images\": [ {\"filename\": 3 ",
    );
    let e = load_err(&dir);
    assert!(matches!(e, Error::Json { .. }), "{e}");
    assert!(
        e.to_string().contains("dataset_t.json") && e.to_string().contains("line"),
        "{e}"
    );
    // valid JSON, wrong layout
    write(
        &dir.path().join("dataset_t.json"),
        r#"{"images": [{"file": "a.png"}]}"#,
    );
    let e = load_err(&dir);
    assert!(e.to_string().contains("filename"), "{e}");
}

#[test]
fn image_without_captions_is_named() {
    let dir = karpathy_dir("a.png", "[]", "val");
    let e = load_err(&dir);
    assert!(matches!(e, Error::NoCaptions { .. }), "{e}");
    assert!(e.to_string().contains("a.png"), "{e}");
}

#[test]
fn empty_split_is_named() {
    let dir = karpathy_dir("a.png", r#"[{"raw":"a"}]"#, "test");
    let e = load_err(&dir);
    assert!(
        matches!(e, Error::EmptySplit { ref split, .. } if split == "val"),
        "{e}"
    );
    assert!(e.to_string().contains("dataset_t.json"), "{e}");
}

#[test]
fn unknown_split_is_an_error() {
    let dir = karpathy_dir("a.png", r#"[{"raw":"a"}]"#, "holdout");
    let e = load_err(&dir);
    assert!(e.to_string().contains("holdout"), "{e}");
}
