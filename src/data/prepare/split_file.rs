//! Karpathy's split file: finding it in SOURCE (loose, in `caption_datasets/`
//! or inside `caption_datasets.zip`), parsing and checking it.

use super::pieces::{base_name, open_zip, zip_names};
use super::Corpus;
use crate::data::Split;
use crate::error::{Error, Result};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// One image of the split file, checked.
pub(super) struct Entry {
    /// `filename` as written.
    pub(super) filename: String,
    /// Index into [`Corpus::pieces`].
    pub(super) piece: usize,
    pub(super) split: Split,
    /// How many non-empty captions.
    pub(super) captions: usize,
    /// The PNG's file name.
    pub(super) out_name: String,
}

/// The index of `s` in per-split counts: train, val, test.
pub(super) fn split_index(s: Split) -> usize {
    match s {
        Split::Train => 0,
        Split::Val => 1,
        Split::Test => 2,
    }
}

/// Images per split (train, val, test).
pub(super) fn split_counts(entries: &[Entry]) -> [usize; 3] {
    let mut c = [0; 3];
    for e in entries {
        c[split_index(e.split)] += 1;
    }
    c
}

/// Finds the split file in `source`: loose, in `caption_datasets/`, or in
/// `caption_datasets.zip`. Returns a label for messages (the file, or
/// `ZIP/member`) and its text.
pub(super) fn find_split_file(source: &Path, ds: Corpus) -> Result<(PathBuf, String)> {
    let name = ds.json_name();
    let loose = [
        source.join(&name),
        source.join("caption_datasets").join(&name),
    ];
    for p in &loose {
        if p.is_file() {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            return Ok((p.clone(), text));
        }
    }
    let zip_path = source.join("caption_datasets.zip");
    let mut looked_for: Vec<String> = loose.iter().map(|p| p.display().to_string()).collect();
    looked_for.push(format!("{} (holding {name})", zip_path.display()));
    if zip_path.is_file() {
        let mut zip = open_zip(&zip_path)?;
        let names = zip_names(&zip, &zip_path)?;
        if let Some(member) = names.iter().find(|m| base_name(m) == Some(name.as_str())) {
            let label = zip_path.join(member);
            let mut f = zip
                .by_name(member)
                .map_err(|e| Error::bad_file(&zip_path, format!("cannot read {member}: {e}")))?;
            let mut text = String::new();
            f.read_to_string(&mut text)
                .map_err(|e| Error::bad_file(&zip_path, format!("cannot read {member}: {e}")))?;
            return Ok((label, text));
        }
        return Err(Error::MissingSource {
            folder: source.to_path_buf(),
            what: format!("{} split file", ds.title()),
            looked_for,
            hint: Some(format!(
                "caption_datasets.zip holds {}",
                if names.is_empty() {
                    "nothing".to_string()
                } else {
                    names.join(", ")
                }
            )),
        });
    }
    let other = Corpus::ALL
        .into_iter()
        .filter(|c| *c != ds)
        .find(|c| source.join(c.json_name()).is_file());
    Err(Error::MissingSource {
        folder: source.to_path_buf(),
        what: format!("{} split file", ds.title()),
        looked_for,
        hint: other.map(|c| {
            format!(
                "{} is {}'s split file: --dataset {}?",
                c.json_name(),
                c.title(),
                c.name()
            )
        }),
    })
}

/// Which dataset a split file belongs to: its `dataset` field, else its
/// first file name (`COCO_…`, `NNN.jpg` for Flickr30K, `NNN_hex.jpg` for
/// Flickr8K).
fn detect_dataset(root: &Value) -> Option<String> {
    if let Some(d) = root.get("dataset").and_then(Value::as_str) {
        return Some(d.to_string());
    }
    let first = root
        .get("images")?
        .as_array()?
        .first()?
        .get("filename")?
        .as_str()?;
    let stem = first.split('.').next().unwrap_or("");
    if first.starts_with("COCO_") {
        Some("coco".into())
    } else if !stem.is_empty() && stem.chars().all(|c| c.is_ascii_digit()) {
        Some("flickr30k".into())
    } else if stem.contains('_') {
        Some("flickr8k".into())
    } else {
        None
    }
}

