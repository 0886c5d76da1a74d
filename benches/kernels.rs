//! GFLOP/s of each kernel on the current adapter at the reference model's shapes
//! (batch 32, 32x32x3 input, H=128, R=32, K=512, D=64), the quantiser at N=8192,
//! K=512, D=64, and a 1x1 convolution that is a 1024^3 matrix product.
//!
//! `cargo bench --bench kernels` (set WGPU_BACKEND / WGPU_ADAPTER_NAME to choose the
//! adapter). Each kernel is recorded several times into one compute pass, submitted
//! and waited for; the median of the repetitions is reported.

use std::time::Instant;

use vqvae_wgpu::kernels::conv::{self, ConvShape};
use vqvae_wgpu::kernels::optim::{Adam, AdamConfig};
use vqvae_wgpu::kernels::{loss, quantize, vq_backward};
use vqvae_wgpu::{DType, Gpu, Launch, Tensor};

const REPEATS: usize = 5;

fn zeros(gpu: &Gpu, shape: &[usize]) -> Tensor {
    Tensor::zeros(gpu, shape, DType::F32).expect("allocation")
}

fn filled(gpu: &Gpu, shape: &[usize], seed: u32) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    Tensor::from_f32(gpu, shape, &data).expect("upload")
}

/// Whether `name` matches the filter given on the command line (`cargo bench --bench
/// kernels -- conv3`), if any.
fn selected(name: &str) -> bool {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    args.is_empty() || args.iter().any(|a| name.contains(a.as_str()))
}

/// Median seconds of one run of `launch`, each timing covering `per_submit` runs.
fn time(gpu: &Gpu, launch: &Launch, per_submit: usize) -> f64 {
    let run = || {
        let mut encoder = gpu.device().create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for _ in 0..per_submit {
                launch.record(&mut pass);
            }
        }
        let start = Instant::now();
        gpu.submit(encoder, "bench").expect("submit");
        start.elapsed().as_secs_f64() / per_submit as f64
    };
    run(); // warm-up: pipeline compilation, first-touch allocation
    let mut times: Vec<f64> = (0..REPEATS).map(|_| run()).collect();
    times.sort_by(f64::total_cmp);
    times[REPEATS / 2]
}

/// Times `launch` if `name` is selected and prints its figures.
fn measure(gpu: &Gpu, name: &str, shape: &str, launch: &Launch, per_submit: usize, flops: f64) {
    if !selected(name) {
        return;
    }
    let seconds = time(gpu, launch, per_submit);
    println!(
        "{name:<34} {shape:<34} {:>10.3} ms {:>9.2} GFLOP/s",
        seconds * 1e3,
        flops / seconds / 1e9
    );
}

fn bench_conv(gpu: &Gpu, name: &str, s: ConvShape, per_submit: usize) {
    let x = filled(gpu, &s.x_shape(), 1);
    let w = filled(gpu, &s.w_shape(), 2);
    let b = filled(gpu, &[s.cout], 3);
    let y = zeros(gpu, &s.y_shape());
    let dy = filled(gpu, &s.y_shape(), 4);
    let dx = zeros(gpu, &s.x_shape());
    let dw = zeros(gpu, &s.w_shape());
    let shape = format!(
        "{}x{}x{}x{} k{} s{} -> {}",
        s.batch, s.cin, s.hin, s.win, s.kh, s.stride, s.cout
    );
    let f = conv::conv2d(gpu, &s, &x, &w, &b, &y, conv::Relu::OUTPUT).expect("conv2d");
    measure(
        gpu,
        &format!("{name} forward"),
        &shape,
        &f,
        per_submit,
        s.flops(),
    );
    let g = conv::conv2d_input_grad(gpu, &s, &dy, &w, &dx).expect("input grad");
    measure(
        gpu,
        &format!("{name} input grad"),
        &shape,
        &g,
        per_submit,
        s.flops(),
    );
    let g = conv::conv2d_weight_grad(gpu, &s, &x, &dy, &dw, false).expect("weight grad");
    measure(
        gpu,
        &format!("{name} weight grad"),
        &shape,
        &g,
        per_submit,
        s.flops(),
    );
}

fn bench_deconv(gpu: &Gpu, name: &str, s: ConvShape, per_submit: usize) {
    let x = filled(gpu, &s.y_shape(), 1);
    let w = filled(gpu, &s.w_shape(), 2);
    let b = filled(gpu, &[s.cin], 3);
    let out = zeros(gpu, &s.x_shape());
    let shape = format!(
        "{}x{}x{}x{} k{} s{} -> {}",
        s.batch,
        s.cout,
        s.hout(),
        s.wout(),
        s.kh,
        s.stride,
        s.cin
    );
    let f = conv::conv_transpose2d(gpu, &s, &x, &w, &b, &out, conv::Relu::INPUT)
        .expect("conv_transpose2d");
    measure(
        gpu,
        &format!("{name} forward"),
        &shape,
        &f,
        per_submit,
        s.flops(),
    );
    let dout = filled(gpu, &s.x_shape(), 4);
    let dx = zeros(gpu, &s.y_shape());
    let g = conv::conv_transpose2d_input_grad(gpu, &s, &dout, &w, &dx).expect("input grad");
    measure(
        gpu,
        &format!("{name} input grad"),
        &shape,
        &g,
        per_submit,
        s.flops(),
    );
    let dw = zeros(gpu, &s.w_shape());
    let g = conv::conv_transpose2d_weight_grad(gpu, &s, &x, &dout, &dw, true).expect("weight grad");
    measure(
        gpu,
        &format!("{name} weight grad"),
        &shape,
        &g,
        per_submit,
        s.flops(),
    );
}

