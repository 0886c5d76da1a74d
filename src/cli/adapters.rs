//! `vqvae info` and `vqvae bench`: the adapters, and the benchmark suite on one of them.

use std::path::PathBuf;

use clap::Args;
use vqvae_wgpu::bench::{self, Report};
use vqvae_wgpu::error::{Error, Result};
use vqvae_wgpu::gpu::{self, Gpu, GpuOptions};
use vqvae_wgpu::launch::Tuning;
use vqvae_wgpu::tune::Target;
use vqvae_wgpu::tune::cache::{Cache, Key};

use super::common::AdapterArgs;

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// The small suite: under a minute on a CPU adapter.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Also write every figure, with the adapter, driver and limits, to this JSON file.
    #[arg(long, value_name = "FILE")]
    pub(crate) json: Option<PathBuf>,
    /// Print saved JSON results side by side with ratios to the first; runs nothing.
    #[arg(long, value_name = "FILE", num_args = 2.., conflicts_with_all = ["quick", "json", "runs", "wall_clock", "only", "profile"])]
    pub(crate) compare: Vec<PathBuf>,
    /// Timed runs per benchmark [default: 5; 3 with --quick].
    #[arg(long)]
    pub(crate) runs: Option<usize>,
    /// Time with the host clock even where the GPU has timestamp queries.
    #[arg(long)]
    pub(crate) wall_clock: bool,
    /// Only the benchmarks whose name or shape contains this.
    #[arg(long)]
    pub(crate) only: Option<String>,
    /// Split each GPU benchmark's time among its kernels (one timed pass per dispatch)
    /// instead of timing it whole.
    #[arg(long, conflicts_with_all = ["json", "wall_clock"])]
    pub(crate) profile: bool,
    /// Run every benchmark with the adapter's default kernel tuning rather than the one
    /// cached for its model.
    #[arg(long)]
    pub(crate) no_tune: bool,
    #[command(flatten)]
    pub(crate) adapter: AdapterArgs,
}

pub(crate) fn bench(a: &BenchArgs) -> Result<()> {
    if !a.compare.is_empty() {
        let reports = a
            .compare
            .iter()
            .map(|p| Ok((p.clone(), Report::read(p)?)))
            .collect::<Result<Vec<_>>>()?;
        print!("{}", bench::compare(&reports));
        return Ok(());
    }
    let mut gpu = Gpu::open_with(&a.adapter.options()?)?;
    println!("adapter: {}", gpu::describe(gpu.info()));
    let mut options = bench::Options {
        quick: a.quick,
        runs: a.runs.unwrap_or(if a.quick { 3 } else { 5 }),
        wall_clock: a.wall_clock,
        only: a.only.clone(),
        tunings: Vec::new(),
    };
    options.tunings = cached_tunings(&gpu, &options, a.no_tune)?;
    if a.profile {
        return bench::profile(&mut gpu, &options, |p| println!("\n{}", p.table()));
    }
    println!("{}", bench::header());
    let mut previous: Option<bench::Entry> = None;
    let report = bench::run(&mut gpu, &options, |entry| {
        if let Some(heading) = bench::group_break(previous.as_ref(), entry) {
            println!("{heading}");
        }
        println!("{}", bench::row(entry));
        previous = Some(entry.clone());
    })?;
    println!("\ntiming: {}", report.environment.summary());
    if let Some(path) = &a.json {
        report.write(path)?;
        println!("results: {}", path.display());
    }
    let failed = report.results.iter().filter(|e| e.error.is_some()).count();
    if failed > 0 {
        return Err(Error::Usage(format!(
            "{failed} of {} benchmarks failed (their errors are above)",
            report.results.len()
        )));
    }
    Ok(())
}

/// The cached tuning of each training step the chosen benchmarks run with (none with
/// `no_tune`), each announced; the others run with the adapter's default.
fn cached_tunings(
    gpu: &Gpu,
    options: &bench::Options,
    no_tune: bool,
) -> Result<Vec<(Target, Tuning)>> {
    let targets = bench::tuning_targets(options)?;
    if no_tune || targets.is_empty() {
        println!(
            "tuning: the adapter's default{}",
            if no_tune { " (--no-tune)" } else { "" }
        );
        return Ok(Vec::new());
    }
    let mut notice = |line: String| eprintln!("{line}");
    let cache = Cache::open(Cache::default_path(), &mut notice);
    let mut found = Vec::new();
    for target in targets {
        match cache.get(&Key::of(gpu, &target), &mut notice) {
            Some(tuning) => {
                println!(
                    "tuning: cached for {} in {}",
                    target.describe(),
                    cache.display()
                );
                found.push((target, tuning));
            }
            None => println!(
                "tuning: the adapter's default for {} (none cached; `vqvae tune` finds one)",
                target.describe()
            ),
        }
    }
    Ok(found)
}

pub(crate) fn info(adapter: &AdapterArgs) -> Result<()> {
    let options = adapter.options()?;
    let all = gpu::adapters(&GpuOptions {
        backends: wgpu::Backends::all(),
        ..options.clone()
    });
    println!("adapters found:");
    for a in &all {
        println!("  {}", gpu::describe(&a.get_info()));
    }
    let gpu = Gpu::open_with(&options)?;
    let l = gpu.limits();
    println!("chosen: {}", gpu::describe(gpu.info()));
    println!("  backend: {:?}", gpu.info().backend);
    println!("  tuning: {:?}", gpu.tuning());
    println!("  features: {:?}", gpu.device().features());
    println!(
        "  max_storage_buffer_binding_size: {}",
        l.max_storage_buffer_binding_size
    );
    println!("  max_buffer_size: {}", l.max_buffer_size);
    println!(
        "  max_compute_workgroup_storage_size: {}",
        l.max_compute_workgroup_storage_size
    );
    println!(
        "  max_compute_invocations_per_workgroup: {}",
        l.max_compute_invocations_per_workgroup
    );
    println!(
        "  max_compute_workgroups_per_dimension: {}",
        l.max_compute_workgroups_per_dimension
    );
    Ok(())
}