/// Parses and checks the split file; returns the JSON (kept whole, to be
/// written again) and its entries in file order.
pub(super) fn parse_split_file(
    label: &Path,
    text: &str,
    ds: Corpus,
) -> Result<(Value, Vec<Entry>)> {
    let json_err = |message: String| Error::Json {
        path: label.to_path_buf(),
        message,
    };
    let root: Value = serde_json::from_str(text).map_err(|e| json_err(e.to_string()))?;
    if let Some(found) = detect_dataset(&root) {
        if found != ds.name() {
            let hint = Corpus::ALL
                .into_iter()
                .find(|c| c.name() == found)
                .map(|c| format!("prepare it with --dataset {c}"));
            return Err(Error::WrongDataset {
                path: label.to_path_buf(),
                expected: ds.name().into(),
                found,
                hint,
            });
        }
    }
    let Some(images) = root.get("images").and_then(Value::as_array) else {
        return Err(json_err(
            "expected an object with an \"images\" list (Karpathy's layout: \
             {\"dataset\", \"images\": [{\"filename\", \"split\", \"sentences\"}]})"
                .into(),
        ));
    };
    let mut entries = Vec::with_capacity(images.len());
    let mut seen: HashMap<(usize, String), usize> = HashMap::new();
    for (i, img) in images.iter().enumerate() {
        let field = |k: &str| img.get(k);
        let Some(filename) = field("filename").and_then(Value::as_str) else {
            return Err(json_err(format!("images[{i}]: no \"filename\" string")));
        };
        let plain = !filename.is_empty()
            && Path::new(filename)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !plain || filename.contains('/') || filename.contains('\\') {
            return Err(json_err(format!(
                "images[{i}]: filename {filename:?} is not a plain file name"
            )));
        }
        let split = match field("split").and_then(Value::as_str) {
            Some("train") | Some("restval") => Split::Train,
            Some("val") => Split::Val,
            Some("test") => Split::Test,
            other => {
                return Err(json_err(format!(
                    "images[{i}] ({filename}): split {other:?} is not train, restval, val or test"
                )))
            }
        };
        let Some(sentences) = field("sentences").and_then(Value::as_array) else {
            return Err(json_err(format!(
                "images[{i}] ({filename}): no \"sentences\" list"
            )));
        };
        let mut captions = 0;
        for (k, s) in sentences.iter().enumerate() {
            let Some(raw) = s.get("raw").and_then(Value::as_str) else {
                return Err(json_err(format!(
                    "images[{i}] ({filename}): sentences[{k}] has no \"raw\" string"
                )));
            };
            if !raw.trim().is_empty() {
                captions += 1;
            }
        }
        if captions == 0 {
            return Err(Error::NoCaptions {
                annotation: label.to_path_buf(),
                image: filename.to_string(),
            });
        }
        let piece = match ds {
            Corpus::Flickr30k => 0,
            Corpus::Coco => {
                let fp = field("filepath").and_then(Value::as_str).unwrap_or("");
                match ds.pieces().iter().position(|p| *p == fp) {
                    Some(p) => p,
                    None => {
                        return Err(json_err(format!(
                            "images[{i}] ({filename}): filepath {fp:?} is not train2014 or val2014"
                        )))
                    }
                }
            }
        };
        if let Some(j) = seen.insert((piece, filename.to_string()), i) {
            return Err(json_err(format!(
                "images[{i}]: {filename} is named twice (also images[{j}])"
            )));
        }
        let out_name = Path::new(filename)
            .with_extension("png")
            .to_string_lossy()
            .into_owned();
        entries.push(Entry {
            filename: filename.to_string(),
            piece,
            split,
            captions,
            out_name,
        });
    }
    if entries.is_empty() {
        return Err(json_err("the \"images\" list is empty".into()));
    }
    // The same PNG name from two sources (`a.jpg` and `a.jpeg`) is refused.
    let mut outs = HashSet::new();
    for e in &entries {
        if !outs.insert((e.piece, e.out_name.clone())) {
            return Err(json_err(format!(
                "two images would both be written as {}",
                e.out_name
            )));
        }
    }
    Ok((root, entries))
}
