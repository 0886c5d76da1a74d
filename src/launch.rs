//! The host side shared by every kernel: compiled pipelines (built once, cached), bind
//! groups, grid sizes, and [`Launch`], a kernel's recorded dispatches ready to replay.

use std::collections::HashMap;
use std::sync::Mutex;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::shaders::Shader;
use crate::tensor::Tensor;

/// The default of [`Tuning::packed_from`]: on lavapipe, thinner products (3 output
/// channels, say) reuse each packed element too few times to repay the packing; from 32
/// rows and columns on they repay it (BENCHMARKS.md, 2026-12-01 night).
pub const PACKED_MIN_SIDE: u32 = 32;

fn packed_min_side() -> u32 {
    PACKED_MIN_SIDE
}

/// Kernel variants and tile shapes. Kernels whose tiles are pipeline-overridable
/// constants read them from here, so each adapter can get the shape it runs best.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tuning {
    /// Stage tiles in workgroup memory (GPUs) rather than reading operands straight
    /// from memory into registers (CPU drivers such as lavapipe, where barriers are dear).
    pub shared_memory: bool,
    /// Threads per workgroup of the convolution kernels, `[along n, along m]`.
    pub conv_workgroup: [u32; 2],
    /// Outputs each convolution thread computes, `[along m, along n]`, at most 8 x 12.
    pub conv_tile: [u32; 2],
    /// Convolutions whose GEMM has at least `packed_from` rows and columns run as
    /// packed vec4 GEMMs whose threads compute this tile, `[rows, columns]` (at most
    /// 16 x 16, columns a multiple of 4), in `conv_workgroup`-shaped workgroups; `None`
    /// runs every convolution directly.
    pub gemm_tile: Option<[u32; 2]>,
    /// The packed GEMM stages double-buffered slices of both operands in workgroup
    /// memory (GPUs; its tile at most 8 x 8) instead of reading them straight into
    /// registers (CPU drivers).
    #[serde(default)]
    pub gemm_shared: bool,
    /// The fewest GEMM rows and columns a packed convolution has; thinner ones run
    /// directly.
    #[serde(default = "packed_min_side")]
    pub packed_from: u32,
    /// Threads per workgroup of the quantiser.
    pub quantize_workgroup: u32,
    /// Rows each quantiser thread owns, at most 8.
    pub quantize_rows: u32,
    /// The quantiser searches vectors and codebook packed into vec4 rows, each thread
    /// owning this tile, `[rows, codes]` (at most 16 x 16), in `quantize_workgroup`
    /// threads; `None` searches them where they lie, `quantize_rows` rows a thread.
    pub quantize_tile: Option<[u32; 2]>,
    /// Workgroups a dispatch should reach to keep the device busy; long reductions are
    /// split (deterministically) until they do.
    pub parallel_groups: u32,
    /// The packed GEMM (`gemm_tile`, in registers) shares A's rows across a subgroup:
    /// each thread loads its share and the subgroup broadcasts them, rather than every
    /// thread loading every row. Used where the device's subgroups have one size that
    /// divides the tile's rows and the workgroup's width (else ignored); the same bits
    /// either way.
    #[serde(default)]
    pub gemm_subgroup: bool,
    /// The packed nearest-code search (`quantize_tile`) shares the codes each step reads
    /// across a subgroup, as `gemm_subgroup` shares A's rows: where the device's
    /// subgroups have one size that divides the tile's codes and the workgroup.
    #[serde(default)]
    pub quantize_subgroup: bool,
    /// Floats one packed operand (of a packed convolution, or the quantiser's packed
    /// vectors) may hold before the product is cut into slices: bounds the scratch
    /// buffer, and keeps every binding far below the device's limit.
    pub pack_floats: u32,
}

impl Tuning {
    /// Register tiles, no workgroup memory: the shape for CPU drivers.
    pub const REGISTER: Tuning = Tuning {
        shared_memory: false,
        conv_workgroup: [8, 8],
        conv_tile: [4, 12],
        gemm_tile: Some([16, 12]),
        gemm_shared: false,
        gemm_subgroup: true,
        packed_from: PACKED_MIN_SIDE,
        quantize_workgroup: 64,
        quantize_rows: 8,
        quantize_tile: Some([16, 8]),
        quantize_subgroup: true,
        parallel_groups: 16,
        pack_floats: 1 << 23,
    };

