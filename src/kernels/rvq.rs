//! Launchers for `shaders/rvq.wgsl`: residual vector quantisation, S nearest-code
//! searches chained on the GPU with no read-back between them, each on the residual the
//! stages before it left; codes `[n, S]`, the quantised vector the sum of the stages'.

use crate::error::{Error, Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::quantize::{self, Rows};
use crate::kernels::vq_backward::vq_backward;
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;

const BINDINGS: [Bind; 9] = [
    Bind::Uniform,
    Bind::Read,
    Bind::Write,
    Bind::Read,
    Bind::Write,
    Bind::Write,
    Bind::Write,
    Bind::Read,
    Bind::Write,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    dim: u32,
    plane: u32,
    codes: u32,
    stages: u32,
    stage: u32,
    _pad: [u32; 2],
}

/// Where a residual quantisation writes.
pub struct Outputs<'a> {
    /// Each vector's codes, stage by stage: `[n, S]` (u32).
    pub codes: &'a Tensor,
    /// The sum of the stages' code vectors, the shape of `z`.
    pub quantized: &'a Tensor,
    /// Each stage's squared distance `||r_s - e_{c_s}||^2`, `[n, S]` (f32), if wanted.
    pub stage_distances: Option<&'a Tensor>,
    /// The squared distance from each vector to its quantised sum, `[n]`, if wanted.
    pub distances: Option<&'a Tensor>,
}

/// A residual quantisation bound to its tensors.
pub struct ResidualVq {
    /// Every stage's search and update, in order: record into one compute pass.
    pub launch: Launch,
    /// Each stage's nearest-code search.
    searches: Vec<Launch>,
    /// Each stage's update of the residual, the sum and the `[n, S]` outputs.
    updates: Vec<Launch>,
    /// The same updates for a dropped stage, which adds nothing to the sum and the
    /// stage distances (training graphs; stage 0, never dropped, repeats its update).
    dropped: Vec<Launch>,
    /// What each stage quantised, `r_0 = z` first (training graphs keep every one; an
    /// inference quantisation updates one residual in place and keeps only `r_0`).
    pub residuals: Vec<Tensor>,
    /// Each stage's codes `[n]` (u32).
    pub stage_codes: Vec<Tensor>,
    /// Each stage's code vectors, the shape of `z` (training graphs only).
    pub stage_quantized: Vec<Tensor>,
}

impl ResidualVq {
    /// The quantisation with only the first `active` stages (at least 1) adding to the
    /// quantised sum and the stage distances, as quantize dropout (SoundStream) asks of a
    /// training step; the later ones still find their codes and residuals. `active` = S
    /// is [`ResidualVq::launch`].
    pub fn with_stages(&self, active: usize) -> Result<Launch> {
        let stages = self.searches.len();
        if active == stages {
            return Ok(self.launch.clone());
        }
        ensure(
            (1..stages).contains(&active) && self.dropped.len() == stages,
            "residual_quantize",
            || {
                format!(
                    "{active} active stages of {stages}: a training quantisation keeps 1 to {stages}"
                )
            },
        )?;
        let mut launch = Launch::default();
        for s in 0..stages {
            let update = if s < active {
                &self.updates[s]
            } else {
                &self.dropped[s]
            };
            launch = launch.then(self.searches[s].clone()).then(update.clone());
        }
        Ok(launch)
    }
}

