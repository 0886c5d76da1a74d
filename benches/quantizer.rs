//! The quantiser component over a sweep of N, K and D: vectors/s and GFLOP/s on the
//! current adapter, its memory, and a plain-Rust CPU implementation of the same job
//! measured in the same run.
//!
//! `cargo bench --bench quantizer` (`-- --quick` for a short sweep).

use std::time::Instant;

use vqvae_wgpu::quantizer::{Layout, Metric, QuantizeBindings, Quantizer, QuantizerConfig};

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
        let run = || {
            let mut encoder = device.create_command_encoder(&Default::default());
            q.record(&mut encoder, &bindings).expect("record");
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
        let t = times[1];
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
}