    /// Workgroup-memory tiles, and wide convolutions as packed GEMMs whose 128 x 64
    /// workgroup tiles stage their operands in workgroup memory: the shape for GPUs.
    pub const SHARED: Tuning = Tuning {
        shared_memory: true,
        conv_workgroup: [16, 16],
        conv_tile: [4, 4],
        gemm_tile: Some([8, 4]),
        gemm_shared: true,
        gemm_subgroup: false,
        packed_from: PACKED_MIN_SIDE,
        quantize_workgroup: 128,
        quantize_rows: 4,
        quantize_tile: None,
        quantize_subgroup: false,
        parallel_groups: 1024,
        pack_floats: 1 << 23,
    };

    /// The default for an adapter: register tiles on CPU drivers, shared tiles elsewhere.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Tuning {
        if info.device_type == wgpu::DeviceType::Cpu {
            Tuning::REGISTER
        } else {
            Tuning::SHARED
        }
    }
}

/// How a kernel's binding is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Bind {
    Uniform,
    Read,
    Write,
}

/// A compiled kernel: its pipeline and the layout its bind groups follow.
#[derive(Clone, Debug)]
pub(crate) struct Kernel {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// The entry point, which names the kernel in a profile.
    pub entry: &'static str,
}

type KernelKey = (String, &'static str, Vec<(&'static str, u64)>);

/// Pipelines and shader modules, created on first use and kept for the device's life.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<String, wgpu::ShaderModule>>,
    kernels: Mutex<HashMap<KernelKey, Kernel>>,
    /// What `kernels::subgroups::consecutive` found, by workgroup and subgroup size.
    pub(crate) subgroup_layouts: Mutex<HashMap<(u32, u32), bool>>,
}

impl Gpu {
    /// The pipeline for `entry` of `shader` with these override constants, compiled on
    /// first use. `bindings` lists group 0's bindings in order.
    pub(crate) fn kernel(
        &self,
        shader: &'static Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        bindings: &[Bind],
    ) -> Result<Kernel> {
        let source = || shader.source.to_string();
        self.kernel_of(shader.name, source, entry, constants, bindings)
    }

