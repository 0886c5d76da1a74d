//! The quantiser as a component: a device made the plain wgpu way, the caller's
//! buffers at non-zero offsets, other work in the same encoder, two quantisers on one
//! device, and errors instead of panics or validation failures.

mod common;

use common::caller::{ALIGN, binding, buffer_at_offset, device, device_with, read};
use common::{Rng, Sample, assert_close};
use vqvae_wgpu::kernels::elementwise;
use vqvae_wgpu::kernels::quantize::Rows;
use vqvae_wgpu::quantizer::{
    CACHED_BINDINGS, Layout, Metric, QuantizeBindings, Quantizer, QuantizerConfig, TopKBindings,
};
use vqvae_wgpu::reference::{quantize as r, widen};
use vqvae_wgpu::{DType, Tensor};

/// Quantises with `layout` through the component and checks every output.
fn check(device: &wgpu::Device, queue: &wgpu::Queue, quantizer: &Quantizer, n: usize, seed: u64) {
    let QuantizerConfig {
        codes,
        dim,
        layout,
        metric,
    } = quantizer.config();
    let (k, d) = (codes as usize, dim as usize);
    let mut rng = Rng::new(seed);
    let (z, cb) = (rng.vec(n * d), rng.vec(k * d));
    // The first `m` inputs are made by a pass of the caller's before the quantiser runs
    // (z/2 + z/2); the rest are uploaded.
    let m = (n * d).min(1024);
    let halves: Vec<f32> = z[..m].iter().map(|v| v / 2.0).collect();
    let half = buffer_at_offset(device, queue, bytemuck::cast_slice(&halves), 0);
    let mut uploaded = z.clone();
    uploaded[..m].fill(0.0);
    let input = buffer_at_offset(device, queue, bytemuck::cast_slice(&uploaded), 64);
    let doubled = buffer_at_offset(device, queue, &vec![0u8; m * 4], 0);
    let codebook = buffer_at_offset(device, queue, bytemuck::cast_slice(&cb), 0);
    let out = |bytes: usize| buffer_at_offset(device, queue, &vec![0u8; bytes], 0);
    let (idx, zq, dist) = (out(n * 4), out(n * d * 4), out(n * 4));
    let marker = buffer_at_offset(device, queue, &[7u8; 16], 0);

    let mut encoder = device.create_command_encoder(&Default::default());
    // Other work before and after, in the same encoder: transfers and compute passes.
    encoder.clear_buffer(&marker, ALIGN, Some(8));
    let gpu = quantizer.gpu();
    let flat =
        |b: &wgpu::Buffer| Tensor::from_buffer(gpu, b.clone(), ALIGN, &[m], DType::F32).unwrap();
    let make_input = elementwise::add(gpu, &flat(&half), &flat(&half), &flat(&input)).unwrap();
    let use_output = elementwise::add(gpu, &flat(&zq), &flat(&zq), &flat(&doubled)).unwrap();
    make_input.record(&mut encoder.begin_compute_pass(&Default::default()));
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
    use_output.record(&mut encoder.begin_compute_pass(&Default::default()));
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
    // By angle: the nearest of the normalised vectors among the normalised codes.
    let (z64, cb64) = match metric {
        Metric::L2 => (widen(&z), widen(&cb)),
        Metric::Cosine => {
            let codes = Rows {
                n: k,
                dim: d,
                plane: 1,
            };
            (
                r::normalize(&rows, &widen(&z)),
                r::normalize(&codes, &widen(&cb)),
            )
        }
    };
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
    // The codes themselves, or their normalised copies (rounded in f32).
    let exact = if metric == Metric::L2 { 0.0 } else { 1e-6 };
    assert_close(
        &format!("{layout:?} {metric:?} quantized"),
        &got_zq,
        &r::gather(&rows, &got_idx, &cb64),
        exact,
        exact,
    );
    let twice: Vec<f32> =
        bytemuck::cast_slice(&read(device, queue, &doubled, ALIGN, (m * 4) as u64)).to_vec();
    assert!(
        twice.iter().zip(&got_zq[..m]).all(|(t, q)| *t == 2.0 * q),
        "the pass after saw the quantised vectors"
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
            metric: Metric::L2,
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
            metric: Metric::L2,
        },
    )
    .unwrap();
    // Two quantisers on one device, used alternately.
    check(&device, &queue, &rows, 301, 1);
    check(&device, &queue, &maps, 27, 2);
    check(&device, &queue, &rows, 1, 3);
    check(&device, &queue, &maps, 9, 4);
    // By angle, in both layouts.
    for layout in [Layout::Rows, Layout::ChannelsFirst { plane: 9 }] {
        let config = QuantizerConfig {
            codes: 19,
            dim: 6,
            layout,
            metric: Metric::Cosine,
        };
        let cosine = Quantizer::new(&device, &queue, config).unwrap();
        check(&device, &queue, &cosine, 45, 5);
    }
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
                layout: Layout::Rows,
                metric: Metric::L2
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
            metric: Metric::L2,
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
            metric: Metric::L2,
        },
    )
    .unwrap();
    // Input and codebook may share a buffer (both are read); an output may not.
    let buf = buffer_at_offset(&device, &queue, &[0u8; 256], 0);
    let out = buffer_at_offset(&device, &queue, &[0u8; 256], 0);
    let mut encoder = device.create_command_encoder(&Default::default());
    let base = QuantizeBindings {
        n: 8,
        input: binding(&buf, 64),
        codebook: binding(&buf, 32),
        indices: Some(binding(&out, 32)),
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
    assert!(
        e.to_string()
            .contains("the input binding starts at byte 4, not a multiple of min_storage_buffer_offset_alignment"),
        "{e}"
    );
    // An in-place quantise: the quantized vectors over the input.
    let e = q
        .record(
            &mut encoder,
            &QuantizeBindings {
                quantized: Some(binding(&buf, 64)),
                ..base.clone()
            },
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("the input and quantized bindings are in one buffer"),
        "{e}"
    );
    let e = q
        .record(
            &mut encoder,
            &QuantizeBindings {
                distances: Some(binding(&out, 32)),
                ..base.clone()
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("indices and distances"), "{e}");
    // Whole-buffer bindings too small, each named with the bytes it holds and needs.
    let small = buffer_at_offset(&device, &queue, &[0u8; 16], 0);
    let whole = |b| wgpu::BufferBinding {
        buffer: b,
        offset: ALIGN,
        size: None,
    };
    let e = q
        .record(
            &mut encoder,
            &QuantizeBindings {
                codebook: whole(&small),
                ..base.clone()
            },
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("the codebook binding holds 16 bytes (from byte 256 of its buffer); 4 codes of dimension 2 need 32"),
        "{e}"
    );
    let e = q
        .record(
            &mut encoder,
            &QuantizeBindings {
                indices: Some(whole(&small)),
                ..base.clone()
            },
        )
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("the indices binding holds 16 bytes (from byte 256 of its buffer); 8 u32 indices need 32"),
        "{e}"
    );
}

