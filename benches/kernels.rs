//! CPU kernel throughput: `dequant/<type>`, `vec_dot/<type>`, `matvec/<type>` (and
//! `matvec/<type>-x8`, the row-interleaved layout, `-t` the transposed K-quant blocks, `-l16`
//! K-quant rows as vector lanes), `matmul/<type>` (and the same layouts),
//! reported as bytes of weights per second (compare matvec with the memory read bandwidth from
//! /work/shared/tools/membw.c). matmul also prints GFLOP/s (2·rows·cols·tokens per run).
//!
//! Run: `cargo bench --bench kernels` (KILN_THREADS sets the pool size, KILN_FORCE_SCALAR=1
//! the scalar kernels).
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kiln_kernels::{dequantize_row, matmul, matmul_q, quantize_row, repack, GgmlType, Layout, QMatrix, QuantizedActs, ThreadPool};
use std::time::{Duration, Instant};

/// `rows` rows of `cols`: 16 distinct quantized random rows repeated (the kernels' cost does not
/// depend on the values, and quantizing 100M elements with the K-quant search takes minutes).
fn weights(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let rb = ty.row_bytes(cols).expect("shape");
    let mut seed = 1u64;
    let distinct: Vec<Vec<u8>> = (0..16)
        .map(|_| {
            let x: Vec<f32> = (0..cols)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect();
            let mut q = vec![0u8; rb];
            quantize_row(ty, &x, &mut q).expect("quantize");
            q
        })
        .collect();
    let mut w = Vec::with_capacity(rb * rows);
    for r in 0..rows {
        w.extend_from_slice(&distinct[r % 16]);
    }
    w
}

fn input(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect()
}

const WEIGHT_TYPES: [GgmlType; 10] = [
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_K,
    GgmlType::Q3_K,
    GgmlType::Q2_K,
    GgmlType::F16,
];

fn bench_dequant(c: &mut Criterion) {
    let mut g = c.benchmark_group("dequant");
    let (rows, cols) = (64, 2048);
    for ty in WEIGHT_TYPES {
        let w = weights(ty, rows, cols);
        let rb = ty.row_bytes(cols).unwrap();
        let mut y = vec![0f32; cols];
        g.throughput(Throughput::Bytes(w.len() as u64));
        g.bench_function(ty.name(), |b| {
            b.iter(|| {
                for r in 0..rows {
                    dequantize_row(ty, &w[r * rb..(r + 1) * rb], &mut y).unwrap();
                }
                black_box(&y);
            })
        });
    }
    g.finish();
}

fn bench_vec_dot(c: &mut Criterion) {
    let mut g = c.benchmark_group("vec_dot");
    let pool = ThreadPool::new(1);
    let (rows, cols) = (64, 2048);
    for ty in WEIGHT_TYPES {
        // 64 rows x 2048, single thread: the data stays in L2, so this is kernel speed.
        let w = weights(ty, rows, cols);
        let m = QMatrix::new(ty, &w, rows, cols).unwrap();
        let mut acts = QuantizedActs::new();
        acts.quantize(&pool, ty.vec_dot_type(), &input(cols), 1, cols);
        let mut y = vec![0f32; rows];
        g.throughput(Throughput::Bytes(w.len() as u64));
        g.bench_function(ty.name(), |b| b.iter(|| matmul_q(&pool, &m, &acts, 1, black_box(&mut y))));
        let layout = repack::best_layout(ty, rows, cols);
        if layout != Layout::RowMajor {
            let mut wt = w.clone();
            repack::repack_in_place(ty, &mut wt, rows, cols, layout);
            let mt = QMatrix::new(ty, &wt, rows, cols).unwrap().with_layout(layout);
            g.bench_function(format!("{}-{}", ty.name(), tag(layout)), |b| b.iter(|| matmul_q(&pool, &mt, &acts, 1, black_box(&mut y))));
        }
    }
    g.finish();
}

