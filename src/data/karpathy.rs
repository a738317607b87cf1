//! TEMPORARY stub until the loaders land.
#![allow(missing_docs, unused)]
use super::Dataset;
use std::path::{Path, PathBuf};
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoadOptions {
    pub image_size: u32,
    pub skip_unreadable: bool,
}
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub skipped: Vec<(PathBuf, String)>,
}
pub fn load_karpathy(
    json: &Path,
    image_root: Option<&Path>,
    opts: &LoadOptions,
) -> crate::Result<(Dataset, LoadReport)> {
    todo!()
}
pub fn load_per_split(
    name: &str,
    train: &Path,
    val: &Path,
    test: &Path,
    image_root: &Path,
    opts: &LoadOptions,
) -> crate::Result<(Dataset, LoadReport)> {
    todo!()
}
pub fn write_karpathy(ds: &Dataset, dir: &Path) -> crate::Result<PathBuf> {
    todo!()
}
