//! `data prepare` on small copies of Flickr30K and COCO in their original
//! layout (generated JPEGs packed as `flickr30k-images.tar.gz`, as a zip or
//! as the extracted folder; `train2014.zip` + `val2014.zip`; Karpathy's
//! split file loose or inside `caption_datasets.zip`): the prepared set
//! loads with `load_karpathy` with the original's splits, captions and
//! pixels; it resumes and is left alone once finished; the precomputed
//! caption embeddings are found by runs; and every kind of wrong or partial
//! copy fails naming what is wrong.

use flate2::write::GzEncoder;
use image::{Rgb, RgbImage};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use vl_distill::data::karpathy::{load_karpathy, LoadOptions};
use vl_distill::data::prepare::{self, Corpus, PrepareOptions};
use vl_distill::data::{Dataset, Split};
use vl_distill::Error;

/// One image of a fixture.
#[derive(Clone)]
struct Img {
    name: String,
    /// COCO's `filepath` (`train2014` / `val2014`).
    filepath: Option<&'static str>,
    split: &'static str,
    captions: Vec<String>,
    bytes: Vec<u8>,
}

/// A JPEG of `w × h` with a pattern that depends on `seed`.
fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            ((x * 7 + seed * 40) % 256) as u8,
            ((y * 5 + seed * 90) % 256) as u8,
            (((x + y) * 3 + seed * 13) % 256) as u8,
        ])
    });
    let mut out = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut out),
        image::ImageFormat::Jpeg,
    )
    .unwrap();
    out
}

fn captions(i: usize) -> Vec<String> {
    let mut c: Vec<String> = (0..5)
        .map(|k| format!("photo {i} shows thing {k} ."))
        .collect();
    if i == 2 {
        // an empty caption is kept in the file and ignored by the loader
        c[4] = "   ".into();
    }
    c
}

/// Eight Flickr30K-style images: 5 train, 2 val, 1 test.
fn flickr_images() -> Vec<Img> {
    let splits = [
        "train", "train", "train", "train", "train", "val", "val", "test",
    ];
    splits
        .iter()
        .enumerate()
        .map(|(i, split)| Img {
            name: format!("{}.jpg", 1000 + i),
            filepath: None,
            split,
            captions: captions(i),
            bytes: jpeg(40 + 3 * i as u32, 30 + 2 * i as u32, i as u32),
        })
        .collect()
}

/// Eight COCO-style images: train2014 holds 3 train; val2014 holds 2
/// restval, 2 val and 1 test.
fn coco_images() -> Vec<Img> {
    let spec = [
        ("train2014", "train"),
        ("train2014", "train"),
        ("train2014", "train"),
        ("val2014", "restval"),
        ("val2014", "restval"),
        ("val2014", "val"),
        ("val2014", "val"),
        ("val2014", "test"),
    ];
    spec.iter()
        .enumerate()
        .map(|(i, (fp, split))| Img {
            name: format!("COCO_{fp}_{:012}.jpg", 100 + i),
            filepath: Some(fp),
            split,
            captions: captions(i),
            bytes: jpeg(36 + 2 * i as u32, 44 - i as u32, 10 + i as u32),
        })
        .collect()
}

/// Karpathy's layout, with the fields the real files have.
fn karpathy_json(dataset: Option<&str>, imgs: &[Img]) -> String {
    let mut sent = 0;
    let images: Vec<Value> = imgs
        .iter()
        .enumerate()
        .map(|(i, im)| {
            let sentences: Vec<Value> = im
                .captions
                .iter()
                .map(|c| {
                    sent += 1;
                    json!({"tokens": c.split_whitespace().collect::<Vec<_>>(), "raw": c, "imgid": i, "sentid": sent - 1})
                })
                .collect();
            let mut v = json!({
                "sentids": (sent - im.captions.len()..sent).collect::<Vec<_>>(),
                "imgid": i,
                "sentences": sentences,
                "split": im.split,
                "filename": im.name,
            });
            if let Some(fp) = im.filepath {
                v["filepath"] = json!(fp);
                v["cocoid"] = json!(100 + i);
            }
            v
        })
        .collect();
    let mut root = json!({ "images": images });
    if let Some(d) = dataset {
        root["dataset"] = json!(d);
    }
    root.to_string()
}

