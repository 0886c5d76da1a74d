//! Launchers for `shaders/restart.wgsl`: restarting codes that no vector chose; and the
//! same restart on the host, for callers whose encoder outputs span several devices.

use crate::error::{Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::quantize::{self, Rows};
use crate::launch::{Bind, Launch};
use crate::rng::pcg;
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    codes: u32,
    dim: u32,
    n: u32,
    plane: u32,
    seed: u32,
    step: u32,
    _pad: [u32; 2],
}

/// What a restart resets with a code, so that nothing drags it back.
#[derive(Clone, Copy, Debug)]
pub enum Reset<'a> {
    /// Nothing (plain SGD keeps no state).
    Nothing,
    /// The code's Adam moments `(m, v)`, `[K, D]` each: cleared.
    Moments(&'a Tensor, &'a Tensor),
    /// The code's EMA statistics: cluster size `[K]` set to 1, sum `[K, D]` set to the
    /// new vector.
    Ema {
        /// Cluster sizes `[K]`.
        cluster: &'a Tensor,
        /// Sums of the assigned vectors `[K, D]`.
        sums: &'a Tensor,
    },
}

/// Dead-code restarts bound to a codebook, its usage and the encoder output.
pub struct Restart {
    accumulate: Launch,
    restart: Launch,
    uniform: wgpu::Buffer,
    params: Params,
    /// What the host's restart reads and writes: the codebook, the window, `z_e` and its
    /// layout, and the reset state (`RESET` of the shader, and its `m`, `v`).
    codebook: Tensor,
    window: Tensor,
    z_e: Tensor,
    rows: Rows,
    mode: u32,
    state: Option<(Tensor, Tensor)>,
}

impl Restart {
    /// Binds the restart of `codebook` `[K, D]` from rows of `z_e` (`[n, D]` or
    /// `[batch, D, h, w]`), counting usage from the per-step `counts` `[K]` (u32) into
    /// `window` `[K]` (u32); `reset` says what a restarted code's state is reset to.
    pub fn new(
        gpu: &Gpu,
        codebook: &Tensor,
        counts: &Tensor,
        window: &Tensor,
        z_e: &Tensor,
        reset: Reset<'_>,
        seed: u64,
    ) -> Result<Restart> {
        let op = "restart";
        let rows = Rows::of(op, z_e)?;
        let (codes, dim) = (quantize::codebook_shape(op, codebook, rows.dim)?, rows.dim);
        for (name, t) in [("counts", counts), ("window", window)] {
            t.expect_dtype(op, DType::U32)?;
            ensure(t.len() == codes, op, || {
                format!("{name} has shape {:?}, expected [{codes}]", t.shape())
            })?;
        }
        let (mode, state) = match reset {
            Reset::Nothing => (0, None),
            Reset::Moments(m, v) => {
                ensure(
                    m.shape() == codebook.shape() && v.shape() == codebook.shape(),
                    op,
                    || "moments must have the codebook's shape".into(),
                )?;
                (1, Some((m, v)))
            }
            Reset::Ema { cluster, sums } => {
                ensure(
                    cluster.shape() == [codes] && sums.shape() == codebook.shape(),
                    op,
                    || "EMA statistics must be [K] and the codebook's shape".into(),
                )?;
                (2, Some((cluster, sums)))
            }
        };
        let constants = [("WG", f64::from(WG)), ("RESET", f64::from(mode))];
        let binds = [
            Bind::Uniform,
            Bind::Read,
            Bind::Write,
            Bind::Read,
            Bind::Write,
            Bind::Write,
            Bind::Write,
        ];
        let params = Params {
            codes: codes as u32,
            dim: dim as u32,
            n: rows.n as u32,
            plane: rows.plane as u32,
            seed: (seed ^ (seed >> 32)) as u32,
            step: 0,
            _pad: [0; 2],
        };
        let uniform = gpu.uniform(&params);
        let resources = [
            uniform.as_entire_binding(),
            counts.binding(),
            window.binding(),
            z_e.binding(),
            codebook.binding(),
            gpu.optional(state.map(|s| s.0), 5),
            gpu.optional(state.map(|s| s.1), 6),
        ];
        let groups = codes.div_ceil(WG as usize) as u64;
        let dispatch = |entry| -> Result<Launch> {
            Ok(gpu
                .dispatch(
                    op,
                    &gpu.kernel(&shaders::RESTART, entry, &constants, &binds)?,
                    &resources,
                    groups,
                )?
                .into())
        };
        Ok(Restart {
            accumulate: dispatch("accumulate")?,
            restart: dispatch("restart")?,
            uniform,
            params,
            codebook: codebook.clone(),
            window: window.clone(),
            z_e: z_e.clone(),
            rows,
            mode,
            state: state.map(|(m, v)| (m.clone(), v.clone())),
        })
    }

