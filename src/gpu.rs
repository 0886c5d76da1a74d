//! Opening a GPU (or adopting a caller's device), running recorded work on it, and
//! turning wgpu's errors into [`Error`]s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::launch::{Launch, PipelineCache, Tuning};

/// How to pick an adapter. wgpu's environment variables (`WGPU_BACKEND`,
/// `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`) override these fields when set.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Backends to search.
    pub backends: wgpu::Backends,
    /// A case-insensitive substring of the adapter's name.
    pub adapter_name: Option<String>,
    /// Which kind of hardware adapter to prefer.
    pub power: wgpu::PowerPreference,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            backends: wgpu::Backends::all(),
            adapter_name: None,
            power: wgpu::PowerPreference::HighPerformance,
        }
    }
}

impl GpuOptions {
    /// These options with wgpu's environment variables applied on top.
    pub fn with_env(mut self) -> Self {
        self.backends = self.backends.with_env();
        if let Ok(name) = std::env::var("WGPU_ADAPTER_NAME") {
            self.adapter_name = Some(name);
        }
        if let Some(power) = wgpu::PowerPreference::from_env() {
            self.power = power;
        }
        self
    }
}

const NO_ADAPTER_HINT: &str = "Install a GPU driver with Vulkan, Metal or DX12 support. On Linux \
without a GPU, Mesa's software Vulkan driver works: `apt-get install mesa-vulkan-drivers libvulkan1`.";

/// An open GPU: device, queue, what the adapter is, and the kernels compiled for it.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    tuning: Tuning,
    pub(crate) pipelines: PipelineCache,
    /// Buffers bound where a kernel variant ignores a binding, one per binding index:
    /// wgpu forbids one buffer in two bindings of a dispatch when either is writable.
    pub(crate) placeholders: Vec<wgpu::Buffer>,
    /// Errors that escaped every error scope (only on devices this crate opened).
    uncaptured: Arc<Mutex<Option<String>>>,
    /// Bytes of tensors allocated through this `Gpu` so far.
    allocated: AtomicU64,
    /// The largest scratch buffer handed out so far (see [`Gpu::scratch`]).
    scratch: Mutex<Option<wgpu::Buffer>>,
    /// Whether dispatches can read their workgroup counts from a buffer.
    indirect: bool,
}

/// Lists the adapters on the given backends, best first by this crate's preference.
pub fn adapters(options: &GpuOptions) -> Vec<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: options.backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let mut found = pollster::block_on(instance.enumerate_adapters(options.backends));
    found.sort_by_key(|a| rank(&a.get_info(), options.power));
    found
}

/// The adapter [`Gpu::open_with`] opens: the best of [`adapters`] whose name contains
/// `options.adapter_name` (case-insensitive). The error lists what was found.
pub fn best_adapter(options: &GpuOptions) -> Result<wgpu::Adapter> {
    let mut found = adapters(options);
    if let Some(name) = &options.adapter_name {
        let want = name.to_lowercase();
        let names: Vec<String> = found.iter().map(|a| describe(&a.get_info())).collect();
        found.retain(|a| a.get_info().name.to_lowercase().contains(&want));
        if found.is_empty() {
            return Err(Error::NoAdapter {
                request: format!(" named like '{name}' (found: {})", list_or_none(&names)),
                hint: "Give --adapter (or WGPU_ADAPTER_NAME) part of one of the names found.",
            });
        }
    }
    found
        .into_iter()
        .next()
        .ok_or_else(|| no_adapter_on(options))
}

/// Sort key: hardware GPUs first (in the order the power preference asks), then the
/// rest; native APIs before GL.
fn rank(info: &wgpu::AdapterInfo, power: wgpu::PowerPreference) -> (u8, u8) {
    use wgpu::DeviceType::*;
    let kind = match (info.device_type, power) {
        (IntegratedGpu, wgpu::PowerPreference::LowPower) => 0,
        (DiscreteGpu, _) => 1,
        (IntegratedGpu, _) => 2,
        (VirtualGpu, _) => 3,
        (Other, _) => 4,
        (Cpu, _) => 5,
    };
    let backend = u8::from(info.backend == wgpu::Backend::Gl);
    (kind, backend)
}

impl Gpu {
    /// Opens the best adapter following wgpu's environment conventions.
    pub fn open() -> Result<Gpu> {
        Gpu::open_with(&GpuOptions::default().with_env())
    }

    /// Opens the best adapter matching `options` (environment variables not applied;
    /// use [`GpuOptions::with_env`] for that).
    pub fn open_with(options: &GpuOptions) -> Result<Gpu> {
        Gpu::from_adapter(&best_adapter(options)?)
    }

