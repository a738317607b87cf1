//! Small file helpers: atomic writes (temporary file, then rename), JSON.

use crate::error::{Error, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a reader sees the old file or the new
/// one, never half of one, even if the process is killed mid-write. The
/// bytes go to a hidden temporary file beside `path` (see [`tmp_path`]),
/// are flushed to the disk, and the file is renamed over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
    }
    let tmp = tmp_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    // a failed flush leaves the write to the page cache, as a plain write does
    f.sync_all().ok();
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The temporary file [`write_atomic`] writes first: `.NAME.tmp` beside
/// `path` (hidden, and never matching the name patterns the loaders list).
pub fn tmp_path(path: &Path) -> std::path::PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Json {
        path: path.into(),
        message: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes())
}

/// Reads JSON into `T`, naming the file and position on error.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json {
        path: path.into(),
        message: e.to_string(),
    })
}

/// Key under which vl-distill stores its JSON metadata in a safetensors header.
const META_KEY: &str = "vl_distill";

/// Writes named tensors with a JSON metadata string to a safetensors file,
/// atomically (the safetensors crate writes a sibling temporary file, then renames).
pub fn save_tensors(
    path: &Path,
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    meta_json: &str,
) -> Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
    }
    // Tensors must be contiguous and on the CPU to be written.
    let cpu: Vec<(String, candle_core::Tensor)> = tensors
        .iter()
        .map(|(k, t)| {
            Ok((
                k.clone(),
                t.to_device(&candle_core::Device::Cpu)?.contiguous()?,
            ))
        })
        .collect::<Result<_>>()?;
    let meta = std::collections::HashMap::from([(META_KEY.to_string(), meta_json.to_string())]);
    safetensors::serialize_to_file(cpu, Some(meta), path)
        .map_err(|e| Error::bad_file(path, format!("cannot write safetensors: {e}")))?;
    // the crate writes through a private temporary file (mode 0600): make the
    // result readable like any other output
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

/// Reads a safetensors file written by [`save_tensors`]: the tensors (on
/// `device`) and the JSON metadata string (empty when absent).
pub fn load_tensors(
    path: &Path,
    device: &candle_core::Device,
) -> Result<(
    std::collections::HashMap<String, candle_core::Tensor>,
    String,
)> {
    let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&buf)
        .map_err(|e| Error::bad_file(path, format!("not a safetensors file: {e}")))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY).cloned())
        .unwrap_or_default();
    let tensors = candle_core::safetensors::load_buffer(&buf, device)
        .map_err(|e| Error::bad_file(path, format!("cannot read tensors: {e}")))?;
    Ok((tensors, json))
}

/// The first 6 bytes of the SHA-256 of `bytes`, as 12 hex digits: a short
/// name for a cached result that changes whenever `bytes` do.
pub fn short_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}
