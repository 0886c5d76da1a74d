//! Convolution kernels against the plain-Rust reference, on awkward shapes, with both
//! kernel variants, fused ReLUs and fused epilogues (gate and addend).

mod common;

use common::*;
use vqvae_wgpu::Gpu;
use vqvae_wgpu::kernels::{conv, reduce, subgroups};
use vqvae_wgpu::reference::conv as r;
use vqvae_wgpu::reference::{add, relu, relu_backward};

/// (batch, cin, cout, h, w, kernel, stride, pad): batch 1, odd channels, sizes that
/// are not multiples of any tile, every kernel the model uses. The last three are wide
/// enough for the packed GEMM (`Tuning::packed_from`, 32 by default, rows and columns)
/// in every mode of the convolution or of the transposed convolution; the last one's
/// output planes, rows and weight rows are whole vec4s, so each mode stores vec4s.
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

const SHAPES: &[Case] = &[
    (1, 3, 5, 8, 8, 4, 2, 1),
    (2, 5, 7, 7, 9, 3, 1, 1),
    (3, 7, 3, 5, 6, 1, 1, 0),
    (1, 1, 33, 12, 4, 4, 2, 1),
    (2, 17, 9, 6, 10, 3, 2, 0),
    (1, 66, 3, 3, 5, 3, 1, 1),
    (2, 9, 67, 9, 11, 3, 1, 1),
    (3, 70, 5, 10, 13, 4, 2, 1),
    (2, 36, 33, 8, 20, 3, 1, 1),
];

fn shape(&(batch, cin, cout, hin, win, k, stride, pad): &Case) -> conv::ConvShape {
    conv::ConvShape {
        batch,
        cin,
        cout,
        hin,
        win,
        kh: k,
        kw: k,
        stride,
        pad,
    }
}

/// Random gate and addend tensors of `shape` for a fused epilogue, uploaded, with the
/// reference of what the epilogue makes of a result `v`: zero where the gate is not
/// positive, plus the addend.
struct Fused {
    gate: (Vec<f32>, vqvae_wgpu::Tensor),
    add: (Vec<f32>, vqvae_wgpu::Tensor),
}

impl Fused {
    fn new(gpu: &Gpu, shape: &[usize], rng: &mut Rng) -> Fused {
        let n = shape.iter().product();
        let (g, a) = (rng.vec(n), rng.vec(n));
        Fused {
            gate: (g.clone(), upload(gpu, shape, &g)),
            add: (a.clone(), upload(gpu, shape, &a)),
        }
    }

    /// The epilogue (`on`), or none.
    fn epilogue(&self, on: bool) -> conv::Epilogue<'_> {
        match on {
            true => conv::Epilogue {
                gate: Some(&self.gate.1),
                add: Some(&self.add.1),
            },
            false => conv::Epilogue::NONE,
        }
    }

    fn apply(&self, on: bool, v: Vec<f64>) -> Vec<f64> {
        match on {
            true => add(
                &relu_backward(&v, &widen(&self.gate.0)),
                &widen(&self.add.0),
            ),
            false => v,
        }
    }
}

