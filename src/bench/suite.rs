//! The fixed benchmark suite: every kernel at the reference model's shapes, the
//! quantiser over a sweep of N, K and D, and whole training steps and inference at two
//! model sizes and two batch sizes. The shapes never depend on the adapter, so results
//! from different machines compare line by line.

use serde::{Deserialize, Serialize};

use super::Options;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::conv::{self, ConvShape, Relu};
use crate::kernels::fsq::Fsq;
use crate::kernels::optim::{Adam, AdamConfig};
use crate::kernels::{codes, loss, quantize, rvq, softmax, topk, vq_backward};
use crate::launch::{Launch, Tuning};
use crate::model::Config;
use crate::network::{CodebookUpdate, Vqvae};
use crate::params::Params;
use crate::prior::{PriorConfig, PriorNet, Sampler, band_rows};
use crate::rng::Rng;
use crate::tensor::{DType, Tensor, zeros_f32 as zeros};
use crate::train::{DEFAULT_EMA_DECAY, DEFAULT_EMA_EPS, EmaCodebook, fresh_values};
use crate::tune::Target;

/// Which part of the suite a benchmark belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    /// One kernel at the reference model's shapes.
    Kernel,
    /// The quantiser's nearest-code search over a sweep of N, K and D.
    Quantizer,
    /// A whole training step: forward, loss, backward and Adam.
    Train,
    /// Encoding and decoding a batch.
    Inference,
    /// The PixelCNN prior: a training step, and sampling.
    Prior,
    /// Reading and decoding image files on one worker thread.
    Data,
}

/// One benchmark: its identity and how to build its work on a GPU.
pub(crate) struct Case {
    pub group: Group,
    pub name: String,
    pub shape: String,
    /// Part of the `--quick` suite: each layer's forward, the quantiser, loss and
    /// optimizer kernels, one point of the sweep, and the small model at batch 32.
    pub quick: bool,
    /// The training step whose cached kernel tuning this case runs with (a model's own
    /// cases, and the kernels at the reference model's shapes); `None` runs it with the
    /// adapter's default.
    pub tuned_for: Option<Target>,
    pub build: Box<Builder>,
}

/// Builds a case's work on a GPU.
pub(crate) type Builder = dyn Fn(&Gpu) -> Result<Work>;

/// What a case runs: GPU work recorded into one compute pass, or host work (decoding
/// images) timed by the wall clock.
pub(crate) enum Job {
    Gpu(Launch),
    Host(Box<dyn Fn() -> Result<()>>),
}

/// The work of a case, built and bound, and what one run of it amounts to.
pub(crate) struct Work {
    pub job: Job,
    /// Floating-point operations per run (convolutions and distances).
    pub flops: Option<f64>,
    /// Bytes a run must read and write at least: its inputs and outputs once each.
    pub bytes: Option<f64>,
    /// Images per run (a fraction where a run makes part of an image).
    pub images: Option<f64>,
}

/// Reference sizes: batch, channels, image side, H, R, K, D.
const B: usize = 32;
const C: usize = 3;
const SIDE: usize = 32;
const H: usize = 128;
const R: usize = 32;
const K: usize = 512;
const D: usize = 64;

/// The reference model's training step, whose tuning the kernel cases run with.
fn reference_target() -> Target {
    Target {
        config: Config::reference(C),
        batch: B,
        image: [SIDE, SIDE],
    }
}