#[test]
fn prepared_dispatches_are_kept_for_the_last_binding_sets_only() {
    let (device, queue) = device();
    let q = Quantizer::new(
        &device,
        &queue,
        QuantizerConfig {
            codes: 4,
            dim: 2,
            layout: Layout::Rows,
            metric: Metric::L2,
        },
    )
    .unwrap();
    let (data, codebook) = (
        buffer_at_offset(&device, &queue, &[0u8; 64], 0),
        buffer_at_offset(&device, &queue, &[0u8; 32], 0),
    );
    // Per-frame output buffers: the cache keeps the last CACHED_BINDINGS sets, not all.
    let frames: Vec<wgpu::Buffer> = (0..CACHED_BINDINGS + 10)
        .map(|_| buffer_at_offset(&device, &queue, &[0u8; 32], 0))
        .collect();
    for frame in &frames {
        q.prepare(&QuantizeBindings {
            n: 8,
            input: binding(&data, 64),
            codebook: binding(&codebook, 32),
            indices: Some(binding(frame, 32)),
            quantized: None,
            distances: None,
        })
        .unwrap();
    }
    assert_eq!(q.cached(), CACHED_BINDINGS);
}

#[test]
fn a_kmeans_step_through_the_component_matches_the_reference() {
    use vqvae_wgpu::kernels::ema;
    let (device, queue) = device();
    let (n, d, k) = (200, 3, 5);
    let mut rng = Rng::new(21);
    let (z, cb) = (rng.vec(n * d), rng.vec(k * d));
    let input = buffer_at_offset(&device, &queue, bytemuck::cast_slice(&z), 0);
    let codebook = buffer_at_offset(&device, &queue, bytemuck::cast_slice(&cb), 0);
    let idx = buffer_at_offset(&device, &queue, &vec![0u8; n * 4], 0);
    let (cluster, sums) = (
        buffer_at_offset(&device, &queue, &vec![0u8; k * 4], 0),
        buffer_at_offset(&device, &queue, &vec![0u8; k * d * 4], 0),
    );
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
    .unwrap();
    let view = |b: &wgpu::Buffer, shape: &[usize], dtype| {
        Tensor::from_buffer(q.gpu(), b.clone(), ALIGN, shape, dtype).unwrap()
    };
    let step = ema::ema_update(
        q.gpu(),
        &view(&input, &[n, d], DType::F32),
        &view(&idx, &[n], DType::U32),
        &view(&codebook, &[k, d], DType::F32),
        &view(&cluster, &[k], DType::F32),
        &view(&sums, &[k, d], DType::F32),
        0.0,
        0.0,
    )
    .unwrap();
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        let b = QuantizeBindings {
            n: n as u32,
            input: binding(&input, (n * d * 4) as u64),
            codebook: binding(&codebook, (k * d * 4) as u64),
            indices: Some(binding(&idx, (n * 4) as u64)),
            quantized: None,
            distances: None,
        };
        q.record_in_pass(&mut pass, &b).unwrap();
        step.record(&mut pass);
    }
    queue.submit([encoder.finish()]);
    let rows = Rows {
        n,
        dim: d,
        plane: 1,
    };
    let got_idx: Vec<u32> =
        bytemuck::cast_slice(&read(&device, &queue, &idx, ALIGN, (n * 4) as u64)).to_vec();
    let (want, _, want_cb) = r::ema_update(
        &rows,
        &widen(&z),
        &got_idx,
        &widen(&cb),
        &[0.0; 5],
        &[0.0; 15],
        0.0,
        0.0,
    );
    assert_eq!(
        want,
        r::histogram(&got_idx, k)
            .iter()
            .map(|&c| f64::from(c))
            .collect::<Vec<_>>()
    );
    let got: Vec<f32> =
        bytemuck::cast_slice(&read(&device, &queue, &codebook, ALIGN, (k * d * 4) as u64)).to_vec();
    for (g, w) in got.iter().zip(&want_cb) {
        assert!(
            (f64::from(*g) - w).abs() <= 1e-5 * (1.0 + w.abs()),
            "{got:?} vs {want_cb:?}"
        );
    }
}

