//! What a benchmark run records: the machine it ran on and each benchmark's figures,
//! as written to and read from `--json` files.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::suite::Group;
use super::timer::Method;
use crate::error::{Result, data, io};
use crate::gpu::{Gpu, driver_text};

/// The JSON layout's version; bumped when a field changes meaning.
pub const SCHEMA: u32 = 1;

/// A whole run: where, when, how, and every benchmark's figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`] of the writer.
    pub schema: u32,
    /// This crate's name and version.
    pub tool: String,
    /// When the run started (RFC 3339, UTC).
    pub date: String,
    /// `full` or `quick`.
    pub suite: String,
    /// The adapter, driver and software the figures come from.
    pub environment: Environment,
    /// One entry per benchmark, in the order they ran.
    pub results: Vec<Entry>,
}

/// The adapter and software a run measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Environment {
    /// The adapter's name.
    pub adapter: String,
    /// PCI vendor id in hex, with the vendor's name where known.
    pub vendor: String,
    /// PCI device id in hex.
    pub device: String,
    /// Discrete, integrated, virtual, CPU or other.
    pub device_type: String,
    /// Vulkan, Metal, DX12 or GL.
    pub backend: String,
    /// The driver's name.
    pub driver: String,
    /// The driver's version and details.
    pub driver_info: String,
    /// The wgpu version this build uses.
    pub wgpu_version: String,
    /// Operating system and CPU architecture of the host.
    pub os: String,
    /// How times were measured.
    pub timing: Method,
    /// Nanoseconds per GPU timestamp tick (with [`Method::GpuTimestamps`]).
    pub timestamp_period_ns: Option<f64>,
    /// The kernel variants and tile shapes the run used where a benchmark names no
    /// tuning of its own ([`Entry::tuning`]).
    pub tuning: String,
    /// The device's limits, as wgpu names them.
    pub limits: serde_json::Value,
    /// The adapter's optional features.
    pub features: Vec<String>,
}

/// One benchmark's identity and figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// Which part of the suite.
    pub group: Group,
    /// What ran.
    pub name: String,
    /// The shapes it ran at.
    pub shape: String,
    /// Timed runs (each one submission).
    pub runs: usize,
    /// Repetitions of the work recorded into each run; times are per repetition.
    pub reps_per_run: usize,
    /// Untimed runs before the timed ones.
    pub warmups: usize,
    /// Milliseconds per repetition: median, fastest and slowest run.
    pub time_ms: Option<Stats>,
    /// Floating-point operations per second at the median, in units of 10^9.
    pub gflops: Option<f64>,
    /// Compulsory traffic (inputs and outputs once each) per second at the median, in
    /// units of 10^9 bytes.
    pub gbps: Option<f64>,
    /// Images per second at the median.
    pub images_per_sec: Option<f64>,
    /// Bytes of GPU buffers the benchmark holds.
    pub memory_bytes: Option<u64>,
    /// The tuning it ran with where the tuning cache held one for its model (as
    /// [`crate::launch::Tuning`] prints); `None`: the environment's.
    #[serde(default)]
    pub tuning: Option<String>,
    /// Why the benchmark could not run, if it could not.
    pub error: Option<String>,
}

/// Median, minimum and maximum of some runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The middle run (the mean of the middle two for an even count).
    pub median: f64,
    /// The fastest run.
    pub min: f64,
    /// The slowest run.
    pub max: f64,
}

impl Stats {
    /// The statistics of `values` (at least one).
    pub fn of(values: &[f64]) -> Stats {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stats {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }
}

impl Environment {
    /// Describes `gpu` as the run measures it.
    pub(crate) fn of(gpu: &Gpu, timing: Method) -> Environment {
        let info = gpu.info();
        let features = gpu
            .device()
            .features()
            .iter_names()
            .map(|(name, _)| name.to_string())
            .collect();
        Environment {
            adapter: info.name.clone(),
            vendor: match vendor_name(info.vendor) {
                Some(name) => format!("{:#06x} ({name})", info.vendor),
                None => format!("{:#06x}", info.vendor),
            },
            device: format!("{:#06x}", info.device),
            device_type: format!("{:?}", info.device_type),
            backend: format!("{:?}", info.backend),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            wgpu_version: env!("VQVAE_WGPU_VERSION").to_string(),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            timing,
            timestamp_period_ns: (timing == Method::GpuTimestamps)
                .then(|| f64::from(gpu.queue().get_timestamp_period())),
            tuning: format!("{:?}", gpu.tuning()),
            limits: serde_json::to_value(gpu.limits()).unwrap_or_default(),
            features,
        }
    }

    /// One line: adapter, backend, driver, timing.
    pub fn summary(&self) -> String {
        format!(
            "{} ({}, {}, {}; wgpu {}; {})",
            self.adapter,
            self.device_type,
            self.backend,
            driver_text(&self.driver, &self.driver_info),
            self.wgpu_version,
            match self.timing {
                Method::GpuTimestamps => "GPU timestamps",
                Method::WallClock => "wall clock",
            }
        )
    }
}

/// PCI vendor ids of the usual GPU makers.
fn vendor_name(id: u32) -> Option<&'static str> {
    Some(match id {
        0x10de => "NVIDIA",
        0x1002 | 0x1022 => "AMD",
        0x8086 => "Intel",
        0x106b => "Apple",
        0x13b5 => "Arm",
        0x5143 => "Qualcomm",
        0x1010 => "Imagination",
        0x14e4 => "Broadcom",
        0x10005 => "Mesa",
        _ => return None,
    })
}

impl Report {
    /// Writes the report as pretty JSON to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a report serialises");
        std::fs::write(path, text + "\n").map_err(io("writing", path))
    }

    /// Reads a report written by [`Report::write`].
    pub fn read(path: &Path) -> Result<Report> {
        let text = std::fs::read_to_string(path).map_err(io("reading", path))?;
        let report: Report = serde_json::from_str(&text)
            .map_err(|e| data(path, format!("not a `vqvae bench --json` report ({e})")))?;
        if report.schema != SCHEMA {
            return Err(data(
                path,
                format!(
                    "report schema {} but this build reads schema {SCHEMA}",
                    report.schema
                ),
            ));
        }
        Ok(report)
    }
}
