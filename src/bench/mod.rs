//! `vqvae bench`: a fixed suite measured the same way on every adapter, reported as a
//! table and as JSON that compares across machines.
//!
//! Each benchmark is built once (buffers, bind groups, pipelines), run once to
//! calibrate how many repetitions fill a run of about [`TARGET_SECONDS`], warmed up,
//! then timed over several runs of one submission each. Times are per repetition.

mod data;
mod profile;
mod report;
mod suite;
mod table;
mod timer;

pub use profile::{PROFILE_ROWS, Profile, ProfileRow, run as profile};
pub use report::{Entry, Environment, Report, SCHEMA, Stats};
pub use suite::Group;
pub use table::{compare, group_break, header, row};
pub use timer::Method;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::launch::Tuning;
use crate::tune::Target;
pub(crate) use suite::model_launch;
use suite::{Builder, Case, Job};
pub(crate) use timer::Timer;

/// Work recorded into one timed run is repeated until the run takes about this long
/// (bounded by [`MAX_REPS`]); slower work runs once.
pub const TARGET_SECONDS: f64 = 0.01;

/// The most repetitions recorded into one run.
pub const MAX_REPS: usize = 1000;

/// What to run and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// The small suite only (under a minute on a CPU adapter).
    pub quick: bool,
    /// Timed runs per benchmark (at least 1).
    pub runs: usize,
    /// Time with the host clock even where GPU timestamps exist.
    pub wall_clock: bool,
    /// Only benchmarks whose name or shape contains this (case-insensitive).
    pub only: Option<String>,
    /// The kernel tunings to run each target's benchmarks with (see [`tuning_targets`]);
    /// the rest run with the tuning `gpu` holds.
    pub tunings: Vec<(Target, Tuning)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            quick: false,
            runs: 5,
            wall_clock: false,
            only: None,
            tunings: Vec::new(),
        }
    }
}

impl Options {
    /// The tuning of [`Options::tunings`] that `case` runs with, if any.
    fn tuning_of(&self, case: &Case) -> Option<Tuning> {
        let target = case.tuned_for?;
        self.tunings
            .iter()
            .find(|(t, _)| *t == target)
            .map(|&(_, tuning)| tuning)
    }
}

/// The training steps (model, batch, image size) whose tunings the benchmarks `options`
/// choose would run with, each once: the models' own cases, and the kernels at the
/// reference model's shapes. Look each up in the tuning cache to fill
/// [`Options::tunings`].
pub fn tuning_targets(options: &Options) -> Result<Vec<Target>> {
    suite::tuning_targets(options)
}

/// Runs `f` with `gpu` set to `tuning` (or left as it is), then restores its tuning.
fn with_tuning<T>(gpu: &mut Gpu, tuning: Option<Tuning>, f: impl FnOnce(&Gpu) -> T) -> T {
    let before = gpu.tuning();
    if let Some(t) = tuning {
        gpu.set_tuning(t);
    }
    let out = f(gpu);
    gpu.set_tuning(before);
    out
}

/// Runs the suite on `gpu`, calling `progress` with each entry as it is measured. Each
/// benchmark runs with its tuning from [`Options::tunings`], else with `gpu`'s.
///
/// A benchmark that fails (too large for the device, say) is recorded with its error
/// and the suite goes on; a lost device ends the suite with what was measured so far.
pub fn run(gpu: &mut Gpu, options: &Options, mut progress: impl FnMut(&Entry)) -> Result<Report> {
    if options.runs == 0 {
        return Err(Error::Usage("--runs 0: must be at least 1".into()));
    }
    let timer = Timer::new(gpu, options.wall_clock)?;
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut results = Vec::new();
    for case in suite::chosen(options)? {
        let tuning = options.tuning_of(&case);
        let mut entry = Entry {
            group: case.group,
            name: case.name.clone(),
            shape: case.shape.clone(),
            runs: options.runs,
            reps_per_run: 0,
            warmups: 0,
            time_ms: None,
            gflops: None,
            gbps: None,
            images_per_sec: None,
            memory_bytes: None,
            tuning: tuning.map(|t| format!("{t:?}")),
            error: None,
        };
        let measured = with_tuning(gpu, tuning, |gpu| {
            measure(gpu, &timer, &case.build, options.runs, &mut entry)
        });
        let lost = match measured {
            Ok(()) => false,
            Err(e) => {
                let lost = matches!(e, Error::DeviceLost { .. });
                entry.error = Some(e.to_string());
                lost
            }
        };
        progress(&entry);
        results.push(entry);
        if lost {
            break;
        }
    }
    Ok(Report {
        schema: SCHEMA,
        tool: format!("vqvae-wgpu {}", env!("CARGO_PKG_VERSION")),
        date,
        suite: if options.quick { "quick" } else { "full" }.to_string(),
        environment: Environment::of(gpu, timer.method()),
        results,
    })
}

/// Builds one benchmark, calibrates, warms up and times it into `entry`.
fn measure(
    gpu: &Gpu,
    timer: &Timer,
    build: &Builder,
    runs: usize,
    entry: &mut Entry,
) -> Result<()> {
    let before = gpu.allocated_bytes();
    let work = build(gpu)?;
    // Host work allocates no GPU memory worth reporting.
    entry.memory_bytes = matches!(work.job, Job::Gpu(_)).then(|| gpu.allocated_bytes() - before);
    let time = |reps: usize| match &work.job {
        Job::Gpu(launch) => timer.time(gpu, launch, reps),
        Job::Host(run) => {
            let start = std::time::Instant::now();
            for _ in 0..reps {
                run()?;
            }
            Ok(start.elapsed().as_secs_f64() / reps as f64)
        }
    };
    // The first run pays for first use; it also says how many repetitions fill a run.
    let once = time(1)?;
    let reps = ((TARGET_SECONDS / once).ceil() as usize).clamp(1, MAX_REPS);
    entry.warmups = 1;
    if reps > 1 {
        time(reps)?;
        entry.warmups += 1;
    }
    let times = (0..runs)
        .map(|_| time(reps))
        .collect::<Result<Vec<f64>>>()?;
    let stats = Stats::of(&times);
    let seconds = stats.median;
    entry.reps_per_run = reps;
    entry.time_ms = Some(Stats {
        median: stats.median * 1e3,
        min: stats.min * 1e3,
        max: stats.max * 1e3,
    });
    entry.gflops = work.flops.map(|f| f / seconds / 1e9);
    entry.gbps = work.bytes.map(|b| b / seconds / 1e9);
    entry.images_per_sec = work.images.map(|n| n / seconds);
    Ok(())
}
