//! What the quantiser components share: checking the caller's bindings, viewing them
//! as tensors, and the cache of dispatches built for the binding sets recorded last.

use std::collections::HashMap;
use std::hash::Hash;

use super::Layout;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::launch::Launch;
use crate::tensor::{DType, Tensor};

/// Binding sets whose dispatches a quantiser component keeps; the least recently
/// recorded goes first when a new one comes.
pub const CACHED_BINDINGS: usize = 64;

/// A binding as a cache key: its buffer (kept alive by the key), offset and size.
pub(super) type BindingKey = Option<(wgpu::Buffer, u64, Option<u64>)>;

/// The key of an optional binding.
pub(super) fn key_of(b: Option<&wgpu::BufferBinding<'_>>) -> BindingKey {
    b.map(|b| (b.buffer.clone(), b.offset, b.size.map(u64::from)))
}

/// The dispatches of the binding sets recorded last, with when each was last used.
pub(super) struct Cache<K> {
    entries: HashMap<K, (Launch, u64)>,
    clock: u64,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Cache {
            entries: HashMap::new(),
            clock: 0,
        }
    }
}

impl<K: Hash + Eq + Clone> Cache<K> {
    /// The dispatches kept for `key`, or those `build` makes (kept in place of the
    /// least recently used once [`CACHED_BINDINGS`] are kept).
    pub fn get_or_build(
        &mut self,
        key: K,
        build: impl FnOnce() -> Result<Launch>,
    ) -> Result<Launch> {
        self.clock += 1;
        let now = self.clock;
        if let Some((launch, used)) = self.entries.get_mut(&key) {
            *used = now;
            return Ok(launch.clone());
        }
        let launch = build()?;
        if self.entries.len() >= CACHED_BINDINGS {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(key, (launch.clone(), now));
        Ok(launch)
    }

    /// How many binding sets have their dispatches kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// One of the caller's bindings: its name, the binding, the bytes it must hold and what
/// they hold (for the message).
pub(super) struct Slot<'a, 'b> {
    pub name: &'static str,
    pub binding: Option<&'a wgpu::BufferBinding<'b>>,
    pub needed: u64,
    pub holds: String,
    pub output: bool,
}

/// A [`Slot`]: binding `name`, which must hold `needed` bytes (`holds` says of what), and
/// whether the kernels write it.
pub(super) fn slot<'a, 'b>(
    name: &'static str,
    binding: Option<&'a wgpu::BufferBinding<'b>>,
    needed: u64,
    holds: String,
    output: bool,
) -> Slot<'a, 'b> {
    Slot {
        name,
        binding,
        needed,
        holds,
        output,
    }
}

/// Errors unless every binding starts at an aligned offset and holds what it is for,
/// and no output shares a buffer with another binding (wgpu tracks a writable storage
/// binding per buffer, not per range).
pub(super) fn check(gpu: &Gpu, op: &'static str, slots: &[Slot<'_, '_>]) -> Result<()> {
    let align = u64::from(gpu.limits().min_storage_buffer_offset_alignment);
    for slot in slots {
        let Some(binding) = slot.binding else {
            continue;
        };
        let what = slot.name;
        if binding.offset % align != 0 {
            return Err(Error::shape(
                op,
                format!(
                    "the {what} binding starts at byte {}, not a multiple of min_storage_buffer_offset_alignment ({align})",
                    binding.offset
                ),
            ));
        }
        let size = binding.size.map_or_else(
            || binding.buffer.size().saturating_sub(binding.offset),
            u64::from,
        );
        if size < slot.needed {
            return Err(Error::shape(
                op,
                format!(
                    "the {what} binding holds {size} bytes (from byte {} of its buffer); {} need {}",
                    binding.offset, slot.holds, slot.needed
                ),
            ));
        }
    }
    for (i, a) in slots.iter().enumerate() {
        for b in &slots[i + 1..] {
            if let (Some(x), Some(y)) = (a.binding, b.binding)
                && x.buffer == y.buffer
                && (a.output || b.output)
            {
                return Err(Error::shape(
                    op,
                    format!(
                        "the {} and {} bindings are in one buffer; an output needs a buffer of its own (wgpu forbids a writable storage binding beside another binding of the same buffer)",
                        a.name, b.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `binding` from byte `offset` on as a tensor of `shape`.
pub(super) fn view(
    gpu: &Gpu,
    binding: &wgpu::BufferBinding<'_>,
    offset: u64,
    shape: &[usize],
    dtype: DType,
) -> Result<Tensor> {
    Tensor::from_buffer(
        gpu,
        binding.buffer.clone(),
        binding.offset + offset,
        shape,
        dtype,
    )
}

/// Pixels per feature map of `layout` (1 for rows), checked to divide `n`.
pub(super) fn plane(op: &'static str, layout: Layout, n: usize) -> Result<usize> {
    match layout {
        Layout::Rows => Ok(1),
        Layout::ChannelsFirst { plane } => {
            let plane = plane as usize;
            if !n.is_multiple_of(plane) {
                return Err(Error::shape(
                    op,
                    format!("n {n} is not a whole number of {plane}-pixel feature maps"),
                ));
            }
            Ok(plane)
        }
    }
}

/// The tensor shape of `n` input vectors of `dim` in `layout` (`[n, dim]`, or
/// `[maps, dim, plane, 1]`), which must fit one storage binding.
pub(super) fn input_shape(
    gpu: &Gpu,
    op: &'static str,
    layout: Layout,
    n: usize,
    dim: usize,
) -> Result<Vec<usize>> {
    let plane = plane(op, layout, n)?;
    let bytes = n as u64 * dim as u64 * 4;
    let limit = gpu.limits().max_storage_buffer_binding_size;
    if bytes > limit {
        return Err(Error::Limit {
            op,
            what: "input bytes (max_storage_buffer_binding_size)",
            needed: bytes,
            limit,
        });
    }
    Ok(match plane {
        1 => vec![n, dim],
        _ => vec![n / plane, dim, plane, 1],
    })
}

/// Checks a component's sizes on `gpu`: K, D (and `stages`) at least 1, the
/// `codebook_bytes` within one storage binding, a channels-first plane of a pixel or more.
pub(super) fn check_config(
    gpu: &Gpu,
    op: &'static str,
    [codes, dim, stages]: [u32; 3],
    codebook_bytes: u64,
    layout: Layout,
) -> Result<()> {
    if codes == 0 || dim == 0 || stages == 0 {
        let sizes = match stages {
            1 => format!("codes {codes} and dim {dim}"),
            _ => format!("codes {codes}, dim {dim} and stages {stages}"),
        };
        return Err(Error::shape(op, format!("{sizes} must each be at least 1")));
    }
    let limit = gpu.limits().max_storage_buffer_binding_size;
    if codebook_bytes > limit {
        return Err(Error::Limit {
            op,
            what: "codebook bytes (max_storage_buffer_binding_size)",
            needed: codebook_bytes,
            limit,
        });
    }
    if let Layout::ChannelsFirst { plane: 0 } = layout {
        return Err(Error::shape(
            op,
            "a channels-first plane must hold at least one pixel",
        ));
    }
    Ok(())
}

/// Records `launch` into a new compute pass of `encoder` labelled `label`.
pub(super) fn record_in_new_pass(encoder: &mut wgpu::CommandEncoder, label: &str, launch: &Launch) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: None,
    });
    launch.record(&mut pass);
}