    /// Opens a device on `adapter` with the adapter's own limits and the optional
    /// features this crate can use (timestamp queries, subgroup operations).
    pub fn from_adapter(adapter: &wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::SUBGROUP;
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("vqvae-wgpu"),
            required_features: adapter.features() & wanted,
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&descriptor)).map_err(|e| {
                Error::RequestDevice {
                    adapter: info.name.clone(),
                    message: e.to_string(),
                }
            })?;
        let uncaptured = Arc::new(Mutex::new(None));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }));
        let indirect = adapter
            .get_downlevel_capabilities()
            .flags
            .contains(wgpu::DownlevelFlags::INDIRECT_EXECUTION);
        Ok(Gpu::build(device, queue, info, uncaptured, indirect))
    }

    /// Adopts a caller's device and queue. The caller keeps its own uncaptured-error
    /// handler; errors in this crate's work are still caught by error scopes.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Gpu {
        let info = device.adapter_info();
        // Without the adapter its downlevel flags are unknown: GL is the backend where
        // indirect dispatch may be missing.
        let indirect = info.backend != wgpu::Backend::Gl;
        Gpu::build(device, queue, info, Arc::new(Mutex::new(None)), indirect)
    }

    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        info: wgpu::AdapterInfo,
        uncaptured: Arc<Mutex<Option<String>>>,
        indirect: bool,
    ) -> Gpu {
        let placeholders = (0..9)
            .map(|_| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("unused binding"),
                    size: 16,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            })
            .collect();
        Gpu {
            limits: device.limits(),
            tuning: Tuning::for_adapter(&info),
            pipelines: PipelineCache::default(),
            device,
            queue,
            info,
            placeholders,
            uncaptured,
            allocated: AtomicU64::new(0),
            scratch: Mutex::new(None),
            indirect,
        }
    }

    /// Whether dispatches can read their workgroup counts from a buffer (Vulkan, Metal,
    /// DX12; GL where the driver has it).
    pub fn indirect_dispatch(&self) -> bool {
        self.indirect
    }

    /// The size of every subgroup, where the device has subgroup operations and its
    /// subgroups have one size (8 on lavapipe, 32 on NVIDIA and Apple GPUs).
    pub fn subgroup_size(&self) -> Option<u32> {
        let info = &self.info;
        (self.device.features().contains(wgpu::Features::SUBGROUP)
            && info.subgroup_min_size == info.subgroup_max_size)
            .then_some(info.subgroup_min_size)
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// What the adapter is: name, vendor, backend, driver.
    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The device's limits (the adapter's own, for devices this crate opened).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The kernel variants and tile shapes in use.
    pub fn tuning(&self) -> Tuning {
        self.tuning
    }

    /// Replaces the kernel variants and tile shapes for launches built from now on.
    pub fn set_tuning(&mut self, tuning: Tuning) {
        self.tuning = tuning;
    }

    /// Bytes of tensors allocated through this `Gpu` so far (never decreases).
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    pub(crate) fn count_allocation(&self, bytes: u64) {
        self.allocated.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A storage buffer of at least `bytes` that kernels share for intermediates which
    /// live only within one launch (packed GEMM operands). Dispatches run in order and
    /// wgpu orders their accesses, so launches built on the same scratch may be recorded
    /// in any order; a larger request makes a new buffer (sizes rounded up to powers of
    /// two, so a few sizes serve a whole network).
    pub(crate) fn scratch(&self, bytes: u64) -> Result<wgpu::Buffer> {
        let mut slot = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(buffer) = slot.as_ref().filter(|b| b.size() >= bytes) {
            return Ok(buffer.clone());
        }
        let size = bytes
            .next_power_of_two()
            .min(self.limits.max_buffer_size)
            .max(bytes);
        let buffer = self.scoped("allocating scratch", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("scratch"),
                size,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        })?;
        self.count_allocation(size);
        *slot = Some(buffer.clone());
        Ok(buffer)
    }

    /// Runs `f` inside error scopes for validation, out-of-memory and internal errors,
    /// and returns the first error any of them caught.
    pub(crate) fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T> {
        let internal = self.device.push_error_scope(wgpu::ErrorFilter::Internal);
        let memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let errors = [validation.pop(), memory.pop(), internal.pop()].map(pollster::block_on);
        if let Some(e) = errors.into_iter().flatten().next() {
            return Err(Error::Gpu {
                context: context.to_string(),
                message: e.to_string(),
            });
        }
        self.check_uncaptured(context)?;
        Ok(value)
    }

    fn check_uncaptured(&self, context: &str) -> Result<()> {
        let mut slot = self.uncaptured.lock().unwrap_or_else(|p| p.into_inner());
        match slot.take() {
            Some(message) => Err(Error::Gpu {
                context: context.to_string(),
                message,
            }),
            None => Ok(()),
        }
    }

    /// Records `launches` into one compute pass, submits it and waits for the GPU.
    pub fn run(&self, launches: &[&Launch]) -> Result<()> {
        let index = self.enqueue(launches, "run")?;
        self.wait(Some(index), "run")
    }

    /// Records `launches` into one compute pass and submits it without waiting; later
    /// queue writes and submissions are ordered after it.
    pub fn enqueue(&self, launches: &[&Launch], context: &str) -> Result<wgpu::SubmissionIndex> {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(context),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for launch in launches {
                launch.record(&mut pass);
            }
        }
        self.scoped(context, || self.queue.submit([encoder.finish()]))
    }

    /// Submits a finished encoder and waits for the GPU to finish it.
    pub fn submit(&self, encoder: wgpu::CommandEncoder, context: &str) -> Result<()> {
        let index = self.scoped(context, || self.queue.submit([encoder.finish()]))?;
        self.wait(Some(index), context)
    }

    /// Copies `bytes` bytes of `buffer` from `offset` (a `COPY_SRC` buffer) into a
    /// staging buffer, waits, and returns them.
    pub(crate) fn read_bytes(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>> {
        let staging = self.scoped("download", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("download"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
        self.submit(encoder, "download")?;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait(None, "download")?;
        let mapped = rx.recv().ok().and_then(|r| r.ok());
        if mapped.is_none() {
            return Err(Error::DeviceLost {
                context: "download".into(),
                message: "mapping the staging buffer failed".into(),
            });
        }
        let data = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu {
                context: "download".into(),
                message: e.to_string(),
            })?
            .to_vec();
        staging.unmap();
        Ok(data)
    }

    /// Waits for `index` (or all work) to finish on the GPU.
    pub fn wait(&self, index: Option<wgpu::SubmissionIndex>, context: &str) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: None,
            })
            .map_err(|e| Error::DeviceLost {
                context: context.to_string(),
                message: e.to_string(),
            })?;
        self.check_uncaptured(context)
    }
}

