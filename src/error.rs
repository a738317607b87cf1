//! The library's error type: every failure names the file, field or step it
//! concerns, so a notebook user can act on it without reading the source.

use std::path::PathBuf;

/// Everything that can go wrong in vl-distill.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A JSON file could not be parsed or does not have the expected layout.
    #[error("{path}: malformed JSON: {message}")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// What was wrong (with line/column when known).
        message: String,
    },

    /// An image file referenced by a dataset does not exist.
    #[error("{path}: image file not found (referenced by {annotation})")]
    MissingImage {
        /// The image path that was looked up.
        path: PathBuf,
        /// The annotation file that names it.
        annotation: PathBuf,
    },

    /// An image file exists but could not be decoded.
    #[error("{path}: cannot decode image: {message}")]
    BadImage {
        /// The image file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },

    /// An image in an annotation file has no captions.
    #[error("{annotation}: image {image:?} has no captions")]
    NoCaptions {
        /// The annotation file.
        annotation: PathBuf,
        /// The image's file name as written in the annotation.
        image: String,
    },

    /// A split that is needed has no images.
    #[error("{source_name}: split {split:?} is empty")]
    EmptySplit {
        /// Where the dataset came from (a file, or "scenes").
        source_name: String,
        /// The split's name.
        split: String,
    },

    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Something made for one setup (experts' trajectories, a distilled set)
    /// used with another: another image or text encoder, model, dataset or
    /// too few epochs.
    #[error("incompatible: {0}")]
    Incompatible(String),

    /// Tensors or parameter sets whose shapes do not agree.
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// A loss or gradient became NaN or infinite.
    #[error("non-finite value at {step}: {what}")]
    NonFinite {
        /// Where it happened (stage, expert, epoch, step).
        step: String,
        /// Which value.
        what: String,
    },

    /// A picture could not be encoded (e.g. as PNG).
    #[error("cannot encode {0}")]
    Encode(String),

    /// A piece of a dataset's distribution (an image archive or folder, the
    /// split file) is not in the folder given to `data prepare`.
    #[error("{folder}: no {what} found; looked for {}{}", looked_for.join(", "), hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    MissingSource {
        /// The folder searched.
        folder: PathBuf,
        /// What was wanted (e.g. "Flickr30K images").
        what: String,
        /// Every name tried, in order.
        looked_for: Vec<String>,
        /// A hint, e.g. another dataset's file that was there.
        hint: Option<String>,
    },

    /// A split file that belongs to another dataset than the one asked for.
    #[error("{path}: this is {found}'s split file, not {expected}'s{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    WrongDataset {
        /// The split file.
        path: PathBuf,
        /// The dataset asked for.
        expected: String,
        /// The dataset the file belongs to.
        found: String,
        /// What to do instead.
        hint: Option<String>,
    },

    /// Images named by a split file that are not in the user's copy.
    #[error("{count} of the {total} images named in {annotation} are not in {looked_in}: {}{}; allow_missing (--allow-missing) drops them from the prepared set", first.join(", "), if *count > first.len() { ", ..." } else { "" })]
    MissingImages {
        /// How many are missing.
        count: usize,
        /// How many the split file names.
        total: usize,
        /// The first few missing file names.
        first: Vec<String>,
        /// The split file.
        annotation: PathBuf,
        /// Where they were looked for (archives and folders).
        looked_in: String,
    },

    /// A saved file (trajectory, cache, checkpoint) does not match what it should hold.
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        message: String,
    },
}

/// `Result` with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A problem with a saved file.
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.into(),
            message: message.into(),
        }
    }
}