/// The training steps whose tunings the cases `options` choose run with, each once.
pub(crate) fn tuning_targets(options: &Options) -> Result<Vec<Target>> {
    let mut targets: Vec<Target> = Vec::new();
    for target in chosen(options)?.into_iter().filter_map(|c| c.tuned_for) {
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    Ok(targets)
}

/// The cases `options` choose (`quick`, `only`), in the order they run; an error where
/// `only` matches none.
pub(crate) fn chosen(options: &Options) -> Result<Vec<Case>> {
    let only = options.only.as_ref().map(|s| s.to_lowercase());
    let chosen: Vec<_> = cases()
        .into_iter()
        .filter(|c| !options.quick || c.quick)
        .filter(|c| {
            only.as_ref().is_none_or(|o| {
                c.name.to_lowercase().contains(o) || c.shape.to_lowercase().contains(o)
            })
        })
        .collect();
    if chosen.is_empty() {
        return Err(Error::Usage(format!(
            "--only '{}' matches no benchmark",
            options.only.as_deref().unwrap_or_default()
        )));
    }
    Ok(chosen)
}

/// The whole suite, in the order it runs.
fn cases() -> Vec<Case> {
    let mut all = kernels();
    all.extend(quantizer_sweep());
    all.extend(models());
    all.extend(prior());
    all.extend(super::data::cases());
    all
}

/// A tensor of values uniform in [-1, 1), the same for every adapter.
fn filled(gpu: &Gpu, shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut rng = Rng::for_purpose(seed, 0xBE4C);
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.uniform(-1.0, 1.0) as f32).collect();
    Tensor::from_f32(gpu, shape, &data)
}

/// The work of a kernel reading and writing f32 tensors of `shapes` once each.
fn kernel_work(launch: Launch, flops: Option<f64>, shapes: &[&[usize]]) -> Result<Work> {
    let elements: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    Ok(Work {
        job: Job::Gpu(launch),
        flops,
        bytes: Some(elements as f64 * 4.0),
        images: None,
    })
}

pub(super) fn case(
    group: Group,
    name: impl Into<String>,
    shape: impl Into<String>,
    quick: bool,
    build: impl Fn(&Gpu) -> Result<Work> + 'static,
) -> Case {
    Case {
        group,
        name: name.into(),
        shape: shape.into(),
        quick,
        tuned_for: None,
        build: Box::new(build),
    }
}

fn kernel(
    name: impl Into<String>,
    shape: impl Into<String>,
    quick: bool,
    build: impl Fn(&Gpu) -> Result<Work> + 'static,
) -> Case {
    Case {
        tuned_for: Some(reference_target()),
        ..case(Group::Kernel, name, shape, quick, build)
    }
}

