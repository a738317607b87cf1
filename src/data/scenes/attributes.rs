//! The attributes of scene objects and backgrounds (shapes, colours, fills,
//! background kinds, grid positions) and the words captions use for them.

/// Object shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
}

pub(super) const SHAPES: [Shape; 5] = [
    Shape::Circle,
    Shape::Square,
    Shape::Triangle,
    Shape::Diamond,
    Shape::Cross,
];

impl Shape {
    /// Half width and half height of the shape drawn at nominal radius `r`.
    pub(super) fn half_extent(self, r: f32) -> (f32, f32) {
        match self {
            Shape::Circle | Shape::Cross => (r, r),
            Shape::Square => (0.86 * r, 0.86 * r),
            Shape::Triangle => (1.0825 * r, 0.9375 * r),
            Shape::Diamond => (0.8 * r, 1.1 * r),
        }
    }

    /// Signed distance (negative inside) of offset `(dx, dy)` from the centre
    /// (y pointing down). Exact inside the shape, which is where the outline
    /// band is measured; outside only its sign matters.
    pub(super) fn sdf(self, dx: f32, dy: f32, r: f32) -> f32 {
        let (ax, ay) = (dx.abs(), dy.abs());
        match self {
            Shape::Circle => (dx * dx + dy * dy).sqrt() - r,
            Shape::Square => box_sdf(ax, ay, 0.86 * r, 0.86 * r),
            Shape::Diamond => {
                let (a, b) = (0.8 * r, 1.1 * r);
                (ax * b + ay * a - a * b) / (a * a + b * b).sqrt()
            }
            Shape::Triangle => {
                // Equilateral, apex up, circumradius 1.25 r, centred on its bounding box.
                let big_r = 1.25 * r;
                let half_w = 0.866_025_4 * big_r;
                let base = dy - 0.75 * big_r;
                let side = (1.5 * big_r * ax - half_w * (dy + 0.75 * big_r))
                    / (2.25 * big_r * big_r + half_w * half_w).sqrt();
                base.max(side)
            }
            Shape::Cross => {
                let (long, thick) = (r, 0.36 * r);
                box_sdf(ax, ay, long, thick).min(box_sdf(ax, ay, thick, long))
            }
        }
    }

    /// Nouns for the shape, the plainest first.
    pub(super) fn nouns(self) -> &'static [&'static str] {
        match self {
            Shape::Circle => &["circle", "disc", "round shape"],
            Shape::Square => &["square", "box"],
            Shape::Triangle => &["triangle", "triangular shape"],
            Shape::Diamond => &["diamond", "rhombus"],
            Shape::Cross => &["cross", "plus sign"],
        }
    }
}

/// Signed distance to an axis-aligned box of half sides `(bx, by)`, given
/// absolute offsets `(ax, ay)`.
fn box_sdf(ax: f32, ay: f32, bx: f32, by: f32) -> f32 {
    let (qx, qy) = (ax - bx, ay - by);
    let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
    outside + qx.max(qy).min(0.0)
}

/// A named object colour.
pub(super) struct ColourDef {
    /// Base RGB.
    pub(super) rgb: [f32; 3],
    /// Words for the colour, the plainest first.
    pub(super) words: &'static [&'static str],
}

pub(super) const COLOURS: [ColourDef; 8] = [
    ColourDef {
        rgb: [220.0, 30.0, 35.0],
        words: &["red", "crimson", "scarlet"],
    },
    ColourDef {
        rgb: [40.0, 170.0, 60.0],
        words: &["green", "emerald"],
    },
    ColourDef {
        rgb: [30.0, 80.0, 230.0],
        words: &["blue", "cobalt", "royal blue"],
    },
    ColourDef {
        rgb: [245.0, 215.0, 30.0],
        words: &["yellow", "golden", "lemon"],
    },
    ColourDef {
        rgb: [150.0, 40.0, 200.0],
        words: &["purple", "violet"],
    },
    ColourDef {
        rgb: [250.0, 135.0, 20.0],
        words: &["orange", "tangerine", "amber"],
    },
    ColourDef {
        rgb: [250.0, 250.0, 250.0],
        words: &["white", "ivory", "snow white"],
    },
    ColourDef {
        rgb: [15.0, 15.0, 15.0],
        words: &["black", "jet black", "ebony"],
    },
];

/// Smallest RGB distance between an object's colour and the background behind it.
pub(super) const MIN_CONTRAST: f32 = 100.0;

/// How an object is painted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fill {
    Solid,
    Striped,
    Outlined,
}

pub(super) const FILLS: [Fill; 3] = [Fill::Solid, Fill::Striped, Fill::Outlined];

/// Background kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Background {
    Light,
    Dark,
    Grey,
    Gradient,
    Noisy,
}

pub(super) const BACKGROUNDS: [Background; 5] = [
    Background::Light,
    Background::Dark,
    Background::Grey,
    Background::Gradient,
    Background::Noisy,
];

impl Background {
    /// Adjectives for the background, the plainest first.
    pub(super) fn adjectives(self) -> &'static [&'static str] {
        match self {
            Background::Light => &["light", "pale", "bright"],
            Background::Dark => &["dark", "dim", "dark coloured"],
            Background::Grey => &["grey", "gray", "plain grey"],
            Background::Gradient => &["gradient", "fading", "shaded"],
            Background::Noisy => &["noisy", "speckled", "grainy"],
        }
    }
}

/// Words for small and large objects, the plainest first.
pub(super) const SMALL_WORDS: &[&str] = &["small", "little", "tiny"];
pub(super) const LARGE_WORDS: &[&str] = &["large", "big"];
pub(super) const SOLID_WORDS: &[&str] = &["solid", "filled", "plain"];
pub(super) const STRIPED_WORDS: &[&str] = &["striped", "stripy", "hatched"];
pub(super) const OUTLINED_WORDS: &[&str] = &["outlined", "hollow", "empty"];

/// Phrases for the nine grid cells, row-major from the top left.
pub(super) const POSITIONS: [[&[&str]; 3]; 3] = [
    [
        &[
            "in the top left corner",
            "at the top left",
            "in the upper left corner",
        ],
        &["at the top", "at the top centre", "near the top edge"],
        &[
            "in the top right corner",
            "at the top right",
            "in the upper right corner",
        ],
    ],
    [
        &["on the left", "on the left side", "at the left edge"],
        &["in the centre", "in the middle", "at the centre"],
        &["on the right", "on the right side", "at the right edge"],
    ],
    [
        &[
            "in the bottom left corner",
            "at the bottom left",
            "in the lower left corner",
        ],
        &[
            "at the bottom",
            "at the bottom centre",
            "near the bottom edge",
        ],
        &[
            "in the bottom right corner",
            "at the bottom right",
            "in the lower right corner",
        ],
    ],
];
