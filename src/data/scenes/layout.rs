//! Scene layout: the objects of a scene, their background, and the random
//! draws that place them.

use super::attributes::{
    Background, Fill, Shape, BACKGROUNDS, COLOURS, FILLS, MIN_CONTRAST, SHAPES,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One object, in unit coordinates (the image is `[0, 1]²`, y down).
#[derive(Debug, Clone)]
pub(super) struct Object {
    pub(super) shape: Shape,
    /// Index into [`COLOURS`].
    pub(super) colour: usize,
    pub(super) large: bool,
    pub(super) fill: Fill,
    /// Grid cell (0..3 each).
    pub(super) row: usize,
    pub(super) col: usize,
    pub(super) cx: f32,
    pub(super) cy: f32,
    /// Nominal radius.
    pub(super) r: f32,
    /// The exact (jittered) colour.
    pub(super) rgb: [f32; 3],
}

/// A whole scene, independent of the pixel size it is rendered at.
#[derive(Debug, Clone)]
pub(super) struct Scene {
    pub(super) background: Background,
    /// Background colour at the top and at the bottom (equal when plain).
    top: [f32; 3],
    bottom: [f32; 3],
    /// Amplitude of the grain (0 when none).
    pub(super) noise_amp: f32,
    pub(super) noise_seed: u64,
    pub(super) objects: Vec<Object>,
}

impl Scene {
    /// Background colour at height `y` (unit coordinates), without grain.
    pub(super) fn base_colour(&self, y: f32) -> [f32; 3] {
        let t = y.clamp(0.0, 1.0);
        let mut c = [0.0; 3];
        for (k, v) in c.iter_mut().enumerate() {
            *v = self.top[k] + (self.bottom[k] - self.top[k]) * t;
        }
        c
    }
}

/// Nominal radius of small and large objects, as a fraction of the image side.
const SMALL_R: f32 = 0.10;
const LARGE_R: f32 = 0.18;
/// How far an object may move from its cell centre.
const JITTER: f32 = 0.06;
/// Smallest gap kept between an object and the image border.
const BORDER: f32 = 0.03;
/// Smallest gap kept between the bounding boxes of two objects.
const GAP: f32 = 0.015;

pub(super) fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

/// Picks the first (plainest) word a bit more often than the others.
pub(super) fn pick_pref(rng: &mut ChaCha8Rng, xs: &[&'static str]) -> &'static str {
    if xs.len() == 1 || rng.random_bool(0.5) {
        xs[0]
    } else {
        xs[rng.random_range(1..xs.len())]
    }
}

pub(super) fn shuffle<T>(rng: &mut ChaCha8Rng, xs: &mut [T]) {
    for i in (1..xs.len()).rev() {
        let j = rng.random_range(0..=i);
        xs.swap(i, j);
    }
}

/// `base` grey plus a random tint of up to `tint` per channel.
fn tinted(rng: &mut ChaCha8Rng, base: f32, tint: f32) -> [f32; 3] {
    let mut c = [0.0; 3];
    for v in c.iter_mut() {
        *v = (base + rng.random_range(-tint..=tint)).clamp(0.0, 255.0);
    }
    c
}

fn dist(a: [f32; 3], b: [f32; 3]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Draws a random scene.
pub(super) fn sample_scene(rng: &mut ChaCha8Rng) -> Scene {
    let background = *pick(rng, &BACKGROUNDS);
    let (top, bottom, noise_amp) = match background {
        Background::Light => {
            let base = rng.random_range(212.0..245.0);
            let c = tinted(rng, base, 10.0);
            (c, c, 0.0)
        }
        Background::Dark => {
            let base = rng.random_range(15.0..55.0);
            let c = tinted(rng, base, 14.0);
            (c, c, 0.0)
        }
        Background::Grey => {
            let base = rng.random_range(100.0..160.0);
            let c = tinted(rng, base, 5.0);
            (c, c, 0.0)
        }
        Background::Gradient => loop {
            let a = tinted(rng, 128.0, 88.0);
            let b = tinted(rng, 128.0, 88.0);
            if dist(a, b) >= 120.0 {
                break (a, b, 0.0);
            }
        },
        Background::Noisy => {
            let base = rng.random_range(70.0..185.0);
            let c = tinted(rng, base, 22.0);
            (c, c, rng.random_range(22.0..36.0))
        }
    };
    let noise_seed = rng.random::<u64>();
    let mut scene = Scene {
        background,
        top,
        bottom,
        noise_amp,
        noise_seed,
        objects: Vec::new(),
    };

    let wanted = match rng.random_range(0..10) {
        0..=2 => 1,
        3..=6 => 2,
        _ => 3,
    };
    let mut cells: [usize; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 8];
    shuffle(rng, &mut cells);
    let mut next_cell = 0;
    for _ in 0..wanted {
        let shape = *pick(rng, &SHAPES);
        let large = rng.random_bool(0.5);
        let fill = *pick(rng, &FILLS);
        let r = if large { LARGE_R } else { SMALL_R };
        let (ex, ey) = shape.half_extent(r);
        let mut placed = None;
        'cells: while next_cell < cells.len() {
            let cell = cells[next_cell];
            next_cell += 1;
            let (row, col) = (cell / 3, cell % 3);
            for _ in 0..4 {
                let cx = ((col as f32 + 0.5) / 3.0 + rng.random_range(-JITTER..JITTER))
                    .clamp(ex + BORDER, 1.0 - ex - BORDER);
                let cy = ((row as f32 + 0.5) / 3.0 + rng.random_range(-JITTER..JITTER))
                    .clamp(ey + BORDER, 1.0 - ey - BORDER);
                let free = scene.objects.iter().all(|o| {
                    let (ox, oy) = o.shape.half_extent(o.r);
                    (cx - o.cx).abs() >= ex + ox + GAP || (cy - o.cy).abs() >= ey + oy + GAP
                });
                if free {
                    placed = Some((row, col, cx, cy));
                    break 'cells;
                }
            }
        }
        let Some((row, col, cx, cy)) = placed else {
            break;
        };
        // A colour that stands out from the background behind the object.
        let behind = scene.base_colour(cy);
        let ok: Vec<usize> = (0..COLOURS.len())
            .filter(|&c| dist(COLOURS[c].rgb, behind) >= MIN_CONTRAST)
            .collect();
        let colour = if ok.is_empty() {
            (0..COLOURS.len())
                .max_by(|&a, &b| {
                    dist(COLOURS[a].rgb, behind).total_cmp(&dist(COLOURS[b].rgb, behind))
                })
                .unwrap_or(0)
        } else {
            *pick(rng, &ok)
        };
        let mut rgb = COLOURS[colour].rgb;
        for v in rgb.iter_mut() {
            *v = (*v + rng.random_range(-10.0..=10.0)).clamp(0.0, 255.0);
        }
        scene.objects.push(Object {
            shape,
            colour,
            large,
            fill,
            row,
            col,
            cx,
            cy,
            r,
            rgb,
        });
    }
    scene
}

#[cfg(test)]
mod tests {
    use super::super::attributes::{BACKGROUNDS, COLOURS, FILLS, SHAPES};
    use super::super::make_sample;
    use super::super::tests::small;
    use crate::data::Split;

    #[test]
    fn object_counts_and_attributes_vary() {
        let cfg = small(8);
        let mut counts = [0usize; 4];
        let mut shapes = std::collections::HashSet::new();
        let mut colours = std::collections::HashSet::new();
        let mut fills = std::collections::HashSet::new();
        let mut backgrounds = std::collections::HashSet::new();
        for i in 0..200 {
            let (scene, _) = make_sample(&cfg, super::super::Stream::Split(Split::Train), i);
            counts[scene.objects.len()] += 1;
            backgrounds.insert(format!("{:?}", scene.background));
            for o in &scene.objects {
                shapes.insert(format!("{:?}", o.shape));
                colours.insert(o.colour);
                fills.insert(format!("{:?}", o.fill));
            }
            // Objects never share a grid cell.
            for (i, a) in scene.objects.iter().enumerate() {
                for b in &scene.objects[i + 1..] {
                    assert!((a.row, a.col) != (b.row, b.col));
                }
            }
        }
        assert_eq!(counts[0], 0);
        assert!(
            counts[1] > 0 && counts[2] > 0 && counts[3] > 0,
            "{counts:?}"
        );
        assert_eq!(shapes.len(), SHAPES.len());
        assert_eq!(colours.len(), COLOURS.len());
        assert_eq!(fills.len(), FILLS.len());
        assert_eq!(backgrounds.len(), BACKGROUNDS.len());
    }
}
