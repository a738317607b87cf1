//! Pretrained weights for an image tower from a local safetensors file
//! (timm's state dict saved with `safetensors.torch.save_file`, or a folder
//! holding `model.safetensors`, as the Hugging Face layout has it).
//!
//! Only the tensors the tower needs are read, by name and shape; others (a
//! classifier `head.*`, say) are ignored. A missing tensor or a wrong shape
//! is an error naming the file, the tensor and both shapes.

use super::ParamSet;
use crate::error::{Error, Result};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

/// The safetensors file of `path`: the file itself, or `model.safetensors`
/// inside a folder.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    if path.is_dir() {
        let f = path.join("model.safetensors");
        if f.is_file() {
            return Ok(f);
        }
        return Err(Error::bad_file(
            path,
            "checkpoint folder has no model.safetensors",
        ));
    }
    if !path.is_file() {
        return Err(Error::bad_file(path, "checkpoint file not found"));
    }
    Ok(path.to_path_buf())
}

/// Loads the tensors named in `template` from the checkpoint at `path`, in
/// the template's order, on `device` in `dtype`; `what` names the tower in
/// errors (e.g. `nf_resnet50`).
pub fn load_like(
    path: &Path,
    template: &ParamSet,
    what: &str,
    device: &Device,
    dtype: DType,
) -> Result<ParamSet> {
    let file = resolve(path)?;
    let map = candle_core::safetensors::load(&file, &Device::Cpu)
        .map_err(|e| Error::bad_file(&file, format!("not a readable safetensors file: {e}")))?;
    let mut out = ParamSet::new();
    let missing: Vec<&String> = template
        .names()
        .iter()
        .filter(|n| !map.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        let first: Vec<&str> = missing.iter().take(5).map(|s| s.as_str()).collect();
        return Err(Error::bad_file(
            &file,
            format!(
                "not a {what} checkpoint: {} of its {} tensors are missing (first: {})",
                missing.len(),
                template.len(),
                first.join(", ")
            ),
        ));
    }
    for (name, t) in template.iter() {
        let v = &map[name];
        if v.dims() != t.dims() {
            return Err(Error::bad_file(
                &file,
                format!(
                    "tensor {name} is {:?}, the {what} tower expects {:?} (a checkpoint of another size?)",
                    v.dims(),
                    t.dims()
                ),
            ));
        }
        out.push(name, v.to_dtype(dtype)?.to_device(device)?);
    }
    Ok(out)
}