#[test]
fn inputs_larger_than_one_binding_are_split_not_refused() {
    // A device that binds at most 64 KiB: 10000 rows of 4 floats (160 KB) take 3 chunks.
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 64 << 10,
        ..wgpu::Limits::default()
    };
    let (device, queue) = device_with(limits);
    let q = Quantizer::new(
        &device,
        &queue,
        QuantizerConfig {
            codes: 9,
            dim: 4,
            layout: Layout::Rows,
            metric: Metric::L2,
        },
    )
    .unwrap();
    check(&device, &queue, &q, 10_000, 5);
    // Channels-first: 100 maps of 7x7 pixels, 4 floats deep (78 KB) in chunks of 64
    // whole maps, the smallest count whose offsets stay aligned.
    let q = Quantizer::new(
        &device,
        &queue,
        QuantizerConfig {
            codes: 6,
            dim: 4,
            layout: Layout::ChannelsFirst { plane: 49 },
            metric: Metric::L2,
        },
    )
    .unwrap();
    check(&device, &queue, &q, 100 * 49, 6);
}

#[test]
fn top_k_through_the_component_lists_the_nearest_codes_in_order() {
    let (device, queue) = device();
    for (layout, metric, n, k, codes, dim) in [
        (Layout::Rows, Metric::L2, 37, 5, 13, 7),
        (
            Layout::ChannelsFirst { plane: 6 },
            Metric::Cosine,
            24,
            3,
            9,
            4,
        ),
        (Layout::Rows, Metric::L2, 9, 11, 11, 3),
        (Layout::Rows, Metric::L2, 20, 1, 17, 5),
    ] {
        let config = QuantizerConfig {
            codes,
            dim,
            layout,
            metric,
        };
        let q = Quantizer::new(&device, &queue, config).unwrap();
        let (n_, k_, d) = (n as usize, k as usize, dim as usize);
        let mut rng = Rng::new(u64::from(n * k));
        let (z, cb) = (rng.vec(n_ * d), rng.vec(codes as usize * d));
        let input = buffer_at_offset(&device, &queue, bytemuck::cast_slice(&z), 0);
        let book = buffer_at_offset(&device, &queue, bytemuck::cast_slice(&cb), 0);
        let garbage = |bytes: usize| buffer_at_offset(&device, &queue, &vec![0xAB; bytes], 0);
        let (idx, dist) = (garbage(n_ * k_ * 4), garbage(n_ * k_ * 4));
        let listed = (n_ * k_ * 4) as u64;
        let b = TopKBindings {
            n,
            k,
            input: binding(&input, (n_ * d * 4) as u64),
            codebook: binding(&book, (codes as usize * d * 4) as u64),
            indices: binding(&idx, listed),
            distances: Some(binding(&dist, listed)),
        };
        q.prepare_top_k(&b).unwrap();
        let mut encoder = device.create_command_encoder(&Default::default());
        q.record_top_k(&mut encoder, &b).unwrap();
        queue.submit([encoder.finish()]);
        let got: Vec<u32> =
            bytemuck::cast_slice(&read(&device, &queue, &idx, ALIGN, listed)).to_vec();
        let got_dist: Vec<f32> =
            bytemuck::cast_slice(&read(&device, &queue, &dist, ALIGN, listed)).to_vec();
        let plane = match layout {
            Layout::Rows => 1,
            Layout::ChannelsFirst { plane } => plane as usize,
        };
        let rows = Rows {
            n: n_,
            dim: d,
            plane,
        };
        let book_rows = Rows {
            n: codes as usize,
            dim: d,
            plane: 1,
        };
        let (z64, cb64) = match metric {
            Metric::L2 => (widen(&z), widen(&cb)),
            Metric::Cosine => (
                r::normalize(&rows, &widen(&z)),
                r::normalize(&book_rows, &widen(&cb)),
            ),
        };
        let (want, want_dist) = r::top_k(&rows, &z64, &cb64, k_);
        let tag = format!("{layout:?} {metric:?} n {n} k {k}");
        for i in 0..n_ * k_ {
            // A near tie may swap two codes; their distances still agree.
            assert!(
                got[i] == want[i] || (f64::from(got_dist[i]) - want_dist[i]).abs() <= 1e-5,
                "{tag}: entry {i}: code {} against {}",
                got[i],
                want[i]
            );
            assert!(
                (f64::from(got_dist[i]) - want_dist[i]).abs() <= 1e-5 * (1.0 + want_dist[i]),
                "{tag}: distance {i}"
            );
        }
    }
}

