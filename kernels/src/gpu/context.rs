//! The device, its queue and real limits; uploads, readback and the per-step command encoder.

use super::adapter::{describe, instance, ranked_adapters, AdapterInfo};
use super::ops::Kernel;
use super::pipelines::PipelineCache;
use super::tensor::{rows_per_split, GpuBuffer, GpuWeight, WeightSplit};
use super::{shape_err, GpuError};
use crate::GgmlType;

/// An opened adapter: device, queue, its real limits and the compiled-pipeline cache.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) pipelines: PipelineCache,
    info: AdapterInfo,
    limits: wgpu::Limits,
}

/// One forward step's command encoder: record any number of kernels, then `GpuContext::submit`.
pub struct Step {
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
}

impl Step {
    /// Appends a prepared kernel's dispatches to the step's compute pass.
    pub fn record(&mut self, kernel: &Kernel) {
        let encoder = &mut self.encoder;
        let pass = self.pass.get_or_insert_with(|| {
            encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                })
                .forget_lifetime()
        });
        kernel.encode(pass);
    }

    /// Copies `n` elements `src[src_off..]` to `dst[dst_off..]` (e.g. K/V rows into the cache).
    pub fn copy(
        &mut self,
        src: &GpuBuffer,
        src_off: usize,
        dst: &GpuBuffer,
        dst_off: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        if src_off + n > src.len || dst_off + n > dst.len {
            return Err(shape_err(
                "copy",
                format!(
                    "{n} elements from {src_off} of {} into {dst_off} of {}",
                    src.len, dst.len
                ),
            ));
        }
        self.pass = None; // a copy cannot sit inside a compute pass
        self.encoder.copy_buffer_to_buffer(
            &src.buffer,
            (src_off * 4) as u64,
            &dst.buffer,
            (dst_off * 4) as u64,
            (n * 4) as u64,
        );
        Ok(())
    }
}

/// Whether `KILN_GPU_PROFILE=1` asks for per-step and per-kernel GPU times.
pub fn profiling() -> bool {
    std::env::var("KILN_GPU_PROFILE").is_ok_and(|v| v == "1")
}

/// Whether the mat-vec reductions use subgroup operations on `adapter`: it has them, its
/// subgroups have at most 32 lanes (the kernels' row groups are 32 wide), and `KILN_GPU_SUBGROUPS`
/// is not `0` (which forces the workgroup-memory path, e.g. to test it).
fn use_subgroups(adapter: &wgpu::Adapter) -> bool {
    let off = std::env::var("KILN_GPU_SUBGROUPS").is_ok_and(|v| v == "0");
    let info = adapter.get_info();
    !off && adapter.features().contains(wgpu::Features::SUBGROUP) && info.subgroup_max_size <= 32
}

impl Step {
    /// Records `kernel` in a compute pass of its own that writes GPU timestamps `index` (start)
    /// and `index + 1` (end) of `queries` (profiling; needs `GpuContext::has_timestamps`).
    pub fn record_timed(&mut self, kernel: &Kernel, queries: &wgpu::QuerySet, index: u32) {
        self.pass = None;
        let mut pass = self
            .encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites { query_set: queries, beginning_of_pass_write_index: Some(index), end_of_pass_write_index: Some(index + 1) }),
            })
            .forget_lifetime();
        kernel.encode(&mut pass);
    }

    /// Writes timestamps `0..n` of `queries` into `dst` (u64 ticks; see `GpuContext::timestamp_period`).
    pub fn resolve_timestamps(&mut self, queries: &wgpu::QuerySet, n: u32, dst: &wgpu::Buffer) {
        self.pass = None;
        self.encoder.resolve_query_set(queries, 0..n, dst, 0);
    }

    /// Copies `bytes` bytes between raw buffers (e.g. resolved timestamps into a readback buffer).
    pub fn copy_raw(&mut self, src: &wgpu::Buffer, dst: &wgpu::Buffer, bytes: u64) {
        self.pass = None;
        self.encoder.copy_buffer_to_buffer(src, 0, dst, 0, bytes);
    }

    /// Copies the first `n` elements of `src` into a readback (MAP_READ) buffer.
    pub fn copy_to_staging(&mut self, src: &GpuBuffer, staging: &wgpu::Buffer, n: usize) -> Result<(), GpuError> {
        if n > src.len || (n * 4) as u64 > staging.size() {
            return Err(shape_err("copy_to_staging", format!("{n} elements from {} into {} bytes", src.len, staging.size())));
        }
        self.copy_raw(&src.buffer, staging, (n * 4) as u64);
        Ok(())
    }
}