fn tar_gz(path: &Path, folder: &str, files: &[(String, Vec<u8>)]) {
    let gz = GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_size(0);
    dir.set_mode(0o755);
    tar.append_data(&mut dir, format!("{folder}/"), std::io::empty())
        .unwrap();
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        tar.append_data(&mut h, format!("{folder}/{name}"), bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

fn zip_file(path: &Path, files: &[(String, Vec<u8>)]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in files {
        z.start_file(name.as_str(), opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

fn files(imgs: &[Img]) -> Vec<(String, Vec<u8>)> {
    imgs.iter()
        .map(|i| (i.name.clone(), i.bytes.clone()))
        .collect()
}

fn under(folder: &str, imgs: &[Img]) -> Vec<(String, Vec<u8>)> {
    imgs.iter()
        .map(|i| (format!("{folder}/{}", i.name), i.bytes.clone()))
        .collect()
}

/// How the images come.
#[derive(Clone, Copy)]
enum Images {
    TarGz,
    Folder,
    Zip,
    None,
}

/// How the split file comes.
#[derive(Clone, Copy)]
enum SplitFile {
    Loose,
    CaptionZip,
    None,
}

/// A Flickr30K copy in `dir` (created).
fn flickr_source(dir: &Path, imgs: &[Img], images: Images, split: SplitFile) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    match images {
        Images::TarGz => tar_gz(
            &dir.join("flickr30k-images.tar.gz"),
            "flickr30k-images",
            &files(imgs),
        ),
        Images::Folder => {
            let f = dir.join("flickr30k-images");
            std::fs::create_dir_all(&f).unwrap();
            for i in imgs {
                std::fs::write(f.join(&i.name), &i.bytes).unwrap();
            }
        }
        Images::Zip => zip_file(
            &dir.join("flickr30k-images.zip"),
            &under("flickr30k-images", imgs),
        ),
        Images::None => {}
    }
    let text = karpathy_json(Some("flickr30k"), &flickr_images());
    match split {
        SplitFile::Loose => std::fs::write(dir.join("dataset_flickr30k.json"), text).unwrap(),
        SplitFile::CaptionZip => zip_file(
            &dir.join("caption_datasets.zip"),
            &[
                (
                    "dataset_coco.json".into(),
                    karpathy_json(Some("coco"), &coco_images()).into_bytes(),
                ),
                ("dataset_flickr30k.json".into(), text.into_bytes()),
                (
                    "dataset_flickr8k.json".into(),
                    br#"{"images": [], "dataset": "flickr8k"}"#.to_vec(),
                ),
            ],
        ),
        SplitFile::None => {}
    }
    dir.to_path_buf()
}

/// A COCO copy in `dir`: the two zips and `caption_datasets.zip`.
fn coco_source(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let imgs = coco_images();
    for fp in ["train2014", "val2014"] {
        let part: Vec<Img> = imgs
            .iter()
            .filter(|i| i.filepath == Some(fp))
            .cloned()
            .collect();
        zip_file(&dir.join(format!("{fp}.zip")), &under(fp, &part));
    }
    zip_file(
        &dir.join("caption_datasets.zip"),
        &[
            (
                "dataset_coco.json".into(),
                karpathy_json(Some("coco"), &imgs).into_bytes(),
            ),
            (
                "dataset_flickr30k.json".into(),
                karpathy_json(Some("flickr30k"), &flickr_images()).into_bytes(),
            ),
        ],
    );
    dir.to_path_buf()
}

fn opts(ds: Corpus, source: &Path, dest: &Path, size: u32) -> PrepareOptions {
    PrepareOptions {
        dest: dest.to_path_buf(),
        image_size: size,
        ..PrepareOptions::new(ds, source)
    }
}

fn load(json: &Path, root: Option<&Path>, size: u32) -> Dataset {
    load_karpathy(
        json,
        root,
        &LoadOptions {
            image_size: size,
            skip_unreadable: false,
        },
    )
    .unwrap()
    .0
}

fn names(ds: &Dataset, s: Split) -> Vec<String> {
    ds.split(s).iter().map(|x| x.filename.clone()).collect()
}

/// The original copy loaded directly (extracted folder + original JSON).
fn original_flickr(dir: &Path, size: u32) -> Dataset {
    let src = flickr_source(dir, &flickr_images(), Images::Folder, SplitFile::Loose);
    load(
        &src.join("dataset_flickr30k.json"),
        Some(&src.join("flickr30k-images")),
        size,
    )
}

#[test]
fn flickr_from_tar_gz_and_caption_zip_loads_as_the_original() {
    let tmp = tempfile::tempdir().unwrap();
    let src = flickr_source(
        &tmp.path().join("src"),
        &flickr_images(),
        Images::TarGz,
        SplitFile::CaptionZip,
    );
    let dest = tmp.path().join("data/flickr30k");
    let t = std::time::Instant::now();
    let r = prepare::prepare(&opts(Corpus::Flickr30k, &src, &dest, 24)).unwrap();
    eprintln!(
        "prepared the 8-image fixture in {:.3} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(r.json, dest.join("dataset_flickr30k.json"));
    assert_eq!(r.splits, [5, 2, 1]);
    assert_eq!(r.captions, 39);
    assert_eq!((r.written, r.reused), (8, 0));
    assert!(!r.already_done && r.missing.is_empty() && r.unreadable.is_empty());
    // the fixture is not Karpathy's size: a warning naming the expected sizes
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(
        r.warnings[0].contains("29000") && r.warnings[0].contains("1014"),
        "{}",
        r.warnings[0]
    );
    assert!(dest.join("flickr30k-images/1000.png").is_file());
    assert!(r.to_string().contains("train 5 / val 2 / test 1"), "{r}");

    let ds = load(&r.json, None, 24);
    assert_eq!(ds.name, "flickr30k");
    assert_eq!(names(&ds, Split::Train)[0], "1000.png");
    assert_eq!(names(&ds, Split::Val), ["1005.png", "1006.png"]);
    assert_eq!(names(&ds, Split::Test), ["1007.png"]);
    assert_eq!(ds.image_size(), Some((24, 24)));
    assert_eq!(ds.train[0].captions, captions(0));
    assert_eq!(ds.train[2].captions.len(), 4);
    // the very pixels and captions a load of the original JPEGs gives
    let orig = original_flickr(&tmp.path().join("orig"), 24);
    for s in Split::ALL {
        assert_eq!(ds.split(s).len(), orig.split(s).len());
        for (a, b) in ds.split(s).iter().zip(orig.split(s)) {
            assert_eq!(a.captions, b.captions);
            assert!(
                a.image == b.image,
                "{} differs from the original",
                a.filename
            );
        }
    }
    // the rest of each entry is kept; filepath names the image folder
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&r.json).unwrap()).unwrap();
    let first = &v["images"][0];
    assert_eq!(first["filepath"], "flickr30k-images");
    assert_eq!(first["sentids"], json!([0, 1, 2, 3, 4]));
    assert_eq!(first["sentences"][1]["tokens"][0], "photo");
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(dest.join(prepare::MANIFEST)).unwrap())
            .unwrap();
    assert_eq!(m["complete"], true);
    assert_eq!(m["image_size"], 24);
}

#[test]
fn folder_and_zip_copies_prepare_to_the_same_set() {
    let tmp = tempfile::tempdir().unwrap();
    let mut hashes = Vec::new();
    for (k, (images, split)) in [
        (Images::TarGz, SplitFile::Loose),
        (Images::Folder, SplitFile::Loose),
        (Images::Zip, SplitFile::CaptionZip),
    ]
    .into_iter()
    .enumerate()
    {
        let src = flickr_source(
            &tmp.path().join(format!("src{k}")),
            &flickr_images(),
            images,
            split,
        );
        let dest = tmp.path().join(format!("dest{k}"));
        let r = prepare::prepare(&opts(Corpus::Flickr30k, &src, &dest, 16)).unwrap();
        assert_eq!(r.written, 8);
        hashes.push(load(&r.json, None, 16).content_hash());
    }
    assert_eq!(hashes[0], hashes[1]);
    assert_eq!(hashes[0], hashes[2]);

    // a half-extracted folder: the rest comes from the archive beside it
    let src = flickr_source(
        &tmp.path().join("half"),
        &flickr_images(),
        Images::TarGz,
        SplitFile::Loose,
    );
    let folder = src.join("flickr30k-images");
    std::fs::create_dir_all(&folder).unwrap();
    for i in &flickr_images()[..3] {
        std::fs::write(folder.join(&i.name), &i.bytes).unwrap();
    }
    let r = prepare::prepare(&opts(Corpus::Flickr30k, &src, &tmp.path().join("d"), 16)).unwrap();
    assert_eq!(r.written, 8);
    assert_eq!(load(&r.json, None, 16).content_hash(), hashes[0]);
}

#[test]
fn coco_from_two_zips_keeps_folders_and_puts_restval_in_train() {
    let tmp = tempfile::tempdir().unwrap();
    let src = coco_source(&tmp.path().join("src"));
    let dest = tmp.path().join("coco");
    let r = prepare::prepare(&opts(Corpus::Coco, &src, &dest, 20)).unwrap();
    assert_eq!(r.splits, [5, 2, 1]);
    assert!(r.warnings[0].contains("113287"), "{:?}", r.warnings);
    assert!(dest
        .join("train2014/COCO_train2014_000000000100.png")
        .is_file());
    assert!(dest.join("val2014/COCO_val2014_000000000107.png").is_file());
    let ds = load(&r.json, None, 20);
    assert_eq!(ds.name, "coco");
    assert_eq!(
        names(&ds, Split::Train),
        [
            "COCO_train2014_000000000100.png",
            "COCO_train2014_000000000101.png",
            "COCO_train2014_000000000102.png",
            "COCO_val2014_000000000103.png",
            "COCO_val2014_000000000104.png"
        ]
    );
    assert_eq!(names(&ds, Split::Test), ["COCO_val2014_000000000107.png"]);
    assert_eq!(ds.image_size(), Some((20, 20)));
    assert_eq!(ds.val[1].captions, captions(6));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&r.json).unwrap()).unwrap();
    assert_eq!(v["images"][3]["filepath"], "val2014");
    assert_eq!(v["images"][3]["split"], "restval");
    assert_eq!(v["images"][3]["cocoid"], 103);
}