/// Quantises `z` (`[n, dim]` or `[batch, dim, h, w]`) in `codebooks.len()` stages, stage
/// s with `codebooks[s]` (`[K, dim]`; pass one tensor several times to share it) on the
/// residual the stages before it left; ties go to the lowest index in every stage. With
/// `keep`, every stage's residual and code vectors stay in tensors of their own, as the
/// backward pass needs them, and stages can be dropped ([`ResidualVq::with_stages`]).
/// One stage is plain VQ, bit for bit.
pub fn residual_quantize(
    gpu: &Gpu,
    z: &Tensor,
    codebooks: &[&Tensor],
    out: &Outputs<'_>,
    keep: bool,
) -> Result<ResidualVq> {
    let op = "residual_quantize";
    z.expect_dtype(op, DType::F32)?;
    let rows = Rows::of(op, z)?;
    let stages = codebooks.len();
    if stages == 0 {
        return Err(Error::shape(op, "0 stages: give at least one codebook"));
    }
    ensure(rows.n > 0, op, || "there are no vectors to quantise".into())?;
    let codes = quantize::codebook_shape(op, codebooks[0], rows.dim)?;
    for (s, c) in codebooks.iter().enumerate() {
        let k = quantize::codebook_shape(op, c, rows.dim)?;
        ensure(k == codes, op, || {
            format!("stage {s}'s codebook has {k} codes, stage 0's {codes}")
        })?;
    }
    let per_vector = |t: &Tensor, what: &str, dtype, per: usize| {
        t.expect_dtype(op, dtype)?;
        ensure(t.len() == rows.n * per, op, || {
            format!(
                "{what} have shape {:?}, expected {} elements ({} vectors x {per})",
                t.shape(),
                rows.n * per,
                rows.n
            )
        })
    };
    per_vector(out.codes, "codes", DType::U32, stages)?;
    if let Some(d) = out.stage_distances {
        per_vector(d, "stage distances", DType::F32, stages)?;
    }
    if let Some(d) = out.distances {
        per_vector(d, "distances", DType::F32, 1)?;
    }
    out.quantized.expect_dtype(op, DType::F32)?;
    ensure(out.quantized.shape() == z.shape(), op, || {
        format!(
            "the quantised vectors have shape {:?}, expected {:?}",
            out.quantized.shape(),
            z.shape()
        )
    })?;

    let zeros = |shape: &[usize], dtype| Tensor::zeros(gpu, shape, dtype);
    // Inference updates one residual in place; training keeps r_1 .. r_{S-1}.
    let scratch = (!keep && stages > 1)
        .then(|| zeros(z.shape(), DType::F32))
        .transpose()?;
    let mut residuals = vec![z.clone()];
    let (mut stage_codes, mut stage_quantized) = (Vec::new(), Vec::new());
    let (mut searches, mut updates, mut dropped) = (Vec::new(), Vec::new(), Vec::new());
    for (s, codebook) in codebooks.iter().enumerate() {
        let last = s + 1 == stages;
        let input = match (&scratch, s) {
            (Some(r), 1..) => r.clone(),
            _ => residuals[s].clone(),
        };
        let indices = zeros(&[rows.n], DType::U32)?;
        let dist = match (last, out.distances) {
            (true, Some(d)) => Some(d.clone()),
            _ => out
                .stage_distances
                .map(|_| zeros(&[rows.n], DType::F32))
                .transpose()?,
        };
        let q = keep.then(|| zeros(z.shape(), DType::F32)).transpose()?;
        searches.push(quantize::quantize(
            gpu,
            &input,
            codebook,
            &indices,
            dist.as_ref(),
            q.as_ref(),
        )?);
        let next = match (&scratch, last) {
            (_, true) => None,
            (Some(r), false) => Some(r.clone()),
            (None, false) => Some(zeros(z.shape(), DType::F32)?),
        };
        let from_source = scratch.is_none() || s == 0;
        let uniform = gpu.uniform(&params(rows, codes, stages, s));
        let resources = [
            uniform.as_entire_binding(),
            codebook.binding(),
            indices.binding(),
            if from_source {
                input.binding()
            } else {
                gpu.unused(3)
            },
            gpu.optional(next.as_ref(), 4),
            out.quantized.binding(),
            out.codes.binding(),
            match (&dist, out.stage_distances) {
                (Some(d), Some(_)) => d.binding(),
                _ => gpu.unused(7),
            },
            gpu.optional(out.stage_distances, 8),
        ];
        let update = |active: bool| -> Result<Launch> {
            let flag = |b: bool| f64::from(u8::from(b));
            let constants = [
                ("WG", f64::from(WG)),
                ("FIRST", flag(s == 0)),
                ("FROM_SOURCE", flag(from_source)),
                ("WRITE_RESIDUAL", flag(!last)),
                ("WRITE_DISTS", flag(out.stage_distances.is_some())),
                ("ACTIVE", flag(active)),
            ];
            let kernel = gpu.kernel(&shaders::RVQ, "stage", &constants, &BINDINGS)?;
            let groups = rows.n.div_ceil(WG as usize) as u64;
            Ok(gpu.dispatch(op, &kernel, &resources, groups)?.into())
        };
        updates.push(update(true)?);
        if keep && s > 0 {
            dropped.push(update(false)?);
        } else if keep {
            // Stage 0 is never dropped.
            dropped.push(updates[0].clone());
        }
        if keep && let Some(r) = next {
            residuals.push(r);
        }
        stage_codes.push(indices);
        stage_quantized.extend(q);
    }
    let launch = searches
        .iter()
        .zip(&updates)
        .fold(Launch::default(), |l, (search, update)| {
            l.then(search.clone()).then(update.clone())
        });
    Ok(ResidualVq {
        launch,
        searches,
        updates,
        dropped,
        residuals,
        stage_codes,
        stage_quantized,
    })
}

