//! What a caller's own wgpu program makes: a device, buffers at offsets, read-backs.

/// A device of the tests' adapter with wgpu's default limits, made the plain wgpu way.
pub fn device() -> (wgpu::Device, wgpu::Queue) {
    device_with(wgpu::Limits::default())
}

/// As [`device`], with `limits`.
pub fn device_with(limits: wgpu::Limits) -> (wgpu::Device, wgpu::Queue) {
    // The adapter the tests use everywhere; the device is made the plain wgpu way.
    let adapter = super::default_adapter();
    let descriptor = wgpu::DeviceDescriptor {
        required_limits: limits,
        ..Default::default()
    };
    pollster::block_on(adapter.request_device(&descriptor)).expect("a device")
}

/// The byte offset at which the tests' bindings start.
pub const ALIGN: u64 = 256;

/// One buffer holding `data` at byte offset `ALIGN`, with room after it.
pub fn buffer_at_offset(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    data: &[u8],
    extra: u64,
) -> wgpu::Buffer {
    let b = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: ALIGN + data.len() as u64 + extra,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    queue.write_buffer(&b, ALIGN, data);
    b
}

/// `bytes` bytes of `src` from `offset`, read back.
pub fn read(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    src: &wgpu::Buffer,
    offset: u64,
    bytes: u64,
) -> Vec<u8> {
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    encoder.copy_buffer_to_buffer(src, offset, &staging, 0, bytes);
    queue.submit([encoder.finish()]);
    staging.map_async(wgpu::MapMode::Read, .., |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    staging.get_mapped_range(..).unwrap().to_vec()
}

/// `bytes` bytes of `b` from [`ALIGN`] on.
pub fn binding(b: &wgpu::Buffer, bytes: u64) -> wgpu::BufferBinding<'_> {
    wgpu::BufferBinding {
        buffer: b,
        offset: ALIGN,
        size: wgpu::BufferSize::new(bytes),
    }
}