    /// Adds a step's counts to the window: record after every step's code usage.
    pub fn accumulate(&self) -> &Launch {
        &self.accumulate
    }

    /// Sets the step (which seeds the choice of encoder outputs) that the next
    /// submitted [`Restart::launch`] uses.
    pub fn set_step(&self, gpu: &Gpu, step: u64) {
        let params = Params {
            step: step as u32,
            ..self.params
        };
        gpu.queue()
            .write_buffer(&self.uniform, 0, bytemuck::bytes_of(&params));
    }

    /// The restart's dispatches, for [`Restart::set_step`]'s step.
    pub fn launch(&self) -> &Launch {
        &self.restart
    }

    /// The layout of `z_e`, whose rows the codes move onto.
    pub fn rows(&self) -> Rows {
        self.rows
    }

    /// The codes unused over the window so far (read back): those a restart now moves.
    pub fn dead_codes(&self, gpu: &Gpu) -> Result<Vec<usize>> {
        let window = self.window.to_u32(gpu)?;
        Ok((0..window.len()).filter(|&k| window[k] == 0).collect())
    }

    /// The row, out of `n`, that the restart at `step` moves code `k` onto: the kernel's
    /// choice when `n` is the rows of `z_e`; with `n` the rows of several devices' `z_e`
    /// together, the same choice over all of them.
    pub fn source_row(&self, step: u64, k: usize, n: usize) -> usize {
        (pcg(pcg(self.params.seed ^ pcg(step as u32)) ^ k as u32) % n as u32) as usize
    }

    /// Rows `rows` of `z_e`, read back: `[rows.len(), D]`.
    pub fn read_rows(&self, gpu: &Gpu, rows: &[usize]) -> Result<Vec<f32>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let z = self.z_e.to_f32(gpu)?;
        let Rows { dim, plane, .. } = self.rows;
        Ok(rows
            .iter()
            .flat_map(|&r| {
                let base = (r / plane) * dim * plane + r % plane;
                (0..dim).map(move |d| base + d * plane)
            })
            .map(|i| z[i])
            .collect())
    }

    /// The restart on the host: moves `codes` onto `vectors` (`[codes.len(), D]`), resets
    /// what the kernel resets with them, and starts a new window.
    pub fn restart_onto(&self, gpu: &Gpu, codes: &[usize], vectors: &[f32]) -> Result<()> {
        let dim = self.rows.dim;
        ensure(vectors.len() == codes.len() * dim, "restart", || {
            format!(
                "{} values for {} codes of dimension {dim}",
                vectors.len(),
                codes.len()
            )
        })?;
        let codes_in = self.window.len();
        if !codes.is_empty() {
            let vector = |j: usize| vectors[j * dim..(j + 1) * dim].to_vec();
            set_rows(gpu, &self.codebook, codes_in, codes, vector)?;
            match (&self.state, self.mode) {
                (Some((m, v)), 1) => {
                    set_rows(gpu, m, codes_in, codes, |_| vec![0.0; dim])?;
                    set_rows(gpu, v, codes_in, codes, |_| vec![0.0; dim])?;
                }
                (Some((cluster, sums)), 2) => {
                    set_rows(gpu, cluster, codes_in, codes, |_| vec![1.0])?;
                    set_rows(gpu, sums, codes_in, codes, vector)?;
                }
                _ => {}
            }
        }
        self.window
            .write(gpu, bytemuck::cast_slice(&vec![0u32; codes_in]))
    }
}

/// Sets rows `codes` of `t` (`[K, ...]`, f32, K = `codes_in`) to `row(j)` for the j-th
/// of them.
fn set_rows(
    gpu: &Gpu,
    t: &Tensor,
    codes_in: usize,
    codes: &[usize],
    row: impl Fn(usize) -> Vec<f32>,
) -> Result<()> {
    let mut all = t.to_f32(gpu)?;
    let width = all.len() / codes_in;
    for (j, &k) in codes.iter().enumerate() {
        all[k * width..(k + 1) * width].copy_from_slice(&row(j));
    }
    t.write(gpu, bytemuck::cast_slice(&all))
}