impl GpuContext {
    /// Whether compute passes can write GPU timestamps (requested only under KILN_GPU_PROFILE=1).
    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Nanoseconds per timestamp tick.
    pub fn timestamp_period(&self) -> f32 {
        self.queue.get_timestamp_period()
    }

    /// Whether the mat-vec kernels reduce with subgroup operations on this device.
    pub fn uses_subgroups(&self) -> bool {
        self.pipelines.subgroups
    }

    /// Opens adapter `selector` (an index into `list_adapters()`), or the best one when None.
    /// Requests the adapter's own limits, not WebGPU's defaults.
    pub fn new(selector: Option<usize>) -> Result<Self, GpuError> {
        let instance = instance();
        let mut adapters = ranked_adapters(&instance);
        let count = adapters.len();
        if count == 0 {
            return Err(GpuError::NoAdapter);
        }
        let index = selector.unwrap_or(0);
        if index >= count {
            return Err(GpuError::BadAdapterIndex { index, count });
        }
        let adapter = adapters.swap_remove(index);
        let info = describe(index, &adapter);
        let limits = adapter.limits();
        let subgroups = use_subgroups(&adapter);
        let mut required_features = match subgroups {
            true => wgpu::Features::SUBGROUP,
            false => wgpu::Features::empty(),
        };
        // Per-kernel GPU times for KILN_GPU_PROFILE=1, where the adapter can write timestamps.
        if profiling() && adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            required_features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kiln"),
            required_features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| GpuError::RequestDevice {
            adapter: info.name.clone(),
            msg: e.to_string(),
        })?;
        Ok(GpuContext {
            device,
            queue,
            pipelines: PipelineCache {
                subgroups,
                ..PipelineCache::default()
            },
            info,
            limits,
        })
    }

    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    pub(crate) fn limits_max_dim(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    /// Largest byte size one storage binding may have on this device.
    pub fn max_binding_bytes(&self) -> u64 {
        // u32 byte offsets inside the shaders cap a binding at 2 GiB as well.
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
            .min(1 << 31)
    }

    fn storage(&self, label: &str, len: usize) -> Result<wgpu::Buffer, GpuError> {
        let size = (len.max(1) * 4) as u64;
        if size > self.max_binding_bytes() {
            return Err(shape_err(
                "buffer",
                format!(
                    "{label}: {size} bytes exceed the {}-byte binding limit",
                    self.max_binding_bytes()
                ),
            ));
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// A zero-filled buffer of `len` 4-byte elements.
    pub fn zeros_f32(&self, len: usize) -> Result<GpuBuffer, GpuError> {
        Ok(GpuBuffer {
            buffer: self.storage("f32", len)?,
            len,
        })
    }

    pub fn upload_f32(&self, data: &[f32]) -> Result<GpuBuffer, GpuError> {
        let buf = self.zeros_f32(data.len())?;
        self.queue
            .write_buffer(&buf.buffer, 0, bytemuck::cast_slice(data));
        Ok(buf)
    }

    /// Token ids (u32) or positions (i32 reinterpreted) as a storage buffer.
    pub fn upload_u32(&self, data: &[u32]) -> Result<GpuBuffer, GpuError> {
        let buf = GpuBuffer {
            buffer: self.storage("u32", data.len())?,
            len: data.len(),
        };
        self.queue
            .write_buffer(&buf.buffer, 0, bytemuck::cast_slice(data));
        Ok(buf)
    }

    /// Overwrites `buf[offset..offset + data.len()]` before the next submit.
    pub fn write_f32(&self, buf: &GpuBuffer, offset: usize, data: &[f32]) -> Result<(), GpuError> {
        self.write_words(buf, offset, bytemuck::cast_slice(data))
    }

    pub fn write_u32(&self, buf: &GpuBuffer, offset: usize, data: &[u32]) -> Result<(), GpuError> {
        self.write_words(buf, offset, bytemuck::cast_slice(data))
    }

    fn write_words(&self, buf: &GpuBuffer, offset: usize, bytes: &[u8]) -> Result<(), GpuError> {
        if offset + bytes.len() / 4 > buf.len {
            return Err(shape_err(
                "write",
                format!("{} words at {offset} into {}", bytes.len() / 4, buf.len),
            ));
        }
        if !bytes.is_empty() {
            self.queue
                .write_buffer(&buf.buffer, (offset * 4) as u64, bytes);
        }
        Ok(())
    }

    /// Uploads a GGUF weight `ne = [k, n]` as its raw block bytes (no f32 copy), split by rows
    /// across buffers that each fit one storage binding; each split is padded to 4 bytes.
    pub fn upload_weight(
        &self,
        ty: GgmlType,
        k: usize,
        n: usize,
        bytes: &[u8],
    ) -> Result<GpuWeight, GpuError> {
        self.upload_weight_split(ty, k, n, bytes, self.max_binding_bytes())
    }

    /// `upload_weight` with splits of at most `split_bytes` (capped by the binding limit);
    /// lets tests exercise multi-split weights with small tensors.
    pub fn upload_weight_split(
        &self,
        ty: GgmlType,
        k: usize,
        n: usize,
        bytes: &[u8],
        split_bytes: u64,
    ) -> Result<GpuWeight, GpuError> {
        let row_bytes = ty.row_bytes(k).ok_or_else(|| {
            shape_err(
                "upload_weight",
                format!("{} row of {k} elements is not whole blocks", ty.name()),
            )
        })?;
        if !k.is_multiple_of(32) {
            return Err(shape_err(
                "upload_weight",
                format!("row length {k} is not a multiple of 32"),
            ));
        }
        if row_bytes.checked_mul(n) != Some(bytes.len()) {
            return Err(shape_err(
                "upload_weight",
                format!(
                    "{} [{k}, {n}] needs {row_bytes} x {n} bytes, got {}",
                    ty.name(),
                    bytes.len()
                ),
            ));
        }
        let limit = split_bytes.min(self.max_binding_bytes());
        let per = rows_per_split(row_bytes, n, limit).ok_or(GpuError::RowTooLarge {
            row_bytes: row_bytes as u64,
            limit,
        })?;
        let mut splits = Vec::new();
        let mut row_start = 0;
        while row_start < n.max(1) {
            let n_rows = per.min(n - row_start);
            let src = &bytes[row_start * row_bytes..(row_start + n_rows) * row_bytes];
            let size = (src.len().div_ceil(4) * 4).max(4) as u64;
            let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("weight"),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: true,
            });
            {
                let mut view =
                    buffer
                        .get_mapped_range_mut(..)
                        .map_err(|e| GpuError::Validation {
                            what: "weight upload".into(),
                            msg: format!("{e:?}"),
                        })?;
                // Mapped-at-creation memory starts zeroed, so the padding needs no write.
                view.slice(..src.len()).copy_from_slice(src);
            }
            buffer.unmap();
            splits.push(WeightSplit {
                buffer,
                row_start,
                n_rows,
            });
            row_start += n_rows;
            if n == 0 {
                break;
            }
        }
        Ok(GpuWeight {
            ty,
            k,
            n,
            row_bytes,
            splits,
        })
    }

    /// A fresh command encoder for one forward step.
    pub fn begin_step(&self) -> Step {
        let encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            });
        Step {
            encoder,
            pass: None,
        }
    }

    /// Submits a step; returns immediately. `wait` or `read_f32` synchronizes.
    pub fn submit(&self, step: Step) {
        let Step { encoder, pass } = step;
        drop(pass);
        self.queue.submit([encoder.finish()]);
    }

    /// Blocks until all submitted work has finished.
    pub fn wait(&self) -> Result<(), GpuError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| GpuError::Readback(e.to_string()))
    }

    /// Waits for the queue and copies `buf` back to the host.
    pub fn read_f32(&self, buf: &GpuBuffer) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read_bytes(buf)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    fn read_bytes(&self, buf: &GpuBuffer) -> Result<Vec<u8>, GpuError> {
        let size = (buf.len * 4) as u64;
        if size == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        enc.copy_buffer_to_buffer(&buf.buffer, 0, &staging, 0, size);
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let out = staging
            .get_mapped_range(..)
            .map_err(|e| GpuError::Readback(format!("{e:?}")))?
            .to_vec();
        staging.unmap();
        Ok(out)
    }
}
