//! The quantiser component over a sweep of N, K and D: vectors/s and GFLOP/s on the
//! current adapter, its memory, and a plain-Rust CPU implementation of the same job
//! measured in the same run; then the component's other searches (top-k, residual VQ) at
//! one shape beside the nearest code.
//!
//! `cargo bench --bench quantizer` (`-- --quick` for a short sweep).

use std::time::Instant;

use vqvae_wgpu::quantizer::{
    Layout, Metric, QuantizeBindings, Quantizer, QuantizerConfig, ResidualBindings, ResidualConfig,
    ResidualQuantizer, TopKBindings,
};

/// Rows the CPU implementation is timed on (its cost is linear in N).
const CPU_ROWS: usize = 4096;

fn buffer(device: &wgpu::Device, queue: &wgpu::Queue, data: &[f32]) -> wgpu::Buffer {
    let b = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (data.len() * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&b, 0, bytemuck::cast_slice(data));
    b
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// The same job on the CPU, f32, one thread: nearest code by ||e||^2 - 2 z.e.
fn cpu_nearest(z: &[f32], codebook: &[f32], dim: usize) -> Vec<u32> {
    let norms: Vec<f32> = codebook
        .chunks(dim)
        .map(|e| e.iter().map(|v| v * v).sum())
        .collect();
    z.chunks(dim)
        .map(|row| {
            let mut best = (0u32, f32::INFINITY);
            for (k, e) in codebook.chunks(dim).enumerate() {
                let dot: f32 = row.iter().zip(e).map(|(a, b)| a * b).sum();
                let d = norms[k] - 2.0 * dot;
                if d < best.1 {
                    best = (k as u32, d);
                }
            }
            best.0
        })
        .collect()
}

/// The median of three timed submits of what `record` records (after one untimed).
fn median_seconds(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    record: impl Fn(&mut wgpu::CommandEncoder),
) -> f64 {
    let run = || {
        let mut encoder = device.create_command_encoder(&Default::default());
        record(&mut encoder);
        let start = Instant::now();
        let i = queue.submit([encoder.finish()]);
        device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(i),
                timeout: None,
            })
            .expect("wait");
        start.elapsed().as_secs_f64()
    };
    run();
    let mut times: Vec<f64> = (0..3).map(|_| run()).collect();
    times.sort_by(f64::total_cmp);
    times[1]
}