fn bench_matvec(c: &mut Criterion) {
    let pool = ThreadPool::new(ThreadPool::default_threads());
    let mut g = c.benchmark_group("matvec");
    // (type, rows, cols): llama-1B-ish FFN/attention shapes, the 49152-vocab head, gemma's Q8_0 embeddings.
    let shapes: &[(GgmlType, usize, usize)] = &[
        (GgmlType::Q4_K, 2048, 2048),
        (GgmlType::Q4_K, 5632, 2048),
        (GgmlType::Q4_K, 2048, 5632),
        (GgmlType::Q6_K, 2048, 5632),
        (GgmlType::Q6_K, 49152, 2048),
        (GgmlType::Q8_0, 262144, 640),
        (GgmlType::Q5_0, 2048, 2048),
        (GgmlType::Q4_1, 5632, 2048),
        (GgmlType::Q4_0, 5632, 2048),
    ];
    for &(ty, rows, cols) in shapes {
        let w = weights(ty, rows, cols);
        let m = QMatrix::new(ty, &w, rows, cols).unwrap();
        let x = input(cols);
        let mut acts = QuantizedActs::new();
        let mut y = vec![0f32; rows];
        g.throughput(Throughput::Bytes(w.len() as u64));
        g.bench_function(BenchmarkId::new(ty.name(), format!("{rows}x{cols}")), |b| {
            b.iter(|| matmul(&pool, &m, &x, 1, black_box(&mut y), &mut acts))
        });
        // The same matrix as `kiln` holds it after load where this CPU has the kernels.
        let layout = repack::best_layout(ty, rows, cols);
        if layout != Layout::RowMajor {
            let mut wi = w.clone();
            repack::repack_in_place(ty, &mut wi, rows, cols, layout);
            let mi = QMatrix::new(ty, &wi, rows, cols).unwrap().with_layout(layout);
            g.bench_function(BenchmarkId::new(format!("{}-{}", ty.name(), tag(layout)), format!("{rows}x{cols}")), |b| {
                b.iter(|| matmul(&pool, &mi, &x, 1, black_box(&mut y), &mut acts))
            });
        }
    }
    g.finish();
}

fn bench_matmul(c: &mut Criterion) {
    let pool = ThreadPool::new(ThreadPool::default_threads());
    let mut g = c.benchmark_group("matmul");
    let tokens = 512;
    // The 1.1B model's FFN, gemma3's Q5_0 FFN (640 wide), square legacy shapes.
    let shapes: &[(GgmlType, usize, usize)] = &[
        (GgmlType::Q4_K, 2048, 5632),
        (GgmlType::Q4_K, 5632, 2048),
        (GgmlType::Q6_K, 2048, 5632),
        (GgmlType::Q5_0, 2048, 640),
        (GgmlType::Q8_0, 2048, 2048),
        (GgmlType::Q4_1, 2048, 2048),
    ];
    for &(ty, rows, cols) in shapes {
        let w = weights(ty, rows, cols);
        let x = input(cols * tokens);
        let mut acts = QuantizedActs::new();
        let mut y = vec![0f32; rows * tokens];
        acts.quantize(&pool, ty.vec_dot_type(), &x, tokens, cols);
        // Row-major, then the layout `kiln` holds the matrix in after load where it differs.
        let layout = repack::best_layout(ty, rows, cols);
        let mut wi = w.clone();
        repack::repack_in_place(ty, &mut wi, rows, cols, layout);
        let mut cases = vec![(String::new(), QMatrix::new(ty, &w, rows, cols).unwrap())];
        if layout != Layout::RowMajor {
            cases.push((format!("-{}", tag(layout)), QMatrix::new(ty, &wi, rows, cols).unwrap().with_layout(layout)));
        }
        for (tag, m) in cases {
            // GFLOP/s of the product alone (activations quantized once, as the engine does).
            let runs = 5;
            let t0 = Instant::now();
            for _ in 0..runs {
                matmul_q(&pool, &m, &acts, tokens, &mut y);
            }
            let secs = t0.elapsed().as_secs_f64() / runs as f64;
            eprintln!("matmul/{}{tag}/{rows}x{cols}x{tokens}: {:.1} GFLOP/s", ty.name(), 2.0 * (rows * cols * tokens) as f64 / secs / 1e9);
            g.throughput(Throughput::Bytes(w.len() as u64));
            g.bench_function(BenchmarkId::new(format!("{}{tag}", ty.name()), format!("{rows}x{cols}x{tokens}")), |b| {
                b.iter(|| matmul(&pool, &m, &x, tokens, black_box(&mut y), &mut acts))
            });
        }
    }
    g.finish();
}

/// A repacked layout's suffix in bench names.
fn tag(layout: Layout) -> &'static str {
    match layout {
        Layout::Transposed => "t",
        Layout::Interleaved8 => "x8",
        Layout::Lanes16 => "l16",
        Layout::RowMajor => "",
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = bench_dequant, bench_vec_dot, bench_matvec, bench_matmul }
criterion_main!(benches);
