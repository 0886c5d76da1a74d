#!/usr/bin/env python3
"""PyTorch peer of `vqvae bench`'s "train" and "inference" groups.

Builds the same VQ-VAE (DESIGN.md section 1) at the same sizes as the Rust suite
(src/bench/suite.rs, `models()`): the README's quick-start model (H64 R32 L2 K128 D16)
and the paper-size model (H128 R32 L2 K512 D64), 3x32x32 images, batch 32 and 128.
It times each case the way src/bench/mod.rs does and writes the same JSON as
`vqvae bench --json`, under the same (group, name, shape) keys, so that

    vqvae bench --compare benchmarks/lavapipe.json benchmarks/pytorch-cpu.json

prints both side by side with ratios.

What one repetition is:
  train      forward (encoder, nearest-code search, straight-through, decoder), the loss
             mean((x_hat-x)^2) + mean((sg[z_e]-z_q)^2) + 0.25 mean((z_e-sg[z_q])^2),
             the batch's code usage (histogram and perplexity, as the Rust step does),
             backward, and one torch.optim.Adam step (lr 1e-3 as the Rust bench's
             AdamConfig::default(); fused where this torch has it).
  inference  encoder, nearest-code search and decoder under torch.inference_mode().

Timing: wall clock around the repetitions with torch.cuda.synchronize() on CUDA
("wall-clock" in the report). Unlike the Rust suite, whose pipelines and buffers are
built before its calibration run, PyTorch pays for first use (cuDNN autotuning,
allocator growth, lazy init) in the first call, so one extra untimed run comes before the
calibration run; `warmups` in the JSON counts it. Then, as in Rust: reps per run =
ceil(0.01 s / one run) clamped to 1..1000, one warm-up run at that many reps when reps > 1,
then `--runs` timed runs (default 5; 3 with --quick); median/min/max ms per repetition.

GFLOP/s uses the Rust formula exactly (src/network.rs): every convolution's
2*B*Cout*Hout*Wout*Cin*k*k, transposed convolutions counted as the convolution they
transpose; a forward pass is their sum, a training step 3x that minus the first layer's
(it needs no input gradient). The nearest-code search is not counted on either side.

memory_bytes: on CUDA the peak of torch.cuda.max_memory_allocated() over building and
running the case, above what was allocated before (parameters, gradients, Adam moments,
activations, workspaces); the Rust figure is the bytes of buffers the case holds, which
are all allocated up front. On CPU it is null.

Devices and precision:
  --device cpu|cuda   default cuda when available, else cpu.
  --threads N         torch.set_num_threads(N) (CPU; default: torch's own choice).
                      Run on an otherwise idle machine: ATen's OpenMP threads spin at
                      their barriers, and one core taken by another process can make a
                      step tens of times slower (a --threads 2 run on 2 cores during a
                      cargo build measured 2 s for a 70 ms step).
  CUDA runs in strict f32: TF32 is off for matmuls and cuDNN convolutions. With --tf32
  every case runs a second time with TF32 on, named with the suffix " (tf32)" (so those
  rows never collide with the f32 rows, and have no Rust counterpart in --compare).
  torch.backends.cudnn.benchmark = True on CUDA: cuDNN picks its fastest algorithm per
  shape, which is fair since the Rust suite's shapes are fixed too and the autotuning
  happens in the untimed first run.

Run:
  python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch
  /work/venv-torch/bin/python benchmarks/pytorch_peer.py --device cpu --threads 2 \\
      --json benchmarks/pytorch-cpu.json
  /work/venv-torch/bin/python benchmarks/pytorch_peer.py --device cuda --tf32 \\
      --json benchmarks/pytorch-cuda.json
  python benchmarks/pytorch_peer.py --quick            # small model, batch 32 only
  python benchmarks/pytorch_peer.py --check-params     # state_dict names, shapes, counts

Compare:
  vqvae bench --compare ours.json benchmarks/pytorch-cpu.json
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

SCHEMA = 1  # src/bench/report.rs SCHEMA
TARGET_SECONDS = 0.01  # src/bench/mod.rs
MAX_REPS = 1000
CHANNELS = 3
SIDE = 32
BETA = 0.25
TF32_SUFFIX = " (tf32)"


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Config:
    channels: int = 3
    hidden: int = 128
    res_hidden: int = 32
    res_layers: int = 2
    codes: int = 512
    code_dim: int = 64
    beta: float = BETA


QUICK_START = Config(hidden=64, codes=128, code_dim=16)
PAPER = Config()


class Residual(nn.Module):
    """x + conv2(relu(conv1(relu(x)))), conv1 3x3 H -> R, conv2 1x1 R -> H."""

    def __init__(self, h: int, r: int):
        super().__init__()
        self.conv1 = nn.Conv2d(h, r, 3, padding=1)
        self.conv2 = nn.Conv2d(r, h, 1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class Encoder(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        h = c.hidden
        self.conv1 = nn.Conv2d(c.channels, h // 2, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(h // 2, h, 4, stride=2, padding=1)
        self.conv3 = nn.Conv2d(h, h, 3, padding=1)
        self.res = nn.ModuleList(Residual(h, c.res_hidden) for _ in range(c.res_layers))

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.conv3(x)
        for block in self.res:
            x = block(x)
        return F.relu(x)


class Decoder(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        h = c.hidden
        self.conv1 = nn.Conv2d(c.code_dim, h, 3, padding=1)
        self.res = nn.ModuleList(Residual(h, c.res_hidden) for _ in range(c.res_layers))
        self.deconv1 = nn.ConvTranspose2d(h, h // 2, 4, stride=2, padding=1)
        self.deconv2 = nn.ConvTranspose2d(h // 2, c.channels, 4, stride=2, padding=1)

    def forward(self, z):
        x = self.conv1(z)
        for block in self.res:
            x = block(x)
        x = F.relu(x)
        x = F.relu(self.deconv1(x))
        return self.deconv2(x)


class VQVAE(nn.Module):
    """The model of DESIGN.md section 1, with its state_dict names."""

    def __init__(self, c: Config):
        super().__init__()
        self.config = c
        self.encoder = Encoder(c)
        self.pre_vq = nn.Conv2d(c.hidden, c.code_dim, 1)
        self.codebook = nn.Embedding(c.codes, c.code_dim)
        # PyTorch's usual codebook initialisation, as the Rust model's Init::Codebook.
        nn.init.uniform_(self.codebook.weight, -1.0 / c.codes, 1.0 / c.codes)
        self.decoder = Decoder(c)

    def quantize(self, z_e):
        """Nearest code per latent position (ties to the lowest index): indices, z_q."""
        b, d, h, w = z_e.shape
        flat = z_e.permute(0, 2, 3, 1).reshape(-1, d)
        e = self.codebook.weight
        dist = (
            flat.pow(2).sum(1, keepdim=True)
            - 2.0 * flat @ e.t()
            + e.pow(2).sum(1).unsqueeze(0)
        )
        # torch.argmin returns the first minimal index, DESIGN.md's tie rule.
        idx = dist.argmin(1)
        z_q = F.embedding(idx, e).view(b, h, w, d).permute(0, 3, 1, 2)
        return idx, z_q

    def forward(self, x):
        z_e = self.pre_vq(self.encoder(x))
        idx, z_q = self.quantize(z_e)
        # Straight-through: the decoder's gradient at z_q passes unchanged to z_e.
        x_hat = self.decoder(z_e + (z_q - z_e).detach())
        return x_hat, z_e, z_q, idx


def vq_loss(x, x_hat, z_e, z_q, beta):
    return (
        F.mse_loss(x_hat, x)
        + F.mse_loss(z_q, z_e.detach())
        + beta * F.mse_loss(z_e, z_q.detach())
    )


def code_usage(idx, codes):
    """Histogram and perplexity of the batch's codes (the Rust step's code_usage).

    scatter_add_ rather than bincount: bincount syncs the GPU to size its output."""
    counts = torch.zeros(codes, device=idx.device).scatter_add_(
        0, idx, torch.ones_like(idx, dtype=torch.float32)
    )
    p = counts / idx.numel()
    perplexity = torch.exp(-(p * torch.log(p + 1e-10)).sum())
    return perplexity, (counts > 0).sum()


# ----------------------------------------------------------------------------- FLOPs


def conv_flops(batch, cin, cout, out_side, k):
    return 2.0 * batch * cout * out_side * out_side * cin * k * k


def model_flops(c: Config, batch: int, side: int = SIDE):
    """(forward, train) FLOPs of the convolutions, as src/network.rs counts them."""
    h, hh, r, d = c.hidden, c.hidden // 2, c.res_hidden, c.code_dim
    half, lat = side // 2, side // 4
    enc1 = conv_flops(batch, c.channels, hh, half, 4)
    layers = [
        enc1,
        conv_flops(batch, hh, h, lat, 4),  # encoder.conv2
        conv_flops(batch, h, h, lat, 3),  # encoder.conv3
        conv_flops(batch, h, d, lat, 1),  # pre_vq
        conv_flops(batch, d, h, lat, 3),  # decoder.conv1
        # A transposed convolution costs what the convolution it transposes does: that
        # one maps the deconv's output back to its input (its "output" side).
        conv_flops(batch, hh, h, lat, 4),  # decoder.deconv1
        conv_flops(batch, c.channels, hh, half, 4),  # decoder.deconv2
    ]
    res = 2 * c.res_layers * (conv_flops(batch, h, r, lat, 3) + conv_flops(batch, r, h, lat, 1))
    forward = sum(layers) + res
    return forward, 3.0 * forward - enc1


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    group: str
    name: str
    shape: str
    quick: bool
    config: Config
    batch: int
    train: bool


def cases() -> list[Case]:
    """The Rust suite's models(), in its order, with its names and shape strings."""
    out = []
    for group, what in [("train", "train step"), ("inference", "encode + decode")]:
        for label, c in [("quick-start model", QUICK_START), ("paper-size model", PAPER)]:
            for batch in [32, 128]:
                shape = (
                    f"batch {batch} {c.channels}x{SIDE}x{SIDE}, "
                    f"H{c.hidden} R{c.res_hidden} L{c.res_layers} K{c.codes} D{c.code_dim}"
                )
                out.append(
                    Case(
                        group=group,
                        name=f"{what}, {label}",
                        shape=shape,
                        quick=label == "quick-start model" and batch == 32,
                        config=c,
                        batch=batch,
                        train=group == "train",
                    )
                )
    return out


