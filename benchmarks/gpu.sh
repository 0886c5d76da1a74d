#!/usr/bin/env bash
# One prepared check for a machine with a GPU: the adapter, the autotuner on the
# quick-start and paper-size models, the whole benchmark suite, a short training run
# whose losses must match the committed lavapipe run's, and the PyTorch peer on CUDA
# beside it. Everything it measures lands in one folder.
#
#   benchmarks/gpu.sh [VQVAE_BINARY] [OUT_DIR]
#
# VQVAE_BINARY defaults to target/release/vqvae (build it with `cargo build --release`
# on a machine with Rust; the binary needs only the Vulkan loader, libvulkan.so.1, and
# the GPU's Vulkan driver; VQVAE_LOADER_DEBS below brings the loader where it is
# missing). OUT_DIR defaults to $OUT, else benchmarks/gpu-run. PyTorch with CUDA is
# optional: without it the peer is skipped and the script says so.
# Sized to finish in under 5 minutes on a current GPU. Exit status: 0 when every step
# ran and the training check held, 1 otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/release/vqvae}
out=${2:-${OUT:-benchmarks/gpu-run}}
mkdir -p "$out"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
status=0
step() { echo; echo "== $*"; }

if [ ! -x "$bin" ]; then
    echo "no vqvae binary at $bin: build one with 'cargo build --release' or pass its path" >&2
    exit 1
fi
# Containers often mount a GPU's driver without the Vulkan loader: VQVAE_LOADER_DEBS may
# name a folder of its .deb packages (`apt-get download libvulkan1` on a machine with
# the same architecture), unpacked here into / (as root), and a driver mounted under
# /usr/local/nvidia gives its ICD file where the loader would not look.
if ! ldconfig -p | grep -q 'libvulkan\.so\.1 ' && [ -n "${VQVAE_LOADER_DEBS:-}" ]; then
    for deb in "$VQVAE_LOADER_DEBS"/*.deb; do dpkg -x "$deb" /; done
    ldconfig
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$nvidia_icd" ]; then
    export VK_DRIVER_FILES=$nvidia_icd
fi
if ! ldconfig -p | grep -q 'libvulkan\.so\.1 '; then
    echo "note: no Vulkan loader (libvulkan.so.1) found; wgpu will fall back to GL if it can" >&2
fi

step "adapter"
"$bin" info 2>&1 | tee "$out/info.txt" || status=1

# The tunings land in OUT_DIR/tuning.json, not the user's cache; the suite's model
# benchmarks (and its kernels, at the paper-size model's batch 32) run with them.
export VQVAE_TUNING="$out/tuning.json"
step "kernel tuning (vqvae tune)"
for model in "quick-start --hidden 64 --codes 128 --code-dim 16" "paper-b32" "paper-b128 --batch-size 128"; do
    set -- $model
    name=$1
    shift
    "$bin" tune "$@" 2>&1 | tee "$out/tune-$name.txt" || status=1
done

step "benchmark suite (vqvae bench)"
"$bin" bench --json "$out/bench.json" 2>&1 | tail -n 80 || status=1

step "where a training step's time goes (vqvae bench --profile)"
"$bin" bench --profile --runs 3 --only "train step, paper-size model" \
    2>&1 | tee "$out/profile.txt" || status=1

# The training check: the same seed and settings as benchmarks/train-check-lavapipe.jsonl.
# Kernel tiles and summation order differ between adapters, so the losses agree to a
# tolerance, not bit for bit.
step "training check against lavapipe"
run=$(mktemp -d)
"$bin" train --hidden 32 --res-hidden 16 --codes 32 --code-dim 8 --batch-size 16 \
    --steps 40 --log-every 10 --seed 0 --no-tune --out "$run" >"$out/train-check.log" 2>&1 || status=1
cp "$run/metrics.jsonl" "$out/train-check.jsonl" 2>/dev/null
rm -rf "$run"
python3 - "$out/train-check.jsonl" benchmarks/train-check-lavapipe.jsonl <<'EOF' || status=1
import json, sys
def losses(path):
    rows = [json.loads(l) for l in open(path)]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}
got, want = losses(sys.argv[1]), losses(sys.argv[2])
worst = 0.0
for step, ref in sorted(want.items()):
    if step not in got:
        sys.exit(f"step {step}: no loss in {sys.argv[1]}")
    rel = abs(got[step] - ref) / abs(ref)
    worst = max(worst, rel)
    print(f"step {step:3d}: loss {got[step]:.6f}, lavapipe {ref:.6f}, relative difference {rel:.2e}")
print(f"worst relative difference {worst:.2e} (limit 1e-3)")
sys.exit(0 if worst <= 1e-3 else 1)
EOF

step "PyTorch peer (CUDA)"
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    PYTHONUNBUFFERED=1 python3 benchmarks/pytorch_peer.py --device cuda --tf32 \
        --json "$out/pytorch-cuda.json" || status=1
    "$bin" bench --compare "$out/bench.json" "$out/pytorch-cuda.json" \
        2>&1 | tee "$out/compare.txt" || status=1
else
    echo "skipped: no PyTorch with CUDA here"
fi

step "FAISS peer (this machine's CPU) for the nearest-code rows"
if python3 -c 'import faiss' 2>/dev/null; then
    python3 benchmarks/faiss_peer.py --json "$out/faiss-cpu.json" || status=1
    "$bin" bench --compare "$out/bench.json" "$out/faiss-cpu.json" \
        2>&1 | tee "$out/compare-faiss.txt" || status=1
else
    echo "skipped: no faiss here (pip install faiss-cpu)"
fi

echo
echo "results in $out (status $status)"
exit $status
