//! Pictures of data and distilled sets: the grid's geometry, pixels and text,
//! PNG and evcxr output, nearest captions, and the export of a distilled set
//! on a tiny scenes experiment.

use base64::Engine;
use candle_core::{Device, Tensor};
use image::{Rgb, RgbImage};
use vl_distill::config::ImageNorm;
use vl_distill::config::{Config, InitKind};
use vl_distill::data::Split;
use vl_distill::display::grid::{CAPTION_GAP, LINE, PAD};
use vl_distill::display::text::CELL;
use vl_distill::display::{
    distilled_grid, export_distilled, nearest_captions, upscale, ExportIndex, ImageGrid,
};
use vl_distill::experiment::Experiment;
use vl_distill::stage1::sgd::TowerLr;
use vl_distill::stage2::distilled_set::DistilledSet;
use vl_distill::stage2::similarity::LearnedSimilarity;

/// A picture whose every pixel differs from its neighbours (so a misplaced
/// or misscaled tile shows), with all channels ≥ 128 (so no pixel of it is dark).
fn pattern(w: u32, h: u32, seed: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        Rgb([
            128 + ((x * 5 + y * 3 + seed as u32) % 128) as u8,
            128 + ((x * 11 + y * 7 + 2 * seed as u32) % 128) as u8,
            128 + ((x + y * 13 + 3 * seed as u32) % 128) as u8,
        ])
    })
}

fn is_dark(p: &Rgb<u8>) -> bool {
    p.0.iter().all(|&c| c < 100)
}

/// Dark pixels in the rectangle at (x, y) of size w × h.
fn dark_in(img: &RgbImage, x: u32, y: u32, w: u32, h: u32) -> usize {
    (y..y + h)
        .flat_map(|yy| (x..x + w).map(move |xx| (xx, yy)))
        .filter(|&(xx, yy)| is_dark(img.get_pixel(xx, yy)))
        .count()
}

#[test]
fn grid_size_follows_columns_scale_and_caption_lines() {
    for (columns, n, size, scale, lines) in [
        (3usize, 7usize, 24u32, None, 4usize),
        (4, 8, 32, None, 2),
        (2, 5, 24, Some(2u32), 0),
        (5, 5, 10, Some(3), 1),
    ] {
        let mut grid = ImageGrid::new(columns).with_caption_lines(lines);
        if let Some(s) = scale {
            grid = grid.with_scale(s);
        }
        for i in 0..n {
            grid.push(pattern(size, size, i as u8), format!("caption {i}"));
        }
        let s = scale.unwrap_or(96u32.div_ceil(size));
        let tile = size * s;
        let cap = if lines == 0 {
            0
        } else {
            CAPTION_GAP + lines as u32 * LINE
        };
        let rows = n.div_ceil(columns) as u32;
        let img = grid.render();
        assert_eq!(
            img.dimensions(),
            (
                PAD + columns as u32 * (tile + PAD),
                PAD + rows * (tile + cap + PAD)
            ),
            "{columns} columns, {n} tiles of {size} px, scale {s}, {lines} lines"
        );
        assert_eq!(grid.layout().scale, s);
    }
    // a title adds one line and a pad on top
    let mut grid = ImageGrid::new(2);
    grid.push(pattern(24, 24, 0), "");
    let plain = grid.render().height();
    let titled = grid.clone().with_title("hi").render().height();
    assert_eq!(titled, plain + LINE + PAD);
}

#[test]
fn tiles_are_the_upscaled_source_pixels() {
    let sources: Vec<RgbImage> = (0..5).map(|i| pattern(24, 24, 40 * i)).collect();
    let mut grid = ImageGrid::new(3).with_title("pixels");
    for (i, s) in sources.iter().enumerate() {
        grid.push(s.clone(), format!("image {i}"));
    }
    let layout = grid.layout();
    assert_eq!(layout.scale, 4);
    let page = grid.render();
    for (i, src) in sources.iter().enumerate() {
        let (ox, oy) = layout.tile_origin(i);
        for y in 0..96 {
            for x in 0..96 {
                assert_eq!(
                    page.get_pixel(ox + x, oy + y),
                    src.get_pixel(x / 4, y / 4),
                    "tile {i} at ({x}, {y})"
                );
            }
        }
    }
}

