//! Where a loaded model generates: the CPU [`Scheduler`] (continuous batching) or, with the
//! `gpu` feature, a [`crate::gpu_worker::GpuWorker`] (one sequence at a time on a wgpu adapter).
//! Both take a request and a [`Sink`] and emit the same [`kiln_engine::Event`] stream, so the
//! HTTP layer does not care which one runs.

use std::sync::Arc;

use kiln_engine::{EngineError, GenerateRequest, Model, Scheduler, SchedulerOptions, Sink};

/// `--device`: the CPU, or a wgpu adapter (None: the best one, else an index into
/// `kiln show --devices`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    #[default]
    Cpu,
    Gpu(Option<usize>),
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Device, String> {
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu(None)),
            t => t
                .strip_prefix("gpu:")
                .and_then(|n| n.parse().ok())
                .map(|n| Device::Gpu(Some(n)))
                .ok_or_else(|| format!("unknown device {s:?} (expected cpu, gpu or gpu:N)")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Gpu(None) => f.write_str("gpu"),
            Device::Gpu(Some(n)) => write!(f, "gpu:{n}"),
        }
    }
}

pub const NO_GPU_BUILD: &str = "this kiln build has no GPU support: rebuild with `--features gpu` or use --device cpu";

/// Checks that `device` can be used and describes it (the adapter for a GPU), for the startup
/// log. Fails without the `gpu` feature, or when the adapter does not exist.
pub fn describe(device: Device) -> Result<String, String> {
    match device {
        Device::Cpu => Ok(format!("CPU ({})", kiln_engine::kernels::cpu_features())),
        Device::Gpu(index) => describe_gpu(index),
    }
}

#[cfg(feature = "gpu")]
fn describe_gpu(index: Option<usize>) -> Result<String, String> {
    let adapters = kiln_engine::gpu::list_adapters();
    if adapters.is_empty() {
        return Err("--device gpu: wgpu finds no adapter (install a Vulkan/Metal/DX12 driver, e.g. \
                    mesa-vulkan-drivers, or use --device cpu)"
            .into());
    }
    let n = adapters.len();
    adapters
        .into_iter()
        .nth(index.unwrap_or(0))
        .map(|a| a.to_string())
        .ok_or_else(|| format!("--device gpu:{}: there are only {n} adapters (see `kiln show --devices`)", index.unwrap_or(0)))
}

#[cfg(not(feature = "gpu"))]
fn describe_gpu(_: Option<usize>) -> Result<String, String> {
    Err(NO_GPU_BUILD.into())
}

/// A loaded model's generation engine.
pub enum Generator {
    Cpu(Scheduler),
    #[cfg(feature = "gpu")]
    Gpu(crate::gpu_worker::GpuWorker),
}

impl Generator {
    /// Starts the generator for `model` on `device`. Blocking: a GPU one uploads the weights.
    /// `opts.num_parallel` applies to the CPU; the GPU runs one sequence at a time with up to
    /// `opts.max_queue` waiting.
    pub fn new(model: Arc<Model>, device: Device, opts: SchedulerOptions) -> Result<Generator, EngineError> {
        match device {
            Device::Cpu => Ok(Generator::Cpu(Scheduler::new(model, opts))),
            #[cfg(feature = "gpu")]
            Device::Gpu(adapter) => Ok(Generator::Gpu(crate::gpu_worker::GpuWorker::new(model, adapter, opts.max_queue)?)),
            #[cfg(not(feature = "gpu"))]
            Device::Gpu(_) => Err(EngineError::Gpu(NO_GPU_BUILD.into())),
        }
    }

    /// Queues a request; its events go to `sink`. Fails at once with
    /// [`EngineError::QueueFull`] when the queue is full.
    pub fn submit(&self, req: GenerateRequest, sink: Sink) -> Result<(), EngineError> {
        match self {
            Generator::Cpu(s) => s.submit(req, sink),
            #[cfg(feature = "gpu")]
            Generator::Gpu(g) => g.submit(req, sink),
        }
    }

    /// Sequences generating now.
    pub fn running(&self) -> usize {
        match self {
            Generator::Cpu(s) => s.running(),
            #[cfg(feature = "gpu")]
            Generator::Gpu(g) => g.running(),
        }
    }

    /// Requests waiting.
    pub fn queued(&self) -> usize {
        match self {
            Generator::Cpu(s) => s.queued(),
            #[cfg(feature = "gpu")]
            Generator::Gpu(g) => g.queued(),
        }
    }

    /// "cpu", or the adapter's name.
    pub fn device_name(&self) -> String {
        match self {
            Generator::Cpu(_) => "cpu".into(),
            #[cfg(feature = "gpu")]
            Generator::Gpu(g) => g.adapter().name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
        assert_eq!("gpu".parse::<Device>(), Ok(Device::Gpu(None)));
        assert_eq!("gpu:1".parse::<Device>(), Ok(Device::Gpu(Some(1))));
        assert!("gpu:x".parse::<Device>().is_err());
        assert!("tpu".parse::<Device>().is_err());
        for d in [Device::Cpu, Device::Gpu(None), Device::Gpu(Some(2))] {
            assert_eq!(d.to_string().parse::<Device>(), Ok(d));
        }
    }

    #[cfg(not(feature = "gpu"))]
    #[test]
    fn gpu_needs_the_feature() {
        let e = describe(Device::Gpu(None)).unwrap_err();
        assert!(e.contains("--features gpu"), "{e}");
    }
}
