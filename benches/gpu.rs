//! wgpu mat-vec throughput: `gpu_matvec/<type>` in GB/s of weight bytes streamed.
//!
//! One iteration is one submit of COPIES × 2 dispatches of W[n, k] · x over COPIES distinct copies
//! of the weight (more bytes than a GPU's L2 cache holds, so the weights stream from memory as in
//! a forward pass); the clock stops only after `device.poll(wait)` returns, so queued work is
//! counted. Shape: k = n = 4096 unless KILN_GPU_BENCH_N says otherwise (a multiple of 256).
//! `gpu_dispatch/q4_k_256` records 64 dispatches of a 256×256 product per submit: its time per
//! element is the fixed cost of one dispatch. Lavapipe numbers measure the CPU running WGSL, not a
//! GPU; compare against the memory roofline of the adapter printed first.
//!
//! Run: `cargo bench --features gpu --bench gpu`

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln_kernels::gpu::{list_adapters, GpuContext};
use kiln_kernels::{quantize_row, GgmlType};

const TYPES: [GgmlType; 8] = [
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::F16,
    GgmlType::F32,
];

fn weight_bytes(ty: GgmlType, k: usize, n: usize) -> Option<Vec<u8>> {
    let rb = ty.row_bytes(k)?;
    // One quantized random row repeated: the kernel's cost does not depend on the values.
    let row: Vec<f32> = (0..k)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let mut q = vec![0u8; rb];
    quantize_row(ty, &row, &mut q).ok()?;
    Some(q.repeat(n))
}

fn bench_matvec(c: &mut Criterion) {
    let adapters = list_adapters();
    if adapters.is_empty() {
        eprintln!("SKIPPED: no wgpu adapter");
        return;
    }
    let ctx = match GpuContext::new(None) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("SKIPPED: opening the adapter failed: {e}");
            return;
        }
    };
    eprintln!("adapter: {}", ctx.info());
    let n: usize = std::env::var("KILN_GPU_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    let k = n;
    let mut group = c.benchmark_group("gpu_matvec");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for ty in TYPES {
        let Some(bytes) = weight_bytes(ty, k, n) else {
            eprintln!("skip {}: k = {k} is not whole blocks", ty.name());
            continue;
        };
        let (x, y) = match (ctx.upload_f32(&vec![0.5; k]), ctx.zeros_f32(n)) {
            (Ok(x), Ok(y)) => (x, y),
            _ => {
                eprintln!("skip {}: upload failed", ty.name());
                continue;
            }
        };
        let kernels: Result<Vec<_>, _> = (0..COPIES).map(|_| ctx.upload_weight(ty, k, n, &bytes).and_then(|w| ctx.mul_mat(&w, &x, &y, 1))).collect();
        let kernels = match kernels {
            Ok(k) => k,
            Err(e) => {
                eprintln!("skip {}: {e}", ty.name());
                continue;
            }
        };
        group.throughput(Throughput::Bytes((bytes.len() * 2 * COPIES) as u64));
        group.bench_function(ty.name(), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut step = ctx.begin_step();
                    for _ in 0..2 {
                        kernels.iter().for_each(|k| step.record(k));
                    }
                    ctx.submit(step);
                }
                if let Err(e) = ctx.wait() {
                    eprintln!("wait failed: {e}");
                }
                start.elapsed()
            })
        });
    }
    group.finish();
    bench_dispatch(c, &ctx);
}

/// Distinct weight copies per type in `gpu_matvec` (8 × 9.4 MB of Q4_K at 4096²).
const COPIES: usize = 8;

fn bench_dispatch(c: &mut Criterion, ctx: &GpuContext) {
    const N: usize = 256;
    const PER_SUBMIT: u64 = 64;
    let ty = GgmlType::Q4_K;
    let kernel = match (weight_bytes(ty, N, N), ctx.upload_f32(&vec![0.5; N]), ctx.zeros_f32(N)) {
        (Some(bytes), Ok(x), Ok(y)) => match ctx.upload_weight(ty, N, N, &bytes).and_then(|w| ctx.mul_mat(&w, &x, &y, 1)) {
            Ok(k) => k,
            Err(e) => return eprintln!("skip gpu_dispatch: {e}"),
        },
        _ => return eprintln!("skip gpu_dispatch: upload failed"),
    };
    let mut group = c.benchmark_group("gpu_dispatch");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    group.throughput(Throughput::Elements(PER_SUBMIT));
    group.bench_function("q4_k_256", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut step = ctx.begin_step();
                (0..PER_SUBMIT).for_each(|_| step.record(&kernel));
                ctx.submit(step);
            }
            if let Err(e) = ctx.wait() {
                eprintln!("wait failed: {e}");
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_matvec);
criterion_main!(benches);
