//! A model's parameters on the GPU: every tensor a view into one flat buffer (and its
//! gradient into a second), so that one optimizer dispatch updates them all.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::ParamSpec;
use crate::tensor::{DType, Tensor};

/// Tensors by name: shape and values.
pub type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Parameters and gradients, flat on the GPU.
pub struct Params {
    specs: Vec<ParamSpec>,
    /// Element offset of each parameter in the flat buffers.
    offsets: Vec<usize>,
    values: Tensor,
    grads: Tensor,
    views: Vec<(Tensor, Tensor)>,
}

impl Params {
    /// Allocates zeroed parameters and gradients for `specs`. Each view starts at the
    /// device's storage-offset alignment; the padding between them stays zero.
    pub fn new(gpu: &Gpu, specs: Vec<ParamSpec>) -> Result<Params> {
        let align = (gpu.limits().min_storage_buffer_offset_alignment as usize / 4).max(1);
        let mut offsets = Vec::with_capacity(specs.len());
        let mut total = 0;
        for s in &specs {
            offsets.push(total);
            total += s.len().next_multiple_of(align);
        }
        let values = Tensor::zeros(gpu, &[total], DType::F32)?;
        let grads = Tensor::zeros(gpu, &[total], DType::F32)?;
        let view = |flat: &Tensor, offset: usize, shape: &[usize]| {
            Tensor::from_buffer(
                gpu,
                flat.buffer().clone(),
                offset as u64 * 4,
                shape,
                DType::F32,
            )
        };
        let views = specs
            .iter()
            .zip(&offsets)
            .map(|(s, &o)| Ok((view(&values, o, &s.shape)?, view(&grads, o, &s.shape)?)))
            .collect::<Result<_>>()?;
        Ok(Params {
            specs,
            offsets,
            values,
            grads,
            views,
        })
    }

    fn index(&self, name: &str) -> usize {
        self.specs
            .iter()
            .position(|s| s.name == name)
            .unwrap_or_else(|| {
                panic!("no parameter named {name}: the model graph and its specs disagree")
            })
    }

    /// The parameter `name`.
    pub fn value(&self, name: &str) -> &Tensor {
        &self.views[self.index(name)].0
    }

    /// The gradient of `name`.
    pub fn grad(&self, name: &str) -> &Tensor {
        &self.views[self.index(name)].1
    }

    /// All parameters as one flat tensor (with alignment padding).
    pub fn flat_values(&self) -> &Tensor {
        &self.values
    }

    /// All gradients as one flat tensor.
    pub fn flat_grads(&self) -> &Tensor {
        &self.grads
    }

    /// The specs, in order.
    pub fn specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    /// The part of `flat` (laid out like these parameters, e.g. an optimizer moment)
    /// that belongs to parameter `name`.
    pub fn view(&self, gpu: &Gpu, flat: &Tensor, name: &str) -> Result<Tensor> {
        let i = self.index(name);
        Tensor::from_buffer(
            gpu,
            flat.buffer().clone(),
            flat.offset() + self.offsets[i] as u64 * 4,
            &self.specs[i].shape,
            DType::F32,
        )
    }

    /// Splits a flat array laid out like these parameters into named tensors.
    pub fn split(&self, flat: &[f32]) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.specs
            .iter()
            .zip(&self.offsets)
            .map(|(s, &o)| {
                (
                    s.name.clone(),
                    s.shape.clone(),
                    flat[o..o + s.len()].to_vec(),
                )
            })
            .collect()
    }

    /// Lays named tensors out like these parameters (padding zero); every parameter must
    /// be present with its shape.
    pub fn join(&self, named: &HashMap<String, Vec<f32>>, what: &str) -> Result<Vec<f32>> {
        let mut flat = vec![0.0; self.values.len()];
        for (s, &o) in self.specs.iter().zip(&self.offsets) {
            let v = named
                .get(&s.name)
                .ok_or_else(|| Error::Usage(format!("{what}: missing tensor '{}'", s.name)))?;
            if v.len() != s.len() {
                return Err(Error::Usage(format!(
                    "{what}: tensor '{}' has {} elements, expected {} for shape {:?}",
                    s.name,
                    v.len(),
                    s.len(),
                    s.shape
                )));
            }
            flat[o..o + s.len()].copy_from_slice(v);
        }
        Ok(flat)
    }

    /// Uploads a flat array laid out like these parameters.
    pub fn upload(&self, gpu: &Gpu, flat: &[f32]) -> Result<()> {
        self.values.write(gpu, bytemuck::cast_slice(flat))
    }

    /// Downloads `flat` (laid out like these parameters: the values, or an optimizer
    /// moment) as named tensors, each name with `prefix` in front.
    pub fn download_named(&self, gpu: &Gpu, flat: &Tensor, prefix: &str) -> Result<Tensors> {
        Ok(self
            .split(&flat.to_f32(gpu)?)
            .into_iter()
            .map(|(n, s, v)| (format!("{prefix}{n}"), (s, v)))
            .collect())
    }

    /// Uploads into `flat` the tensors of `values` whose names start with `prefix`, the
    /// prefix removed; every parameter must be there (`what` names the source in errors).
    pub fn upload_named(
        &self,
        gpu: &Gpu,
        flat: &Tensor,
        values: &HashMap<String, Vec<f32>>,
        prefix: &str,
        what: &str,
    ) -> Result<()> {
        let named: HashMap<String, Vec<f32>> = values
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(prefix).map(|n| (n.to_string(), v.clone())))
            .collect();
        flat.write(gpu, bytemuck::cast_slice(&self.join(&named, what)?))
    }
}
