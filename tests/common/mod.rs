//! Helpers shared by the integration tests that need real data fetched by
//! `data-scripts/` (not in the repository).

use std::path::{Path, PathBuf};

/// The repository root (where `data/` is).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `path` under the repository if it exists; otherwise `None` after saying
/// which script makes it, or a panic under `VL_DISTILL_REQUIRE_DATA=1`
/// (what the README's test command sets after fetching everything).
pub fn data(path: &str, script: &str) -> Option<PathBuf> {
    let p = root().join(path);
    if p.exists() {
        return Some(p);
    }
    let msg = format!("{} is missing: run {script}", p.display());
    if std::env::var("VL_DISTILL_REQUIRE_DATA").is_ok_and(|v| v == "1") {
        panic!("{msg} (VL_DISTILL_REQUIRE_DATA=1)");
    }
    eprintln!("skipped: {msg}");
    None
}
