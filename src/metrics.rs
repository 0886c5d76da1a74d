//! Reading training metrics back without stalling the GPU: each step copies its loss
//! terms and code usage into a ring on the GPU; at the end of a window the ring is
//! copied to one of two staging buffers and mapped asynchronously, to be read once the
//! GPU gets there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// Floats per step in the ring: 4 loss terms, 2 usage figures, 2 padding.
const ROW: u64 = 8;

/// One step's figures.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct StepMetrics {
    /// The step (1 for the first).
    pub step: u64,
    /// Total loss.
    pub loss: f32,
    /// Reconstruction MSE.
    pub recon: f32,
    /// Codebook term.
    pub codebook: f32,
    /// Commitment term.
    pub commitment: f32,
    /// Perplexity of the batch's codes.
    pub perplexity: f32,
    /// Codes used in the batch.
    pub codes_used: u32,
}

struct Staging {
    buffer: wgpu::Buffer,
    /// First step and count of a copy in flight, and whether its mapping has completed.
    pending: Option<(u64, usize, Arc<AtomicBool>)>,
}

/// The ring, its staging buffers and what has been copied where.
pub struct MetricsRing {
    ring: wgpu::Buffer,
    window: usize,
    staging: [Staging; 2],
    next: usize,
    window_start: Option<u64>,
    /// A staging copy was recorded and awaits its submission before mapping.
    to_map: bool,
}

impl MetricsRing {
    /// A ring for windows of `window` steps.
    pub fn new(gpu: &Gpu, window: usize) -> MetricsRing {
        let size = window as u64 * ROW * 4;
        let make = |label, usage| {
            gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let staging = || Staging {
            buffer: make(
                "metrics staging",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            pending: None,
        };
        MetricsRing {
            ring: make(
                "metrics ring",
                wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            ),
            window,
            staging: [staging(), staging()],
            next: 0,
            window_start: None,
            to_map: false,
        }
    }

    /// Records the copy of `step`'s figures into the ring, and at the end of a window
    /// (or when `last`) the copy of the window to a staging buffer. Returns rows that
    /// had to be read first to free that buffer.
    pub fn record(
        &mut self,
        gpu: &Gpu,
        encoder: &mut wgpu::CommandEncoder,
        step: u64,
        terms: &Tensor,
        usage: &Tensor,
        last: bool,
    ) -> Result<Vec<StepMetrics>> {
        let start = *self.window_start.get_or_insert(step);
        let slot = step - start;
        encoder.copy_buffer_to_buffer(
            terms.buffer(),
            terms.offset(),
            &self.ring,
            slot * ROW * 4,
            16,
        );
        encoder.copy_buffer_to_buffer(
            usage.buffer(),
            usage.offset(),
            &self.ring,
            (slot * ROW + 4) * 4,
            8,
        );
        let count = slot as usize + 1;
        if count < self.window && !last {
            return Ok(Vec::new());
        }
        let freed = self.wait(gpu, self.next)?;
        let s = &mut self.staging[self.next];
        encoder.copy_buffer_to_buffer(&self.ring, 0, &s.buffer, 0, count as u64 * ROW * 4);
        s.pending = Some((start, count, Arc::new(AtomicBool::new(false))));
        self.window_start = None;
        self.to_map = true;
        Ok(freed)
    }

    /// Call after submitting the command buffer that [`MetricsRing::record`] wrote to:
    /// starts mapping a staging buffer filled by it.
    pub fn submitted(&mut self) {
        if !std::mem::take(&mut self.to_map) {
            return;
        }
        let s = &mut self.staging[self.next];
        let Some((_, _, done)) = &s.pending else {
            return;
        };
        let flag = done.clone();
        s.buffer.map_async(wgpu::MapMode::Read, .., move |r| {
            flag.store(r.is_ok(), Ordering::Release)
        });
        self.next = 1 - self.next;
    }

    /// Rows whose staging buffers have been mapped by now; never waits.
    pub fn poll(&mut self, gpu: &Gpu) -> Result<Vec<StepMetrics>> {
        let _ = gpu.device().poll(wgpu::PollType::Poll);
        let mut rows = Vec::new();
        for i in [self.next, 1 - self.next] {
            if self.staging[i]
                .pending
                .as_ref()
                .is_some_and(|(_, _, d)| d.load(Ordering::Acquire))
            {
                rows.extend(self.read(i));
            }
        }
        rows.sort_by_key(|r| r.step);
        Ok(rows)
    }

    /// Every row copied so far, waiting for the GPU if need be.
    pub fn flush(&mut self, gpu: &Gpu) -> Result<Vec<StepMetrics>> {
        let mut rows = Vec::new();
        for i in [self.next, 1 - self.next] {
            rows.extend(self.wait(gpu, i)?);
        }
        rows.sort_by_key(|r| r.step);
        Ok(rows)
    }

    fn wait(&mut self, gpu: &Gpu, i: usize) -> Result<Vec<StepMetrics>> {
        let Some((_, _, done)) = &self.staging[i].pending else {
            return Ok(Vec::new());
        };
        let done = done.clone();
        while !done.load(Ordering::Acquire) {
            gpu.wait(None, "reading metrics")?;
            if !done.load(Ordering::Acquire) {
                return Err(Error::DeviceLost {
                    context: "reading metrics".into(),
                    message: "mapping the metrics buffer failed".into(),
                });
            }
        }
        Ok(self.read(i))
    }

    fn read(&mut self, i: usize) -> Vec<StepMetrics> {
        let s = &mut self.staging[i];
        let Some((start, count, _)) = s.pending.take() else {
            return Vec::new();
        };
        let rows = {
            let view = s
                .buffer
                .get_mapped_range(..count as u64 * ROW * 4)
                .expect("mapped above");
            let floats: &[f32] = bytemuck::cast_slice(&view);
            floats
                .chunks_exact(ROW as usize)
                .enumerate()
                .map(|(k, r)| StepMetrics {
                    step: start + k as u64 + 1,
                    loss: r[0],
                    recon: r[1],
                    codebook: r[2],
                    commitment: r[3],
                    perplexity: r[4],
                    codes_used: r[5] as u32,
                })
                .collect()
        };
        s.buffer.unmap();
        rows
    }
}
