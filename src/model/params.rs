//! [`ParamSet`]: the ordered, named tensors of one tower.
//!
//! Towers are functional: their forward takes a `&ParamSet`, so the student
//! of stage 2 can be rebuilt from any snapshot and differentiated twice, and
//! a trajectory is simply a list of `ParamSet`s.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use std::collections::HashMap;

/// Ordered named tensors (the parameters of one tower, or their gradients).
///
/// The order is the order of insertion and is part of the identity: two sets
/// are compatible when they have the same names, in the same order, with the
/// same shapes.
#[derive(Debug, Clone, Default)]
pub struct ParamSet {
    names: Vec<String>,
    tensors: Vec<Tensor>,
}

impl ParamSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a named tensor. Panics on a duplicate name (a bug in a tower).
    pub fn push(&mut self, name: impl Into<String>, t: Tensor) {
        let name = name.into();
        assert!(
            !self.names.contains(&name),
            "duplicate parameter name {name}"
        );
        self.names.push(name);
        self.tensors.push(t);
    }

    /// Builder form of [`push`](Self::push).
    pub fn with(mut self, name: impl Into<String>, t: Tensor) -> Self {
        self.push(name, t);
        self
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.tensors[i])
            .ok_or_else(|| {
                Error::Shape(format!(
                    "no parameter {name:?} (have: {})",
                    self.names.join(", ")
                ))
            })
    }

    /// Parameter names in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Tensors in order.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// `(name, tensor)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.tensors.iter())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_elements(&self) -> usize {
        self.tensors.iter().map(|t| t.elem_count()).sum()
    }

    /// The same names with new tensors, computed by `f` from each (name, tensor).
    pub fn map(&self, mut f: impl FnMut(&str, &Tensor) -> Result<Tensor>) -> Result<ParamSet> {
        let tensors = self
            .iter()
            .map(|(n, t)| f(n, t))
            .collect::<Result<Vec<_>>>()?;
        Ok(ParamSet {
            names: self.names.clone(),
            tensors,
        })
    }

    /// Combines two compatible sets tensor by tensor.
    pub fn zip_map(
        &self,
        other: &ParamSet,
        mut f: impl FnMut(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<ParamSet> {
        self.check_compatible(other)?;
        let mut others = other.tensors.iter();
        self.map(|_, t| f(t, others.next().expect("compatible sets have equal length")))
    }

    /// Errors unless `other` has the same names, order and shapes.
    pub fn check_compatible(&self, other: &ParamSet) -> Result<()> {
        if self.names != other.names {
            return Err(Error::Shape(format!(
                "parameter names differ: [{}] vs [{}]",
                self.names.join(", "),
                other.names.join(", ")
            )));
        }
        for (n, (a, b)) in self
            .names
            .iter()
            .zip(self.tensors.iter().zip(&other.tensors))
        {
            if a.dims() != b.dims() {
                return Err(Error::Shape(format!(
                    "parameter {n}: {:?} vs {:?}",
                    a.dims(),
                    b.dims()
                )));
            }
        }
        Ok(())
    }

    /// Detached copies (no autograd history).
    pub fn detach(&self) -> ParamSet {
        ParamSet {
            names: self.names.clone(),
            tensors: self.tensors.iter().map(Tensor::detach).collect(),
        }
    }

    /// Fresh leaf variables holding the same values, for a backward pass.
    pub fn to_vars(&self) -> Result<(ParamSet, Vec<Var>)> {
        let vars = self
            .tensors
            .iter()
            .map(Var::from_tensor)
            .collect::<candle_core::Result<Vec<_>>>()?;
        let set = ParamSet {
            names: self.names.clone(),
            tensors: vars.iter().map(|v| v.as_tensor().clone()).collect(),
        };
        Ok((set, vars))
    }

    /// The gradients of these tensors from a [`GradStore`](candle_core::backprop::GradStore);
    /// a tensor the loss does not depend on gets zeros.
    pub fn grads_from(&self, grads: &candle_core::backprop::GradStore) -> Result<ParamSet> {
        self.map(|_, t| match grads.get(t) {
            Some(g) => Ok(g.clone()),
            None => Ok(t.zeros_like()?),
        })
    }

    /// `self + scale * other`.
    pub fn add_scaled(&self, other: &ParamSet, scale: f64) -> Result<ParamSet> {
        self.zip_map(other, |a, b| Ok((a + (b * scale)?)?))
    }

    /// `self + scale * other` where `scale` is a scalar tensor (differentiable).
    pub fn add_scaled_tensor(&self, other: &ParamSet, scale: &Tensor) -> Result<ParamSet> {
        self.zip_map(other, |a, b| Ok((a + b.broadcast_mul(scale)?)?))
    }

    /// `self - other`.
    pub fn sub(&self, other: &ParamSet) -> Result<ParamSet> {
        self.zip_map(other, |a, b| Ok((a - b)?))
    }

    /// Every tensor multiplied by `scale`.
    pub fn scale(&self, scale: f64) -> Result<ParamSet> {
        self.map(|_, t| Ok((t * scale)?))
    }

    /// Σ‖t‖² as a scalar tensor (differentiable).
    pub fn sq_norm_tensor(&self) -> Result<Tensor> {
        let mut acc: Option<Tensor> = None;
        for t in &self.tensors {
            let s = t.sqr()?.sum_all()?;
            acc = Some(match acc {
                None => s,
                Some(a) => (a + s)?,
            });
        }
        acc.ok_or_else(|| Error::Shape("empty parameter set".into()))
    }

    /// Σ‖t‖² as an f64.
    pub fn sq_norm(&self) -> Result<f64> {
        Ok(self
            .sq_norm_tensor()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?)
    }

    /// ‖self − other‖² as an f64.
    pub fn sq_dist(&self, other: &ParamSet) -> Result<f64> {
        self.sub(other)?.sq_norm()
    }

    /// Σ ⟨self_t, other_t⟩ as a scalar tensor (differentiable).
    pub fn dot_tensor(&self, other: &ParamSet) -> Result<Tensor> {
        self.check_compatible(other)?;
        let mut acc: Option<Tensor> = None;
        for (a, b) in self.tensors.iter().zip(&other.tensors) {
            let s = (a * b)?.sum_all()?;
            acc = Some(match acc {
                None => s,
                Some(x) => (x + s)?,
            });
        }
        acc.ok_or_else(|| Error::Shape("empty parameter set".into()))
    }

    /// All tensors flattened and concatenated into one 1-D tensor.
    pub fn flatten(&self) -> Result<Tensor> {
        let flat = self
            .tensors
            .iter()
            .map(|t| t.flatten_all())
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&flat, 0)?)
    }

    /// The inverse of [`flatten`](Self::flatten): a set shaped like `self` holding `flat`'s values.
    pub fn unflatten_like(&self, flat: &Tensor) -> Result<ParamSet> {
        let total = self.num_elements();
        if flat.elem_count() != total {
            return Err(Error::Shape(format!(
                "flat vector has {} values, parameters have {total}",
                flat.elem_count()
            )));
        }
        let mut offset = 0;
        self.map(|_, t| {
            let n = t.elem_count();
            let part = flat.narrow(0, offset, n)?.reshape(t.dims())?;
            offset += n;
            Ok(part)
        })
    }

    /// Converts every tensor to `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Result<ParamSet> {
        self.map(|_, t| Ok(t.to_dtype(dtype)?))
    }

    /// Moves every tensor to `device`.
    pub fn to_device(&self, device: &Device) -> Result<ParamSet> {
        self.map(|_, t| Ok(t.to_device(device)?))
    }

    /// Entries as a map with `prefix` before every name (for safetensors files).
    pub fn to_map(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.iter()
            .map(|(n, t)| (format!("{prefix}{n}"), t.clone()))
            .collect()
    }

    /// Takes the tensors for `names` (in that order) from `map`, each under `prefix`.
    pub fn from_map(
        names: &[String],
        map: &HashMap<String, Tensor>,
        prefix: &str,
    ) -> std::result::Result<ParamSet, String> {
        let mut set = ParamSet::new();
        for n in names {
            let key = format!("{prefix}{n}");
            let t = map
                .get(&key)
                .ok_or_else(|| format!("missing tensor {key}"))?;
            set.push(n.clone(), t.clone());
        }
        Ok(set)
    }

    /// True when every value of every tensor is finite.
    pub fn all_finite(&self) -> Result<bool> {
        let s = self.sq_norm()?;
        Ok(s.is_finite())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(vals: &[f64]) -> ParamSet {
        let d = Device::Cpu;
        ParamSet::new()
            .with("a", Tensor::new(&vals[..2], &d).unwrap())
            .with("b", Tensor::new(&vals[2..], &d).unwrap())
    }

    #[test]
    fn norms_and_distances() {
        let a = set(&[1.0, 2.0, 3.0]);
        let b = set(&[1.0, 0.0, 0.0]);
        assert_eq!(a.sq_norm().unwrap(), 14.0);
        assert_eq!(a.sq_dist(&b).unwrap(), 13.0);
        assert_eq!(a.num_elements(), 3);
        let f = a.flatten().unwrap();
        let back = b.unflatten_like(&f).unwrap();
        assert_eq!(back.sq_dist(&a).unwrap(), 0.0);
    }

    #[test]
    fn incompatible_sets_error() {
        let a = set(&[1.0, 2.0, 3.0]);
        let c = ParamSet::new().with("a", Tensor::new(&[1.0f64], &Device::Cpu).unwrap());
        assert!(a.sub(&c).is_err());
        assert!(a.get("zzz").unwrap_err().to_string().contains("zzz"));
    }
}