/// Top-k and residual VQ through the components at N=16384 K=512 D=64, each against the
/// nearest-code search in the same run.
fn other_searches(device: &wgpu::Device, queue: &wgpu::Queue) {
    let (n, k, d) = (1usize << 14, 512usize, 64usize);
    let z = buffer(device, queue, &values(n * d, 1));
    let books = buffer(device, queue, &values(4 * k * d, 2));
    let out = |floats: usize| buffer(device, queue, &vec![0.0; floats]);
    let (idx, dist, sum) = (out(n * 32), out(n * 32), out(n * d));
    let config = QuantizerConfig {
        codes: k as u32,
        dim: d as u32,
        layout: Layout::Rows,
        metric: Metric::L2,
    };
    let q = Quantizer::new(device, queue, config).expect("quantizer");
    println!("\nN={n} K={k} D={d} through the components:");
    println!("{:<24} {:>10} {:>12}", "search", "GPU ms", "x nearest");
    let mut nearest = 0.0;
    for top in [1, 8, 32] {
        let b = TopKBindings {
            n: n as u32,
            k: top,
            input: z.as_entire_buffer_binding(),
            codebook: books.as_entire_buffer_binding(),
            indices: idx.as_entire_buffer_binding(),
            distances: Some(dist.as_entire_buffer_binding()),
        };
        let t = median_seconds(device, queue, |e| q.record_top_k(e, &b).expect("top-k"));
        if top == 1 {
            nearest = t;
        }
        println!(
            "{:<24} {:>10.3} {:>12.2}",
            format!("{top} nearest (top-k)"),
            t * 1e3,
            t / nearest
        );
    }
    for stages in [1u32, 2, 4] {
        let config = ResidualConfig {
            codes: k as u32,
            dim: d as u32,
            stages,
            layout: Layout::Rows,
            shared_codebook: false,
        };
        let rq = ResidualQuantizer::new(device, queue, config).expect("residual quantizer");
        let b = ResidualBindings {
            n: n as u32,
            input: z.as_entire_buffer_binding(),
            codebook: books.as_entire_buffer_binding(),
            codes: Some(idx.as_entire_buffer_binding()),
            quantized: Some(sum.as_entire_buffer_binding()),
            distances: None,
        };
        let t = median_seconds(device, queue, |e| rq.record(e, &b).expect("residual"));
        println!(
            "{:<24} {:>10.3} {:>12.2}",
            format!("residual VQ, {stages} stages"),
            t * 1e3,
            t / nearest
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    }))
    .expect("an adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .expect("a device");
    let info = adapter.get_info();
    let cpu = info.device_type == wgpu::DeviceType::Cpu;
    println!(
        "adapter: {} ({:?}, {:?})",
        info.name, info.device_type, info.backend
    );
    // (N, K, D): N from 1k to 1M at the model's K and D, then K and D swept.
    let mut cases: Vec<(usize, usize, usize)> =
        vec![(1 << 10, 512, 64), (1 << 14, 512, 64), (1 << 17, 512, 64)];
    if !cpu || !quick {
        cases.push((1 << 20, 512, 64));
    }
    cases.extend([
        (1 << 14, 16, 64),
        (1 << 14, 128, 64),
        (1 << 14, 2048, 64),
        (1 << 14, 8192, 64),
    ]);
    cases.extend([(1 << 16, 512, 3), (1 << 16, 512, 16), (1 << 14, 512, 256)]);
    if quick {
        cases.retain(|&(n, k, d)| n * k * d <= 1 << 30);
    }
    println!(
        "{:>8} {:>5} {:>4} {:>10} {:>13} {:>9} {:>10} {:>13} {:>8}",
        "N", "K", "D", "GPU ms", "GPU vectors/s", "GFLOP/s", "GPU MiB", "CPU vectors/s", "GPU/CPU"
    );
    for (n, k, d) in cases {
        let z = values(n * d, 1);
        let cb = values(k * d, 2);
        let (zb, cbb) = (buffer(&device, &queue, &z), buffer(&device, &queue, &cb));
        let idx = buffer(&device, &queue, &vec![0.0; n]);
        let q = Quantizer::new(
            &device,
            &queue,
            QuantizerConfig {
                codes: k as u32,
                dim: d as u32,
                layout: Layout::Rows,
                metric: Metric::L2,
            },
        )
        .expect("quantizer");
        let bindings = QuantizeBindings {
            n: n as u32,
            input: zb.as_entire_buffer_binding(),
            codebook: cbb.as_entire_buffer_binding(),
            indices: Some(idx.as_entire_buffer_binding()),
            quantized: None,
            distances: None,
        };
        let t = median_seconds(&device, &queue, |e| q.record(e, &bindings).expect("record"));
        // Inputs, codebook, indices and the K code norms: never N x K.
        let mib = ((n * d + k * d + n + k) * 4) as f64 / 1048576.0;
        let rows = n.min(CPU_ROWS);
        let start = Instant::now();
        std::hint::black_box(cpu_nearest(&z[..rows * d], &cb, d));
        let cpu_rate = rows as f64 / start.elapsed().as_secs_f64();
        let flops = 2.0 * (n * k * d) as f64;
        println!(
            "{n:>8} {k:>5} {d:>4} {:>10.3} {:>13.0} {:>9.2} {mib:>10.1} {cpu_rate:>13.0} {:>8.2}",
            t * 1e3,
            n as f64 / t,
            flops / t / 1e9,
            n as f64 / t / cpu_rate
        );
    }
    other_searches(&device, &queue);
}