#[test]
fn a_finished_dest_is_left_alone_and_an_interrupted_one_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = flickr_source(
        &tmp.path().join("src"),
        &flickr_images(),
        Images::TarGz,
        SplitFile::Loose,
    );
    let dest = tmp.path().join("out");
    let o = opts(Corpus::Flickr30k, &src, &dest, 16);
    let first = prepare::prepare(&o).unwrap();
    let hash = load(&first.json, None, 16).content_hash();
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let json_time = mtime(&first.json);

    let again = prepare::prepare(&o).unwrap();
    assert!(again.already_done);
    assert_eq!((again.written, again.splits), (0, [5, 2, 1]));
    assert!(again.to_string().contains("already prepared"), "{again}");
    assert_eq!(mtime(&first.json), json_time);

    // interrupted: the split file not yet written, three images missing,
    // the manifest unfinished
    std::fs::remove_file(&first.json).unwrap();
    for n in ["1001", "1004", "1007"] {
        std::fs::remove_file(dest.join(format!("flickr30k-images/{n}.png"))).unwrap();
    }
    let m = dest.join(prepare::MANIFEST);
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("\"complete\": true", "\"complete\": false");
    std::fs::write(&m, text).unwrap();
    let resumed = prepare::prepare(&o).unwrap();
    assert!(!resumed.already_done);
    assert_eq!((resumed.written, resumed.reused), (3, 5));
    assert_eq!(load(&resumed.json, None, 16).content_hash(), hash);

    // another size into the same DEST is refused, not mixed
    let err = prepare::prepare(&opts(Corpus::Flickr30k, &src, &dest, 32)).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(err.to_string().contains("prepared at 16 px"), "{err}");
    // so is another dataset
    let err = prepare::prepare(&opts(Corpus::Coco, &src, &dest, 16)).unwrap_err();
    assert!(
        err.to_string().contains("holds a prepared flickr30k"),
        "{err}"
    );
    // and a folder that data prepare did not write (here: the source itself)
    let err = prepare::prepare(&opts(Corpus::Flickr30k, &src, &src, 16)).unwrap_err();
    assert!(err.to_string().contains("not written by"), "{err}");
    assert!(src.join("dataset_flickr30k.json").is_file());
}

