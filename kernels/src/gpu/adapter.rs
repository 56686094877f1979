//! Adapter enumeration and ranking, shared by `kiln show --devices` and `GpuContext::new`.

/// What `kiln show --devices` prints about one adapter; plain data, no wgpu types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterInfo {
    /// Position in `list_adapters()`, the value `GpuContext::new(Some(index))` takes.
    pub index: usize,
    pub name: String,
    /// "Vulkan", "Metal", "Dx12", "Gl", ...
    pub backend: String,
    /// "DiscreteGpu", "IntegratedGpu", "VirtualGpu", "Cpu" or "Other".
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub subgroups: bool,
    pub shader_f16: bool,
}

impl std::fmt::Display for AdapterInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] {} ({}, {}, driver {} {}) max binding {} MiB, subgroups {}, f16 {}",
            self.index,
            self.name,
            self.backend,
            self.device_type,
            self.driver,
            self.driver_info,
            self.max_storage_buffer_binding_size >> 20,
            self.subgroups,
            self.shader_f16
        )
    }
}

pub(crate) fn instance() -> wgpu::Instance {
    // Honors WGPU_BACKEND and friends, so a user can force e.g. `WGPU_BACKEND=vulkan`.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Higher is better: real GPUs before software ones, Vulkan before other backends.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    };
    let backend = u8::from(info.backend == wgpu::Backend::Vulkan);
    (ty, backend)
}

/// Every adapter of every compiled-in backend, best first (the order `list_adapters` reports).
pub(crate) fn ranked_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    // Stable sort keeps the driver's order among equals.
    adapters.sort_by_key(|a| std::cmp::Reverse(rank(&a.get_info())));
    adapters
}

pub(crate) fn describe(index: usize, adapter: &wgpu::Adapter) -> AdapterInfo {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    AdapterInfo {
        index,
        name: info.name,
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: info.driver,
        driver_info: info.driver_info,
        vendor: info.vendor,
        device: info.device,
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        shader_f16: features.contains(wgpu::Features::SHADER_F16),
    }
}

/// All adapters wgpu can see, best first; empty when there is none (no driver installed).
pub fn list_adapters() -> Vec<AdapterInfo> {
    let instance = instance();
    ranked_adapters(&instance)
        .iter()
        .enumerate()
        .map(|(i, a)| describe(i, a))
        .collect()
}
