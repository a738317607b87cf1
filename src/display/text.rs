//! Text in pictures: characters from the 8 × 8 bitmap font of the `font8x8`
//! crate, word wrapping to a width in characters, and cutting with "…".
//!
//! The font covers printable ASCII; a few typographic characters are drawn
//! as their ASCII look-alikes (× as x, – as -, …: [`ascii_stand_in`]), "…"
//! has a glyph of its own here (three dots) because the wrapping uses it to
//! mark cut text, and any other character is drawn as `?`.

use image::{Rgb, RgbImage};

/// Width and height of one character cell in pixels; every character
/// advances the pen by this much.
pub const CELL: u32 = 8;

/// The mark of cut text.
pub const ELLIPSIS: char = '…';

/// "…" as rows of bits (bit `i` = column `i`, like the font's glyphs): three
/// one-pixel-wide dots on the baseline.
const ELLIPSIS_GLYPH: [u8; 8] = [0, 0, 0, 0, 0, 0b0100_1001, 0b0100_1001, 0];

/// The ASCII character drawn for a typographic one that titles and
/// captions use (× – — − ‖ ‘ ’ “ ” α), if `c` is one of them.
pub fn ascii_stand_in(c: char) -> Option<char> {
    Some(match c {
        '×' => 'x',
        '–' | '—' | '−' => '-',
        '‖' => '|',
        '‘' | '’' => '\'',
        '“' | '”' => '"',
        'α' => 'a',
        _ => return None,
    })
}

/// The glyph of `c`: 8 rows, bit `i` of a row set where column `i` is inked.
/// Printable ASCII comes from the font, "…" is three dots, the characters of
/// [`ascii_stand_in`] look like their ASCII stand-ins, anything else (control
/// characters and other non-ASCII) is `?`.
pub fn glyph(c: char) -> [u8; 8] {
    if c == ELLIPSIS {
        return ELLIPSIS_GLYPH;
    }
    let c = if c == ' ' || c.is_ascii_graphic() {
        c
    } else {
        ascii_stand_in(c).unwrap_or('?')
    };
    font8x8::legacy::BASIC_LEGACY[c as usize]
}

/// Draws one line of `text` with its top-left corner at (`x`, `y`), one
/// [`CELL`] per character, in `color`. Pixels that would fall outside the
/// image are skipped. Returns the width of the line in pixels.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, color: Rgb<u8>) -> u32 {
    let (w, h) = img.dimensions();
    let mut pen = x;
    for c in text.chars() {
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..CELL {
                if bits & (1 << col) == 0 {
                    continue;
                }
                let (px, py) = (pen + col, y + row as u32);
                if px < w && py < h {
                    img.put_pixel(px, py, color);
                }
            }
        }
        pen += CELL;
    }
    pen - x
}

