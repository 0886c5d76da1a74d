//! The quantiser as a component: a device made the plain wgpu way, the caller's
//! buffers at non-zero offsets, other work in the same encoder, two quantisers on one
//! device, and errors instead of panics or validation failures.

mod common;

use common::{Rng, Sample};
use vqvae_wgpu::kernels::quantize::Rows;
use vqvae_wgpu::quantizer::{Layout, QuantizeBindings, Quantizer, QuantizerConfig};
use vqvae_wgpu::reference::{quantize as r, widen};

fn device() -> (wgpu::Device, wgpu::Queue) {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::VULKAN.with_env(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .expect("a Vulkan adapter");
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))
        .expect("a device")
}

const ALIGN: u64 = 256;

/// One buffer holding `data` at byte offset `ALIGN`, with room after it.
fn buffer_at_offset(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    data: &[u8],
    extra: u64,
) -> wgpu::Buffer {
    let b = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: ALIGN + data.len() as u64 + extra,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    queue.write_buffer(&b, ALIGN, data);
    b
}

fn read(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    src: &wgpu::Buffer,
    offset: u64,
    bytes: u64,
) -> Vec<u8> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(src, offset, &staging, 0, bytes);
    queue.submit([encoder.finish()]);
    staging.map_async(wgpu::MapMode::Read, .., |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    staging.get_mapped_range(..).unwrap().to_vec()
}

fn binding(b: &wgpu::Buffer, bytes: u64) -> wgpu::BufferBinding<'_> {
    wgpu::BufferBinding {
        buffer: b,
        offset: ALIGN,
        size: wgpu::BufferSize::new(bytes),
    }
}

/// Quantises with `layout` through the component and checks every output.
fn check(device: &wgpu::Device, queue: &wgpu::Queue, quantizer: &Quantizer, n: usize, seed: u64) {
    let QuantizerConfig { codes, dim, layout } = quantizer.config();
    let (k, d) = (codes as usize, dim as usize);
    let mut rng = Rng::new(seed);
    let (z, cb) = (rng.vec(n * d), rng.vec(k * d));
    let input = buffer_at_offset(device, queue, bytemuck::cast_slice(&z), 64);
    let codebook = buffer_at_offset(device, queue, bytemuck::cast_slice(&cb), 0);
    let out = |bytes: usize| buffer_at_offset(device, queue, &vec![0u8; bytes], 0);
    let (idx, zq, dist) = (out(n * 4), out(n * d * 4), out(n * 4));
    let marker = buffer_at_offset(device, queue, &[7u8; 16], 0);

    let mut encoder = device.create_command_encoder(&Default::default());
    // Other work before and after, in the same encoder.
    encoder.clear_buffer(&marker, ALIGN, Some(8));
    quantizer
        .record(
            &mut encoder,
            &QuantizeBindings {
                n: n as u32,
                input: binding(&input, (n * d * 4) as u64),
                codebook: binding(&codebook, (k * d * 4) as u64),
                indices: Some(binding(&idx, (n * 4) as u64)),
                quantized: Some(binding(&zq, (n * d * 4) as u64)),
                distances: Some(binding(&dist, (n * 4) as u64)),
            },
        )
        .unwrap();
    let copied = (n * 4).min(8) as u64;
    encoder.copy_buffer_to_buffer(&idx, ALIGN, &marker, ALIGN + 8, copied);
    queue.submit([encoder.finish()]);

    let rows = match layout {
        Layout::Rows => Rows {
            n,
            dim: d,
            plane: 1,
        },
        Layout::ChannelsFirst { plane } => Rows {
            n,
            dim: d,
            plane: plane as usize,
        },
    };
    let got_idx: Vec<u32> =
        bytemuck::cast_slice(&read(device, queue, &idx, ALIGN, (n * 4) as u64)).to_vec();
    let (z64, cb64) = (widen(&z), widen(&cb));
    let (want, want_dist) = r::nearest(&rows, &z64, &cb64);
    for i in 0..n {
        let got = r::sq_dist(
            &r::row(&rows, &z64, i),
            &cb64[got_idx[i] as usize * d..][..d],
        );
        assert!(
            got_idx[i] == want[i] || got - want_dist[i] <= 1e-5 * (1.0 + want_dist[i]),
            "{layout:?} row {i}"
        );
    }
    let got_zq: Vec<f32> =
        bytemuck::cast_slice(&read(device, queue, &zq, ALIGN, (n * d * 4) as u64)).to_vec();
    assert_eq!(
        widen(&got_zq),
        r::gather(&rows, &got_idx, &cb64),
        "{layout:?} quantized"
    );
    let got_dist: Vec<f32> =
        bytemuck::cast_slice(&read(device, queue, &dist, ALIGN, (n * 4) as u64)).to_vec();
    for i in 0..n {
        let exact = r::sq_dist(
            &r::row(&rows, &z64, i),
            &cb64[got_idx[i] as usize * d..][..d],
        );
        assert!(
            (f64::from(got_dist[i]) - exact).abs() <= 1e-5 * (1.0 + exact),
            "{layout:?} distance {i}"
        );
    }
    let m = read(device, queue, &marker, ALIGN, 16);
    assert_eq!(&m[..8], &[0; 8], "the clear before ran");
    let c = copied as usize;
    assert_eq!(
        &m[8..8 + c],
        &read(device, queue, &idx, ALIGN, copied)[..],
        "the copy after saw the indices"
    );
}