#[test]
fn precomputed_caption_embeddings_are_found_by_runs() {
    use vl_distill::config::{Config, DataSource};
    use vl_distill::experiment::Experiment;
    let tmp = tempfile::tempdir().unwrap();
    let src = flickr_source(
        &tmp.path().join("src"),
        &flickr_images(),
        Images::TarGz,
        SplitFile::Loose,
    );
    let dest = tmp.path().join("flickr30k");
    let r = prepare::prepare(&opts(Corpus::Flickr30k, &src, &dest, 24)).unwrap();
    let mut cfg = Config::profile("smoke").unwrap();
    cfg.data.source = DataSource::Karpathy {
        json: r.json.clone(),
        image_root: None,
    };
    cfg.data.image_size = 24;
    let encoder = vl_distill::text::from_config(&cfg.text).unwrap();
    let (file, hit) = vl_distill::text::cache::cache_embeddings(&r.json, encoder.as_ref()).unwrap();
    assert!(!hit);
    assert!(
        file.starts_with(dest.join(vl_distill::text::cache::CACHE_DIR)),
        "{}",
        file.display()
    );
    assert!(file.is_file());
    let (_, hit) = vl_distill::text::cache::cache_embeddings(&r.json, encoder.as_ref()).unwrap();
    assert!(hit);

    let out = tmp.path().join("run/cache");
    std::fs::create_dir_all(&out).unwrap();
    let exp = Experiment::new(cfg.clone(), candle_core_cpu(), Some(&out)).unwrap();
    assert!(
        exp.embeddings_cached,
        "the run did not find {}",
        file.display()
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "copied");
    assert_eq!(exp.dataset.num_captions(Split::Train), 24);

    // without the shared entry the run computes into its own cache
    std::fs::remove_file(&file).unwrap();
    let exp = Experiment::new(cfg, candle_core_cpu(), Some(&out)).unwrap();
    assert!(!exp.embeddings_cached);
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
}