#[test]
fn top_k_values_that_do_not_fit_are_errors() {
    let (device, queue) = device();
    let config = QuantizerConfig {
        codes: 40,
        dim: 2,
        layout: Layout::Rows,
        metric: Metric::L2,
    };
    let q = Quantizer::new(&device, &queue, config).unwrap();
    let buf = |bytes: usize| buffer_at_offset(&device, &queue, &vec![0; bytes], 0);
    let (input, book, idx) = (buf(10 * 8), buf(40 * 8), buf(10 * 4 * 4));
    let ok = TopKBindings {
        n: 10,
        k: 4,
        input: binding(&input, 80),
        codebook: binding(&book, 320),
        indices: binding(&idx, 160),
        distances: None,
    };
    q.prepare_top_k(&ok).unwrap();
    let message = |b: TopKBindings<'_>| q.prepare_top_k(&b).expect_err("an error").to_string();
    for k in [0, 33] {
        let m = message(TopKBindings { k, ..ok.clone() });
        assert!(
            m.contains(&format!("k {k}")) && m.contains("from 1 to 32"),
            "{m}"
        );
    }
    let m = message(TopKBindings { k: 5, ..ok.clone() });
    assert!(
        m.contains("indices") && m.contains("10 x 5") && m.contains("200"),
        "{m}"
    );
    let m = message(TopKBindings { n: 0, ..ok.clone() });
    assert!(m.contains("n is 0"), "{m}");
    let small = QuantizerConfig { codes: 3, ..config };
    let q3 = Quantizer::new(&device, &queue, small).unwrap();
    let m = q3
        .prepare_top_k(&TopKBindings { k: 4, ..ok.clone() })
        .expect_err("k > K")
        .to_string();
    assert!(m.contains("from 1 to 3"), "{m}");
}
