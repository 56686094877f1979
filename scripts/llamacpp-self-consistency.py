#!/usr/bin/env python3
"""How far llama.cpp is from its own recorded reference logits, evaluated two ways.

usage: llamacpp-self-consistency.py NAME [--models DIR]     (NAME: gemma3 | smollm2)
needs: the llama-cpp-python venv scripts/bench-vs-llamacpp sets up (~/.cache/kiln-llamacpp-venv).

For each case of tests/reference/NAME.generate.json it feeds prompt_ids + greedy_ids to
llama.cpp (0.3.36, 2 threads) in two ways and compares the logits with the recorded top-10:
  step:  the prompt as one batch, then each greedy token alone (how the reference was recorded);
  batch: everything as one batch (teacher forcing, as kiln's test does).
Prints mean and max |Δ| over the top-10 entries and top-1 disagreements at margin >= 0.5, for
prompt and greedy positions. It shows how much of the README's tolerance is llama.cpp's own
arithmetic: the same program, same weights, same machine, differs with the batch shape.
"""
import argparse, json, os, numpy as np
from llama_cpp import Llama

FILES = {"gemma3": "gemma-3-270m-q4_k_m.gguf", "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf"}
ap = argparse.ArgumentParser()
ap.add_argument("name", choices=FILES)
ap.add_argument("--models", default=os.environ.get("KILN_MODELS", os.path.expanduser("~/.kiln/models")))
a = ap.parse_args()
here = os.path.dirname(os.path.abspath(__file__))
ref = json.load(open(os.path.join(here, "..", "tests", "reference", f"{a.name}.generate.json")))
llm = Llama(model_path=os.path.join(a.models, FILES[a.name]), n_ctx=512, n_batch=512, n_threads=2,
            n_threads_batch=2, logits_all=True, verbose=False)

for mode in ("step", "batch"):
    stats = {"prompt": [0.0, 0, 0.0], "greedy": [0.0, 0, 0.0]}
    flips = 0
    def account(kind, row, top):
        global flips
        d = np.abs(row[top["ids"]] - np.array(top["logits"]))
        s = stats[kind]; s[0] += d.sum(); s[1] += len(d); s[2] = max(s[2], float(d.max()))
        if top["logits"][0] - top["logits"][1] >= 0.5 and int(np.argmax(row)) != top["ids"][0]:
            flips += 1
    for case in ref["cases"]:
        p, g = case["prompt_ids"], case["greedy_ids"]
        llm.reset()
        if mode == "batch":
            llm.eval(p + g)
        else:
            llm.eval(p)
            for t in g:
                llm.eval([t])
        scores = np.array(llm.scores[: len(p) + len(g)])
        for i, top in enumerate(case["prompt_top"]):
            account("prompt", scores[i], top)
        for j, top in enumerate(case["greedy_top"]):
            account("greedy", scores[len(p) - 1 + j], top)
    line = "  ".join(f"{k}: mean {s[0] / s[1]:.4f} max {s[2]:.4f}" for k, s in stats.items())
    print(f"{a.name} {mode:5s} {line}  top-1 disagreements (margin >= 0.5): {flips}")
