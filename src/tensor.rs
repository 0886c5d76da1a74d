//! GPU tensors: a shape and a range of a wgpu buffer, with upload and download.

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit unsigned integer (code indices, counts).
    U32,
}

/// A dense, row-major tensor in a range of a GPU buffer. Cloning shares the buffer.
#[derive(Clone, Debug)]
pub struct Tensor {
    buffer: wgpu::Buffer,
    offset: u64,
    shape: Vec<usize>,
    dtype: DType,
}

const ELEMENT_BYTES: u64 = 4;

impl Tensor {
    /// A new tensor of zeros.
    pub fn zeros(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = byte_size(gpu, "allocating a tensor", shape)?;
        let buffer = gpu.scoped(&format!("allocating a tensor of shape {shape:?}"), || {
            gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        gpu.count_allocation(bytes);
        Ok(Tensor {
            buffer,
            offset: 0,
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// A new f32 tensor holding `data`.
    pub fn from_f32(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        let t = Tensor::zeros(gpu, shape, DType::F32)?;
        t.write(gpu, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    /// A new u32 tensor holding `data`.
    pub fn from_u32(gpu: &Gpu, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        let t = Tensor::zeros(gpu, shape, DType::U32)?;
        t.write(gpu, bytemuck::cast_slice(data))?;
        Ok(t)
    }

    /// A tensor over `buffer` from byte `offset`, which must be a multiple of the
    /// device's storage-offset alignment. The buffer needs STORAGE usage.
    pub fn from_buffer(
        gpu: &Gpu,
        buffer: wgpu::Buffer,
        offset: u64,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let op = "viewing a buffer as a tensor";
        let bytes = byte_size(gpu, op, shape)?;
        let align = u64::from(gpu.limits().min_storage_buffer_offset_alignment);
        if !offset.is_multiple_of(align) {
            return Err(Error::shape(
                op,
                format!(
                    "offset {offset} is not a multiple of min_storage_buffer_offset_alignment ({align})"
                ),
            ));
        }
        if offset + bytes > buffer.size() {
            return Err(Error::shape(
                op,
                format!(
                    "shape {shape:?} at offset {offset} needs {} bytes, but the buffer holds {}",
                    offset + bytes,
                    buffer.size()
                ),
            ));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::shape(op, "the buffer lacks STORAGE usage"));
        }
        Ok(Tensor {
            buffer,
            offset,
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements (never true: zero sizes are refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The buffer holding the tensor.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The byte offset of the first element in the buffer.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The size in bytes.
    pub fn bytes(&self) -> u64 {
        self.len() as u64 * ELEMENT_BYTES
    }

    /// The tensor as a binding resource.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.bytes()),
        })
    }

    /// Uploads `bytes`, which must be exactly the tensor's size.
    pub fn write(&self, gpu: &Gpu, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 != self.bytes() {
            return Err(Error::shape(
                "upload",
                format!(
                    "{} bytes given for a tensor of shape {:?} ({} bytes)",
                    bytes.len(),
                    self.shape,
                    self.bytes()
                ),
            ));
        }
        gpu.scoped("upload", || {
            gpu.queue().write_buffer(&self.buffer, self.offset, bytes)
        })
    }

    /// Downloads the tensor as f32 values.
    pub fn to_f32(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.expect_dtype("download", DType::F32)?;
        Ok(bytemuck::cast_slice(&self.read(gpu)?).to_vec())
    }

    /// Downloads the tensor as u32 values.
    pub fn to_u32(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        self.expect_dtype("download", DType::U32)?;
        Ok(bytemuck::cast_slice(&self.read(gpu)?).to_vec())
    }

    pub(crate) fn expect_dtype(&self, op: &'static str, dtype: DType) -> Result<()> {
        if self.dtype == dtype {
            Ok(())
        } else {
            Err(Error::shape(
                op,
                format!(
                    "expected a {dtype:?} tensor, got {:?} of shape {:?}",
                    self.dtype, self.shape
                ),
            ))
        }
    }

    fn read(&self, gpu: &Gpu) -> Result<Vec<u8>> {
        gpu.read_bytes(&self.buffer, self.offset, self.bytes())
    }
}

/// A zero-filled f32 tensor of `shape`.
pub(crate) fn zeros_f32(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
    Tensor::zeros(gpu, shape, DType::F32)
}

/// The byte size of a tensor of `shape`, checked against the device's limits.
fn byte_size(gpu: &Gpu, op: &'static str, shape: &[usize]) -> Result<u64> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::shape(op, format!("shape {shape:?} has no elements")));
    }
    let bytes = shape
        .iter()
        .try_fold(ELEMENT_BYTES, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    let l = gpu.limits();
    let limit = l.max_buffer_size.min(l.max_storage_buffer_binding_size);
    if bytes > limit {
        return Err(Error::Limit {
            op,
            what: "bytes in one tensor (max_storage_buffer_binding_size)",
            needed: bytes,
            limit,
        });
    }
    Ok(bytes)
}
