//! Captions: noun phrases, positions, relations and backgrounds put into
//! templates, five different captions per scene.

use super::attributes::{
    Fill, Shape, COLOURS, LARGE_WORDS, OUTLINED_WORDS, POSITIONS, SMALL_WORDS, SOLID_WORDS,
    STRIPED_WORDS,
};
use super::layout::{pick, pick_pref, shuffle, Object, Scene};
use super::{CAPTIONS_PER_IMAGE, MAX_WORDS};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// How many attributes a noun phrase spells out.
#[derive(Debug, Clone, Copy)]
enum Detail {
    Full,
    Brief,
}

/// "a" or "an" before `word`.
fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

fn with_article(phrase: String) -> String {
    format!("{} {phrase}", article(&phrase))
}

/// A noun phrase without article, e.g. "small striped red circle".
fn bare_np(rng: &mut ChaCha8Rng, o: &Object, detail: Detail) -> String {
    let (p_size, p_solid, p_fill) = match detail {
        Detail::Full => (0.8, 0.3, 0.85),
        Detail::Brief => (0.45, 0.1, 0.55),
    };
    let size = if rng.random_bool(p_size) {
        Some(pick_pref(
            rng,
            if o.large { LARGE_WORDS } else { SMALL_WORDS },
        ))
    } else {
        None
    };
    let colour = pick_pref(rng, COLOURS[o.colour].words);
    let mut noun = pick_pref(rng, o.shape.nouns());
    let mut fill_word = None;
    let mut suffix = None;
    let circle = o.shape == Shape::Circle;
    match o.fill {
        Fill::Solid => {
            if circle && rng.random_bool(0.2) {
                noun = if o.large { "ball" } else { "dot" };
            }
            if rng.random_bool(p_solid) {
                fill_word = Some(pick_pref(rng, SOLID_WORDS));
            }
        }
        Fill::Striped => {
            if rng.random_bool(p_fill) {
                if rng.random_bool(0.25) {
                    suffix = Some("with stripes");
                } else {
                    fill_word = Some(pick_pref(rng, STRIPED_WORDS));
                }
            }
        }
        Fill::Outlined => {
            if circle && rng.random_bool(0.25) {
                noun = "ring";
            } else if rng.random_bool(p_fill) {
                if rng.random_bool(0.25) {
                    suffix = Some("outline");
                } else {
                    fill_word = Some(pick_pref(rng, OUTLINED_WORDS));
                }
            }
        }
    }
    let words: Vec<&str> = [size, fill_word, Some(colour), Some(noun), suffix]
        .into_iter()
        .flatten()
        .collect();
    words.join(" ")
}

/// A noun phrase with its article, e.g. "a small striped red circle".
fn np(rng: &mut ChaCha8Rng, o: &Object, detail: Detail) -> String {
    with_article(bare_np(rng, o, detail))
}

/// Where the object is, e.g. "in the top left corner".
fn position(rng: &mut ChaCha8Rng, o: &Object) -> &'static str {
    pick_pref(rng, POSITIONS[o.row][o.col])
}

/// How `a` stands relative to `b`, e.g. "to the left of" (the objects are
/// always in different grid cells).
fn relation(rng: &mut ChaCha8Rng, a: &Object, b: &Object) -> &'static str {
    use std::cmp::Ordering::*;
    let horizontal: Option<&[&'static str]> = match a.col.cmp(&b.col) {
        Less => Some(&["to the left of", "left of", "on the left of"]),
        Greater => Some(&["to the right of", "right of", "on the right of"]),
        Equal => None,
    };
    let vertical: Option<&[&'static str]> = match a.row.cmp(&b.row) {
        Less => Some(&["above", "higher up than"]),
        Greater => Some(&["below", "beneath", "under"]),
        Equal => None,
    };
    match (horizontal, vertical) {
        (Some(h), None) => pick_pref(rng, h),
        (None, Some(v)) => pick_pref(rng, v),
        (Some(h), Some(v)) => match rng.random_range(0..3) {
            0 => pick_pref(rng, h),
            1 => pick_pref(rng, v),
            _ => match (a.row < b.row, a.col < b.col) {
                (true, true) => "above and to the left of",
                (true, false) => "above and to the right of",
                (false, true) => "below and to the left of",
                (false, false) => "below and to the right of",
            },
        },
        // Same cell cannot happen; stay truthful anyway.
        (None, None) => "next to",
    }
}

/// The background, e.g. "on a dark background".
fn background(rng: &mut ChaCha8Rng, scene: &Scene) -> String {
    let prep = pick_pref(rng, &["on", "against"]);
    let adj = pick_pref(rng, scene.background.adjectives());
    let noun = pick_pref(rng, &["background", "backdrop"]);
    format!("{prep} {} {adj} {noun}", article(adj))
}

/// Number of templates per object count, and which of them are spatial.
fn templates(n_objects: usize) -> (usize, &'static [usize]) {
    match n_objects {
        1 => (11, &[1, 3, 4, 5, 7, 9, 10]),
        2 => (9, &[0, 1, 4, 5, 6, 7, 8]),
        _ => (8, &[2, 3, 4, 6, 7]),
    }
}

