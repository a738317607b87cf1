//! Rendering a scene to an RGB image: the background with its grain, then
//! each object anti-aliased by supersampling.

use super::attributes::Fill;
use super::layout::{Object, Scene};
use super::mix;
use image::{Rgb, RgbImage};

/// Renders a scene at `size` × `size` pixels; `with_objects: false` draws the
/// background only.
pub(super) fn render(scene: &Scene, size: u32, with_objects: bool) -> RgbImage {
    let s = size as usize;
    let sf = size as f32;
    let mut buf = vec![0.0f32; s * s * 3];
    // Grain cells scale with the image so the texture looks alike at every size.
    let grain = (size / 32).max(1) as usize;
    for y in 0..s {
        let base = scene.base_colour((y as f32 + 0.5) / sf);
        for x in 0..s {
            let n = if scene.noise_amp > 0.0 {
                let cell = ((y / grain) as u64) << 32 | (x / grain) as u64;
                let h = mix(scene.noise_seed ^ cell);
                // Two uniform draws summed: a soft, roughly bell-shaped grain.
                let a = (h >> 40) as f32 / (1u64 << 24) as f32;
                let b = ((h >> 8) & 0xFF_FFFF) as f32 / (1u64 << 24) as f32;
                (a + b - 1.0) * scene.noise_amp
            } else {
                0.0
            };
            let p = &mut buf[(y * s + x) * 3..(y * s + x) * 3 + 3];
            for (v, b) in p.iter_mut().zip(base) {
                *v = b + n;
            }
        }
    }
    if with_objects {
        for o in &scene.objects {
            draw_object(&mut buf, s, o);
        }
    }
    let mut img = RgbImage::new(size, size);
    for (i, px) in img.pixels_mut().enumerate() {
        let v = &buf[i * 3..i * 3 + 3];
        *px = Rgb([to_u8(v[0]), to_u8(v[1]), to_u8(v[2])]);
    }
    img
}

fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// Samples per pixel side for anti-aliasing.
const SUPERSAMPLE: usize = 4;

/// Composites one object onto the float buffer with 4 × 4 supersampling.
fn draw_object(buf: &mut [f32], s: usize, o: &Object) {
    let sf = s as f32;
    let (cx, cy, r) = (o.cx * sf, o.cy * sf, o.r * sf);
    let (ex, ey) = o.shape.half_extent(r);
    // Line width of outlines and stripe borders, and the width of one stripe
    // measured along x + y (S / 16 across the stripes: 2 px at 32 px).
    let line = (0.045 * sf).max(1.2);
    let period = (sf / 16.0).max(1.5) * std::f32::consts::SQRT_2;
    let x0 = ((cx - ex - 1.0).floor().max(0.0)) as usize;
    let x1 = ((cx + ex + 1.0).ceil() as usize).min(s);
    let y0 = ((cy - ey - 1.0).floor().max(0.0)) as usize;
    let y1 = ((cy + ey + 1.0).ceil() as usize).min(s);
    let step = 1.0 / SUPERSAMPLE as f32;
    let total = (SUPERSAMPLE * SUPERSAMPLE) as f32;
    for y in y0..y1 {
        for x in x0..x1 {
            let mut hits = 0usize;
            for sy in 0..SUPERSAMPLE {
                let dy = y as f32 + (sy as f32 + 0.5) * step - cy;
                for sx in 0..SUPERSAMPLE {
                    let dx = x as f32 + (sx as f32 + 0.5) * step - cx;
                    let d = o.shape.sdf(dx, dy, r);
                    let inside = d <= 0.0
                        && match o.fill {
                            Fill::Solid => true,
                            Fill::Outlined => d > -line,
                            Fill::Striped => {
                                d > -line
                                    || ((dx + dy) / period + 0.5).floor().rem_euclid(2.0) < 1.0
                            }
                        };
                    hits += inside as usize;
                }
            }
            if hits > 0 {
                let a = hits as f32 / total;
                let p = &mut buf[(y * s + x) * 3..(y * s + x) * 3 + 3];
                for (v, c) in p.iter_mut().zip(o.rgb) {
                    *v += (c - *v) * a;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::make_sample;
    use super::super::tests::small;
    use super::render;
    use crate::data::Split;

    #[test]
    fn every_image_has_objects_drawn() {
        let cfg = small(6);
        for split in Split::ALL {
            for i in 0..10 {
                let (scene, sample) = make_sample(&cfg, super::super::Stream::Split(split), i);
                let bg = render(&scene, cfg.image_size, false);
                let changed = sample
                    .image
                    .pixels()
                    .zip(bg.pixels())
                    .filter(|(p, q)| (0..3).any(|k| (p.0[k] as i32 - q.0[k] as i32).abs() > 40))
                    .count();
                assert!(
                    changed >= 10 * scene.objects.len(),
                    "{split} {i}: only {changed} object pixels for {} objects",
                    scene.objects.len()
                );
            }
        }
    }
}