fn main() {
    let gpu = Gpu::open().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1);
    });
    let cpu = gpu.info().device_type == wgpu::DeviceType::Cpu;
    let reps = if cpu { 1 } else { 20 };
    println!("adapter: {}", vqvae_wgpu::gpu::describe(gpu.info()));
    println!("tuning:  {:?}\n", gpu.tuning());
    let (b, c, h, r, k, d) = (32, 3, 128, 32, 512, 64);
    let conv = |cin, cout, size, kk, stride, pad| ConvShape {
        batch: b,
        cin,
        cout,
        hin: size,
        win: size,
        kh: kk,
        kw: kk,
        stride,
        pad,
    };
    let mm = ConvShape {
        batch: 1,
        cin: 1024,
        cout: 1024,
        hin: 32,
        win: 32,
        kh: 1,
        kw: 1,
        stride: 1,
        pad: 0,
    };
    let f = conv::conv2d(
        &gpu,
        &mm,
        &filled(&gpu, &mm.x_shape(), 1),
        &filled(&gpu, &mm.w_shape(), 2),
        &zeros(&gpu, &[1024]),
        &zeros(&gpu, &mm.y_shape()),
        conv::Relu::NONE,
    )
    .expect("matmul");
    measure(
        &gpu,
        "1x1 conv = 1024^3 matmul",
        "1x1024x32x32 k1 -> 1024",
        &f,
        reps,
        mm.flops(),
    );
    bench_conv(&gpu, "encoder.conv1", conv(c, h / 2, 32, 4, 2, 1), reps);
    bench_conv(&gpu, "encoder.conv2", conv(h / 2, h, 16, 4, 2, 1), reps);
    bench_conv(&gpu, "encoder.conv3", conv(h, h, 8, 3, 1, 1), reps);
    bench_conv(&gpu, "res.conv1", conv(h, r, 8, 3, 1, 1), reps);
    bench_conv(&gpu, "res.conv2", conv(r, h, 8, 1, 1, 0), reps);
    bench_conv(&gpu, "pre_vq", conv(h, d, 8, 1, 1, 0), reps);
    bench_conv(&gpu, "decoder.conv1", conv(d, h, 8, 3, 1, 1), reps);
    bench_deconv(
        &gpu,
        "decoder.deconv1",
        ConvShape::transposed(b, h, h / 2, [8, 8], 4, 2, 1).expect("shape"),
        reps,
    );
    bench_deconv(
        &gpu,
        "decoder.deconv2",
        ConvShape::transposed(b, h / 2, c, [16, 16], 4, 2, 1).expect("shape"),
        reps,
    );

    let n = 8192;
    let z = filled(&gpu, &[n / 64, d, 8, 8], 5);
    let cb = filled(&gpu, &[k, d], 6);
    let (idx, dist, zq) = (
        Tensor::zeros(&gpu, &[n], DType::U32).expect("alloc"),
        zeros(&gpu, &[n]),
        zeros(&gpu, z.shape()),
    );
    let q = quantize::quantize(&gpu, &z, &cb, &idx, Some(&dist), Some(&zq)).expect("quantize");
    let qflops = 2.0 * (n * k * d) as f64;
    measure(
        &gpu,
        "quantize",
        &format!("N={n} K={k} D={d}"),
        &q,
        reps,
        qflops,
    );
    gpu.run(&[&q]).expect("quantize");
    let (gze, gcb) = (zeros(&gpu, z.shape()), zeros(&gpu, &[k, d]));
    let vb = vq_backward::vq_backward(
        &gpu,
        &z,
        &zq,
        &idx,
        &cb,
        &filled(&gpu, z.shape(), 7),
        0.25,
        &gze,
        &gcb,
    )
    .expect("vq_backward");
    measure(
        &gpu,
        "vq_backward",
        &format!("N={n} K={k} D={d}"),
        &vb,
        reps,
        4.0 * (n * d) as f64,
    );
    let xs = [b, c, 32, 32];
    let l = loss::vqvae_loss(
        &gpu,
        &filled(&gpu, &xs, 8),
        &filled(&gpu, &xs, 9),
        &dist,
        n * d,
        0.25,
        &zeros(&gpu, &xs),
        &zeros(&gpu, &[4]),
    )
    .expect("loss");
    measure(
        &gpu,
        "loss (mse + terms)",
        "32x3x32x32",
        &l,
        reps,
        4.0 * (b * c * 1024) as f64,
    );
    let params = 1 << 20;
    let t = || zeros(&gpu, &[params]);
    let adam = Adam::new(&gpu, &t(), &t(), &t(), &t(), AdamConfig::default()).expect("adam");
    measure(
        &gpu,
        "adam",
        "1M parameters",
        adam.launch(),
        reps,
        12.0 * params as f64,
    );
}