#[test]
fn from_tensor_undoes_the_normalisation() {
    let norm = ImageNorm::default();
    let sources: Vec<RgbImage> = (0..3).map(|i| pattern(16, 16, 70 * i)).collect();
    let refs: Vec<&RgbImage> = sources.iter().collect();
    let x = norm.to_tensor(&refs, &Device::Cpu).unwrap();
    let captions: Vec<String> = (0..3).map(|i| format!("c{i}")).collect();
    let grid = ImageGrid::from_tensor(&x, &norm, &captions, 2).unwrap();
    assert_eq!(grid.len(), 3);
    for (tile, (src, cap)) in grid.tiles().iter().zip(sources.iter().zip(&captions)) {
        assert_eq!(&tile.image, src);
        assert_eq!(&tile.caption, cap);
    }
    // no captions is fine, a wrong number or a wrong shape is not
    assert!(ImageGrid::from_tensor(&x, &norm, &[], 2).is_ok());
    let e = ImageGrid::from_tensor(&x, &norm, &captions[..2], 2).unwrap_err();
    assert!(e.to_string().contains("3 images but 2 captions"), "{e}");
    let gray = Tensor::zeros((2, 1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(ImageGrid::from_tensor(&gray, &norm, &[], 2).is_err());
}

#[test]
fn captions_draw_dark_text_only_in_their_own_caption_area() {
    let mut grid = ImageGrid::new(2);
    grid.push(pattern(24, 24, 1), "a red circle");
    grid.push(pattern(24, 24, 2), "");
    let l = grid.layout();
    let page = grid.render();
    let (x0, y0) = l.caption_origin(0);
    let (x1, y1) = l.caption_origin(1);
    let inked = dark_in(&page, x0, y0, l.tile_width, l.caption_height);
    assert!(inked > 20, "the caption drew {inked} dark pixels");
    assert_eq!(dark_in(&page, x1, y1, l.tile_width, l.caption_height), 0);
    // nothing dark anywhere else: all of it is text of tile 0
    assert_eq!(
        dark_in(&page, 0, 0, page.width(), page.height()),
        inked,
        "dark pixels outside the caption area"
    );
    // a short caption takes the first line only
    assert_eq!(
        dark_in(&page, x0, y0 + CAPTION_GAP + LINE, l.tile_width, 3 * LINE),
        0
    );
}

#[test]
fn long_captions_wrap_to_the_tile_width_and_stop_at_the_line_limit() {
    let long = "a small green triangle to the left of a large purple circle on a striped \
                background under a yellow star";
    // the dark pixels of each caption line of tile 0, as (x, y) inside the line
    let caption_lines = |lines: usize| -> Vec<Vec<(u32, u32)>> {
        let mut grid = ImageGrid::new(2).with_caption_lines(lines);
        grid.push(pattern(24, 24, 1), long);
        grid.push(pattern(24, 24, 2), ""); // its caption area is right of the first
        let l = grid.layout();
        let page = grid.render();
        let (x0, y0) = l.caption_origin(0);
        let (x1, y1) = l.caption_origin(1);
        // wrapped text never spills into the neighbour's caption area or the gap
        assert_eq!(dark_in(&page, x1, y1, l.tile_width, l.caption_height), 0);
        assert_eq!(
            dark_in(&page, x0 + l.tile_width, y0, PAD, l.caption_height),
            0
        );
        assert_eq!(l.caption_chars, (96 / CELL) as usize);
        (0..lines as u32)
            .map(|k| {
                let top = y0 + CAPTION_GAP + k * LINE;
                (0..LINE)
                    .flat_map(|y| (0..l.tile_width).map(move |x| (x, y)))
                    .filter(|&(x, y)| is_dark(page.get_pixel(x0 + x, top + y)))
                    .collect()
            })
            .collect()
    };
    // 12 characters per line: the text needs more than 4 lines, so every line is used
    let four = caption_lines(4);
    assert!(four.iter().all(|l| !l.is_empty()));
    let two = caption_lines(2);
    assert!(two.iter().all(|l| !l.is_empty()));
    // the first line is the same text however many lines there are
    assert_eq!(two[0], four[0]);
    // the last line of the 2-line grid is cut ("…"), so it differs from the
    // 4-line grid's second line
    assert_ne!(two[1], four[1]);
    // all ink of a line is inside the 12 character cells
    assert!(four.iter().flatten().all(|&(x, _)| x < 12 * CELL));
}

#[test]
fn png_bytes_decode_to_the_rendered_picture() {
    let mut grid = ImageGrid::new(3).with_title("round trip");
    for i in 0..4 {
        grid.push(pattern(24, 24, i), format!("tile {i}"));
    }
    let page = grid.render();
    let png = grid.to_png_bytes().unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let back = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(back.dimensions(), page.dimensions());
    assert_eq!(back, page);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/grid.png");
    grid.save_png(&path).unwrap();
    assert_eq!(image::open(&path).unwrap().to_rgb8(), page);

    // what evcxr is given: the same PNG in base64 between its markers
    let shown = grid.evcxr_content().unwrap();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], "EVCXR_BEGIN_CONTENT image/png");
    assert_eq!(lines[2], "EVCXR_END_CONTENT");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(lines[1])
        .unwrap();
    assert_eq!(decoded, png);
}

