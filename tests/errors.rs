//! Bad input gets an error that names the shapes or the limit: never a panic, never an
//! uncaptured wgpu validation error.

mod common;

use common::*;
use vqvae_wgpu::kernels::conv::{self, ConvShape};
use vqvae_wgpu::kernels::{elementwise, quantize};
use vqvae_wgpu::{DType, Error, Gpu, GpuOptions, Tensor, Tuning};

fn message(e: Error) -> String {
    e.to_string()
}

/// The error of a plain convolution of shape `s` on tensors of its own shapes.
fn conv2d_error(gpu: &Gpu, s: &conv::ConvShape) -> String {
    let (x, w, b, y) = (
        zeros(gpu, &s.x_shape()),
        zeros(gpu, &s.w_shape()),
        zeros(gpu, &[s.cout]),
        zeros(gpu, &s.y_shape()),
    );
    let launch = conv::conv2d(
        gpu,
        s,
        &x,
        &w,
        &b,
        &y,
        conv::Relu::NONE,
        conv::Epilogue::NONE,
    );
    message(launch.unwrap_err())
}

#[test]
fn mismatched_shapes_name_both_shapes() {
    let gpu = gpu();
    let s = ConvShape {
        batch: 2,
        cin: 3,
        cout: 4,
        hin: 8,
        win: 8,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 1,
    };
    let x = zeros(gpu, &[2, 3, 8, 9]);
    let (w, b, y) = (
        zeros(gpu, &s.w_shape()),
        zeros(gpu, &[4]),
        zeros(gpu, &s.y_shape()),
    );
    let e = message(
        conv::conv2d(
            gpu,
            &s,
            &x,
            &w,
            &b,
            &y,
            conv::Relu::NONE,
            conv::Epilogue::NONE,
        )
        .unwrap_err(),
    );
    assert!(
        e.contains("[2, 3, 8, 9]") && e.contains("[2, 3, 8, 8]"),
        "{e}"
    );

    let (a, c) = (zeros(gpu, &[5]), zeros(gpu, &[6]));
    let e = message(elementwise::add(gpu, &a, &c, &a).unwrap_err());
    assert!(e.contains("[5]") && e.contains("[6]"), "{e}");

    let z = zeros(gpu, &[10, 4]);
    let cb = zeros(gpu, &[7, 5]);
    let idx = Tensor::zeros(gpu, &[10], DType::U32).unwrap();
    let e = message(quantize::quantize(gpu, &z, &cb, &idx, None, None).unwrap_err());
    assert!(e.contains("[7, 5]") && e.contains("[codes, 4]"), "{e}");

    let e = message(
        quantize::quantize(
            gpu,
            &z,
            &zeros(gpu, &[7, 4]),
            &zeros(gpu, &[10]),
            None,
            None,
        )
        .unwrap_err(),
    );
    assert!(e.contains("U32") && e.contains("F32"), "{e}");
}

#[test]
fn zero_sizes_are_refused() {
    let gpu = gpu();
    let e = message(Tensor::zeros(gpu, &[3, 0], DType::F32).unwrap_err());
    assert!(e.contains("[3, 0]") && e.contains("no elements"), "{e}");
    let s = ConvShape {
        batch: 0,
        cin: 3,
        cout: 4,
        hin: 8,
        win: 8,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 1,
    };
    assert!(message(s.validate("conv2d").unwrap_err()).contains("zero size"));
    let s = ConvShape {
        batch: 1,
        cin: 3,
        cout: 4,
        hin: 2,
        win: 2,
        kh: 5,
        kw: 5,
        stride: 1,
        pad: 1,
    };
    assert!(message(s.validate("conv2d").unwrap_err()).contains("larger than the padded input"));
    assert!(ConvShape::transposed(1, 3, 4, [1, 1], 2, 1, 2).is_err());
}

#[test]
fn tensors_beyond_the_device_limit_name_the_limit() {
    let gpu = gpu();
    let e = Tensor::zeros(gpu, &[1 << 20, 1 << 20], DType::F32).unwrap_err();
    assert!(matches!(e, Error::Limit { .. }), "{e}");
    assert!(message(e).contains("max_storage_buffer_binding_size"));
}

#[test]
fn workgroups_beyond_the_device_limit_name_the_limit() {
    let mut gpu = common::open_default();
    gpu.set_tuning(Tuning {
        conv_workgroup: [64, 64],
        ..Tuning::SHARED
    });
    let s = ConvShape {
        batch: 1,
        cin: 1,
        cout: 256,
        hin: 4,
        win: 4,
        kh: 1,
        kw: 1,
        stride: 1,
        pad: 0,
    };
    let e = conv2d_error(&gpu, &s);
    assert!(
        e.contains("max_compute_invocations_per_workgroup") && e.contains("4096"),
        "{e}"
    );
}

#[test]
fn wgpu_validation_errors_become_errors() {
    let gpu = gpu();
    // A buffer the caller made without COPY_SRC cannot be downloaded: wgpu's
    // validation error comes back as an Error, not a panic.
    let buffer = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("no copy"),
        size: 64,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    let t = Tensor::from_buffer(gpu, buffer, 0, &[16], DType::F32).unwrap();
    let e = t.to_f32(gpu).unwrap_err();
    assert!(matches!(e, Error::Gpu { .. }), "{e}");
    // The device still works afterwards.
    assert_eq!(zeros(gpu, &[3]).to_f32(gpu).unwrap(), vec![0.0; 3]);
}