fn candle_core_cpu() -> vl_distill::candle_core::Device {
    vl_distill::candle_core::Device::Cpu
}

// --- The command line ------------------------------------------------------------

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vl-distill"))
        .args(args)
        .output()
        .expect("binary runs")
}

#[test]
fn cli_prepares_summarises_and_precomputes_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let src = flickr_source(
        &tmp.path().join("src"),
        &flickr_images(),
        Images::TarGz,
        SplitFile::CaptionZip,
    );
    let dest = tmp.path().join("prepared");
    let (s, d) = (src.to_str().unwrap(), dest.to_str().unwrap());
    let args = [
        "data",
        "prepare",
        "--dataset",
        "flickr30k",
        "--source",
        s,
        "--out",
        d,
        "--image-size",
        "32",
        "--text-encoder",
        "hashed",
        "--profile",
        "smoke",
    ];
    let o = cli(&args);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("flickr30k: train 5 / val 2 / test 1 images, 39 captions, 32x32 PNG"),
        "{out}"
    );
    assert!(out.contains("8 written, 0 already there"), "{out}");
    assert!(out.contains("warning: split sizes"), "{out}");
    assert!(out.contains("caption embeddings (hashed"), "{out}");
    assert!(out.contains("--set data.source.json="), "{out}");
    assert!(err.contains("indexing"), "{err}");
    assert_eq!(std::fs::read_dir(dest.join("cache")).unwrap().count(), 1);

    let o = cli(&args);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(out.contains("already prepared"), "{out}");
    assert!(
        out.contains("caption embeddings (hashed") && out.contains("already in"),
        "{out}"
    );

    let json = dest.join("dataset_flickr30k.json");
    let o = cli(&[
        "data",
        "inspect",
        "--json",
        json.to_str().unwrap(),
        "--set",
        "data.image_size=32",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("flickr30k (32x32 px): train: 5 images / 24 captions"),
        "{out}"
    );

    // the command it prints for the paper profile reads the prepared set
    let set = format!("data.source.json={}", json.display());
    assert!(
        String::from_utf8_lossy(&cli(&args).stdout).contains(&format!("--set {set}")),
        "the printed command differs"
    );
    let o = cli(&["data", "inspect", "--profile", "paper", "--set", &set]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("flickr30k (224x224 px): train: 5 images"),
        "{out}"
    );

    // a partial copy fails with the names, and --allow-missing goes on
    let part = flickr_source(
        &tmp.path().join("part"),
        &flickr_images()[1..],
        Images::Folder,
        SplitFile::Loose,
    );
    let p = part.to_str().unwrap();
    let d2 = tmp.path().join("p");
    let o = cli(&[
        "data",
        "prepare",
        "--dataset",
        "flickr30k",
        "--source",
        p,
        "--out",
        d2.to_str().unwrap(),
        "--quiet",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("1 of the 8 images") && err.contains("1000.jpg"),
        "{err}"
    );
    assert!(err.contains("--allow-missing"), "{err}");
    let o = cli(&[
        "data",
        "prepare",
        "--dataset",
        "flickr30k",
        "--source",
        p,
        "--out",
        d2.to_str().unwrap(),
        "--quiet",
        "--allow-missing",
        "--image-size",
        "16",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("dropped 1 images not in the source: 1000.jpg"),
        "{out}"
    );
}

// --- Wrong or partial copies -------------------------------------------------------

#[test]
fn a_missing_image_archive_lists_what_was_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let src = flickr_source(tmp.path(), &[], Images::None, SplitFile::Loose);
    let err =
        prepare::prepare(&opts(Corpus::Flickr30k, &src, &tmp.path().join("d"), 16)).unwrap_err();
    assert!(matches!(err, Error::MissingSource { .. }), "{err}");
    let msg = err.to_string();
    for name in [
        "flickr30k-images/ (folder)",
        "flickr30k-images.tar.gz",
        "flickr30k-images.tgz",
        "flickr30k-images.zip",
    ] {
        assert!(msg.contains(name), "{name} not in: {msg}");
    }
    assert!(!tmp.path().join("d").exists(), "nothing is written");

    // COCO: one of the two zips is missing
    let coco = coco_source(&tmp.path().join("coco"));
    std::fs::remove_file(coco.join("val2014.zip")).unwrap();
    let err = prepare::prepare(&opts(Corpus::Coco, &coco, &tmp.path().join("c"), 16)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("COCO images (val2014)") && msg.contains("val2014.zip"),
        "{msg}"
    );
}

#[test]
fn a_missing_split_file_lists_what_was_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let src = flickr_source(
        &tmp.path().join("a"),
        &flickr_images(),
        Images::TarGz,
        SplitFile::None,
    );
    let err =
        prepare::prepare(&opts(Corpus::Flickr30k, &src, &tmp.path().join("d"), 16)).unwrap_err();
    assert!(matches!(err, Error::MissingSource { .. }), "{err}");
    let msg = err.to_string();
    for name in [
        "dataset_flickr30k.json",
        "caption_datasets/dataset_flickr30k.json",
        "caption_datasets.zip (holding dataset_flickr30k.json)",
    ] {
        assert!(msg.contains(name), "{name} not in: {msg}");
    }
    // only COCO's file there: the hint says so
    std::fs::write(src.join("dataset_coco.json"), "{}").unwrap();
    let msg = prepare::prepare(&opts(Corpus::Flickr30k, &src, &tmp.path().join("d"), 16))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("--dataset coco"), "{msg}");
    // a caption_datasets.zip without it names what it holds
    std::fs::remove_file(src.join("dataset_coco.json")).unwrap();
    zip_file(
        &src.join("caption_datasets.zip"),
        &[("dataset_flickr8k.json".into(), b"{}".to_vec())],
    );
    let msg = prepare::prepare(&opts(Corpus::Flickr30k, &src, &tmp.path().join("d"), 16))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("caption_datasets.zip holds dataset_flickr8k.json"),
        "{msg}"
    );
}