def make_adam(params, device):
    """torch.optim.Adam, fused (one kernel over all tensors, like the Rust flat Adam)
    where this torch and device allow it, else torch's default implementation."""
    kwargs = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs), "fused"
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, **kwargs), "default"


def build(case: Case, device: torch.device, seed: int):
    """The case's model, batch of noise and one-repetition closure."""
    torch.manual_seed(seed)
    model = VQVAE(case.config).to(device)
    gen = torch.Generator().manual_seed(seed + 14)
    x = (torch.rand(case.batch, CHANNELS, SIDE, SIDE, generator=gen) - 0.5).to(device)
    if case.train:
        model.train()
        opt, _ = make_adam(model.parameters(), device)

        def step():
            opt.zero_grad(set_to_none=True)
            x_hat, z_e, z_q, idx = model(x)
            loss = vq_loss(x, x_hat, z_e, z_q, case.config.beta)
            with torch.no_grad():
                code_usage(idx, case.config.codes)
            loss.backward()
            opt.step()

        return model, step

    model.eval()

    def infer():
        with torch.inference_mode():
            z_e = model.pre_vq(model.encoder(x))
            _, z_q = model.quantize(z_e)
            model.decoder(z_q)

    return model, infer


# ----------------------------------------------------------------------------- timing


def stats(values):
    v = sorted(values)
    n = len(v)
    median = v[n // 2] if n % 2 == 1 else (v[n // 2 - 1] + v[n // 2]) / 2.0
    return {"median": median, "min": v[0], "max": v[-1]}


def measure(case: Case, device: torch.device, runs: int, seed: int, name_suffix: str):
    entry = {
        "group": case.group,
        "name": case.name + name_suffix,
        "shape": case.shape,
        "runs": runs,
        "reps_per_run": 0,
        "warmups": 0,
        "time_ms": None,
        "gflops": None,
        "gbps": None,
        "images_per_sec": None,
        "memory_bytes": None,
        "error": None,
    }
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    def timed(fn, reps):
        sync()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        sync()
        return (time.perf_counter() - start) / reps

    model = fn = None
    try:
        if cuda:
            gc.collect()
            torch.cuda.empty_cache()
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        model, fn = build(case, device, seed)
        timed(fn, 1)  # first use: cuDNN autotuning, allocator, lazy initialisation
        once = timed(fn, 1)
        entry["warmups"] = 2
        reps = max(1, min(MAX_REPS, math.ceil(TARGET_SECONDS / once)))
        if reps > 1:
            timed(fn, reps)
            entry["warmups"] += 1
        times = [timed(fn, reps) for _ in range(runs)]
        s = stats(times)
        seconds = s["median"]
        forward, train = model_flops(case.config, case.batch)
        entry["reps_per_run"] = reps
        entry["time_ms"] = {k: v * 1e3 for k, v in s.items()}
        entry["gflops"] = (train if case.train else forward) / seconds / 1e9
        entry["images_per_sec"] = case.batch / seconds
        if cuda:
            entry["memory_bytes"] = int(torch.cuda.max_memory_allocated(device) - before)
    except (RuntimeError, MemoryError) as e:  # torch.OutOfMemoryError is a RuntimeError
        entry["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
    finally:
        del model, fn
        if cuda:
            gc.collect()
            torch.cuda.empty_cache()
    return entry


# ----------------------------------------------------------------------------- environment


def run_text(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        name = run_text(["sysctl", "-n", "machdep.cpu.brand_string"])
        if name:
            return name
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_vendor():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    vid = line.split(":", 1)[1].strip()
                    # The PCI ids the Rust report uses for these makers.
                    return {"GenuineIntel": "0x8086 (Intel)", "AuthenticAMD": "0x1022 (AMD)"}.get(
                        vid, vid
                    )
    except OSError:
        pass
    return "n/a"


def host_os():
    """As Rust's std::env::consts::{OS, ARCH}."""
    os_name = {"Linux": "linux", "Darwin": "macos", "Windows": "windows"}.get(
        platform.system(), platform.system().lower()
    )
    arch = {"AMD64": "x86_64", "arm64": "aarch64", "ARM64": "aarch64"}.get(
        platform.machine(), platform.machine()
    )
    return f"{os_name} {arch}"


def cpu_libraries():
    """oneDNN version and the SIMD level ATen dispatches to, where this torch says."""
    out = []
    m = re.search(r"(?:oneDNN|MKL-DNN) v([\w.]+)", torch.__config__.show())
    if m:
        out.append(f"oneDNN {m.group(1)}")
    try:
        out.append(torch.backends.cpu.get_cpu_capability())
    except AttributeError:
        pass
    return ", ".join(out)


def environment(device: torch.device, tuning: str):
    env = {
        "adapter": "",
        "vendor": "n/a",
        "device": "n/a",
        "device_type": "Cpu",
        "backend": "PyTorch CPU",
        "driver": "ATen CPU",
        "driver_info": "",
        "wgpu_version": "n/a",
        "os": host_os(),
        "timing": "wall-clock",  # src/bench/timer.rs Method, kebab-case
        "timestamp_period_ns": None,
        "tuning": tuning,
        "limits": {},
        "features": [],
    }
    if device.type == "cpu":
        parallel = torch.__config__.parallel_info().splitlines()
        backend = next((l.split(":", 1)[1].strip() for l in parallel if "backend" in l), "")
        env["adapter"] = cpu_name()
        env["vendor"] = cpu_vendor()
        env["driver_info"] = ", ".join(
            s for s in [f"torch {torch.__version__}", cpu_libraries(), backend] if s
        )
        return env
    props = torch.cuda.get_device_properties(device)
    env["adapter"] = props.name
    env["device_type"] = "IntegratedGpu" if getattr(props, "is_integrated", 0) else "DiscreteGpu"
    if torch.version.hip:
        env["vendor"], env["backend"], env["driver"] = "0x1002 (AMD)", "PyTorch ROCm", "AMD"
        env["driver_info"] = f"HIP {torch.version.hip}"
        return env
    env["vendor"], env["backend"], env["driver"] = "0x10de (NVIDIA)", "PyTorch CUDA", "NVIDIA"
    index = device.index if device.index is not None else torch.cuda.current_device()
    smi = run_text(
        [
            "nvidia-smi",
            f"--id={index}",
            "--query-gpu=pci.device_id,driver_version",
            "--format=csv,noheader",
        ]
    )
    driver = ""
    if "," in smi:
        pci, driver = (s.strip() for s in smi.splitlines()[0].split(",", 1))
        if pci.lower().startswith("0x") and len(pci) == 10:
            env["device"] = "0x" + pci[2:6].lower()  # 0xDDDDVVVV: device, then vendor
    cudnn = torch.backends.cudnn.version()
    env["driver_info"] = ", ".join(
        s
        for s in [driver, f"CUDA {torch.version.cuda}", f"cuDNN {cudnn}" if cudnn else ""]
        if s
    )
    return env


# ----------------------------------------------------------------------------- table


HEADINGS = {
    "train": "training step: forward, loss, backward, Adam (GFLOP/s of the convolutions)",
    "inference": "inference: encoder, quantiser, decoder (GFLOP/s of the convolutions)",
}


def sig(v):
    """Four significant digits, as src/bench/table.rs prints them."""
    digits = 0 if v >= 1000 else 1 if v >= 100 else 2 if v >= 10 else 3 if v >= 1 else 4
    return f"{v:.{digits}f}"


def opt(v):
    return "-" if v is None else sig(v)


def header():
    return (
        f"{'benchmark':<36} {'shape':<40} {'median ms':>10} {'(min - max)':>21} "
        f"{'GFLOP/s':>9} {'GB/s':>8} {'img/s':>8} {'MiB':>8}"
    )


def row(e):
    t = e["time_ms"]
    if t is None:
        return f"{e['name']:<36} {e['shape']:<40} failed: {e['error']}"
    mib = None if e["memory_bytes"] is None else e["memory_bytes"] / 1048576.0
    return (
        f"{e['name']:<36} {e['shape']:<40} {sig(t['median']):>10} "
        f"{'(' + sig(t['min']) + ' - ' + sig(t['max']) + ')':>21} {opt(e['gflops']):>9} "
        f"{opt(e['gbps']):>8} {opt(e['images_per_sec']):>8} {opt(mib):>8}"
    )


# ----------------------------------------------------------------------------- checks


EXPECTED_PARAMS = {PAPER: 695_491}  # the project's notes for the paper-size model


def check_params():
    """Prints every state_dict tensor of both models and their parameter counts."""
    ok = True
    for label, c in [("quick-start model", QUICK_START), ("paper-size model", PAPER)]:
        sd = VQVAE(c).state_dict()
        total = sum(t.numel() for t in sd.values())
        print(f"{label} ({c}): {len(sd)} tensors, {total:,} parameters")
        for name, t in sd.items():
            print(f"  {name:<32} {list(t.shape)}")
        want = EXPECTED_PARAMS.get(c)
        if want is not None and total != want:
            print(f"  MISMATCH: expected {want:,}")
            ok = False
    return ok


# ----------------------------------------------------------------------------- main


def set_tf32(on: bool):
    """TF32 for CUDA matmuls and cuDNN convolutions, on or off.

    Newer torch has per-backend `fp32_precision` settings and rejects mixing them with
    the legacy `allow_tf32` flags, so use the new ones where they exist."""
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "fp32_precision"):
        matmul.fp32_precision = "tf32" if on else "ieee"
        conv.fp32_precision = "tf32" if on else "ieee"
    else:
        matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on



def main(argv=None):
    p = argparse.ArgumentParser(
        description="PyTorch peer of `vqvae bench` (train and inference groups).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Compare: vqvae bench --compare ours.json peer.json",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="default: cuda if available, else cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--quick", action="store_true",
                   help="only the quick suite's cases (quick-start model, batch 32)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per case [5; 3 with --quick]")
    p.add_argument("--only", default=None,
                   help="only cases whose name or shape contains this (case-insensitive)")
    p.add_argument("--tf32", action="store_true",
                   help=f"CUDA: also run every case with TF32 on, named with '{TF32_SUFFIX}'")
    p.add_argument("--json", metavar="FILE", help="write the report (vqvae bench --json schema)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--check-params", action="store_true",
                   help="print the models' state_dict names, shapes and counts, then exit")
    a = p.parse_args(argv)

    if a.check_params:
        return 0 if check_params() else 1
    runs = a.runs if a.runs is not None else (3 if a.quick else 5)
    if runs < 1:
        p.error(f"--runs {runs}: must be at least 1")
    device_name = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_name == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: this torch sees no CUDA device")
    device = torch.device(device_name)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    if a.tf32 and device.type != "cuda":
        print("note: --tf32 only applies on CUDA; ignored", file=sys.stderr)

    only = a.only.lower() if a.only else None
    chosen = [
        c
        for c in cases()
        if (not a.quick or c.quick)
        and (only is None or only in c.name.lower() or only in c.shape.lower())
    ]
    if not chosen:
        p.error(f"--only '{a.only}' matches no benchmark")

    # Passes: strict f32 always; TF32 on top with --tf32 on CUDA.
    passes = [(False, "")]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        if a.tf32:
            passes.append((True, TF32_SUFFIX))
    _, adam_kind = make_adam([torch.zeros(1, device=device, requires_grad=True)], device)
    tuning = [f"torch {torch.__version__}", f"Adam {adam_kind}", "NCHW", "eager"]
    if device.type == "cpu":
        tuning.insert(1, f"{torch.get_num_threads()} threads")
    else:
        tuning.insert(1, "cudnn.benchmark on")
        tuning.insert(2, "TF32 off" + (f"; TF32 on for '{TF32_SUFFIX}' rows" if a.tf32 else ""))

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    env = environment(device, ", ".join(tuning))
    print(f"adapter: {env['adapter']} ({env['backend']}, {env['driver']} {env['driver_info']})")
    print(header())
    results = []
    for tf32, suffix in passes:
        if device.type == "cuda":
            set_tf32(tf32)
        for case in chosen:
            e = measure(case, device, runs, a.seed, suffix)
            if not results or results[-1]["group"] != e["group"]:
                print(f"\n## {HEADINGS[e['group']]}")
            print(row(e), flush=True)
            results.append(e)
    report = {
        "schema": SCHEMA,
        "tool": f"pytorch-peer (torch {torch.__version__})",
        "date": date,
        "suite": "quick" if a.quick else "full",
        "environment": env,
        "results": results,
    }
    print(f"\ntiming: wall clock; {env['tuning']}")
    if a.json:
        with open(a.json, "w") as f:
            f.write(json.dumps(report, indent=2) + "\n")
        print(f"results: {a.json}")
    failed = sum(1 for e in results if e["error"] is not None)
    if failed:
        print(f"{failed} of {len(results)} benchmarks failed (their errors are above)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
