#!/usr/bin/env bash
# Ranks the codebook recipes, as issue 12 asks: every combination of initialisation
# (uniform, data, kmeans) x update (gradient, ema) x dead-code restarts (every 25
# steps, or none) with seed 0 at 200 steps; then the best three with seeds 0, 1 and 2
# at 400 steps. Ranked by held-out reconstruction MSE; a recipe whose held-out images
# use fewer than 90% of the codes cannot win. Runs go to runs/sweep-NAME/, the table to
# docs/codebook-sweep-NAME.md. A run that finished before is not run again, so a stopped
# sweep picks up where it stopped.
#
#   docs/codebook-sweep.sh NAME VQVAE_BINARY TRAIN_ARGS...
#
# e.g. docs/codebook-sweep.sh builtin target/release/vqvae --hidden 64 --codes 128 \
#          --code-dim 16 --lr 1e-3
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1
bin=$2
shift 2
train_args=("$@")
runs=runs/sweep-$name
mkdir -p "$runs"
results=$runs/results.tsv
: >"$results"

# run STEPS SEED INIT UPDATE RESTART: trains one recipe, appends its held-out results.
run() {
    local steps=$1 seed=$2 init=$3 update=$4 restart=$5
    local label=$init/$update/restart-$restart
    local out=$runs/$init-$update-r$restart-s$seed-$steps
    # metrics.jsonl's keys are sorted: "step" comes before "val_recon_mse".
    if ! grep -qs "\"step\":$steps,.*\"val_recon_mse\"" "$out/metrics.jsonl"; then
        rm -rf "$out"
        "$bin" train "${train_args[@]}" --codebook-init "$init" --codebook-update "$update" \
            --codebook-restart "$restart" --steps "$steps" --seed "$seed" --val-every "$steps" \
            --checkpoint-every "$steps" --no-tune --quiet --out "$out" >"$out.log" 2>&1
    fi
    python3 - "$out/metrics.jsonl" "$label" "$steps" "$seed" >>"$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
val = [r for r in rows if "val_recon_mse" in r][-1]
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], repr(val["val_recon_mse"]),
                 repr(val["val_perplexity"]), str(val["val_codes_used"])]))
PY
    echo "$(date +%T) $label seed $seed, $steps steps: $(tail -n 1 "$results" | cut -f4-6)"
}

for init in uniform data kmeans; do
    for update in gradient ema; do
        for restart in 25 0; do
            run 200 0 "$init" "$update" "$restart"
        done
    done
done

codes=$(python3 - "${train_args[@]}" <<'PY'
import sys
a = sys.argv[1:]
print(a[a.index("--codes") + 1] if "--codes" in a else 512)
PY
)
best=$(python3 - "$results" "$codes" <<'PY'
import sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
k = int(sys.argv[2])
ok = [r for r in rows if int(r[5]) >= 0.9 * k] or rows
for r in sorted(ok, key=lambda r: float(r[3]))[:3]:
    print(r[0])
PY
)
for label in $best; do
    IFS=/ read -r init update restart <<<"$label"
    for seed in 0 1 2; do
        run 400 "$seed" "$init" "$update" "${restart#restart-}"
    done
done

python3 - "$results" "$codes" "$name" "$*" >"docs/codebook-sweep-$name.md" <<'PY'
import statistics as st, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
k, name, args = int(sys.argv[2]), sys.argv[3], sys.argv[4]
print(f"# Codebook recipes: {name}\n")
print(f"Made by `docs/codebook-sweep.sh {name} target/release/vqvae {args}` on lavapipe.")
print(f"Held-out reconstruction MSE, perplexity and codes in use (of {k}) at the end.\n")
print("## 200 steps, seed 0\n")
print("| init / update / restarts | held-out MSE | perplexity | codes used |")
print("|---|---|---|---|")
first = sorted((r for r in rows if r[1] == "200"), key=lambda r: float(r[3]))
for r in first:
    mark = "" if int(r[5]) >= 0.9 * k else " (under 90% of codes)"
    print(f"| {r[0]} | {float(r[3]):.5f} | {float(r[4]):.1f} | {r[5]}{mark} |")
print("\n## The best three, 400 steps, seeds 0, 1, 2 (mean, and min-max)\n")
print("| init / update / restarts | held-out MSE | perplexity | codes used |")
print("|---|---|---|---|")
second = {}
for r in rows:
    if r[1] == "400":
        second.setdefault(r[0], []).append(r)
def span(xs, f):
    return f"{f(st.mean(xs))} ({f(min(xs))}-{f(max(xs))})"
for label, rs in sorted(second.items(), key=lambda kv: st.mean(float(r[3]) for r in kv[1])):
    mse = [float(r[3]) for r in rs]
    ppl = [float(r[4]) for r in rs]
    used = [int(r[5]) for r in rs]
    print(f"| {label} | {span(mse, lambda v: f'{v:.5f}')} | {span(ppl, lambda v: f'{v:.1f}')} "
          f"| {span(used, lambda v: f'{v:.0f}')} |")
PY
echo "table: docs/codebook-sweep-$name.md"