#[test]
fn a_split_file_of_another_dataset_or_layout_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let src = flickr_source(
        &tmp.path().join("a"),
        &flickr_images(),
        Images::TarGz,
        SplitFile::None,
    );
    let dest = tmp.path().join("d");
    let json = src.join("dataset_flickr30k.json");
    // COCO's file under Flickr's name, with and without its "dataset" field
    for dataset in [Some("coco"), None] {
        std::fs::write(&json, karpathy_json(dataset, &coco_images())).unwrap();
        let err = prepare::prepare(&opts(Corpus::Flickr30k, &src, &dest, 16)).unwrap_err();
        assert!(
            matches!(err, Error::WrongDataset { ref found, .. } if found == "coco"),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("dataset_flickr30k.json") && msg.contains("--dataset coco"),
            "{msg}"
        );
    }
    // Flickr8K's
    std::fs::write(
        &json,
        r#"{"images": [{"filename": "1000268201_693b08cb0e.jpg", "split": "train", "sentences": [{"raw": "a"}]}]}"#,
    )
    .unwrap();
    let err = prepare::prepare(&opts(Corpus::Flickr30k, &src, &dest, 16)).unwrap_err();
    assert!(err.to_string().contains("flickr8k"), "{err}");
    // wrong layouts name the entry
    for (text, needle) in [
        (r#"[1, 2]"#, "\"images\" list"),
        (
            r#"{"dataset": "flickr30k", "images": [{"filename": "1000.jpg", "split": "train"}]}"#,
            "images[0] (1000.jpg): no \"sentences\"",
        ),
        (
            r#"{"dataset": "flickr30k", "images": [{"filename": "1000.jpg", "split": "holdout", "sentences": []}]}"#,
            "split Some(\"holdout\")",
        ),
        (
            r#"{"dataset": "flickr30k", "images": [{"filename": "1000.jpg", "split": "train", "sentences": [{"raw": "a"}]},"#,
            "line 1",
        ),
    ] {
        std::fs::write(&json, text).unwrap();
        let err = prepare::prepare(&opts(Corpus::Flickr30k, &src, &dest, 16)).unwrap_err();
        assert!(matches!(err, Error::Json { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{needle} not in: {err}");
    }
    assert!(!dest.exists());
}

#[test]
fn missing_images_are_an_error_unless_allowed_then_dropped_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let all = flickr_images();
    let partial: Vec<Img> = all
        .iter()
        .filter(|i| i.name != "1003.jpg" && i.name != "1006.jpg")
        .cloned()
        .collect();
    let src = flickr_source(
        &tmp.path().join("a"),
        &partial,
        Images::TarGz,
        SplitFile::Loose,
    );
    let dest = tmp.path().join("d");
    let mut o = opts(Corpus::Flickr30k, &src, &dest, 16);
    let err = prepare::prepare(&o).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MissingImages {
                count: 2,
                total: 8,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("1003.jpg, 1006.jpg") && msg.contains("flickr30k-images.tar.gz"),
        "{msg}"
    );
    assert!(!dest.exists(), "nothing is written");

    o.allow_missing = true;
    let r = prepare::prepare(&o).unwrap();
    assert_eq!(r.missing, ["1003.jpg", "1006.jpg"]);
    assert_eq!(r.splits, [4, 1, 1]);
    assert!(
        r.to_string().contains("dropped 2 images not in the source"),
        "{r}"
    );
    let ds = load(&r.json, None, 16);
    assert_eq!(names(&ds, Split::Val), ["1005.png"]);
    let m: Value =
        serde_json::from_str(&std::fs::read_to_string(dest.join(prepare::MANIFEST)).unwrap())
            .unwrap();
    assert_eq!(m["missing"], json!(["1003.jpg", "1006.jpg"]));

    // dropping the only test image leaves an empty split: an error
    let no_test: Vec<Img> = all.iter().filter(|i| i.split != "test").cloned().collect();
    let src = flickr_source(
        &tmp.path().join("b"),
        &no_test,
        Images::Folder,
        SplitFile::Loose,
    );
    let mut o = opts(Corpus::Flickr30k, &src, &tmp.path().join("e"), 16);
    o.allow_missing = true;
    let err = prepare::prepare(&o).unwrap_err();
    assert!(
        matches!(err, Error::EmptySplit { ref split, .. } if split == "test"),
        "{err}"
    );
}

#[test]
fn a_corrupt_image_is_named_with_its_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let mut imgs = flickr_images();
    imgs[3].bytes = b"this is no JPEG".to_vec();
    let src = flickr_source(
        &tmp.path().join("a"),
        &imgs,
        Images::TarGz,
        SplitFile::Loose,
    );
    let dest = tmp.path().join("d");
    let mut o = opts(Corpus::Flickr30k, &src, &dest, 16);
    let err = prepare::prepare(&o).unwrap_err();
    assert!(matches!(err, Error::BadImage { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("flickr30k-images.tar.gz/flickr30k-images/1003.jpg"),
        "{msg}"
    );
    o.allow_missing = true;
    let r = prepare::prepare(&o).unwrap();
    assert_eq!(r.unreadable.len(), 1);
    assert_eq!(r.unreadable[0].0, "1003.jpg");
    assert_eq!(r.splits, [4, 2, 1]);
    assert!(r.to_string().contains("1003.jpg"), "{r}");

    // in a folder, the file is named
    let src = flickr_source(
        &tmp.path().join("b"),
        &imgs,
        Images::Folder,
        SplitFile::Loose,
    );
    let err =
        prepare::prepare(&opts(Corpus::Flickr30k, &src, &tmp.path().join("e"), 16)).unwrap_err();
    assert!(
        err.to_string().contains("flickr30k-images/1003.jpg"),
        "{err}"
    );

    // a JPEG cut in half, inside a zip (the decoder accepts some cuts, as
    // it does when loading the original; this one it does not)
    let mut imgs = flickr_images();
    let whole = imgs[3].bytes.clone();
    imgs[3].bytes = whole[..whole.len() / 2].to_vec();
    let src = flickr_source(&tmp.path().join("c"), &imgs, Images::Zip, SplitFile::Loose);
    let err =
        prepare::prepare(&opts(Corpus::Flickr30k, &src, &tmp.path().join("f"), 16)).unwrap_err();
    assert!(matches!(err, Error::BadImage { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("flickr30k-images.zip/flickr30k-images/1003.jpg"),
        "{err}"
    );
}

#[test]
fn a_truncated_archive_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let src = flickr_source(
        &tmp.path().join("a"),
        &flickr_images(),
        Images::TarGz,
        SplitFile::Loose,
    );
    let tgz = src.join("flickr30k-images.tar.gz");
    let bytes = std::fs::read(&tgz).unwrap();
    std::fs::write(&tgz, &bytes[..bytes.len() / 2]).unwrap();
    let err =
        prepare::prepare(&opts(Corpus::Flickr30k, &src, &tmp.path().join("d"), 16)).unwrap_err();
    assert!(matches!(err, Error::BadFile { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("flickr30k-images.tar.gz") && msg.contains("truncated"),
        "{msg}"
    );

    let coco = coco_source(&tmp.path().join("coco"));
    let z = coco.join("train2014.zip");
    let bytes = std::fs::read(&z).unwrap();
    std::fs::write(&z, &bytes[..bytes.len() - 30]).unwrap();
    let err = prepare::prepare(&opts(Corpus::Coco, &coco, &tmp.path().join("c"), 16)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("train2014.zip") && msg.contains("truncated"),
        "{msg}"
    );
}