    /// As [`Gpu::kernel`], for the module called `name` whose WGSL `source` makes
    /// (called only when the module is first needed): generated kernels.
    pub(crate) fn kernel_of(
        &self,
        name: &str,
        source: impl FnOnce() -> String,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        bindings: &[Bind],
    ) -> Result<Kernel> {
        let key = (
            name.to_string(),
            entry,
            constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
        );
        let mut kernels = self
            .pipelines
            .kernels
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(k) = kernels.get(&key) {
            return Ok(k.clone());
        }
        let module = self.module(name, source)?;
        let context = format!("creating pipeline {name}::{entry}");
        let kernel = self.scoped(&context, || {
            let layout = self
                .device()
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(entry),
                    entries: &bindings
                        .iter()
                        .enumerate()
                        .map(|(i, b)| layout_entry(i as u32, *b))
                        .collect::<Vec<_>>(),
                });
            let pipeline_layout =
                self.device()
                    .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: Some(entry),
                        bind_group_layouts: &[Some(&layout)],
                        immediate_size: 0,
                    });
            let pipeline =
                self.device()
                    .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                        label: Some(entry),
                        layout: Some(&pipeline_layout),
                        module: &module,
                        entry_point: Some(entry),
                        compilation_options: wgpu::PipelineCompilationOptions {
                            constants,
                            // Every kernel writes its workgroup memory before reading it.
                            zero_initialize_workgroup_memory: false,
                        },
                        cache: None,
                    });
            Kernel {
                pipeline,
                layout,
                entry,
            }
        })?;
        kernels.insert(key, kernel.clone());
        Ok(kernel)
    }

    fn module(&self, name: &str, source: impl FnOnce() -> String) -> Result<wgpu::ShaderModule> {
        let mut modules = self
            .pipelines
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(name) {
            return Ok(m.clone());
        }
        let module = self.scoped(&format!("compiling shader module {name}"), || {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source().into()),
            };
            // wgpu's forced loop bounding adds a counter to every loop, which keeps
            // LLVM-based drivers from unrolling the register tiles: lavapipe ran every
            // compute-bound kernel 1.5-2.1x slower with it (BENCHMARKS.md). Bounds checks
            // stay on.
            let checks = wgpu::ShaderRuntimeChecks {
                force_loop_bounding: false,
                ..wgpu::ShaderRuntimeChecks::checked()
            };
            // SAFETY: the contract is that no loop runs forever. Every loop in shaders/ is
            // a counted `for` whose counter rises to a uniform or override bound, and the
            // launchers keep bounds far below u32::MAX (sizes are checked against the
            // binding limits), so no counter wraps; tests/shaders.rs refuses `loop` and
            // `while` in the sources.
            unsafe { self.device().create_shader_module_trusted(desc, checks) }
        })?;
        modules.insert(name.to_string(), module.clone());
        Ok(module)
    }

    /// A uniform buffer holding `value`.
    pub(crate) fn uniform<T: bytemuck::Pod>(&self, value: &T) -> wgpu::Buffer {
        self.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A placeholder for binding `index`, which the kernel variant ignores.
    pub(crate) fn unused(&self, index: usize) -> wgpu::BindingResource<'_> {
        self.placeholders[index].as_entire_binding()
    }

    /// `t`'s binding, or a placeholder for binding `index`.
    pub(crate) fn optional<'a>(
        &'a self,
        t: Option<&'a Tensor>,
        index: usize,
    ) -> wgpu::BindingResource<'a> {
        t.map_or_else(|| self.unused(index), Tensor::binding)
    }

    /// A dispatch of `kernel` over `groups` workgroups (folded into a 3-D grid) with
    /// `resources` bound to group 0 in order.
    pub(crate) fn dispatch(
        &self,
        op: &'static str,
        kernel: &Kernel,
        resources: &[wgpu::BindingResource<'_>],
        groups: u64,
    ) -> Result<Dispatch> {
        let entries: Vec<_> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: r.clone(),
            })
            .collect();
        let bind_group = self.scoped(op, || {
            self.device().create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(op),
                layout: &kernel.layout,
                entries: &entries,
            })
        })?;
        Ok(Dispatch {
            op,
            entry: kernel.entry,
            pipeline: kernel.pipeline.clone(),
            bind_group,
            groups: self.grid(op, groups)?,
            indirect: None,
        })
    }

    /// Folds a count of workgroups into a grid within the per-dimension limit; kernels
    /// number their workgroups linearly across the grid and skip those past the end.
    pub(crate) fn grid(&self, op: &'static str, groups: u64) -> Result<[u32; 3]> {
        let max = u64::from(self.limits().max_compute_workgroups_per_dimension);
        let x = groups.clamp(1, max);
        let rest = groups.div_ceil(x);
        let y = rest.clamp(1, max);
        let z = rest.div_ceil(y);
        if z > max {
            return Err(Error::Limit {
                op,
                what: "workgroups (max_compute_workgroups_per_dimension cubed)",
                needed: groups,
                limit: max * max * max,
            });
        }
        Ok([x as u32, y as u32, z.max(1) as u32])
    }

    /// Checks a workgroup's thread count and workgroup memory against the device.
    pub(crate) fn check_workgroup(
        &self,
        op: &'static str,
        size: [u32; 2],
        shared_bytes: u32,
    ) -> Result<()> {
        let l = self.limits();
        let checks = [
            (
                "threads per workgroup (max_compute_invocations_per_workgroup)",
                u64::from(size[0]) * u64::from(size[1]),
                l.max_compute_invocations_per_workgroup,
            ),
            (
                "workgroup size x (max_compute_workgroup_size_x)",
                u64::from(size[0]),
                l.max_compute_workgroup_size_x,
            ),
            (
                "workgroup size y (max_compute_workgroup_size_y)",
                u64::from(size[1]),
                l.max_compute_workgroup_size_y,
            ),
            (
                "workgroup memory bytes (max_compute_workgroup_storage_size)",
                u64::from(shared_bytes),
                l.max_compute_workgroup_storage_size,
            ),
        ];
        for (what, needed, limit) in checks {
            if needed > u64::from(limit) {
                return Err(Error::Limit {
                    op,
                    what,
                    needed,
                    limit: u64::from(limit),
                });
            }
        }
        Ok(())
    }
}