fn conv_shape(
    cin: usize,
    cout: usize,
    side: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvShape {
    ConvShape::new(B, cin, cout, [side, side], k, stride, pad)
}

fn describe_conv(s: &ConvShape) -> String {
    format!(
        "{}x{}x{}x{} k{} s{} -> {}",
        s.batch, s.cin, s.hin, s.win, s.kh, s.stride, s.cout
    )
}

/// Forward, input gradient and weight gradient of a convolution layer.
fn conv_cases(name: &str, s: ConvShape) -> [Case; 3] {
    let shape = describe_conv(&s);
    let (x, w, y) = (s.x_shape(), s.w_shape(), s.y_shape());
    [
        kernel(format!("{name} forward"), shape.clone(), true, move |gpu| {
            let launch = conv::conv2d(
                gpu,
                &s,
                &filled(gpu, &x, 1)?,
                &filled(gpu, &w, 2)?,
                &filled(gpu, &[s.cout], 3)?,
                &zeros(gpu, &y)?,
                Relu::NONE,
                conv::Epilogue::NONE,
            )?;
            kernel_work(launch, Some(s.flops()), &[&x, &w, &[s.cout], &y])
        }),
        kernel(
            format!("{name} input grad"),
            shape.clone(),
            false,
            move |gpu| {
                let launch = conv::conv2d_input_grad(
                    gpu,
                    &s,
                    &filled(gpu, &y, 4)?,
                    &filled(gpu, &w, 2)?,
                    &zeros(gpu, &x)?,
                    conv::Epilogue::NONE,
                )?;
                kernel_work(launch, Some(s.flops()), &[&y, &w, &x])
            },
        ),
        kernel(format!("{name} weight grad"), shape, false, move |gpu| {
            let launch = conv::conv2d_weight_grad(
                gpu,
                &s,
                &filled(gpu, &x, 1)?,
                &filled(gpu, &y, 4)?,
                &zeros(gpu, &w)?,
                false,
            )?;
            kernel_work(launch, Some(s.flops()), &[&x, &y, &w])
        }),
    ]
}

/// Forward, input gradient and weight gradient (with bias) of a transposed convolution
/// whose forward is the input gradient of `s`.
fn deconv_cases(name: &str, s: ConvShape) -> [Case; 3] {
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
    // The transposed layer's input is `s`'s output and its output `s`'s input.
    let (input, w, output) = (s.y_shape(), s.w_shape(), s.x_shape());
    [
        kernel(format!("{name} forward"), shape.clone(), true, move |gpu| {
            let launch = conv::conv_transpose2d(
                gpu,
                &s,
                &filled(gpu, &input, 1)?,
                &filled(gpu, &w, 2)?,
                &filled(gpu, &[s.cin], 3)?,
                &zeros(gpu, &output)?,
                Relu::NONE,
                conv::Epilogue::NONE,
            )?;
            kernel_work(launch, Some(s.flops()), &[&input, &w, &[s.cin], &output])
        }),
        kernel(
            format!("{name} input grad"),
            shape.clone(),
            false,
            move |gpu| {
                let launch = conv::conv_transpose2d_input_grad(
                    gpu,
                    &s,
                    &filled(gpu, &output, 4)?,
                    &filled(gpu, &w, 2)?,
                    &zeros(gpu, &input)?,
                    conv::Epilogue::NONE,
                )?;
                kernel_work(launch, Some(s.flops()), &[&output, &w, &input])
            },
        ),
        kernel(format!("{name} weight grad"), shape, false, move |gpu| {
            let launch = conv::conv_transpose2d_weight_grad(
                gpu,
                &s,
                &filled(gpu, &input, 1)?,
                &filled(gpu, &output, 4)?,
                &zeros(gpu, &w)?,
                true,
            )?;
            kernel_work(launch, Some(s.flops()), &[&input, &output, &w, &[s.cin]])
        }),
    ]
}

/// Every kernel of a training step at the reference model's shapes (batch 32 of
/// 32x32x3 images, H=128, R=32, K=512, D=64), and a 1024^3 matrix product for scale.
fn kernels() -> Vec<Case> {
    let lat = SIDE / 4;
    let mm = ConvShape::new(1, 1024, 1024, [32, 32], 1, 1, 0);
    let mut all = vec![kernel(
        "matmul 1024^3 (1x1 conv)",
        describe_conv(&mm),
        false,
        move |gpu| {
            let launch = conv::conv2d(
                gpu,
                &mm,
                &filled(gpu, &mm.x_shape(), 1)?,
                &filled(gpu, &mm.w_shape(), 2)?,
                &zeros(gpu, &[mm.cout])?,
                &zeros(gpu, &mm.y_shape())?,
                Relu::NONE,
                conv::Epilogue::NONE,
            )?;
            kernel_work(
                launch,
                Some(mm.flops()),
                &[&mm.x_shape(), &mm.w_shape(), &mm.y_shape()],
            )
        },
    )];
    all.extend(conv_cases(
        "encoder.conv1",
        conv_shape(C, H / 2, SIDE, 4, 2, 1),
    ));
    all.extend(conv_cases(
        "encoder.conv2",
        conv_shape(H / 2, H, SIDE / 2, 4, 2, 1),
    ));
    all.extend(conv_cases("encoder.conv3", conv_shape(H, H, lat, 3, 1, 1)));
    all.extend(conv_cases("res.conv1", conv_shape(H, R, lat, 3, 1, 1)));
    all.extend(conv_cases("res.conv2", conv_shape(R, H, lat, 1, 1, 0)));
    all.extend(conv_cases("pre_vq", conv_shape(H, D, lat, 1, 1, 0)));
    all.extend(conv_cases("decoder.conv1", conv_shape(D, H, lat, 3, 1, 1)));
    let deconv = |cin, cout, side| ConvShape::transposed(B, cin, cout, [side, side], 4, 2, 1);
    all.extend(deconv_cases(
        "decoder.deconv1",
        deconv(H, H / 2, lat).expect("valid shape"),
    ));
    all.extend(deconv_cases(
        "decoder.deconv2",
        deconv(H / 2, C, SIDE / 2).expect("valid shape"),
    ));

    let n = B * lat * lat;
    let z_shape = [B, D, lat, lat];
    let shape = format!("N={n} K={K} D={D}");
    all.push(kernel(
        "quantizer forward",
        shape.clone(),
        true,
        move |gpu| {
            let launch = quantize::quantize(
                gpu,
                &filled(gpu, &z_shape, 5)?,
                &filled(gpu, &[K, D], 6)?,
                &Tensor::zeros(gpu, &[n], DType::U32)?,
                Some(&zeros(gpu, &[n])?),
                Some(&zeros(gpu, &z_shape)?),
            )?;
            kernel_work(
                launch,
                Some(2.0 * (n * K * D) as f64),
                &[&z_shape, &[K, D], &[n], &[n], &z_shape],
            )
        },
    ));
    all.push(kernel("quantizer backward", shape, true, move |gpu| {
        let (z, cb) = (filled(gpu, &z_shape, 5)?, filled(gpu, &[K, D], 6)?);
        let (idx, zq) = (Tensor::zeros(gpu, &[n], DType::U32)?, zeros(gpu, &z_shape)?);
        // Real assignments: the codebook gradient's cost depends on how rows spread.
        gpu.run(&[&quantize::quantize(gpu, &z, &cb, &idx, None, Some(&zq))?])?;
        let launch = vq_backward::vq_backward(
            gpu,
            &z,
            &zq,
            &idx,
            &cb,
            &filled(gpu, &z_shape, 7)?,
            0.25,
            &zeros(gpu, &z_shape)?,
            Some(&zeros(gpu, &[K, D])?),
        )?;
        kernel_work(
            launch,
            None,
            &[
                &z_shape,
                &z_shape,
                &[n],
                &[K, D],
                &z_shape,
                &z_shape,
                &[K, D],
            ],
        )
    }));
    let x_shape = [B, C, SIDE, SIDE];
    all.push(kernel(
        "loss (MSE and VQ terms)",
        format!("{B}x{C}x{SIDE}x{SIDE}, N={n}"),
        true,
        move |gpu| {
            let launch = loss::vqvae_loss(
                gpu,
                &filled(gpu, &x_shape, 8)?,
                &filled(gpu, &x_shape, 9)?,
                &filled(gpu, &[n], 10)?,
                n * D,
                0.25,
                true,
                &zeros(gpu, &x_shape)?,
                &zeros(gpu, &[4])?,
            )?;
            kernel_work(launch, None, &[&x_shape, &x_shape, &[n], &x_shape])
        },
    ));
    all.push(kernel(
        "code usage (histogram, perplexity)",
        format!("N={n} K={K}"),
        true,
        move |gpu| {
            let mut rng = Rng::for_purpose(11, 0xC0DE);
            let idx: Vec<u32> = (0..n).map(|_| rng.below(K) as u32).collect();
            let launch = codes::code_usage(
                gpu,
                &Tensor::from_u32(gpu, &[n], &idx)?,
                &Tensor::zeros(gpu, &[K], DType::U32)?,
                &zeros(gpu, &[2])?,
            )?;
            kernel_work(launch, None, &[&[n], &[K]])
        },
    ));
    let count: usize = Config::reference(C).params().iter().map(|p| p.len()).sum();
    all.push(kernel(
        "adam",
        format!("{count} parameters (reference model)"),
        true,
        move |gpu| {
            let t = |seed| filled(gpu, &[count], seed);
            let adam = Adam::new(
                gpu,
                &t(12)?,
                &t(13)?,
                &zeros(gpu, &[count])?,
                &zeros(gpu, &[count])?,
                AdamConfig::default(),
            )?;
            Ok(Work {
                job: Job::Gpu(adam.launch().clone()),
                flops: None,
                // Reads parameters, gradients and both moments; writes all but the gradients.
                bytes: Some(7.0 * 4.0 * count as f64),
                images: None,
            })
        },
    ));
    all
}

/// The nearest-code search alone (indices out) over N, then K, then D.
fn quantizer_sweep() -> Vec<Case> {
    let mut shapes = vec![(1 << 10, K, D), (1 << 14, K, D), (1 << 18, K, D)];
    shapes.extend([(1 << 14, 64, D), (1 << 14, 4096, D)]);
    shapes.extend([(1 << 14, K, 8), (1 << 14, K, 256)]);
    shapes
        .into_iter()
        .map(|(n, k, d)| {
            let quick = (n, k, d) == (1 << 14, K, D);
            case(
                Group::Quantizer,
                "nearest code",
                format!("N={n} K={k} D={d}"),
                quick,
                move |gpu| {
                    let launch = quantize::quantize(
                        gpu,
                        &filled(gpu, &[n, d], 5)?,
                        &filled(gpu, &[k, d], 6)?,
                        &Tensor::zeros(gpu, &[n], DType::U32)?,
                        None,
                        None,
                    )?;
                    kernel_work(
                        launch,
                        Some(2.0 * (n * k * d) as f64),
                        &[&[n, d], &[k, d], &[n]],
                    )
                },
            )
        })
        .chain([8, 32].map(|top| {
            let (n, k, d) = (1 << 14, K, D);
            case(
                Group::Quantizer,
                format!("{top} nearest codes"),
                format!("N={n} K={k} D={d}"),
                false,
                move |gpu| {
                    let launch = topk::top_k(
                        gpu,
                        &filled(gpu, &[n, d], 5)?,
                        &filled(gpu, &[k, d], 6)?,
                        top,
                        &Tensor::zeros(gpu, &[n, top], DType::U32)?,
                        &Tensor::zeros(gpu, &[n, top], DType::F32)?,
                    )?;
                    kernel_work(
                        launch,
                        Some(2.0 * (n * k * d) as f64),
                        &[&[n, d], &[k, d], &[n, top], &[n, top]],
                    )
                },
            )
        }))
        .chain([1, 2, 4].map(|stages| {
            let (n, k, d) = (1 << 14, K, D);
            case(
                Group::Quantizer,
                format!("residual VQ, {stages} stages"),
                format!("N={n} K={k} D={d}"),
                false,
                move |gpu| {
                    let books = (0..stages)
                        .map(|s| filled(gpu, &[k, d], 6 + s as u64))
                        .collect::<Result<Vec<_>>>()?;
                    let (codes, sum) = (
                        Tensor::zeros(gpu, &[n, stages], DType::U32)?,
                        Tensor::zeros(gpu, &[n, d], DType::F32)?,
                    );
                    let outputs = rvq::Outputs {
                        codes: &codes,
                        quantized: &sum,
                        stage_distances: None,
                        distances: None,
                    };
                    let refs: Vec<&Tensor> = books.iter().collect();
                    let z = filled(gpu, &[n, d], 5)?;
                    let launch = rvq::residual_quantize(gpu, &z, &refs, &outputs, false)?.launch;
                    kernel_work(
                        launch,
                        Some(2.0 * (stages * n * k * d) as f64),
                        &[&[n, d], &[stages * k, d], &[n, stages], &[n, d]],
                    )
                },
            )
        }))
        .chain(std::iter::once({
            let n = 1 << 18;
            let levels = [8u32, 5, 5, 5];
            case(
                Group::Quantizer,
                "FSQ levels 8,5,5,5",
                format!("N={n} D=4"),
                false,
                move |gpu| {
                    let fsq = Fsq::new(gpu, &levels)?;
                    let (z, zhat) = (
                        filled(gpu, &[n, 4], 5)?,
                        Tensor::zeros(gpu, &[n, 4], DType::F32)?,
                    );
                    let codes = Tensor::zeros(gpu, &[n], DType::U32)?;
                    kernel_work(
                        fsq.quantize(gpu, &z, &zhat, &codes)?,
                        None,
                        &[&[n, 4], &[n, 4], &[n]],
                    )
                },
            )
        }))
        .collect()
}

/// A training step and inference for the README's quick-start model and the
/// paper-size reference model, at batch 32 and 128 of 32x32x3 images.
fn models() -> Vec<Case> {
    let small = Config {
        hidden: 64,
        codes: 128,
        code_dim: 16,
        ..Config::reference(C)
    };
    let paper = Config::reference(C);
    let mut all = Vec::new();
    for (group, what) in [
        (Group::Train, "train step"),
        (Group::Inference, "encode + decode"),
    ] {
        for (label, config) in [("quick-start model", small), ("paper-size model", paper)] {
            for batch in [32, 128] {
                let shape = format!(
                    "batch {batch} {C}x{SIDE}x{SIDE}, H{} R{} L{} K{} D{}",
                    config.hidden,
                    config.res_hidden,
                    config.res_layers,
                    config.codes,
                    config.code_dim
                );
                let quick = label == "quick-start model" && batch == 32;
                let train = (group == Group::Train).then_some(CodebookUpdate::Gradient);
                // Inference runs with the tuning of the same model's training step: the
                // tuner times training steps only.
                let tuned_for = Some(Target {
                    config,
                    batch,
                    image: [SIDE, SIDE],
                });
                all.push(Case {
                    tuned_for,
                    ..case(
                        group,
                        format!("{what}, {label}"),
                        shape.clone(),
                        quick,
                        move |gpu| model_work(gpu, &config, batch, [SIDE, SIDE], train),
                    )
                });
                if group == Group::Train && batch == 32 {
                    let ema = Some(CodebookUpdate::Ema);
                    all.push(Case {
                        tuned_for,
                        ..case(
                            group,
                            format!("{what} (EMA codebook), {label}"),
                            shape,
                            false,
                            move |gpu| model_work(gpu, &config, batch, [SIDE, SIDE], ema),
                        )
                    });
                }
            }
        }
    }
    all
}

/// The model's graph with fresh weights on a batch of noise images of `size`: with
/// `train`, forward, loss, backward and Adam (and the EMA update of an EMA codebook);
/// without, encoder, quantiser and decoder.
fn model_work(
    gpu: &Gpu,
    config: &Config,
    batch: usize,
    size: [usize; 2],
    train: Option<CodebookUpdate>,
) -> Result<Work> {
    let (launch, flops) = model_launch(gpu, config, batch, size, train)?;
    Ok(Work {
        job: Job::Gpu(launch),
        flops: Some(flops),
        bytes: None,
        images: Some(batch as f64),
    })
}

/// A model's inference, or (with `train`) its whole training step, on random inputs of
/// `batch` images of `size`, and the convolutions' floating-point operations.
pub(crate) fn model_launch(
    gpu: &Gpu,
    config: &Config,
    batch: usize,
    size: [usize; 2],
    train: Option<CodebookUpdate>,
) -> Result<(Launch, f64)> {
    let params = Params::new(gpu, config.params())?;
    params.upload(
        gpu,
        &params.join(&fresh_values(&params, 0), "initialisation")?,
    )?;
    let net = Vqvae::new(gpu, &params, config, batch, size, train)?;
    net.x.write(
        gpu,
        bytemuck::cast_slice(&{
            let mut rng = Rng::for_purpose(14, 0x1A6E);
            (0..net.x.len())
                .map(|_| rng.uniform(-0.5, 0.5) as f32)
                .collect::<Vec<f32>>()
        }),
    )?;
    let mut launch = net.encode().clone().then(net.decode().clone());
    let flops = if let Some(update) = train {
        let (flat, grads) = (params.flat_values(), params.flat_grads());
        let (m, v) = (zeros(gpu, flat.shape())?, zeros(gpu, flat.shape())?);
        let adam = Adam::new(gpu, flat, grads, &m, &v, AdamConfig::default())?;
        let backward = net.loss_and_backward().expect("a training graph");
        launch = launch.then(backward.clone()).then(adam.launch().clone());
        if update == CodebookUpdate::Ema {
            let (stage, prefix) = (&net.stages[0], "ema.".to_string());
            let ema = EmaCodebook::new(
                gpu,
                stage,
                prefix,
                &params,
                DEFAULT_EMA_DECAY,
                DEFAULT_EMA_EPS,
            )?;
            ema.start_from_codebook(gpu, &params)?;
            launch = launch.then(ema.launch().clone());
        }
        net.train_flops
    } else {
        net.forward_flops
    };
    Ok((launch, flops))
}

/// The prior of the README's Fashion-MNIST run, plain and gated: K=128 codes on 7x7
/// grids, 10 classes, the default sizes, 64 grids a batch; and the plain one sampling
/// 7x7, 16x16 and 32x32 grids.
fn prior() -> Vec<Case> {
    let plain = PriorConfig::new(128, [7, 7], 10);
    let gated = PriorConfig {
        gated: true,
        ..plain
    };
    let mut all = Vec::new();
    for (label, config) in [("prior", plain), ("gated prior", gated)] {
        let shape = format!(
            "batch 64, 7x7 grids, K128, E{} P{} R{} L{} k{}",
            config.embed, config.channels, config.hidden, config.blocks, config.first_kernel
        );
        for (what, train) in [("train step", true), ("sampling, one position", false)] {
            all.push(case(
                Group::Prior,
                format!("{label} {what}"),
                shape.clone(),
                false,
                move |gpu| prior_work(gpu, &config, 64, train),
            ));
        }
    }
    // Sampling on larger grids, 8 at a time: a row of draws over the band the sampler
    // runs on, and one position over the whole grid, which is what each position cost
    // before sampling went by bands.
    for side in [7, 16, 32] {
        let config = PriorConfig::new(128, [side, side], 10);
        let shape = format!(
            "batch 8, {side}x{side} grids, K128, band of {} rows",
            band_rows(&config, 8, &Tuning::REGISTER)
        );
        all.push(case(
            Group::Prior,
            "prior sampling, one row over the band",
            shape.clone(),
            false,
            move |gpu| band_row_work(gpu, &config),
        ));
        all.push(case(
            Group::Prior,
            "prior sampling, one position over the whole grid",
            shape,
            false,
            move |gpu| prior_work(gpu, &config, 8, false),
        ));
    }
    all
}

/// The last row of sampling 8 grids: the band moved into place, a forward pass over
/// the band and a draw per position, the row moved back.
fn band_row_work(gpu: &Gpu, config: &PriorConfig) -> Result<Work> {
    let params = Params::new(gpu, config.params())?;
    params.upload(
        gpu,
        &params.join(&fresh_values(&params, 0), "initialisation")?,
    )?;
    let sampler = Sampler::new(gpu, &params, config, 8)?;
    let [h, w] = config.grid;
    Ok(Work {
        job: Job::Gpu(sampler.row(gpu, h - 1, 1.0, 0)?),
        flops: Some(w as f64 * sampler.forward_flops()),
        bytes: None,
        images: Some(8.0 / h as f64),
    })
}

/// With `train`, the prior's forward, loss, backward and Adam on `batch` grids of random
/// codes; without, one position of sampling over the whole grid (a forward pass and a draw), whose images count a
/// position as a fraction of a grid.
fn prior_work(gpu: &Gpu, config: &PriorConfig, batch: usize, train: bool) -> Result<Work> {
    let params = Params::new(gpu, config.params())?;
    params.upload(
        gpu,
        &params.join(&fresh_values(&params, 0), "initialisation")?,
    )?;
    let net = PriorNet::new(gpu, &params, config, batch, train)?;
    let mut rng = Rng::for_purpose(15, 0x9A1E);
    let codes: Vec<u32> = (0..net.codes.len())
        .map(|_| rng.below(config.codes) as u32)
        .collect();
    net.codes.write(gpu, bytemuck::cast_slice(&codes))?;
    net.set_classes(
        gpu,
        &(0..batch).map(|b| b % config.classes).collect::<Vec<_>>(),
    )?;
    let plane = config.grid[0] * config.grid[1];
    if train {
        let (flat, grads) = (params.flat_values(), params.flat_grads());
        let (m, v) = (zeros(gpu, flat.shape())?, zeros(gpu, flat.shape())?);
        let adam = Adam::new(gpu, flat, grads, &m, &v, AdamConfig::default())?;
        let launch = net
            .forward()
            .clone()
            .then(net.loss().expect("a training graph").clone())
            .then(net.backward().expect("a training graph").clone())
            .then(adam.launch().clone());
        // Every convolution's forward, weight gradient and input gradient.
        return Ok(Work {
            job: Job::Gpu(launch),
            flops: Some(3.0 * net.forward_flops),
            bytes: None,
            images: Some(batch as f64),
        });
    }
    let draw = softmax::sample(gpu, &net.logits, &net.codes, plane / 2, plane / 2, 1.0, 0)?;
    Ok(Work {
        job: Job::Gpu(net.forward().clone().then(draw)),
        flops: Some(net.forward_flops),
        bytes: None,
        images: Some(batch as f64 / plane as f64),
    })
}