/// One caption of `scene` from template `t` (see [`templates`]).
fn caption(rng: &mut ChaCha8Rng, scene: &Scene, t: usize) -> String {
    let objs = &scene.objects;
    match objs.len() {
        0 => format!("an empty picture {}", background(rng, scene)),
        1 => one_object_caption(rng, scene, &objs[0], t),
        2 => {
            let pair = pair_in_random_order(rng, objs);
            two_object_caption(rng, scene, pair, t)
        }
        _ => {
            let triple = triple_in_random_order(rng, objs);
            three_object_caption(rng, scene, triple, t)
        }
    }
}

/// Caption template `t` of a scene with the single object `o`.
fn one_object_caption(rng: &mut ChaCha8Rng, scene: &Scene, o: &Object, t: usize) -> String {
    match t {
        0 => np(rng, o, Detail::Full),
        1 => format!("{} {}", np(rng, o, Detail::Full), position(rng, o)),
        2 => format!("{} {}", np(rng, o, Detail::Full), background(rng, scene)),
        3 => format!(
            "{} {} {}",
            np(rng, o, Detail::Brief),
            position(rng, o),
            background(rng, scene)
        ),
        4 => format!("there is {} {}", np(rng, o, Detail::Full), position(rng, o)),
        5 => format!("{} there is {}", position(rng, o), np(rng, o, Detail::Full)),
        6 => format!(
            "a picture of {} {}",
            np(rng, o, Detail::Full),
            background(rng, scene)
        ),
        7 => format!(
            "a single {} {}",
            bare_np(rng, o, Detail::Full),
            position(rng, o)
        ),
        8 => format!(
            "just one {} {}",
            bare_np(rng, o, Detail::Full),
            background(rng, scene)
        ),
        9 => format!("{} sitting {}", np(rng, o, Detail::Full), position(rng, o)),
        _ => {
            let adj = pick_pref(rng, scene.background.adjectives());
            format!(
                "{} {adj} background with {} {}",
                article(adj),
                np(rng, o, Detail::Full),
                position(rng, o)
            )
        }
    }
}

/// The two objects of a scene, in an order drawn at random.
fn pair_in_random_order<'a>(rng: &mut ChaCha8Rng, objs: &'a [Object]) -> [&'a Object; 2] {
    if rng.random_bool(0.5) {
        [&objs[0], &objs[1]]
    } else {
        [&objs[1], &objs[0]]
    }
}

/// Caption template `t` of a scene with the two objects `a` and `b`.
fn two_object_caption(
    rng: &mut ChaCha8Rng,
    scene: &Scene,
    [a, b]: [&Object; 2],
    t: usize,
) -> String {
    match t {
        0 => format!(
            "{} {} {}",
            np(rng, a, Detail::Full),
            relation(rng, a, b),
            np(rng, b, Detail::Full)
        ),
        1 => format!(
            "{} {} {} {}",
            np(rng, a, Detail::Brief),
            relation(rng, a, b),
            np(rng, b, Detail::Brief),
            background(rng, scene)
        ),
        2 => format!(
            "{} and {}",
            np(rng, a, Detail::Full),
            np(rng, b, Detail::Full)
        ),
        3 => format!(
            "{} and {} {}",
            np(rng, a, Detail::Full),
            np(rng, b, Detail::Full),
            background(rng, scene)
        ),
        4 => format!(
            "{} {} and {} {}",
            np(rng, a, Detail::Brief),
            position(rng, a),
            np(rng, b, Detail::Brief),
            position(rng, b)
        ),
        5 => format!(
            "{} is {} and {} is {}",
            position(rng, a),
            np(rng, a, Detail::Brief),
            position(rng, b),
            np(rng, b, Detail::Brief)
        ),
        6 => format!(
            "two shapes: {} {} {}",
            np(rng, a, Detail::Full),
            relation(rng, a, b),
            np(rng, b, Detail::Full)
        ),
        7 => format!(
            "there is {} {} {}",
            np(rng, a, Detail::Full),
            relation(rng, a, b),
            np(rng, b, Detail::Full)
        ),
        _ => format!(
            "{} {} with {} {} it",
            np(rng, a, Detail::Brief),
            position(rng, a),
            np(rng, b, Detail::Brief),
            relation(rng, b, a)
        ),
    }
}

/// The three objects of a scene, in an order drawn at random.
fn triple_in_random_order<'a>(rng: &mut ChaCha8Rng, objs: &'a [Object]) -> [&'a Object; 3] {
    let mut order = [0usize, 1, 2];
    shuffle(rng, &mut order);
    [&objs[order[0]], &objs[order[1]], &objs[order[2]]]
}

