//! A residual-VQ tokenizer round trip: frames of a signal become S tokens each and come
//! back. Each stage's codebook is fitted by k-means on the GPU to what the stages before
//! it left; the frames go through the `ResidualQuantizer` component on a device opened
//! the plain wgpu way, and the tokens decode to exactly the quantised frames.
//!
//! `cargo run --release --example rvq_tokenizer -- [STAGES] [CODES]`
//! (defaults: 4 stages of 16 codes, 16 bits a frame).

use vqvae_wgpu::kernels::{kmeans, rvq};
use vqvae_wgpu::quantizer::{Layout, ResidualBindings, ResidualConfig, ResidualQuantizer};
use vqvae_wgpu::{DType, Tensor};

/// Frames of this many samples, and how many.
const DIM: usize = 8;
const FRAMES: usize = 4096;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let stages: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(4);
    let codes: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(16);

    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;
    println!("adapter: {}", adapter.get_info().name);

    // A signal of three drifting tones, cut into frames of DIM samples: [FRAMES, DIM].
    let signal: Vec<f32> = (0..FRAMES * DIM)
        .map(|t| {
            let t = t as f32;
            (t * 0.05).sin() + 0.5 * (t * 0.31 + (t * 0.001).sin()).sin() + 0.25 * (t * 1.7).cos()
        })
        .collect();
    let storage = |bytes: &[u8]| {
        let b = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.len().max(4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        queue.write_buffer(&b, 0, bytes);
        b
    };
    let frames = storage(bytemuck::cast_slice(&signal));
    // The S codebooks, one after another: [S, K, DIM].
    let codebooks = storage(&vec![0; stages * codes * DIM * 4]);
    let (tokens, quantized, errors) = (
        storage(&vec![0; FRAMES * stages * 4]),
        storage(&vec![0; FRAMES * DIM * 4]),
        storage(&vec![0; FRAMES * 4]),
    );

    let power: f32 = signal.iter().map(|v| v * v).sum::<f32>() / signal.len() as f32;
    println!("{FRAMES} frames of {DIM} samples, mean square {power:.4}");
    let mut residual = signal.clone();
    for s in 1..=stages {
        // Fit stage s's codebook to the residual the earlier stages leave.
        let quantizer = ResidualQuantizer::new(
            &device,
            &queue,
            ResidualConfig {
                codes: codes as u32,
                dim: DIM as u32,
                stages: s as u32,
                layout: Layout::Rows,
                shared_codebook: false,
            },
        )?;
        let gpu = quantizer.gpu();
        let left = storage(bytemuck::cast_slice(&residual));
        let book = Tensor::from_buffer(
            gpu,
            codebooks.clone(),
            ((s - 1) * codes * DIM * 4) as u64,
            &[codes, DIM],
            DType::F32,
        );
        // Stage offsets must be aligned for a view; fit into a buffer of its own else.
        let fitted = match book {
            Ok(view) => view,
            Err(_) => Tensor::zeros(gpu, &[codes, DIM], DType::F32)?,
        };
        let clustering = kmeans::kmeans(
            gpu,
            &Tensor::from_buffer(gpu, left, 0, &[FRAMES, DIM], DType::F32)?,
            &fitted,
            10,
            s as u64,
        )?;
        gpu.run(&[clustering.launch()])?;
        if fitted.buffer() != &codebooks {
            queue.write_buffer(
                &codebooks,
                ((s - 1) * codes * DIM * 4) as u64,
                bytemuck::cast_slice(&fitted.to_f32(gpu)?),
            );
        }

        // The frames through the first s stages: tokens, quantised frames, errors.
        let bindings = ResidualBindings {
            n: FRAMES as u32,
            input: frames.as_entire_buffer_binding(),
            codebook: wgpu::BufferBinding {
                buffer: &codebooks,
                offset: 0,
                size: wgpu::BufferSize::new((s * codes * DIM * 4) as u64),
            },
            codes: Some(wgpu::BufferBinding {
                buffer: &tokens,
                offset: 0,
                size: wgpu::BufferSize::new((FRAMES * s * 4) as u64),
            }),
            quantized: Some(quantized.as_entire_buffer_binding()),
            distances: Some(errors.as_entire_buffer_binding()),
        };
        let mut encoder = device.create_command_encoder(&Default::default());
        quantizer.record(&mut encoder, &bindings)?;
        queue.submit([encoder.finish()]);
        let read = |b: &wgpu::Buffer, len: usize| {
            Tensor::from_buffer(gpu, b.clone(), 0, &[len], DType::F32)?.to_f32(gpu)
        };
        let sum = read(&quantized, FRAMES * DIM)?;
        let error: f32 = read(&errors, FRAMES)?.iter().sum::<f32>() / (FRAMES * DIM) as f32;
        let bits = s as f64 * (codes as f64).log2();
        println!(
            "{s} stage(s), {bits:.0} bits a frame: mean square error {error:.5} ({:.1} dB below the signal)",
            10.0 * (power / error).log10()
        );
        residual = signal.iter().zip(&sum).map(|(x, q)| x - q).collect();

        if s == stages {
            // Back from the tokens: the sum of each frame's S code vectors.
            let token_view = Tensor::from_buffer(gpu, tokens.clone(), 0, &[FRAMES, s], DType::U32)?;
            let all = read(&codebooks, stages * codes * DIM)?;
            let books: Vec<Tensor> = all
                .chunks(codes * DIM)
                .map(|book| Tensor::from_f32(gpu, &[codes, DIM], book))
                .collect::<vqvae_wgpu::Result<_>>()?;
            let decoded = Tensor::zeros(gpu, &[FRAMES, DIM], DType::F32)?;
            let refs: Vec<&Tensor> = books.iter().collect();
            gpu.run(&[&rvq::decode(gpu, &token_view, &refs, &decoded)?])?;
            let same = decoded.to_f32(gpu)? == sum;
            let first = token_view.to_u32(gpu)?;
            println!("frame 0's tokens: {:?}", &first[..s]);
            println!("tokens decode to the quantised frames bit for bit: {same}");
            if !same {
                return Err("the decoded tokens differ from the quantised frames".into());
            }
        }
    }
    Ok(())
}