fn layout_entry(binding: u32, bind: Bind) -> wgpu::BindGroupLayoutEntry {
    let ty = match bind {
        Bind::Uniform => wgpu::BufferBindingType::Uniform,
        Bind::Read => wgpu::BufferBindingType::Storage { read_only: true },
        Bind::Write => wgpu::BufferBindingType::Storage { read_only: false },
    };
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

/// One kernel dispatch with its bind group: replay it as often as you like.
#[derive(Clone, Debug)]
pub struct Dispatch {
    /// The operation it belongs to and its kernel's entry point: its name in a profile.
    op: &'static str,
    entry: &'static str,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    /// Where the counts are read from when the GPU decides them (a guard's gate):
    /// a buffer and a byte offset.
    indirect: Option<(wgpu::Buffer, u64)>,
}

impl Dispatch {
    /// `op/entry`: the operation this dispatch belongs to and its kernel.
    pub fn name(&self) -> String {
        format!("{}/{}", self.op, self.entry)
    }

    /// Its workgroup counts (the most it runs, where the GPU decides them).
    pub fn grid(&self) -> [u32; 3] {
        self.groups
    }

    /// Records this dispatch into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        match &self.indirect {
            Some((args, offset)) => pass.dispatch_workgroups_indirect(args, *offset),
            None => pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]),
        }
    }
}

/// The dispatches one operation needs, in order, bound to its tensors. Built once,
/// recorded into any number of compute passes.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    dispatches: Vec<Dispatch>,
}

impl Launch {
    /// Records every dispatch, in order, into `pass`.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        for d in &self.dispatches {
            d.record(pass);
        }
    }

    /// Whether `other` runs the same pipelines over the same grids, in the same order
    /// (on other buffers, perhaps): the same work.
    #[cfg(feature = "cli")]
    pub(crate) fn same_work(&self, other: &Launch) -> bool {
        let shape = |d: &Dispatch| (d.pipeline.clone(), d.groups);
        self.dispatches
            .iter()
            .map(shape)
            .eq(other.dispatches.iter().map(shape))
    }

    /// Appends the dispatches of `other`.
    pub fn then(mut self, other: Launch) -> Launch {
        self.dispatches.extend(other.dispatches);
        self
    }

    /// The dispatches, in order.
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// How many dispatches this launch records.
    pub fn len(&self) -> usize {
        self.dispatches.len()
    }

    /// Whether this launch records nothing.
    pub fn is_empty(&self) -> bool {
        self.dispatches.is_empty()
    }

    /// Every dispatch's workgroup counts, in order.
    pub(crate) fn grids(&self) -> Vec<[u32; 3]> {
        self.dispatches.iter().map(Dispatch::grid).collect()
    }

    /// The same dispatches, dispatch `i` reading its counts from `args` at byte
    /// `12 i` (an `INDIRECT` buffer that something writes before they run).
    pub(crate) fn indirect(&self, args: &wgpu::Buffer) -> Launch {
        self.dispatches
            .iter()
            .enumerate()
            .map(|(i, d)| Dispatch {
                indirect: Some((args.clone(), 12 * i as u64)),
                ..d.clone()
            })
            .collect()
    }
}

impl From<Dispatch> for Launch {
    fn from(d: Dispatch) -> Launch {
        Launch {
            dispatches: vec![d],
        }
    }
}

impl FromIterator<Dispatch> for Launch {
    fn from_iter<I: IntoIterator<Item = Dispatch>>(iter: I) -> Launch {
        Launch {
            dispatches: iter.into_iter().collect(),
        }
    }
}
