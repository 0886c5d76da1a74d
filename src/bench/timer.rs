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
