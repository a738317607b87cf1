//! TEMPORARY stub until the generator lands.
use super::Dataset;
/// Scenes config.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScenesConfig {
    pub seed: u64,
    pub image_size: u32,
    pub train: usize,
    pub val: usize,
    pub test: usize,
}
/// stub
pub fn generate(_cfg: &ScenesConfig) -> crate::Result<Dataset> {
    todo!()
}
