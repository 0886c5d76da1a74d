//! Finite scalar quantisation (Mentzer et al. 2023) on your own device and buffers: no
//! codebook to learn, so none to collapse. Latents become one code each (the mixed-radix
//! number of their rounded levels) and the codes decode to exactly the quantised latents;
//! the straight-through gradient is one more dispatch.
//!
//! `cargo run --release --example fsq_codes -- [LEVELS]` (default 8,5,5,5: 1000 codes).

use vqvae_wgpu::kernels::fsq::Fsq;
use vqvae_wgpu::rng::Rng;
use vqvae_wgpu::{DType, Gpu, Tensor};

const N: usize = 20_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let levels: Vec<u32> = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "8,5,5,5".into())
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;
    println!("adapter: {}", adapter.get_info().name);
    // The crate's view of this device, for its tensors over wgpu buffers.
    let gpu = Gpu::from_device(device, queue);

    let fsq = Fsq::new(&gpu, &levels)?;
    let dim = levels.len();
    // Latents as an encoder might give them: [N, dim], roughly unit normal.
    let mut rng = Rng::new(1);
    let z: Vec<f32> = (0..N * dim).map(|_| rng.normal() as f32).collect();
    let z = Tensor::from_f32(&gpu, &[N, dim], &z)?;
    let (zhat, decoded) = (
        Tensor::zeros(&gpu, &[N, dim], DType::F32)?,
        Tensor::zeros(&gpu, &[N, dim], DType::F32)?,
    );
    let codes = Tensor::zeros(&gpu, &[N], DType::U32)?;
    // The decoder's gradient at zhat, and the straight-through one at z.
    let upstream = Tensor::from_f32(&gpu, &[N, dim], &vec![1.0; N * dim])?;
    let grad = Tensor::zeros(&gpu, &[N, dim], DType::F32)?;
    let forward = fsq.quantize(&gpu, &z, &zhat, &codes)?;
    let back = fsq.decode(&gpu, &codes, &decoded)?;
    let backward = fsq.backward(&gpu, &z, &upstream, &grad)?;
    gpu.run(&[&forward, &back, &backward])?;

    let codes = codes.to_u32(&gpu)?;
    let mut used = vec![0u32; fsq.codes() as usize];
    for &c in &codes {
        used[c as usize] += 1;
    }
    let in_use = used.iter().filter(|&&c| c > 0).count();
    let entropy: f64 = used
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / N as f64;
            -p * p.log2()
        })
        .sum();
    println!(
        "levels {levels:?}: {} codes, {in_use} used by {N} latents, {entropy:.2} of {:.2} bits",
        fsq.codes(),
        (fsq.codes() as f64).log2()
    );
    let values = zhat.to_f32(&gpu)?;
    println!("latent 0 -> code {} -> {:?}", codes[0], &values[..dim]);
    let same = decoded.to_f32(&gpu)? == values;
    println!("codes decode to the quantised latents bit for bit: {same}");
    let g = grad.to_f32(&gpu)?;
    println!(
        "straight-through gradient at latent 0 (upstream ones): {:?}",
        &g[..dim]
    );
    if !same {
        return Err("decoded codes differ from the quantised latents".into());
    }
    Ok(())
}