/// Caption template `t` of a scene with the three objects `a`, `b` and `c`.
fn three_object_caption(
    rng: &mut ChaCha8Rng,
    scene: &Scene,
    [a, b, c]: [&Object; 3],
    t: usize,
) -> String {
    match t {
        0 => format!(
            "{}, {} and {}",
            np(rng, a, Detail::Full),
            np(rng, b, Detail::Full),
            np(rng, c, Detail::Full)
        ),
        1 => format!(
            "three shapes: {}, {} and {}",
            np(rng, a, Detail::Brief),
            np(rng, b, Detail::Brief),
            np(rng, c, Detail::Brief)
        ),
        2 => format!(
            "{} {} {}, and {} {}",
            np(rng, a, Detail::Brief),
            relation(rng, a, b),
            np(rng, b, Detail::Brief),
            np(rng, c, Detail::Brief),
            position(rng, c)
        ),
        3 => format!(
            "{} {} {} {}",
            np(rng, a, Detail::Full),
            relation(rng, a, b),
            np(rng, b, Detail::Full),
            background(rng, scene)
        ),
        4 => format!(
            "{} {}, {} {} and {} {}",
            np(rng, a, Detail::Brief),
            position(rng, a),
            np(rng, b, Detail::Brief),
            position(rng, b),
            np(rng, c, Detail::Brief),
            position(rng, c)
        ),
        5 => format!(
            "three objects {}: {}, {} and {}",
            background(rng, scene),
            np(rng, a, Detail::Brief),
            np(rng, b, Detail::Brief),
            np(rng, c, Detail::Brief)
        ),
        6 => format!(
            "three shapes, including {} {} {}",
            np(rng, a, Detail::Full),
            relation(rng, a, b),
            np(rng, b, Detail::Full)
        ),
        _ => format!(
            "{} {} and {} {} {}",
            np(rng, a, Detail::Brief),
            position(rng, a),
            np(rng, b, Detail::Brief),
            relation(rng, b, c),
            np(rng, c, Detail::Brief)
        ),
    }
}

/// Exactly five different captions of at most [`MAX_WORDS`] words; the first
/// one is always spatial.
pub(super) fn make_captions(rng: &mut ChaCha8Rng, scene: &Scene) -> Vec<String> {
    let (count, spatial) = templates(scene.objects.len());
    let mut out: Vec<String> = Vec::with_capacity(CAPTIONS_PER_IMAGE);
    fn push(c: String, out: &mut Vec<String>) {
        if c.split_whitespace().count() <= MAX_WORDS && !out.contains(&c) {
            out.push(c);
        }
    }
    // First pass: every template at most once, a spatial one first; later
    // passes reuse templates with fresh synonyms.
    for pass in 0..20 {
        let mut order: Vec<usize> = (0..count).collect();
        shuffle(rng, &mut order);
        if pass == 0 {
            let first = *pick(rng, spatial);
            order.retain(|&t| t != first);
            order.insert(0, first);
        }
        for t in order {
            if out.len() == CAPTIONS_PER_IMAGE {
                return out;
            }
            for _ in 0..3 {
                let before = out.len();
                push(caption(rng, scene, t), &mut out);
                if out.len() > before {
                    break;
                }
            }
        }
    }
    // Practically unreachable: distinct prefixes guarantee five captions.
    let all: Vec<String> = scene
        .objects
        .iter()
        .map(|o| np(rng, o, Detail::Brief))
        .collect();
    for prefix in [
        "a picture of",
        "an image of",
        "a drawing of",
        "a scene with",
        "a render of",
        "a view of",
    ] {
        if out.len() == CAPTIONS_PER_IMAGE {
            break;
        }
        push(format!("{prefix} {}", all.join(" and ")), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::small;
    use super::super::{generate, MAX_WORDS};
    use crate::data::{Dataset, Sample, Split};

    fn all_samples(ds: &Dataset) -> impl Iterator<Item = &Sample> {
        Split::ALL.into_iter().flat_map(move |s| ds.split(s).iter())
    }

    #[test]
    fn five_distinct_short_lowercase_captions() {
        let ds = generate(&small(5)).unwrap();
        for s in all_samples(&ds) {
            assert_eq!(s.captions.len(), 5, "{}", s.filename);
            let mut c = s.captions.clone();
            c.sort();
            c.dedup();
            assert_eq!(
                c.len(),
                5,
                "duplicate captions in {}: {:?}",
                s.filename,
                s.captions
            );
            for cap in &s.captions {
                let words = cap.split_whitespace().count();
                assert!((2..=MAX_WORDS).contains(&words), "{cap:?}");
                assert_eq!(cap, &cap.to_lowercase());
                assert_eq!(cap, cap.trim());
                assert!(!cap.contains("  "), "{cap:?}");
            }
        }
    }

    #[test]
    fn captions_mention_spatial_relations() {
        let ds = generate(&small(9)).unwrap();
        let spatial = [
            "left", "right", "above", "below", "beneath", "under", "higher", "top", "bottom",
            "centre", "middle",
        ];
        let is_spatial = |c: &str| c.split_whitespace().any(|w| spatial.contains(&w));
        let mut relations = 0;
        for s in all_samples(&ds) {
            assert!(
                s.captions.iter().any(|c| is_spatial(c)),
                "{}: {:?}",
                s.filename,
                s.captions
            );
            relations += s
                .captions
                .iter()
                .filter(|c| c.contains(" of ") || c.contains("above") || c.contains("below"))
                .count();
        }
        assert!(relations > 50, "only {relations} relational captions");
    }
}
