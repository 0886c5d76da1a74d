#!/usr/bin/env python3
"""FAISS peer of `vqvae bench`'s nearest-code rows (the "quantizer" group).

The nearest-code search is what a user would otherwise hand to FAISS on the CPU:
`faiss.IndexFlatL2(D)` holding the K codes, `index.search(z, 1)` for N vectors (exact L2,
BLAS distances and a running argmin). This script times exactly that at the shapes of
src/bench/suite.rs `quantizer_sweep()` and writes the JSON of `vqvae bench --json` under
the same (group, name, shape) keys, so that

    vqvae bench --only "nearest code" --json ours.json
    vqvae bench --compare ours.json benchmarks/faiss-cpu.json

prints both side by side with ratios. Run both in one sitting on an otherwise idle
machine, with --threads equal to the cores the GPU driver uses (lavapipe: every core).

Timing as src/bench/mod.rs: reps per run = ceil(0.01 s / one run) clamped to 1..1000,
one warm-up run at that many reps when reps > 1, then --runs timed runs (default 5);
median, min and max ms per repetition; GFLOP/s counts 2 N K D as the Rust suite does.

Run:
  /work/venv-torch/bin/pip install faiss-cpu
  /work/venv-torch/bin/python benchmarks/faiss_peer.py --threads 2 --json benchmarks/faiss-cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import sys
import time

import faiss
import numpy as np

SCHEMA = 1  # src/bench/report.rs SCHEMA
TARGET_SECONDS = 0.01
MAX_REPS = 1000
K, D = 512, 64
SHAPES = [
    (1 << 10, K, D),
    (1 << 14, K, D),
    (1 << 18, K, D),
    (1 << 14, 64, D),
    (1 << 14, 4096, D),
    (1 << 14, K, 8),
    (1 << 14, K, 256),
]


def measure(n: int, k: int, d: int, runs: int) -> dict:
    rng = np.random.default_rng(n ^ k ^ d)
    z = rng.uniform(-1, 1, (n, d)).astype(np.float32)
    codebook = rng.uniform(-1, 1, (k, d)).astype(np.float32)
    index = faiss.IndexFlatL2(d)
    index.add(codebook)

    def timed(reps: int) -> float:
        start = time.perf_counter()
        for _ in range(reps):
            index.search(z, 1)
        return (time.perf_counter() - start) / reps

    one = timed(1)
    reps = max(1, min(MAX_REPS, math.ceil(TARGET_SECONDS / max(one, 1e-9))))
    warmups = 1
    if reps > 1:
        timed(reps)
        warmups += 1
    ms = [timed(reps) * 1e3 for _ in range(runs)]
    median = statistics.median(ms)
    return {
        "group": "quantizer",
        "name": "nearest code",
        "shape": f"N={n} K={k} D={d}",
        "runs": runs,
        "reps_per_run": reps,
        "warmups": warmups,
        "time_ms": {"median": median, "min": min(ms), "max": max(ms)},
        "gflops": 2.0 * n * k * d / (median * 1e-3) / 1e9,
        "gbps": None,
        "images_per_sec": None,
        "memory_bytes": None,
        "error": None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, help="faiss.omp_set_num_threads (default: FAISS's own)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", help="write the results to this file")
    a = p.parse_args()
    if a.threads:
        faiss.omp_set_num_threads(a.threads)
    threads = faiss.omp_get_max_threads()
    env = {
        "adapter": platform.processor() or platform.machine(),
        "vendor": "n/a",
        "device": "n/a",
        "device_type": "Cpu",
        "backend": "FAISS CPU",
        "driver": "IndexFlatL2",
        "driver_info": f"faiss {faiss.__version__}, numpy {np.__version__}",
        "wgpu_version": "n/a",
        "os": f"{platform.system().lower()} {platform.machine()}",
        "timing": "wall-clock",
        "timestamp_period_ns": None,
        "tuning": f"{threads} OpenMP threads",
        "limits": {},
        "features": [],
    }
    try:
        with open("/proc/cpuinfo") as f:
            env["adapter"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"FAISS {faiss.__version__}, {threads} threads, {env['adapter']}")
    results = []
    for n, k, d in SHAPES:
        e = measure(n, k, d, a.runs)
        print(f"nearest code  {e['shape']:<22} {e['time_ms']['median']:9.3f} ms  {e['gflops']:7.1f} GFLOP/s",
              flush=True)
        results.append(e)
    report = {
        "schema": SCHEMA,
        "tool": f"faiss-peer (faiss {faiss.__version__})",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "suite": "full",
        "environment": env,
        "results": results,
    }
    if a.json:
        with open(a.json, "w") as f:
            f.write(json.dumps(report, indent=2) + "\n")
        print(f"results: {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
