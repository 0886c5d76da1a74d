//! Finite scalar quantisation against its f64 reference on awkward sizes (both layouts,
//! odd and even levels, one dimension), its codes decoding back to its values, its
//! straight-through gradient against finite differences of the surrogate, and the
//! levels it refuses.

mod common;

use common::*;
use vqvae_wgpu::kernels::fsq::Fsq;
use vqvae_wgpu::kernels::quantize::Rows;
use vqvae_wgpu::reference::fsq as r;
use vqvae_wgpu::reference::quantize::at;
use vqvae_wgpu::{DType, Tensor};

const CASES: &[(&[usize], &[u32])] = &[
    (&[1, 1], &[2]),
    (&[37, 4], &[8, 5, 5, 5]),
    (&[129, 3], &[3, 7, 4]),
    (&[2, 4, 3, 5], &[4, 4, 4, 4]),
    (&[3, 3, 5, 1], &[8, 8, 4]),
];

#[test]
fn fsq_matches_reference_and_its_codes_decode_to_its_values() {
    let gpu = gpu();
    for (i, &(shape, levels)) in CASES.iter().enumerate() {
        let mut rng = Rng::new(200 + i as u64);
        let rows = Rows::of("test", &zeros(gpu, shape)).unwrap();
        // Spread over the saturated ends and the middle alike.
        let z: Vec<f32> = rng.vec(rows.n * rows.dim).iter().map(|v| 3.0 * v).collect();
        let fsq = Fsq::new(gpu, levels).unwrap();
        let (zt, zhat, decoded) = (upload(gpu, shape, &z), zeros(gpu, shape), zeros(gpu, shape));
        let codes = Tensor::zeros(gpu, &[rows.n], DType::U32).unwrap();
        let launch = fsq
            .quantize(gpu, &zt, &zhat, &codes)
            .unwrap()
            .then(fsq.decode(gpu, &codes, &decoded).unwrap());
        gpu.run(&[&launch]).unwrap();
        let (want_zhat, want_codes) = r::quantize(&rows, levels, &widen(&z));
        let tag = format!("{shape:?} levels {levels:?}");
        let got_codes = codes.to_u32(gpu).unwrap();
        // f32 and f64 may round a value that lies on a level's edge differently: such
        // vectors are left out (none in these cases, but the check says so if one is).
        let on_edge = |k: usize| {
            (0..rows.dim).any(|d| {
                let v = r::bound(f64::from(z[at(&rows, k, d)]), levels[d]);
                (v - v.floor() - 0.5).abs() < 1e-4
            })
        };
        let got_zhat = zhat.to_f32(gpu).unwrap();
        for k in (0..rows.n).filter(|&k| !on_edge(k)) {
            assert_eq!(got_codes[k], want_codes[k], "{tag}: vector {k}'s code");
            for d in 0..rows.dim {
                let i = at(&rows, k, d);
                // A level over its half width, rounded once to f32.
                assert_eq!(got_zhat[i], want_zhat[i] as f32, "{tag}: zhat at {i}");
            }
        }
        assert!(
            got_codes.iter().all(|&c| u64::from(c) < fsq.codes()),
            "{tag}: a code out of range"
        );
        // Decoding the codes gives the quantised values themselves.
        assert_eq!(
            decoded.to_f32(gpu).unwrap(),
            zhat.to_f32(gpu).unwrap(),
            "{tag}"
        );
    }
}

#[test]
fn fsq_backward_matches_reference_and_the_surrogate_by_finite_differences() {
    let gpu = gpu();
    for (i, &(shape, levels)) in CASES.iter().enumerate() {
        let mut rng = Rng::new(300 + i as u64);
        let rows = Rows::of("test", &zeros(gpu, shape)).unwrap();
        let z = rng.vec(rows.n * rows.dim);
        let upstream = rng.vec(rows.n * rows.dim);
        let fsq = Fsq::new(gpu, levels).unwrap();
        let grad = zeros(gpu, shape);
        let launch = fsq
            .backward(
                gpu,
                &upload(gpu, shape, &z),
                &upload(gpu, shape, &upstream),
                &grad,
            )
            .unwrap();
        gpu.run(&[&launch]).unwrap();
        let (z64, up64) = (widen(&z), widen(&upstream));
        let want = r::backward(&rows, levels, &z64, &up64);
        let tag = format!("{shape:?} levels {levels:?}");
        assert_close(
            &format!("grad {tag}"),
            &grad.to_f32(gpu).unwrap(),
            &want,
            1e-5,
            1e-6,
        );
        // The reference is the gradient of upstream . surrogate(z).
        let numeric = numeric_grad(
            |x| {
                r::surrogate(&rows, levels, x)
                    .iter()
                    .zip(&up64)
                    .map(|(s, u)| s * u)
                    .sum()
            },
            &z64,
        );
        assert_grad(&format!("surrogate {tag}"), &want, &numeric);
    }
}

#[test]
fn levels_that_cannot_quantise_are_refused() {
    let gpu = gpu();
    for (levels, says) in [
        (&[][..], "no levels"),
        (&[8, 1, 5][..], "dimension 1 has 1 levels"),
        (&[65536, 65536, 2][..], "more codes than 32 bits"),
    ] {
        let e = Fsq::new(gpu, levels).err().unwrap().to_string();
        assert!(e.contains(says), "{levels:?}: {e}");
    }
    let fsq = Fsq::new(gpu, &[8, 5, 5]).unwrap();
    let codes = Tensor::zeros(gpu, &[4], DType::U32).unwrap();
    let e = fsq
        .quantize(gpu, &zeros(gpu, &[4, 4]), &zeros(gpu, &[4, 4]), &codes)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("dimension 4, but there are levels for 3"), "{e}");
}
