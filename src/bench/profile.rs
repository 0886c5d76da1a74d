//! `vqvae bench --profile`: where a benchmark's time goes, dispatch by dispatch.

use std::collections::HashMap;

use super::suite::{self, Job};
use super::{Options, Stats, timer, with_tuning};
use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// The rows a profile table prints; the rest are summed into one line.
pub const PROFILE_ROWS: usize = 24;

/// One benchmark's time split among its kernels.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The benchmark.
    pub name: String,
    /// Its shapes.
    pub shape: String,
    /// Its dispatches, one row for each kernel at each grid (a layer, most often),
    /// slowest first.
    pub rows: Vec<ProfileRow>,
}

/// The dispatches of one kernel at one grid within a profiled benchmark.
#[derive(Clone, Debug)]
pub struct ProfileRow {
    /// `operation/entry point`.
    pub kernel: String,
    /// Workgroups per dispatch.
    pub grid: [u32; 3],
    /// Dispatches of it per run of the benchmark.
    pub calls: usize,
    /// Milliseconds those dispatches take together (the median of the runs).
    pub ms: f64,
}

impl Profile {
    /// Milliseconds of every dispatch together.
    pub fn total_ms(&self) -> f64 {
        self.rows.iter().map(|r| r.ms).sum()
    }

    /// The table: the slowest [`PROFILE_ROWS`] rows, then the rest as one line.
    pub fn table(&self) -> String {
        let total = self.total_ms();
        let calls: usize = self.rows.iter().map(|r| r.calls).sum();
        let mut out = format!(
            "{} ({}): {total:.2} ms in {calls} dispatches\n{:>9} {:>6} {:>6}  {:<16} kernel\n",
            self.name, self.shape, "ms", "share", "calls", "workgroups"
        );
        let line = |ms: f64, calls: usize, grid: &str, kernel: &str| {
            format!(
                "{ms:>9.3} {:>5.1}% {calls:>6}  {grid:<16} {kernel}\n",
                100.0 * ms / total
            )
        };
        for r in self.rows.iter().take(PROFILE_ROWS) {
            let grid = format!("{}x{}x{}", r.grid[0], r.grid[1], r.grid[2]);
            out += &line(r.ms, r.calls, &grid, &r.kernel);
        }
        let rest = &self.rows[self.rows.len().min(PROFILE_ROWS)..];
        if !rest.is_empty() {
            let ms = rest.iter().map(|r| r.ms).sum();
            let calls = rest.iter().map(|r| r.calls).sum();
            out += &line(ms, calls, "", &format!("({} more rows)", rest.len()));
        }
        out
    }
}

/// Profiles every GPU benchmark `options` choose, calling `progress` with each: one
/// warm-up run, then `options.runs` runs whose median each dispatch reports. Each runs
/// with its tuning from [`Options::tunings`], else with `gpu`'s.
pub fn run(gpu: &mut Gpu, options: &Options, mut progress: impl FnMut(&Profile)) -> Result<()> {
    if options.runs == 0 {
        return Err(Error::Usage("--runs 0: must be at least 1".into()));
    }
    for case in suite::chosen(options)? {
        let timed = with_tuning(gpu, options.tuning_of(&case), |gpu| -> Result<_> {
            let work = (case.build)(gpu)?;
            let Job::Gpu(launch) = work.job else {
                return Ok(None);
            };
            timer::profile(gpu, &launch)?;
            let runs = (0..options.runs)
                .map(|_| timer::profile(gpu, &launch))
                .collect::<Result<Vec<_>>>()?;
            Ok(Some((launch, runs)))
        });
        let Some((launch, runs)) = timed? else {
            continue;
        };
        let mut rows: Vec<ProfileRow> = Vec::new();
        let mut index = HashMap::new();
        for (i, d) in launch.dispatches().iter().enumerate() {
            let times: Vec<f64> = runs.iter().map(|r| r[i]).collect();
            let ms = Stats::of(&times).median * 1e3;
            let key = (d.name(), d.grid());
            let at = *index.entry(key.clone()).or_insert_with(|| {
                rows.push(ProfileRow {
                    kernel: key.0,
                    grid: key.1,
                    calls: 0,
                    ms: 0.0,
                });
                rows.len() - 1
            });
            rows[at].calls += 1;
            rows[at].ms += ms;
        }
        rows.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        progress(&Profile {
            name: case.name,
            shape: case.shape,
            rows,
        });
    }
    Ok(())
}