#[test]
fn misaligned_or_short_buffer_views_are_refused() {
    let gpu = gpu();
    let buffer = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 1024,
        usage: wgpu::BufferUsages::STORAGE,
        mapped_at_creation: false,
    });
    assert!(
        message(Tensor::from_buffer(gpu, buffer.clone(), 4, &[4], DType::F32).unwrap_err())
            .contains("min_storage_buffer_offset_alignment")
    );
    assert!(
        message(Tensor::from_buffer(gpu, buffer, 256, &[1000], DType::F32).unwrap_err())
            .contains("1024")
    );
}

#[test]
fn unknown_adapter_names_list_the_adapters_found() {
    let options = GpuOptions {
        adapter_name: Some("no such gpu 42".into()),
        ..GpuOptions::default()
    };
    let e = message(Gpu::open_with(&options).err().unwrap());
    assert!(e.contains("no such gpu 42") && e.contains("found:"), "{e}");
}

#[test]
fn work_beyond_one_grid_dimension_is_split_not_refused() {
    let gpu = gpu();
    // 2^24 + 3 elements at 256 a workgroup need more than 65535 workgroups.
    let n = (1 << 24) + 3;
    let a: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
    let (at, out) = (upload(gpu, &[n], &a), zeros(gpu, &[n]));
    gpu.run(&[&elementwise::add(gpu, &at, &at, &out).unwrap()])
        .unwrap();
    let got = out.to_f32(gpu).unwrap();
    assert!(got.iter().zip(&a).all(|(g, a)| *g == 2.0 * a));
}

#[test]
fn ema_arguments_are_checked() {
    use vqvae_wgpu::kernels::ema;
    let gpu = gpu();
    let (z, cb) = (zeros(gpu, &[10, 3]), zeros(gpu, &[4, 3]));
    let idx = Tensor::zeros(gpu, &[10], DType::U32).unwrap();
    let (cl, w) = (zeros(gpu, &[4]), zeros(gpu, &[4, 3]));
    let e = message(
        ema::ema_update(gpu, &z, &idx, &cb, &cl, &w, 1.5, 0.0)
            .err()
            .unwrap(),
    );
    assert!(e.contains("decay 1.5"), "{e}");
    let e = message(
        ema::ema_update(gpu, &z, &idx, &cb, &zeros(gpu, &[5]), &w, 0.9, 1e-5)
            .err()
            .unwrap(),
    );
    assert!(e.contains("[5]") && e.contains("[4]"), "{e}");
    // A u32 tensor where the f32 statistics go is named as such.
    let counts = Tensor::zeros(gpu, &[4], DType::U32).unwrap();
    let e = message(
        ema::ema_update(gpu, &z, &idx, &cb, &counts, &w, 0.9, 1e-5)
            .err()
            .unwrap(),
    );
    assert!(
        e.contains("ema_update: cluster holds U32, expected F32"),
        "{e}"
    );
}

#[test]
fn packed_tiles_outside_what_the_generators_write_are_refused() {
    // A convolution wide enough for the packed GEMM, and a tile it cannot write out.
    let s = ConvShape::new(1, 64, 64, [8, 8], 1, 1, 0);
    for (tile, bad) in [
        ([17, 12], "17 x 12"),
        ([4, 6], "4 x 6"),
        ([4, 20], "4 x 20"),
    ] {
        let mut gpu = common::open_default();
        gpu.set_tuning(Tuning {
            gemm_tile: Some(tile),
            ..Tuning::REGISTER
        });
        let e = conv2d_error(&gpu, &s);
        assert!(e.contains("GEMM tile") && e.contains(bad), "{e}");
    }
    let mut gpu = common::open_default();
    gpu.set_tuning(Tuning {
        quantize_tile: Some([0, 8]),
        ..Tuning::REGISTER
    });
    let (z, cb) = (zeros(&gpu, &[10, 3]), zeros(&gpu, &[4, 3]));
    let idx = Tensor::zeros(&gpu, &[10], DType::U32).unwrap();
    let e = message(quantize::quantize(&gpu, &z, &cb, &idx, None, None).unwrap_err());
    assert!(e.contains("search tile 0 x 8"), "{e}");
}

#[test]
fn an_epilogue_of_another_shape_is_named() {
    let gpu = gpu();
    let s = ConvShape {
        batch: 1,
        cin: 2,
        cout: 3,
        hin: 5,
        win: 5,
        kh: 3,
        kw: 3,
        stride: 1,
        pad: 1,
    };
    let (dy, w, dx) = (
        zeros(gpu, &s.y_shape()),
        zeros(gpu, &s.w_shape()),
        zeros(gpu, &s.x_shape()),
    );
    let gate = zeros(gpu, &[1, 2, 5, 4]);
    let epilogue = conv::Epilogue {
        gate: Some(&gate),
        add: None,
    };
    let e = message(conv::conv2d_input_grad(gpu, &s, &dy, &w, &dx, epilogue).unwrap_err());
    assert!(
        e.contains("gate") && e.contains("[1, 2, 5, 4]") && e.contains("[1, 2, 5, 5]"),
        "{e}"
    );
}
