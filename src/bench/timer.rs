//! Timing recorded work on the GPU: timestamp queries around one compute pass where
//! the device has them, the wall clock around submit-and-wait otherwise.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::launch::Launch;

/// How a benchmark's times were measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// GPU timestamps written at the beginning and end of the compute pass: the time
    /// the GPU spent on the work, without submission or host overhead.
    GpuTimestamps,
    /// Host time from submit to the end of the wait: includes the driver's submission
    /// and completion latency.
    WallClock,
}

/// Times launches by the method the device allows.
pub(crate) struct Timer {
    queries: Option<Queries>,
}

struct Queries {
    set: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period_ns: f64,
}

impl Timer {
    /// GPU timestamps when the device has `TIMESTAMP_QUERY` and `wall_clock` is not
    /// asked for; the wall clock otherwise.
    pub(crate) fn new(gpu: &Gpu, wall_clock: bool) -> Result<Timer> {
        let has = gpu
            .device()
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY);
        if wall_clock || !has {
            return Ok(Timer { queries: None });
        }
        let queries = gpu.scoped("creating timestamp queries", || Queries {
            set: gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("bench timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolved: gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("bench timestamps"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            period_ns: f64::from(gpu.queue().get_timestamp_period()),
        })?;
        Ok(Timer {
            queries: Some(queries),
        })
    }

    /// The method in use.
    pub(crate) fn method(&self) -> Method {
        match self.queries {
            Some(_) => Method::GpuTimestamps,
            None => Method::WallClock,
        }
    }

    /// Seconds per run of `launch`, recorded `reps` times into one compute pass and
    /// submitted once.
    pub(crate) fn time(&self, gpu: &Gpu, launch: &Launch, reps: usize) -> Result<f64> {
        let mut encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("bench"),
            });
        {
            let timestamp_writes =
                self.queries
                    .as_ref()
                    .map(|q| wgpu::ComputePassTimestampWrites {
                        query_set: &q.set,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    });
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("bench"),
                timestamp_writes,
            });
            for _ in 0..reps {
                launch.record(&mut pass);
            }
        }
        let Some(q) = &self.queries else {
            let start = Instant::now();
            gpu.submit(encoder, "benchmark")?;
            return Ok(start.elapsed().as_secs_f64() / reps as f64);
        };
        encoder.resolve_query_set(&q.set, 0..2, &q.resolved, 0);
        gpu.submit(encoder, "benchmark")?;
        let bytes = gpu.read_bytes(&q.resolved, 0, 16)?;
        let [start, end]: [u64; 2] = bytemuck::pod_read_unaligned(&bytes);
        if end <= start {
            return Err(Error::Gpu {
                context: "benchmark timing".into(),
                message: format!(
                    "the GPU's timestamps did not advance (begin {start}, end {end}); run with --wall-clock"
                ),
            });
        }
        Ok((end - start) as f64 * q.period_ns * 1e-9 / reps as f64)
    }
}

/// The most dispatches profiled in one submission: two timestamps each, within
/// wgpu's 4096 queries per set.
const PROFILE_CHUNK: usize = 2048;

/// Seconds each dispatch of `launch` takes on the GPU, in order: each runs in a compute
/// pass of its own between two timestamps, so the passes' boundaries cost a little.
pub(crate) fn profile(gpu: &Gpu, launch: &Launch) -> Result<Vec<f64>> {
    if !gpu
        .device()
        .features()
        .contains(wgpu::Features::TIMESTAMP_QUERY)
    {
        return Err(Error::Usage(
            "--profile needs GPU timestamp queries, which this adapter does not offer".into(),
        ));
    }
    let period_s = f64::from(gpu.queue().get_timestamp_period()) * 1e-9;
    let mut seconds = Vec::with_capacity(launch.len());
    for chunk in launch.dispatches().chunks(PROFILE_CHUNK) {
        let count = 2 * chunk.len() as u32;
        let (set, resolved) = gpu.scoped("creating profile timestamps", || {
            let set = gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            let resolved = gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile timestamps"),
                size: 8 * u64::from(count),
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (set, resolved)
        })?;
        let mut encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("profile"),
            });
        for (i, d) in chunk.iter().enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("profile"),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &set,
                    beginning_of_pass_write_index: Some(2 * i as u32),
                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                }),
            });
            d.record(&mut pass);
        }
        encoder.resolve_query_set(&set, 0..count, &resolved, 0);
        gpu.submit(encoder, "profile")?;
        let bytes = gpu.read_bytes(&resolved, 0, 8 * u64::from(count))?;
        let stamps: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        seconds.extend(
            stamps
                .chunks_exact(2)
                .map(|t| t[1].saturating_sub(t[0]) as f64 * period_s),
        );
    }
    Ok(seconds)
}
