#!/usr/bin/env python3
"""llama.cpp's decode speed with a long context already in its cache.

usage: llamacpp-depth.py MODEL.gguf [--depth 1500] [--tg 64] [--reps 2] [--threads 2]
Fills the context with --depth prompt tokens (batches of 512, untimed), then times --tg
single-token decode steps, timing llama.cpp's eval calls only; --reps times from a fresh
context. Prints one JSON line with the best repetition's tokens/s, as llamacpp-bench.py does.
"""
import argparse, json, time
from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("--depth", type=int, default=1500)
ap.add_argument("--tg", type=int, default=64); ap.add_argument("--reps", type=int, default=2)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
llm = Llama(model_path=a.model, n_ctx=a.depth + a.tg + 32, n_threads=a.threads,
            n_threads_batch=a.threads, n_batch=512, verbose=False)
text = b"The quick brown fox jumps over the lazy dog. "
toks = llm.tokenize(text * (a.depth // 8 + 16))[: a.depth + a.tg]
if len(toks) < a.depth + a.tg:
    raise SystemExit(f"could not make {a.depth + a.tg} tokens")
tg = []
for _ in range(a.reps):
    llm.reset()
    for i in range(0, a.depth, 512):
        llm.eval(toks[i:min(i + 512, a.depth)])
    spent = 0.0
    for tok in toks[a.depth:a.depth + a.tg]:
        t = time.perf_counter(); llm.eval([tok]); spent += time.perf_counter() - t
    tg.append(a.tg / spent)
print(json.dumps({"engine": "llama.cpp", "model": a.model.split("/")[-1], "threads": a.threads, "depth": a.depth,
                  "tg_tok_s": round(max(tg), 1), "tg_all": [round(x, 1) for x in tg]}))