#[test]
fn saving_to_an_unwritable_path_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    // a plain file where a folder should be: fails even for root
    let blocker = dir.path().join("not_a_folder");
    std::fs::write(&blocker, b"x").unwrap();
    let mut grid = ImageGrid::new(1);
    grid.push(pattern(8, 8, 0), "x");
    for path in [blocker.join("grid.png"), blocker.join("deeper/grid.png")] {
        let e = grid.save_png(&path).unwrap_err();
        assert!(
            e.to_string().contains(path.to_str().unwrap()),
            "error does not name {}: {e}",
            path.display()
        );
    }
    assert!(!blocker.join("grid.png").exists());
}

/// A `[n, d]` tensor of deterministic pseudo-random values in [-1, 1).
fn pseudo_random(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            (0..d)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}

fn tensor(rows: &[Vec<f32>]) -> Tensor {
    let d = rows[0].len();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), d), &Device::Cpu).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn nearest_captions_finds_a_planted_match_and_orders_by_cosine() {
    let mut real = pseudo_random(60, 16, 1);
    real[41] = real[12].clone(); // a duplicate: ties go to the lower index
    let mut texts = pseudo_random(4, 16, 2);
    texts[0] = real[27].iter().map(|v| v * 2.5).collect(); // same direction
    texts[2] = real[12].clone();
    let near = nearest_captions(&tensor(&texts), &tensor(&real), 5).unwrap();
    assert_eq!(near.len(), 4);
    assert_eq!(near[0][0].0, 27);
    assert!((near[0][0].1 - 1.0).abs() < 1e-5, "{:?}", near[0][0]);
    assert!(near[0][1].1 < 0.99);
    assert_eq!((near[2][0].0, near[2][1].0), (12, 41));
    for (m, row) in near.iter().enumerate() {
        assert_eq!(row.len(), 5);
        // the cosines are right and the k best, best first
        let mut all: Vec<(usize, f64)> = real
            .iter()
            .enumerate()
            .map(|(c, r)| (c, cosine(&texts[m], r)))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (got, want) in row.iter().zip(&all) {
            assert!((got.1 as f64 - want.1).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        let got: Vec<usize> = row.iter().map(|p| p.0).collect();
        let want: Vec<usize> = all.iter().take(5).map(|p| p.0).collect();
        assert_eq!(got, want, "row {m}");
        assert!(row.windows(2).all(|w| w[0].1 >= w[1].1));
    }
    // more neighbours than captions: all of them; a dimension mismatch: an error
    let all = nearest_captions(&tensor(&texts), &tensor(&real[..3]), 10).unwrap();
    assert!(all.iter().all(|r| r.len() == 3));
    let short = tensor(&pseudo_random(2, 8, 3));
    let e = nearest_captions(&short, &tensor(&real), 1).unwrap_err();
    assert!(e.to_string().contains("8-d"), "{e}");
}

fn tiny_experiment() -> Experiment {
    let mut c = Config::smoke();
    c.apply_overrides(&[r#"data.source={"kind":"scenes","train":40,"val":10,"test":10}"#])
        .unwrap();
    Experiment::new(c, vl_distill::device::for_tests(), None).unwrap()
}

fn real_set(exp: &Experiment, pairs: usize) -> DistilledSet {
    let lr = TowerLr {
        image: 0.1,
        text: 0.05,
    };
    DistilledSet::init(
        exp,
        pairs,
        InitKind::Real,
        InitKind::Real,
        lr,
        exp.config.seed,
    )
    .unwrap()
}

#[test]
fn export_writes_a_png_per_pair_and_the_pairs_own_captions() {
    let exp = tiny_experiment();
    let m = 8;
    let set = real_set(&exp, m);
    // the pairs DistilledSet::init drew: caption indices into the train split
    let picked = exp.train.random_pairs(m, exp.config.seed).unwrap();
    let (captions, owner) = exp.dataset.captions(Split::Train);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("distilled");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("pair_050.png"), b"stale").unwrap();
    std::fs::write(out.join("notes.txt"), b"mine").unwrap();
    let summary = export_distilled(&set, &exp, &out, 3).unwrap();
    assert_eq!(summary.images.len(), m);
    assert!(!out.join("pair_050.png").exists(), "stale pair left");
    assert!(out.join("notes.txt").exists());

    for (j, path) in summary.images.iter().enumerate() {
        assert_eq!(path, &out.join(format!("pair_{j:03}.png")));
        let png = image::open(path).unwrap().to_rgb8();
        assert_eq!(png.dimensions(), (96, 96)); // 24 px × 4
                                                // a real-initialised image is its training image, de-normalised and upscaled
        let src = &exp.dataset.train[owner[picked[j] as usize]].image;
        assert_eq!(png, upscale(src, 4), "pair {j}");
    }

    let index: ExportIndex =
        serde_json::from_str(&std::fs::read_to_string(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index, summary.index);
    assert_eq!((index.pairs, index.nearest_k, index.scale), (m, 3, 4));
    assert_eq!(index.image_size, [24, 24]);
    assert!((index.lr_image - 0.1).abs() < 1e-12 && (index.lr_text - 0.05).abs() < 1e-12);
    for (j, item) in index.items.iter().enumerate() {
        assert_eq!(item.file, format!("pair_{j:03}.png"));
        assert_eq!(item.nearest.len(), 3);
        let best = &item.nearest[0];
        assert_eq!(best.caption, captions[picked[j] as usize], "pair {j}");
        assert!(best.cosine > 0.9999, "pair {j}: {}", best.cosine);
        assert_eq!(best.caption, captions[best.caption_index]);
        assert_eq!(
            best.image,
            exp.dataset.train[owner[best.caption_index]].filename
        );
        assert!(item.nearest.windows(2).all(|w| w[0].cosine >= w[1].cosine));
    }

    let md = std::fs::read_to_string(out.join("index.md")).unwrap();
    assert!(md.contains("| pair | image |"), "{md}");
    assert!(md.contains("![pair 0](pair_000.png)"));
    assert!(md.contains(&format!("1.000 {}", index.items[0].nearest[0].caption)));
    assert_eq!(md.matches("![pair ").count(), m);

    assert!(index.items.iter().all(|i| i.partners.is_empty()));

    // with a learned similarity, each pair lists its strongest partners
    let mut linked = set.clone();
    let mut s = vec![vec![0f32; m]; m];
    for (i, row) in s.iter_mut().enumerate() {
        row[i] = 1.0;
        row[(i + 3) % m] = 0.8;
        row[(i + 5) % m] = 0.3;
    }
    let s = Tensor::new(s, &Device::Cpu).unwrap();
    linked.similarity = Some(LearnedSimilarity::from_factors(vec![s], None).unwrap());
    let with = export_distilled(&linked, &exp, &out, 2).unwrap();
    for (i, item) in with.index.items.iter().enumerate() {
        let got: Vec<(usize, f32)> = item
            .partners
            .iter()
            .map(|p| (p.pair, p.similarity))
            .collect();
        assert_eq!(
            got,
            vec![((i + 3) % m, 0.8), ((i + 5) % m, 0.3)],
            "pair {i}"
        );
    }
    let md = std::fs::read_to_string(out.join("index.md")).unwrap();
    assert!(md.contains("learned partners: 3 (0.80), 5 (0.30)"), "{md}");

    // a smaller set exported again into the same folder leaves no old pairs
    let small = real_set(&exp, 2);
    export_distilled(&small, &exp, &out, 1).unwrap();
    assert!(out.join("pair_001.png").exists() && !out.join("pair_002.png").exists());
}

#[test]
fn distilled_grid_captions_each_pair_with_its_nearest_real_caption() {
    let exp = tiny_experiment();
    let set = real_set(&exp, 6);
    let picked = exp.train.random_pairs(6, exp.config.seed).unwrap();
    let (captions, owner) = exp.dataset.captions(Split::Train);
    let grid = distilled_grid(&set, &exp, "initial set").unwrap();
    assert_eq!(grid.len(), 6);
    for (j, tile) in grid.tiles().iter().enumerate() {
        assert_eq!(tile.caption, captions[picked[j] as usize]);
        assert_eq!(
            tile.image,
            exp.dataset.train[owner[picked[j] as usize]].image
        );
    }
    assert_eq!(grid.layout().columns, 6);

    // at most 100 pairs are drawn; texts of another width are refused
    let d = exp.train.texts.dim(1).unwrap();
    let many = DistilledSet {
        images: Tensor::zeros((120, 3, 24, 24), candle_core::DType::F32, &Device::Cpu).unwrap(),
        texts: tensor(&pseudo_random(120, d, 5)),
        log_lr_image: 0.0,
        log_lr_text: 0.0,
        image_encoder: None,
        space: Default::default(),
        backbone: None,
        similarity: None,
    };
    let grid = distilled_grid(&many, &exp, "many").unwrap();
    assert_eq!(grid.len(), 100);
    assert_eq!((grid.layout().columns, grid.layout().rows), (10, 10));
    let wrong = DistilledSet {
        texts: tensor(&pseudo_random(120, d + 1, 5)),
        ..many
    };
    let e = distilled_grid(&wrong, &exp, "wrong").unwrap_err();
    assert!(e.to_string().contains("another configuration"), "{e}");
}