fn check_conv(gpu: &Gpu, s: &conv::ConvShape, seed: u64) {
    let mut rng = Rng::new(seed);
    let (xs, ys, ws) = (s.x_shape(), s.y_shape(), s.w_shape());
    let x = rng.vec(xs.iter().product());
    let w = rng.vec(ws.iter().product());
    let b = rng.vec(s.cout);
    let dy = rng.vec(ys.iter().product());
    let (xt, wt, bt, dyt) = (
        upload(gpu, &xs, &x),
        upload(gpu, &ws, &w),
        upload(gpu, &[s.cout], &b),
        upload(gpu, &ys, &dy),
    );
    let (x64, w64, b64, dy64) = (widen(&x), widen(&w), widen(&b), widen(&dy));
    let tag = format!("{s:?} {:?}", gpu.tuning());
    let (fused_y, fused_x) = (
        Fused::new(gpu, &ys, &mut rng),
        Fused::new(gpu, &xs, &mut rng),
    );

    // The fused epilogue rides along with the fused ReLUs.
    for (relu_in, relu_out) in [(false, false), (true, true)] {
        let y = zeros(gpu, &ys);
        gpu.run(&[&conv::conv2d(
            gpu,
            s,
            &xt,
            &wt,
            &bt,
            &y,
            conv::Relu {
                input: relu_in,
                output: relu_out,
            },
            fused_y.epilogue(relu_out),
        )
        .unwrap()])
            .unwrap();
        let input = if relu_in { relu(&x64) } else { x64.clone() };
        let mut want = r::conv2d(s, &input, &w64, &b64);
        if relu_out {
            want = fused_y.apply(true, relu(&want));
        }
        assert_close(
            &format!("conv2d relu {relu_in}/{relu_out} {tag}"),
            &y.to_f32(gpu).unwrap(),
            &want,
            1e-4,
            1e-4,
        );
    }

    for fuse in [false, true] {
        let dx = zeros(gpu, &xs);
        let epilogue = fused_x.epilogue(fuse);
        gpu.run(&[&conv::conv2d_input_grad(gpu, s, &dyt, &wt, &dx, epilogue).unwrap()])
            .unwrap();
        assert_close(
            &format!("conv2d_input_grad epilogue {fuse} {tag}"),
            &dx.to_f32(gpu).unwrap(),
            &fused_x.apply(fuse, r::conv2d_input_grad(s, &dy64, &w64)),
            1e-4,
            1e-4,
        );
    }

    for relu_in in [false, true] {
        let dw = zeros(gpu, &ws);
        gpu.run(&[&conv::conv2d_weight_grad(gpu, s, &xt, &dyt, &dw, relu_in).unwrap()])
            .unwrap();
        let input = if relu_in { relu(&x64) } else { x64.clone() };
        let want = r::conv2d_weight_grad(s, &input, &dy64);
        assert_close(
            &format!("conv2d_weight_grad relu {relu_in} {tag}"),
            &dw.to_f32(gpu).unwrap(),
            &want,
            1e-4,
            1e-4,
        );
    }

    let db = zeros(gpu, &[s.cout]);
    gpu.run(&[&reduce::channel_sum(gpu, &dyt, &db).unwrap()])
        .unwrap();
    assert_close(
        &format!("bias grad {tag}"),
        &db.to_f32(gpu).unwrap(),
        &r::bias_grad(&dy64, s.cout, s.batch),
        1e-5,
        1e-5,
    );
}

