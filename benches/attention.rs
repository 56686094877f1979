//! Decode attention: one token attending over every layer of a model's shape at a context depth,
//! `attention/<shape>@<depth>`, in K/V cache bytes read per second. The layers' caches together
//! outgrow the L3 cache at the larger depths, as they do in decode, where the weights stream
//! through between layers.
//!
//! Run: `cargo bench --bench attention` (KILN_THREADS sets the pool size).
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kiln_engine::model::attention::{attention, AttnShape};
use kiln_engine::model::kv::KvCache;
use kiln_kernels::ThreadPool;

/// (name, layers, query heads, KV heads, head size).
const SHAPES: [(&str, usize, usize, usize, usize); 3] = [("smollm2", 30, 9, 3, 64), ("llama-1.1b", 22, 32, 4, 64), ("gemma3-global", 18, 4, 1, 256)];

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i + seed) * 7919) % 1000) as f32 / 500.0 - 1.0).collect()
}

fn bench_decode(c: &mut Criterion) {
    let pool = ThreadPool::new(ThreadPool::default_threads());
    let mut g = c.benchmark_group("attention");
    g.sample_size(20);
    for (name, layers, n_head, n_kv_head, hd) in SHAPES {
        let sh = AttnShape { n_head, n_kv_head, head_dim: hd, head_dim_v: hd, scale: 1.0 / (hd as f32).sqrt(), window: None };
        for depth in [512, 2048] {
            let kw = n_kv_head * hd;
            let mut cache = KvCache::new(&vec![None; layers], kw, kw, depth);
            cache.reserve(depth).expect("room");
            for pos in 0..depth {
                let (k, v) = (values(kw, pos), values(kw, pos + 17));
                for l in 0..layers {
                    cache.store(l, pos, &k, &v);
                }
            }
            cache.advance(depth);
            let q = values(n_head * hd, 3);
            let mut out = vec![0f32; n_head * hd];
            g.throughput(Throughput::Bytes((layers * depth * 2 * kw * 2) as u64));
            g.bench_function(BenchmarkId::new(name, depth), |b| {
                b.iter(|| {
                    for l in 0..layers {
                        attention(&pool, &cache, l, depth - 1, 1, &q, &mut out, &sh);
                    }
                    black_box(&out);
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
