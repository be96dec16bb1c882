#!/usr/bin/env bash
# Adding good images (docs/results.md, "## Adding good images"): on MVTec AD bottle, train/good
# split into halves A and B (sorted file names); for PatchCore and PaDiM: fit(A), then
# `ad add` B, against fit(A + B) on all of train/good; AUROCs of the three models on the test
# split, the wall-time ratio (fit(A) + add(B)) / fit(A + B), and the largest relative
# difference of the test scores between fit(A) + add(B) and fit(A + B). All with --threshold
# none. Needs ../shared/datasets (or pass another root as $1). Writes out/add/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/datasets}/mvtec_ad
cat=${2:-bottle}
cargo build --release -p ad-cli
ad=$(realpath target/release/ad)
w=out/add
rm -rf "$w"
mkdir -p "$w/data/A/train/good"
src=$(realpath "$data/$cat")
mapfile -t goods < <(ls "$src/train/good" | sort)
half=$(( ${#goods[@]} / 2 ))
ln -s "$src/test" "$w/data/A/test"
ln -s "$src/ground_truth" "$w/data/A/ground_truth"
for f in "${goods[@]:0:half}"; do ln -s "$src/train/good/$f" "$w/data/A/train/good/$f"; done
bfiles=()
for f in "${goods[@]:half}"; do bfiles+=("$src/train/good/$f"); done
now() { date +%s.%N; }
uptime
echo "| model | A images | B images | fit(A) s | add(B) s | fit(A+B) s | (fit A + add B) / fit(A+B) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for model in patchcore padim; do
  t0=$(now)
  $ad fit -q --model $model --threshold none --data "$w/data" --category A -o "$w/$model.A" > /dev/null
  t1=$(now)
  $ad add -q "$w/$model.A" "${bfiles[@]}" --out "$w/$model.AB" > /dev/null
  t2=$(now)
  $ad fit -q --model $model --threshold none --data "$data" --category "$cat" -o "$w/$model.full" > /dev/null
  t3=$(now)
  python3 -c "a,b,c=$t1-$t0,$t2-$t1,$t3-$t2; print(f'| $model | $half | ${#bfiles[@]} | {a:.1f} | {b:.1f} | {c:.1f} | {(a+b)/c:.2f} |')"
  for v in A AB full; do
    $ad test -q "$w/$model.$v" "$src" --out "$w/test_${model}_$v" --overlays 0 > /dev/null
  done
  $ad predict "$w/$model.AB" "$src"/test/* > "$w/${model}_AB.jsonl" 2> /dev/null || true
  $ad predict "$w/$model.full" "$src"/test/* > "$w/${model}_full.jsonl" 2> /dev/null || true
done
uptime
echo
python3 tools/report_table.py "patchcore fit(A)=$w/test_patchcore_A" \
  "patchcore fit(A)+add(B)=$w/test_patchcore_AB" "patchcore fit(A+B)=$w/test_patchcore_full" \
  "padim fit(A)=$w/test_padim_A" "padim fit(A)+add(B)=$w/test_padim_AB" \
  "padim fit(A+B)=$w/test_padim_full"
echo
python3 - "$w" <<'PY'
import json, sys
w = sys.argv[1]
for model in ("patchcore", "padim"):
    load = lambda v: {l["path"]: l["score"] for l in map(json.loads, open(f"{w}/{model}_{v}.jsonl")) if "score" in l}
    a, b = load("AB"), load("full")
    common = [p for p in a if p in b]
    rel = max(abs(a[p] - b[p]) / max(abs(b[p]), 1e-12) for p in common)
    print(f"{model}: {len(common)} test images, largest relative score difference "
          f"fit(A)+add(B) vs fit(A+B) = {rel:.3e}")
PY