/// The backward pass of a [`residual_quantize`] made with `keep`, of its first `active`
/// stages (all S, or those [`ResidualVq::with_stages`] kept): the gradient at `z` from
/// the gradient at the quantised sum `grad_zq`, passed straight through, plus each
/// stage's commitment gradient `2 beta (r_s - e_{c_s}) / numel`, into `grad_z`; and
/// where `grad_codebooks` are given, stage s's codebook gradient of
/// `mean((sg[r_s] - e_{c_s})^2)` into `grad_codebooks[s]` (the dropped stages' are not
/// written). The loss this differentiates is the sum over those stages of plain VQ's
/// terms on each stage's residual.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    rvq: &ResidualVq,
    active: usize,
    codebooks: &[&Tensor],
    grad_zq: &Tensor,
    beta: f32,
    grad_z: &Tensor,
    grad_codebooks: Option<&[&Tensor]>,
) -> Result<Launch> {
    let op = "rvq backward";
    let stages = rvq.stage_codes.len();
    ensure(
        rvq.residuals.len() == stages && rvq.stage_quantized.len() == stages,
        op,
        || "the quantisation kept no residuals: make it with keep".into(),
    )?;
    ensure(
        codebooks.len() == stages && grad_codebooks.is_none_or(|g| g.len() == stages),
        op,
        || format!("{stages} stages need {stages} codebooks and codebook gradients"),
    )?;
    ensure((1..=stages).contains(&active), op, || {
        format!("{active} active stages of {stages}")
    })?;
    // Each stage adds its commitment gradient to the running one; the outputs alternate
    // between grad_z and a spare so that the last stage's lands in grad_z.
    let spare = Tensor::zeros(gpu, grad_z.shape(), DType::F32)?;
    let mut input = grad_zq;
    let mut launch = Launch::default();
    for s in 0..active {
        let out = if (active - 1 - s).is_multiple_of(2) {
            grad_z
        } else {
            &spare
        };
        launch = launch.then(vq_backward(
            gpu,
            &rvq.residuals[s],
            &rvq.stage_quantized[s],
            &rvq.stage_codes[s],
            codebooks[s],
            input,
            beta,
            out,
            grad_codebooks.map(|g| g[s]),
        )?);
        input = out;
    }
    Ok(launch)
}

/// The shape checks of [`decode`] and [`joint_codes`]: `codes` holds `[n, S]` u32.
fn stage_codes(op: &'static str, codes: &Tensor, n: usize, stages: usize) -> Result<()> {
    codes.expect_dtype(op, DType::U32)?;
    ensure(stages > 0 && codes.len() == n * stages, op, || {
        format!(
            "codes have shape {:?}, expected [{n}, {stages}]",
            codes.shape()
        )
    })
}

fn params(rows: Rows, codes: usize, stages: usize, stage: usize) -> Params {
    Params {
        n: rows.n as u32,
        dim: rows.dim as u32,
        plane: rows.plane as u32,
        codes: codes as u32,
        stages: stages as u32,
        stage: stage as u32,
        _pad: [0; 2],
    }
}

