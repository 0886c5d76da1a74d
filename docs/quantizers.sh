#!/usr/bin/env bash
# Compares the quantisers at 8 bits per latent position, as issue 14 asks: vq (K=256),
# rvq (S=2 with K=16, S=4 with K=4) and fsq (levels 8,8,4 and 4,4,4,4), each trained with
# the defaults otherwise (EMA codebooks and restarts for vq and rvq) for STEPS steps with
# seed 0. Runs go to runs/quantizers-NAME/, the table to docs/quantizers-NAME.md. A run
# that finished before is not run again.
#
#   docs/quantizers.sh NAME VQVAE_BINARY STEPS TRAIN_ARGS...
#
# e.g. docs/quantizers.sh fmnist target/release/vqvae 400 \
#          --data /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
#          --hidden 64 --res-hidden 32 --res-layers 2 --batch-size 128
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1
bin=$2
steps=$3
shift 3
train_args=("$@")
runs=runs/quantizers-$name
mkdir -p "$runs"
table=docs/quantizers-$name.md
rows=()

# run LABEL FLAGS...: trains one quantiser, adds its held-out results to the table.
run() {
    local label=$1
    shift
    local out=$runs/${label//[ =,]/_}
    if ! grep -qs "\"step\":$steps,.*\"val_recon_mse\"" "$out/metrics.jsonl"; then
        rm -rf "$out"
        mkdir -p "$out"
        local start=$SECONDS
        "$bin" train "${train_args[@]}" "$@" --steps "$steps" --seed 0 --val-every "$steps" \
            --checkpoint-every "$steps" --no-tune --quiet --out "$out" >"$out/log.txt" 2>&1
        echo $((SECONDS - start)) >"$out/seconds"
    fi
    rows+=("$(python3 - "$out" "$label" "$*" <<'PY'
import json, sys
out, label, flags = sys.argv[1:]
rows = [json.loads(l) for l in open(out + "/metrics.jsonl")]
val = [r for r in rows if "val_recon_mse" in r][-1]
seconds = open(out + "/seconds").read().strip()
print(f"| {label} | `{flags}` | {val['val_recon_mse']:.5f} | {val['val_perplexity']:.1f} "
      f"| {val['val_codes_used']} | {seconds} |")
PY
)")
    echo "$(date +%T) ${rows[-1]}"
}

run "vq K=256" --quantizer vq --codes 256 --code-dim 16
run "rvq S=2 K=16" --quantizer rvq --stages 2 --codes 16 --code-dim 16
run "rvq S=4 K=4" --quantizer rvq --stages 4 --codes 4 --code-dim 16
run "fsq 8,8,4" --quantizer fsq --fsq-levels 8,8,4
run "fsq 4,4,4,4" --quantizer fsq --fsq-levels 4,4,4,4

# What was written below the table by hand ("## What it says" on) stays.
notes=""
if [ -f "$table" ]; then
    notes=$(sed -n '/^## What it says/,$p' "$table")
fi
logs=("$runs"/*/log.txt)
adapter=$(grep -m1 '^adapter:' "${logs[0]}" | sed 's/^adapter: //')
{
    echo "# Quantisers at 8 bits a position: $name"
    echo
    echo "Made by \`docs/quantizers.sh $name $bin $steps ${train_args[*]}\`, seed 0, on"
    echo "$adapter. Held-out reconstruction MSE, perplexity and codes in use of the 256 joint"
    echo "codes (residual VQ's S codes of a position as one) on the held-out images at the"
    echo "end of the run; seconds of the whole run."
    echo
    echo "| quantiser | flags | held-out MSE | perplexity | codes used (of 256) | seconds |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    if [ -n "$notes" ]; then
        echo
        echo "$notes"
    fi
} >"$table"
echo "wrote $table"
