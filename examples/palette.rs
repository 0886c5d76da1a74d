//! Reduce a colour image to a K-colour palette by k-means on the GPU (k-means++ seeding,
//! then Lloyd iterations), then draw it twice: each pixel its nearest colour, and
//! ordered dithering between its two nearest (the quantiser's top-k search, k = 2).
//! Only the public API of the quantiser component and the k-means kernels, on a device
//! opened the plain wgpu way.
//!
//! `cargo run --release --example palette -- [IMAGE] [K] [OUT.png]`
//! (without IMAGE or with `-`, a generated picture; K defaults to 8; OUT to palette.png,
//! the dithered picture beside it as OUT-dithered.png).

use vqvae_wgpu::kernels::kmeans;
use vqvae_wgpu::quantizer::{
    Layout, Metric, QuantizeBindings, Quantizer, QuantizerConfig, TopKBindings,
};
use vqvae_wgpu::{DType, Tensor};

const ITERATIONS: usize = 12;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let image = match args.first().filter(|a| !a.is_empty() && *a != "-") {
        Some(path) => image::open(path)?.into_rgb8(),
        None => generated(),
    };
    let k: u32 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(8);
    let out = args.get(2).cloned().unwrap_or_else(|| "palette.png".into());
    let (w, h) = image.dimensions();
    let n = (w * h) as usize;

    // A device the plain wgpu way.
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))?;
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))?;
    println!("adapter: {}", adapter.get_info().name);

    // Our buffers: pixels as [n, 3] rows in 0..1, a codebook of K colours, code indices
    // and the pixels as quantised.
    let pixels: Vec<f32> = image
        .as_raw()
        .iter()
        .map(|&v| f32::from(v) / 255.0)
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
    let (input, codebook) = (
        storage(bytemuck::cast_slice(&pixels)),
        storage(&vec![0; k as usize * 12]),
    );
    let (indices, quantized) = (storage(&vec![0; n * 4]), storage(&vec![0; n * 12]));
    let (two_nearest, two_distances) = (storage(&vec![0; n * 8]), storage(&vec![0; n * 8]));

    let quantizer = Quantizer::new(
        &device,
        &queue,
        QuantizerConfig {
            codes: k,
            dim: 3,
            layout: Layout::Rows,
            metric: Metric::L2,
        },
    )?;
    let bindings = QuantizeBindings {
        n: n as u32,
        input: input.as_entire_buffer_binding(),
        codebook: codebook.as_entire_buffer_binding(),
        indices: Some(indices.as_entire_buffer_binding()),
        quantized: Some(quantized.as_entire_buffer_binding()),
        distances: None,
    };
    // k-means on our buffers, seeded by k-means++ from a seed: one launch to record.
    let gpu = quantizer.gpu();
    let view = |b: &wgpu::Buffer, shape: &[usize]| {
        Tensor::from_buffer(gpu, b.clone(), 0, shape, DType::F32)
    };
    let clustering = kmeans::kmeans(
        gpu,
        &view(&input, &[n, 3])?,
        &view(&codebook, &[k as usize, 3])?,
        ITERATIONS,
        7,
    )?;
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        clustering.launch().record(&mut pass);
    }
    // Then the pixels through the quantiser with the palette found: the nearest colour,
    // and the two nearest with their distances.
    quantizer.record(&mut encoder, &bindings)?;
    quantizer.record_top_k(
        &mut encoder,
        &TopKBindings {
            n: n as u32,
            k: 2,
            input: input.as_entire_buffer_binding(),
            codebook: codebook.as_entire_buffer_binding(),
            indices: two_nearest.as_entire_buffer_binding(),
            distances: Some(two_distances.as_entire_buffer_binding()),
        },
    )?;
    queue.submit([encoder.finish()]);

    let result = Tensor::from_buffer(gpu, quantized, 0, &[n * 3], DType::F32)?.to_f32(gpu)?;
    let palette =
        Tensor::from_buffer(gpu, codebook, 0, &[k as usize * 3], DType::F32)?.to_f32(gpu)?;
    let to_byte = |v: f32| (v * 255.0).round().clamp(0.0, 255.0) as u8;
    let bytes: Vec<u8> = result.iter().map(|&v| to_byte(v)).collect();
    image::RgbImage::from_raw(w, h, bytes)
        .ok_or("image size")?
        .save(&out)?;

    // Ordered dithering: a pixel between its two nearest colours a and b, a fraction t
    // of the way from a to b, takes b where t passes the 4x4 Bayer threshold.
    let nearest2 = Tensor::from_buffer(gpu, two_nearest, 0, &[n * 2], DType::U32)?.to_u32(gpu)?;
    const BAYER: [u32; 16] = [0, 8, 2, 10, 12, 4, 14, 6, 3, 11, 1, 9, 15, 7, 13, 5];
    let colour = |c: u32| &palette[c as usize * 3..][..3];
    let dithered: Vec<u8> = (0..n)
        .flat_map(|i| {
            let (a, b) = (colour(nearest2[2 * i]), colour(nearest2[2 * i + 1]));
            let p = &pixels[3 * i..3 * i + 3];
            let (mut along, mut length) = (0.0, 0.0);
            for c in 0..3 {
                along += (p[c] - a[c]) * (b[c] - a[c]);
                length += (b[c] - a[c]).powi(2);
            }
            let t = if length > 0.0 { along / length } else { 0.0 };
            let (x, y) = (i % w as usize, i / w as usize);
            let threshold = (BAYER[(y % 4) * 4 + x % 4] as f32 + 0.5) / 16.0;
            let chosen = if t > threshold { b } else { a };
            chosen.iter().map(|&v| to_byte(v)).collect::<Vec<_>>()
        })
        .collect();
    let dithered_path = match out.strip_suffix(".png") {
        Some(stem) => format!("{stem}-dithered.png"),
        None => format!("{out}-dithered.png"),
    };
    image::RgbImage::from_raw(w, h, dithered)
        .ok_or("image size")?
        .save(&dithered_path)?;
    println!("{k}-colour palette after {ITERATIONS} k-means iterations:");
    for c in palette.chunks(3) {
        println!(
            "  #{:02x}{:02x}{:02x}",
            (c[0] * 255.0) as u8,
            (c[1] * 255.0) as u8,
            (c[2] * 255.0) as u8
        );
    }
    println!("wrote {out} (nearest colours) and {dithered_path} (dithered)");
    Ok(())
}

/// A 160x120 picture: a sky gradient, a sun, hills.
fn generated() -> image::RgbImage {
    image::RgbImage::from_fn(160, 120, |x, y| {
        let (fx, fy) = (x as f32, y as f32);
        let hill = 80.0 + 12.0 * (fx / 20.0).sin();
        if (fx - 120.0).powi(2) + (fy - 30.0).powi(2) < 300.0 {
            image::Rgb([250, 210, 60])
        } else if fy > hill {
            image::Rgb([40, (120.0 + fy * 0.5) as u8, 50])
        } else {
            image::Rgb([(90.0 + fy) as u8, (140.0 + fy * 0.6) as u8, 230])
        }
    })
}