/// Writes into `zq` (`[n, dim]` or `[batch, dim, h, w]`) the sum of the code vectors
/// `codes` (`[n, S]`) name, stage s's from `codebooks[s]`.
pub fn decode(gpu: &Gpu, codes: &Tensor, codebooks: &[&Tensor], zq: &Tensor) -> Result<Launch> {
    let op = "rvq decode";
    zq.expect_dtype(op, DType::F32)?;
    let rows = Rows::of(op, zq)?;
    stage_codes(op, codes, rows.n, codebooks.len())?;
    let mut launch = Launch::default();
    for (s, codebook) in codebooks.iter().enumerate() {
        let k = quantize::codebook_shape(op, codebook, rows.dim)?;
        let constants = [
            ("WG", f64::from(WG)),
            ("FIRST", f64::from(u8::from(s == 0))),
        ];
        let kernel = gpu.kernel(&shaders::RVQ, "decode_stage", &constants, &BINDINGS)?;
        let uniform = gpu.uniform(&params(rows, k, codebooks.len(), s));
        let resources = [
            uniform.as_entire_binding(),
            codebook.binding(),
            gpu.unused(2),
            gpu.unused(3),
            gpu.unused(4),
            zq.binding(),
            codes.binding(),
            gpu.unused(7),
            gpu.unused(8),
        ];
        let groups = rows.n.div_ceil(WG as usize) as u64;
        launch = launch.then(gpu.dispatch(op, &kernel, &resources, groups)?.into());
    }
    Ok(launch)
}

/// Writes `joint` `[n]`: each vector's codes (`[n, S]`, each below `codes`) as one
/// number in base `codes`, stage 0 the least significant digit. K^S must fit 32 bits.
pub fn joint_codes(gpu: &Gpu, codes: &Tensor, per_stage: usize, joint: &Tensor) -> Result<Launch> {
    let op = "rvq joint codes";
    joint.expect_dtype(op, DType::U32)?;
    let n = joint.len();
    ensure(n > 0, op, || "there are no vectors".into())?;
    let stages = codes.len() / n;
    stage_codes(op, codes, n, stages)?;
    let symbols = (per_stage as u64).checked_pow(stages as u32);
    if symbols.is_none_or(|s| s > u64::from(u32::MAX) + 1) {
        return Err(Error::shape(
            op,
            format!("{per_stage}^{stages} joint codes do not fit 32 bits"),
        ));
    }
    let kernel = gpu.kernel(&shaders::RVQ, "joint", &[("WG", f64::from(WG))], &BINDINGS)?;
    let rows = Rows {
        n,
        dim: 1,
        plane: 1,
    };
    let uniform = gpu.uniform(&params(rows, per_stage, stages, 0));
    let resources = [
        uniform.as_entire_binding(),
        gpu.unused(1),
        joint.binding(),
        gpu.unused(3),
        gpu.unused(4),
        gpu.unused(5),
        codes.binding(),
        gpu.unused(7),
        gpu.unused(8),
    ];
    let groups = n.div_ceil(WG as usize) as u64;
    Ok(gpu.dispatch(op, &kernel, &resources, groups)?.into())
}

/// Copies `stages` codebooks of `[codes, dim]` lying one after another in `source` into
/// `stacked`, `stride` floats apart (so that each starts at an aligned binding offset).
pub fn stack_codebooks(
    gpu: &Gpu,
    source: &Tensor,
    [stages, codes, dim]: [usize; 3],
    stacked: &Tensor,
    stride: usize,
) -> Result<Launch> {
    let op = "stack_codebooks";
    let len = stages * codes * dim;
    ensure(source.len() >= len && stride >= codes * dim, op, || {
        format!(
            "{stages} codebooks of {codes} x {dim} do not fit {} floats",
            source.len()
        )
    })?;
    ensure(stacked.len() >= stages * stride, op, || {
        format!(
            "the stack holds {} floats, {stages} stages {stride} apart need {}",
            stacked.len(),
            stages * stride
        )
    })?;
    let kernel = gpu.kernel(&shaders::RVQ, "stack", &[("WG", f64::from(WG))], &BINDINGS)?;
    let uniform = gpu.uniform(&Params {
        n: 0,
        dim: dim as u32,
        plane: 1,
        codes: codes as u32,
        stages: stages as u32,
        stage: stride as u32,
        _pad: [0; 2],
    });
    let resources = [
        uniform.as_entire_binding(),
        gpu.unused(1),
        gpu.unused(2),
        source.binding(),
        stacked.binding(),
        gpu.unused(5),
        gpu.unused(6),
        gpu.unused(7),
        gpu.unused(8),
    ];
    let groups = len.div_ceil(WG as usize) as u64;
    Ok(gpu.dispatch(op, &kernel, &resources, groups)?.into())
}