/// One line about an adapter: name, type, backend, driver.
pub fn describe(info: &wgpu::AdapterInfo) -> String {
    let driver = driver_text(&info.driver, &info.driver_info);
    format!(
        "{} ({:?}, {:?}{})",
        info.name,
        info.device_type,
        info.backend,
        if driver.is_empty() {
            String::new()
        } else {
            format!(", {driver}")
        }
    )
}

/// The error for backends that hold no adapter: it lists the adapters on the others.
fn no_adapter_on(options: &GpuOptions) -> Error {
    let elsewhere: Vec<String> = adapters(&GpuOptions {
        backends: wgpu::Backends::all(),
        ..options.clone()
    })
    .iter()
    .map(|a| describe(&a.get_info()))
    .collect();
    Error::NoAdapter {
        request: format!(
            " on backend {} (found: {})",
            backend_names(options.backends),
            list_or_none(&elsewhere)
        ),
        hint: if elsewhere.is_empty() {
            NO_ADAPTER_HINT
        } else {
            "Choose the backend of one of the adapters found (--backend or WGPU_BACKEND)."
        },
    }
}

/// The backends wgpu's conventions name (`WGPU_BACKEND`): a comma-separated list of
/// `vulkan` (`vk`), `metal` (`mtl`), `dx12` (`d3d12`) and `gl` (`gles`, `opengl`).
pub fn parse_backends(list: &str) -> Result<wgpu::Backends> {
    let mut backends = wgpu::Backends::empty();
    for name in list.split(',').map(str::trim) {
        backends |= match name.to_lowercase().as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            _ => {
                return Err(Error::Usage(format!(
                    "backend '{name}': expected vulkan, metal, dx12 or gl (or a comma-separated list of them)"
                )));
            }
        };
    }
    Ok(backends)
}

/// Lower-case names of `backends`, comma-separated (`vulkan,gl`).
pub fn backend_names(backends: wgpu::Backends) -> String {
    let names = [
        (wgpu::Backends::VULKAN, "vulkan"),
        (wgpu::Backends::METAL, "metal"),
        (wgpu::Backends::DX12, "dx12"),
        (wgpu::Backends::GL, "gl"),
        (wgpu::Backends::BROWSER_WEBGPU, "webgpu"),
    ];
    let found: Vec<&str> = names
        .iter()
        .filter(|(b, _)| backends.contains(*b))
        .map(|(_, n)| *n)
        .collect();
    if found.is_empty() {
        "none".to_string()
    } else {
        found.join(",")
    }
}

/// A driver's name and version details as one string (either may be empty).
pub(crate) fn driver_text(driver: &str, info: &str) -> String {
    [driver, info]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join("; ")
    }
}