/// Splits `text` into at most `max_lines` lines of at most `max_chars`
/// characters each, breaking between words (runs of whitespace become one
/// space). A word longer than a line is broken inside. When the text does not
/// fit, the last line ends in "…" (replacing its last character when the line
/// is full). Zero lines or zero characters give no lines; blank text gives none.
pub fn wrap(text: &str, max_chars: usize, max_lines: usize) -> Vec<String> {
    if max_chars == 0 || max_lines == 0 {
        return Vec::new();
    }
    let mut lines: Vec<Vec<char>> = Vec::new();
    let mut current: Vec<char> = Vec::new();
    // stop as soon as one line more than allowed exists: that is all we need
    // to know that the text was cut
    'words: for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            if lines.len() > max_lines {
                break 'words;
            }
            if current.is_empty() && word.len() <= max_chars {
                current = word;
                break;
            }
            if !current.is_empty() && current.len() + 1 + word.len() <= max_chars {
                current.push(' ');
                current.extend(word);
                break;
            }
            if !current.is_empty() {
                lines.push(std::mem::take(&mut current));
                continue;
            }
            // an empty line and a word longer than it: break the word
            let rest = word.split_off(max_chars);
            lines.push(word);
            word = rest;
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    if lines.len() > max_lines {
        lines.truncate(max_lines);
        let last = lines.last_mut().expect("max_lines > 0");
        if last.len() >= max_chars {
            last.truncate(max_chars - 1);
        }
        last.push(ELLIPSIS);
    }
    lines.into_iter().map(|l| l.into_iter().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_breaks_between_words_and_respects_the_width() {
        let lines = wrap("a red circle above a blue square", 12, 5);
        assert_eq!(lines, ["a red circle", "above a blue", "square"]);
        for l in &lines {
            assert!(l.chars().count() <= 12, "{l:?}");
        }
        // whitespace runs collapse, blank text gives no line
        assert_eq!(wrap("  two \n words ", 20, 2), ["two words"]);
        assert!(wrap("   ", 10, 3).is_empty());
        assert!(wrap("text", 0, 3).is_empty());
        assert!(wrap("text", 5, 0).is_empty());
    }

    #[test]
    fn wrap_breaks_long_words_and_cuts_with_an_ellipsis() {
        assert_eq!(wrap("abcdefghij", 4, 3), ["abcd", "efgh", "ij"]);
        // cut: the last line is full, so its last character makes room for "…"
        assert_eq!(wrap("abcdefghijklm", 4, 2), ["abcd", "efg…"]);
        // cut after a short last line: "…" is appended
        assert_eq!(
            wrap("a red circle above a blue square", 12, 2),
            ["a red circle", "above a blu…"]
        );
        assert_eq!(wrap("aaa bbbbbbbbb", 5, 1), ["aaa…"]);
        assert_eq!(wrap("one two three", 3, 1), ["on…"]);
        for l in wrap("the quick brown fox jumps over the lazy dog", 7, 3) {
            assert!(l.chars().count() <= 7, "{l:?}");
        }
        // a text that fits exactly is not cut
        assert_eq!(wrap("abcd efgh", 4, 2), ["abcd", "efgh"]);
    }

    #[test]
    fn glyphs_come_from_the_font_and_unknown_characters_fall_back() {
        assert_eq!(glyph(' '), [0; 8]);
        assert_ne!(glyph('A'), [0; 8]);
        assert_ne!(glyph('A'), glyph('B'));
        assert_eq!(glyph('é'), glyph('?'));
        assert_eq!(glyph('\t'), glyph('?'));
        assert_ne!(glyph(ELLIPSIS), glyph('?'));
        assert_eq!(glyph('×'), glyph('x'));
        assert_eq!(glyph('–'), glyph('-'));
        assert_eq!(glyph('α'), glyph('a'));
        // "F": its foot is on the left, so bit 0 is the leftmost column
        assert_eq!(glyph('F')[6] & 1, 1);
        assert_eq!(glyph('F')[6] & 0x80, 0);
    }

    #[test]
    fn draw_text_inks_inside_its_cells_and_clips() {
        let white = Rgb([255, 255, 255]);
        let ink = Rgb([0, 0, 0]);
        let mut img = RgbImage::from_pixel(40, 12, white);
        let width = draw_text(&mut img, 2, 1, "Hi", ink);
        assert_eq!(width, 2 * CELL);
        let inked: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| **p == ink)
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(!inked.is_empty());
        assert!(inked
            .iter()
            .all(|&(x, y)| (2..2 + 2 * CELL).contains(&x) && (1..1 + CELL).contains(&y)));
        // "H" row 0 of the font drawn at (2, 1): compare pixel by pixel
        let g = glyph('H');
        for (row, bits) in g.iter().enumerate() {
            for col in 0..CELL {
                let set = bits & (1 << col) != 0;
                assert_eq!(*img.get_pixel(2 + col, 1 + row as u32) == ink, set);
            }
        }
        // partly outside: no panic, only the visible part is drawn
        let mut small = RgbImage::from_pixel(5, 5, white);
        draw_text(&mut small, 3, 3, "WW", ink);
        // a space draws nothing
        let mut blank = RgbImage::from_pixel(10, 10, white);
        draw_text(&mut blank, 0, 0, " ", ink);
        assert!(blank.pixels().all(|p| *p == white));
    }
}
