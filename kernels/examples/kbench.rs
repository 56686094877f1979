//! Single-thread kernel speed measured in CPU time of this thread (/proc/thread-self/stat), so
//! the figures hold on a busy machine: `cargo run --release -p kiln-kernels --example kbench`.
use kiln_kernels::{matmul_q, quantize_row, GgmlType, QMatrix, QuantizedActs, ThreadPool};

/// utime + stime of the calling thread in seconds (clock ticks of 10 ms).
fn thread_cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

fn weights(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let rb = ty.row_bytes(cols).unwrap();
    let mut row = vec![0u8; rb];
    let x: Vec<f32> = (0..cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    quantize_row(ty, &x, &mut row).unwrap();
    row.repeat(rows)
}

fn main() {
    let pool = ThreadPool::new(1);
    for (ty, rows, cols, tokens) in [
        (GgmlType::Q4_K, 2048, 5632, 512),
        (GgmlType::Q6_K, 2048, 5632, 512),
        (GgmlType::Q4_K, 2048, 2048, 1),
        (GgmlType::Q6_K, 2048, 2048, 1),
        (GgmlType::Q8_0, 2048, 2048, 1),
        (GgmlType::Q5_0, 2048, 2048, 1),
        (GgmlType::Q4_1, 2048, 2048, 1),
        (GgmlType::Q4_0, 2048, 2048, 1),
    ] {
        let w = weights(ty, rows, cols);
        let m = QMatrix::new(ty, &w, rows, cols).unwrap();
        let x: Vec<f32> = (0..cols * tokens).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut acts = QuantizedActs::new();
        acts.quantize(&pool, ty.vec_dot_type(), &x, tokens, cols);
        let mut y = vec![0f32; rows * tokens];
        let (c0, mut runs) = (thread_cpu_secs(), 0);
        while thread_cpu_secs() - c0 < 2.0 {
            matmul_q(&pool, &m, &acts, tokens, &mut y);
            runs += 1;
        }
        let secs = (thread_cpu_secs() - c0) / runs as f64;
        let gflops = 2.0 * (rows * cols * tokens) as f64 / secs / 1e9;
        let gbs = w.len() as f64 / secs / 1e9;
        println!("{:5} {rows}x{cols}x{tokens:<4} 1 thread: {gflops:7.1} GFLOP/s  {gbs:6.1} GB/s of weights (cpu time)", ty.name());
    }
}