#[test]
fn channel_sums_match_the_reference_where_an_image_outgrows_the_workgroup() {
    // 17 x 19 = 323 values per channel and image, more than a workgroup's threads, and
    // 7 x 9 = 63, fewer: each thread's image and offset step across images unevenly.
    let gpu = gpu();
    let mut rng = Rng::new(5);
    for shape in [[3, 5, 17, 19], [1, 2, 1, 1], [4, 3, 7, 9]] {
        let data = rng.vec(shape.iter().product());
        let x = upload(gpu, &shape, &data);
        let sums = zeros(gpu, &[shape[1]]);
        gpu.run(&[&reduce::channel_sum(gpu, &x, &sums).unwrap()])
            .unwrap();
        assert_close(
            &format!("channel sums of {shape:?}"),
            &sums.to_f32(gpu).unwrap(),
            &r::bias_grad(&widen(&data), shape[1], shape[0]),
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn conv2d_matches_reference() {
    for gpu in gpus() {
        for (i, sh) in SHAPES.iter().enumerate() {
            check_conv(gpu, &shape(sh), i as u64);
        }
    }
}

#[test]
fn conv_transpose2d_matches_reference() {
    for gpu in gpus() {
        for (i, &(batch, cin, cout, h, w, k, stride, pad)) in SHAPES.iter().enumerate() {
            let t = r::TransposedShape {
                batch,
                cin,
                cout,
                h,
                w,
                k,
                stride,
                pad,
            };
            let s = conv::ConvShape::transposed(batch, cin, cout, [h, w], k, stride, pad).unwrap();
            assert_eq!((s.hin, s.win), (t.hout(), t.wout()));
            let mut rng = Rng::new(100 + i as u64);
            let x = rng.vec(batch * cin * h * w);
            let wt = rng.vec(cin * cout * k * k);
            let b = rng.vec(cout);
            let dout = rng.vec(batch * cout * t.hout() * t.wout());
            let (x_t, w_t, d_t) = (
                upload(gpu, &s.y_shape(), &x),
                upload(gpu, &s.w_shape(), &wt),
                upload(gpu, &s.x_shape(), &dout),
            );
            let (x64, w64, d64) = (widen(&x), widen(&wt), widen(&dout));
            let tag = format!("{t:?} {:?}", gpu.tuning());
            let fused_in = Fused::new(gpu, &s.y_shape(), &mut rng);

            check_transposed_forward(gpu, &t, &s, (&x, &wt, &b), &FORWARD_RELUS, &mut rng);

            for fuse in [false, true] {
                let dx = zeros(gpu, &s.y_shape());
                let epilogue = fused_in.epilogue(fuse);
                gpu.run(&[
                    &conv::conv_transpose2d_input_grad(gpu, &s, &d_t, &w_t, &dx, epilogue).unwrap(),
                ])
                .unwrap();
                assert_close(
                    &format!("conv_transpose2d_input_grad epilogue {fuse} {tag}"),
                    &dx.to_f32(gpu).unwrap(),
                    &fused_in.apply(fuse, r::conv_transpose2d_input_grad(&t, &d64, &w64)),
                    1e-4,
                    1e-4,
                );
            }

            for relu_in in [false, true] {
                let dw = zeros(gpu, &s.w_shape());
                gpu.run(&[
                    &conv::conv_transpose2d_weight_grad(gpu, &s, &x_t, &d_t, &dw, relu_in).unwrap(),
                ])
                .unwrap();
                let input = if relu_in { relu(&x64) } else { x64.clone() };
                let want = r::conv_transpose2d_weight_grad(&t, &input, &d64);
                assert_close(
                    &format!("conv_transpose2d_weight_grad {relu_in} {tag}"),
                    &dw.to_f32(gpu).unwrap(),
                    &want,
                    1e-4,
                    1e-4,
                );
            }
        }
    }
}

/// ReLUs (input, output) of a transposed convolution's forward under test: on neither
/// side, on the input alone, and on both with the output's fused epilogue.
const FORWARD_RELUS: [(bool, bool); 3] = [(false, false), (true, false), (true, true)];

/// `conv_transpose2d` of `x` by `wt` plus `b` against the reference with each of `relus`.
/// Returns the names of the dispatches that computed it.
fn check_transposed_forward(
    gpu: &Gpu,
    t: &r::TransposedShape,
    s: &conv::ConvShape,
    (x, wt, b): (&[f32], &[f32], &[f32]),
    relus: &[(bool, bool)],
    rng: &mut Rng,
) -> Vec<String> {
    let (x_t, w_t, b_t) = (
        upload(gpu, &s.y_shape(), x),
        upload(gpu, &s.w_shape(), wt),
        upload(gpu, &[t.cout], b),
    );
    let (x64, w64, b64) = (widen(x), widen(wt), widen(b));
    let tag = format!("{t:?} {:?}", gpu.tuning());
    let fused_out = Fused::new(gpu, &s.x_shape(), rng);
    let mut names = Vec::new();
    for &(relu_in, relu_out) in relus {
        let out = zeros(gpu, &s.x_shape());
        let fused = conv::Relu {
            input: relu_in,
            output: relu_out,
        };
        let launch = conv::conv_transpose2d(
            gpu,
            s,
            &x_t,
            &w_t,
            &b_t,
            &out,
            fused,
            fused_out.epilogue(relu_out),
        )
        .unwrap();
        names.extend(launch.dispatches().iter().map(|d| d.name()));
        gpu.run(&[&launch]).unwrap();
        let input = if relu_in { relu(&x64) } else { x64.clone() };
        let mut want = r::conv_transpose2d(t, &input, &w64, &b64);
        if relu_out {
            want = fused_out.apply(true, relu(&want));
        }
        assert_close(
            &format!("conv_transpose2d {relu_in}/{relu_out} {tag}"),
            &out.to_f32(gpu).unwrap(),
            &want,
            1e-4,
            1e-4,
        );
    }
    names
}

/// The decoder's last upsampling (kernel 4, stride 2, padding 1) to at most
/// `subpixel::MAX_OUTPUTS` channels has a kernel of its own: (batch, cin, cout, h, w) of
/// the transposed convolution, batch 1, one pixel, widths less than, equal to and more
/// than one or two of the kernel's 16 columns per thread, 1 to 4 output channels.
#[test]
fn subpixel_transposed_conv_matches_reference() {
    let cases = [
        (1, 1, 1, 1, 1),
        (2, 5, 3, 5, 7),
        (3, 9, 4, 3, 9),
        (1, 4, 2, 2, 16),
        (2, 3, 3, 3, 37),
    ];
    for gpu in gpus() {
        for (i, &(batch, cin, cout, h, w)) in cases.iter().enumerate() {
            let t = r::TransposedShape {
                batch,
                cin,
                cout,
                h,
                w,
                k: 4,
                stride: 2,
                pad: 1,
            };
            let s = conv::ConvShape::transposed(batch, cin, cout, [h, w], 4, 2, 1).unwrap();
            let mut rng = Rng::new(300 + i as u64);
            let x = rng.vec(batch * cin * h * w);
            let wt = rng.vec(cin * cout * 16);
            let b = rng.vec(cout);
            // One ReLU combination a case (each kernel variant is a large shader to build).
            let relus = [FORWARD_RELUS[i % FORWARD_RELUS.len()]];
            let names = check_transposed_forward(gpu, &t, &s, (&x, &wt, &b), &relus, &mut rng);
            assert!(
                names.iter().all(|n| n == "conv_transpose2d/subpixel"),
                "{t:?} ran {names:?}"
            );
        }
    }
}

/// The reference gradients the GPU is held to are themselves checked by finite
/// differences: with L = sum(y * r) for a random r, dL/dx and dL/dw are the
/// references' input and weight gradients of r.
#[test]
fn conv_reference_gradients_match_finite_differences() {
    let mut rng = Rng::new(7);
    for sh in &SHAPES[..5] {
        let s = shape(sh);
        let n = |a: [usize; 4]| a.iter().product::<usize>();
        let x = widen(&rng.vec(n(s.x_shape())));
        let w = widen(&rng.vec(n(s.w_shape())));
        let b = widen(&rng.vec(s.cout));
        let g = widen(&rng.vec(n(s.y_shape())));
        let loss = |y: Vec<f64>| y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>();
        let tag = format!("{s:?}");
        assert_grad(
            &format!("dx {tag}"),
            &r::conv2d_input_grad(&s, &g, &w),
            &numeric_grad(|x| loss(r::conv2d(&s, x, &w, &b)), &x),
        );
        assert_grad(
            &format!("dw {tag}"),
            &r::conv2d_weight_grad(&s, &x, &g),
            &numeric_grad(|w| loss(r::conv2d(&s, &x, w, &b)), &w),
        );
        assert_grad(
            &format!("db {tag}"),
            &r::bias_grad(&g, s.cout, s.batch),
            &numeric_grad(|b| loss(r::conv2d(&s, &x, &w, b)), &b),
        );
    }
}

#[test]
fn conv_transpose_reference_gradients_match_finite_differences() {
    let mut rng = Rng::new(8);
    for &(batch, cin, cout, h, w, k, stride, pad) in &SHAPES[..5] {
        let t = r::TransposedShape {
            batch,
            cin,
            cout,
            h,
            w,
            k,
            stride,
            pad,
        };
        let x = widen(&rng.vec(batch * cin * h * w));
        let wt = widen(&rng.vec(cin * cout * k * k));
        let b = widen(&rng.vec(cout));
        let g = widen(&rng.vec(batch * cout * t.hout() * t.wout()));
        let loss = |y: Vec<f64>| y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>();
        let tag = format!("{t:?}");
        assert_grad(
            &format!("dx {tag}"),
            &r::conv_transpose2d_input_grad(&t, &g, &wt),
            &numeric_grad(|x| loss(r::conv_transpose2d(&t, x, &wt, &b)), &x),
        );
        assert_grad(
            &format!("dw {tag}"),
            &r::conv_transpose2d_weight_grad(&t, &x, &g),
            &numeric_grad(|w| loss(r::conv_transpose2d(&t, &x, w, &b)), &wt),
        );
        assert_grad(
            &format!("db {tag}"),
            &r::bias_grad(&g, cout, batch),
            &numeric_grad(|b| loss(r::conv_transpose2d(&t, &x, &wt, b)), &b),
        );
    }
}

#[test]
fn relu_backward_reference_matches_finite_differences() {
    let mut rng = Rng::new(9);
    let x = widen(&rng.vec(37));
    let g = widen(&rng.vec(37));
    let loss = |x: &[f64]| relu(x).iter().zip(&g).map(|(a, b)| a * b).sum::<f64>();
    assert_grad("relu", &relu_backward(&g, &x), &numeric_grad(loss, &x));
}

#[test]
fn the_subgroup_probe_finds_lavapipe_s_consecutive_subgroups_of_8() {
    let gpu = gpu();
    let Some(size) = gpu.subgroup_size() else {
        note("subgroup probe: this adapter has no subgroups of one size; not checked");
        return;
    };
    // Workgroups of the default tile (8 x 8) and a one-row one; a size the device's
    // subgroups do not have is no layout of them.
    for invocations in [64, 8 * size] {
        assert!(subgroups::consecutive(gpu, invocations, size).unwrap());
    }
    assert!(!subgroups::consecutive(gpu, 64, size / 2).unwrap());
    if gpu.info().name.contains("llvmpipe") {
        assert_eq!(size, 8, "lavapipe's subgroups");
    }
}

#[test]
fn packed_gemms_in_registers_and_in_workgroup_memory_give_the_same_bits() {
    let mut gpu = open_default();
    // In registers with A's rows shared across subgroups (on adapters with subgroups of
    // one size dividing 8: lavapipe's are 8) and without, and in workgroup memory.
    let variants = [(false, true), (false, false), (true, false)];
    let tuning = |(shared, subgroup)| vqvae_wgpu::Tuning {
        gemm_tile: Some([8, 4]),
        gemm_shared: shared,
        gemm_subgroup: subgroup,
        ..vqvae_wgpu::Tuning::REGISTER
    };
    // Wide enough that the forward and weight gradient of the first, and the input
    // gradient of the second, run packed, storing one float at a time; and every mode of
    // the third, storing vec4s in registers (workgroup memory stores floats).
    let wide = [6, 7, 8].map(|i| shape(&SHAPES[i]));
    let mut rng = Rng::new(77);
    let mut data = |shape: &[usize]| upload(&gpu, shape, &rng.vec(shape.iter().product()));
    let inputs = wide.map(|s| {
        let x = data(&s.x_shape());
        let w = data(&s.w_shape());
        (x, w, data(&[s.cout]), data(&s.y_shape()))
    });
    let products = [
        (0, "forward"),
        (0, "weight gradient"),
        (1, "input gradient"),
    ]
    .into_iter()
    .chain(["forward", "weight gradient", "input gradient"].map(|what| (2, what)));
    let mut runs = Vec::new();
    for variant in variants {
        gpu.set_tuning(tuning(variant));
        let g = &gpu;
        let mut run = Vec::new();
        for (i, what) in products.clone() {
            let (s, (x, w, b, dy)) = (&wide[i], &inputs[i]);
            let (out, launch) = match what {
                "forward" => {
                    let y = zeros(g, &s.y_shape());
                    let relu = conv::Relu::BOTH;
                    let l = conv::conv2d(g, s, x, w, b, &y, relu, conv::Epilogue::NONE);
                    (y, l)
                }
                "weight gradient" => {
                    let dw = zeros(g, &s.w_shape());
                    let l = conv::conv2d_weight_grad(g, s, x, dy, &dw, true);
                    (dw, l)
                }
                _ => {
                    let dx = zeros(g, &s.x_shape());
                    let l = conv::conv2d_input_grad(g, s, dy, w, &dx, conv::Epilogue::NONE);
                    (dx, l)
                }
            };
            g.run(&[&launch.unwrap()]).unwrap();
            let bits: Vec<u32> = out.to_f32(g).unwrap().iter().map(|v| v.to_bits()).collect();
            run.push(bits);
        }
        runs.push(run);
    }
    for (run, variant) in runs.iter().zip(variants).skip(1) {
        for ((i, what), (first, other)) in products.clone().zip(runs[0].iter().zip(run)) {
            assert!(
                first == other,
                "{what} of {:?}: packed GEMMs {variant:?} differ",
                wide[i]
            );
        }
    }
}

#[test]
fn weight_gradient_depth_chunks_give_the_same_bits_together_or_apart() {
    let mut gpu = open_default();
    // 3599 depths in 15 chunks of 240 (the last 239); the packed product's tile covers
    // all 33 x 45 outputs, 64 rows x 48 columns of A and B with each chunk 240 deep.
    let s = shape(&(1, 5, 33, 59, 61, 3, 1, 1));
    let chunk_floats = 240 * 64;
    let mut rng = Rng::new(5);
    let x = rng.vec(s.x_shape().iter().product());
    let dy = rng.vec(s.y_shape().iter().product());
    let want = r::conv2d_weight_grad(&s, &widen(&x), &widen(&dy));
    let mut runs = Vec::new();
    // All chunks in one dispatch of each kernel; three at a time; two at a time (the
    // last alone); one by one.
    for (cap, dispatches) in [
        (vqvae_wgpu::Tuning::REGISTER.pack_floats, 1),
        (3 * chunk_floats, 5),
        (2 * chunk_floats, 8),
        (chunk_floats + 100, 15),
    ] {
        gpu.set_tuning(vqvae_wgpu::Tuning {
            pack_floats: cap,
            ..vqvae_wgpu::Tuning::REGISTER
        });
        let (xt, dyt) = (
            upload(&gpu, &s.x_shape(), &x),
            upload(&gpu, &s.y_shape(), &dy),
        );
        let dw = zeros(&gpu, &s.w_shape());
        let launch = conv::conv2d_weight_grad(&gpu, &s, &xt, &dyt, &dw, false).unwrap();
        gpu.run(&[&launch]).unwrap();
        let got = dw.to_f32(&gpu).unwrap();
        assert_close(
            &format!("weight gradient, cap {cap}"),
            &got,
            &want,
            1e-4,
            1e-4,
        );
        runs.push((dispatches, launch.len(), got));
    }
    let (_, first_len, first) = &runs[0];
    for (dispatches, len, got) in &runs[1..] {
        // Each dispatch of chunks packs A, packs B and multiplies.
        assert_eq!(len - first_len, 3 * (dispatches - 1));
        let differ = first
            .iter()
            .zip(got)
            .filter(|(a, b)| a.to_bits() != b.to_bits());
        assert_eq!(differ.count(), 0, "{dispatches} dispatches");
    }
}