#[test]
fn both_layouts_at_offsets_with_other_work_in_the_encoder() {
    let (device, queue) = device();
    let rows = Quantizer::new(
        &device,
        &queue,
        QuantizerConfig {
            codes: 37,
            dim: 5,
            layout: Layout::Rows,
        },
    )
    .unwrap();
    let maps = Quantizer::new(
        &device,
        &queue,
        QuantizerConfig {
            codes: 13,
            dim: 7,
            layout: Layout::ChannelsFirst { plane: 9 },
        },
    )
    .unwrap();
    // Two quantisers on one device, used alternately.
    check(&device, &queue, &rows, 301, 1);
    check(&device, &queue, &maps, 27, 2);
    check(&device, &queue, &rows, 1, 3);
    check(&device, &queue, &maps, 9, 4);
}

#[test]
fn bad_arguments_are_errors() {
    let (device, queue) = device();
    assert!(
        Quantizer::new(
            &device,
            &queue,
            QuantizerConfig {
                codes: 0,
                dim: 3,
                layout: Layout::Rows
            }
        )
        .is_err()
    );
    let too_big = Quantizer::new(
        &device,
        &queue,
        QuantizerConfig {
            codes: u32::MAX,
            dim: 4096,
            layout: Layout::Rows,
        },
    )
    .err()
    .unwrap();
    assert!(
        too_big
            .to_string()
            .contains("max_storage_buffer_binding_size"),
        "{too_big}"
    );

    let q = Quantizer::new(
        &device,
        &queue,
        QuantizerConfig {
            codes: 4,
            dim: 2,
            layout: Layout::ChannelsFirst { plane: 4 },
        },
    )
    .unwrap();
    let buf = buffer_at_offset(&device, &queue, &[0u8; 256], 0);
    let mut encoder = device.create_command_encoder(&Default::default());
    let base = QuantizeBindings {
        n: 8,
        input: binding(&buf, 64),
        codebook: binding(&buf, 32),
        indices: Some(binding(&buf, 32)),
        quantized: None,
        distances: None,
    };
    let e = q
        .record(
            &mut encoder,
            &QuantizeBindings {
                n: 6,
                ..base.clone()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("n 6"), "{e}");
    let e = q
        .record(
            &mut encoder,
            &QuantizeBindings {
                indices: None,
                ..base.clone()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("no output"), "{e}");
    let e = q
        .record(
            &mut encoder,
            &QuantizeBindings {
                input: binding(&buf, 16),
                ..base.clone()
            },
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("input") && e.to_string().contains("64"),
        "{e}"
    );
    let e = q
        .record(
            &mut encoder,
            &QuantizeBindings {
                input: wgpu::BufferBinding {
                    buffer: &buf,
                    offset: 4,
                    size: None,
                },
                ..base.clone()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("alignment"), "{e}");
}
