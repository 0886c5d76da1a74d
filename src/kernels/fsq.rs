//! Launchers for `shaders/fsq.wgsl`: finite scalar quantisation (Mentzer et al. 2023),
//! quantiser without a codebook (so without codebook collapse): its forward pass with
//! the codes, its straight-through backward pass, and the decoding of codes.

use crate::error::{Error, Result, ensure};
use crate::gpu::Gpu;
use crate::kernels::quantize::Rows;
use crate::launch::{Bind, Launch};
use crate::shaders;
use crate::tensor::{DType, Tensor};

const WG: u32 = 64;

const BINDS: [Bind; 6] = [
    Bind::Uniform,
    Bind::Read,
    Bind::Read,
    Bind::Write,
    Bind::Write,
    Bind::Read,
];

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    dim: u32,
    plane: u32,
    _pad: u32,
}

/// The levels of each dimension, on the GPU.
pub struct Fsq {
    levels: Vec<u32>,
    buffer: Tensor,
}

impl Fsq {
    /// A quantiser with `levels[d]` levels in dimension `d` (e.g. `[8, 5, 5, 5]`: 1000
    /// codes), each at least 2, their product a code that fits 32 bits.
    pub fn new(gpu: &Gpu, levels: &[u32]) -> Result<Fsq> {
        let op = "fsq";
        if levels.is_empty() {
            return Err(Error::shape(op, "no levels: give one per dimension"));
        }
        if let Some((d, &l)) = levels.iter().enumerate().find(|(_, l)| **l < 2) {
            return Err(Error::shape(
                op,
                format!("dimension {d} has {l} levels; each needs at least 2"),
            ));
        }
        let codes = levels.iter().try_fold(1u64, |c, &l| {
            let c = c * u64::from(l);
            (c <= u64::from(u32::MAX) + 1).then_some(c)
        });
        if codes.is_none() {
            return Err(Error::shape(
                op,
                format!("levels {levels:?} make more codes than 32 bits can number"),
            ));
        }
        Ok(Fsq {
            levels: levels.to_vec(),
            buffer: Tensor::from_u32(gpu, &[levels.len()], levels)?,
        })
    }

    /// The number of codes: the product of the levels.
    pub fn codes(&self) -> u64 {
        self.levels.iter().map(|&l| u64::from(l)).product()
    }

    fn rows(&self, op: &'static str, z: &Tensor) -> Result<Rows> {
        z.expect_dtype(op, DType::F32)?;
        let rows = Rows::of(op, z)?;
        ensure(rows.dim == self.levels.len(), op, || {
            format!(
                "vectors have dimension {}, but there are levels for {}",
                rows.dim,
                self.levels.len()
            )
        })?;
        Ok(rows)
    }

    fn launch(
        &self,
        gpu: &Gpu,
        (op, entry): (&'static str, &'static str),
        rows: Rows,
        resources: [wgpu::BindingResource<'_>; 5],
    ) -> Result<Launch> {
        let kernel = gpu.kernel(&shaders::FSQ, entry, &[("WG", f64::from(WG))], &BINDS)?;
        let uniform = gpu.uniform(&Params {
            n: rows.n as u32,
            dim: rows.dim as u32,
            plane: rows.plane as u32,
            _pad: 0,
        });
        let [a, b, c, d, e] = resources;
        let all = [uniform.as_entire_binding(), a, b, c, d, e];
        let groups = rows.n.div_ceil(WG as usize) as u64;
        Ok(gpu.dispatch(op, &kernel, &all, groups)?.into())
    }

    /// Quantises `z` (`[n, dim]` or `[batch, dim, h, w]`, f32) into `zhat` (its shape,
    /// each value one of its dimension's levels scaled into [-1, 1]) and `codes` (`[n]`,
    /// u32: the mixed-radix number of the levels, dimension 0 the least significant).
    pub fn quantize(&self, gpu: &Gpu, z: &Tensor, zhat: &Tensor, codes: &Tensor) -> Result<Launch> {
        let op = "fsq quantize";
        let rows = self.rows(op, z)?;
        same_shape(op, "zhat", zhat, z)?;
        codes_of(op, codes, rows)?;
        let resources = [
            self.buffer.binding(),
            z.binding(),
            zhat.binding(),
            codes.binding(),
            gpu.unused(5),
        ];
        self.launch(gpu, (op, "quantize"), rows, resources)
    }

    /// The straight-through gradient at `z` from the gradient at `zhat`: the rounding
    /// passes it through, the bound scales it by its derivative over the half width.
    pub fn backward(
        &self,
        gpu: &Gpu,
        z: &Tensor,
        grad_zhat: &Tensor,
        grad_z: &Tensor,
    ) -> Result<Launch> {
        let op = "fsq backward";
        let rows = self.rows(op, z)?;
        same_shape(op, "the gradient at zhat", grad_zhat, z)?;
        same_shape(op, "the gradient at z", grad_z, z)?;
        let resources = [
            self.buffer.binding(),
            grad_zhat.binding(),
            grad_z.binding(),
            gpu.unused(4),
            z.binding(),
        ];
        self.launch(gpu, (op, "backward"), rows, resources)
    }

    /// Writes into `zhat` (`[n, dim]` or `[batch, dim, h, w]`) the vectors of `codes`.
    pub fn decode(&self, gpu: &Gpu, codes: &Tensor, zhat: &Tensor) -> Result<Launch> {
        let op = "fsq decode";
        let rows = self.rows(op, zhat)?;
        codes_of(op, codes, rows)?;
        let resources = [
            self.buffer.binding(),
            gpu.unused(2),
            zhat.binding(),
            codes.binding(),
            gpu.unused(5),
        ];
        self.launch(gpu, (op, "decode"), rows, resources)
    }
}

fn same_shape(op: &'static str, what: &str, t: &Tensor, z: &Tensor) -> Result<()> {
    t.expect_dtype(op, DType::F32)?;
    ensure(t.shape() == z.shape(), op, || {
        format!("{what} has shape {:?}, expected {:?}", t.shape(), z.shape())
    })
}

fn codes_of(op: &'static str, codes: &Tensor, rows: Rows) -> Result<()> {
    codes.expect_dtype(op, DType::U32)?;
    ensure(codes.len() == rows.n, op, || {
        format!(
            "codes have shape {:?}, expected [{}]",
            codes.shape(),
            rows.n
        )
    })
}
