#!/usr/bin/env bash
# The score student's seed spread on one category (docs/results.md, "Learning-rate schedule",
# "Max-pooled targets"): image AUROC of seeds 0-3 (or $SEEDS) for each variant (constant
# rate, cosine schedule, four teacher folds, max-pooled targets), and of the mean of the
# seeds' image scores (what averaging their heads would give), from `ad fit` + `ad predict` on
# the test images. Deterministic: a rerun prints the same numbers; a seed whose scores exist is not run
# again (delete out/student_seeds/<class>/ to re-run).
#
#     tools/student_seeds.sh [CATEGORY] [PIPED_ROOT]    # default PA_FVN01_TL ../shared/datasets/piped
#     VARIANTS="constant maxpool" tools/student_seeds.sh      # default: all four
#     VARIANTS=accurate tools/student_seeds.sh      # the student of the accurate PatchCore
#                                                   # (three synthetic copies, as before 2026-12-02)
#     VARIANTS="accurate-wide accurate-synth6 accurate-wide-synth6" ...  # its head widened to
#                 512 -> 128, and/or six synthetic copies per image (two of each kind)
#     VARIANTS=accurate-synth12-avg10 ...  # and/or its weights averaged over the last 10 epochs
#     VARIANTS=accurate-synth12-sqrtinv ...  # and/or rare targets weighted up (--loss-weights)
#     VARIANTS=accurate-synth12-folds4 ...  # and/or four teacher folds (each on 3/4 of the images;
#                                            # -foldsN: N folds)
#     VARIANTS=accurate-synth12-p256 ...  # and/or 256 prototypes instead of 64
#     VARIANTS=accurate-synth12-e40 ...  # and/or 40 epochs instead of 20
#     VARIANTS=accurate-synth12-maxpool ...  # and/or max-pooled targets
#     SEEDS="0 1 2 3 4 5 6 7" VARIANTS=accurate-synth12 ...  # other seeds (default 0-3)
#     VARIANTS=accurate-synth12-std ...  # and/or the head trained on standardised inputs
#     VARIANTS=accurate-synth12-faint ...  # and/or faint spots as a fourth kind of anomaly
#     VARIANTS=accurate-synth12-faintonly ...  # and/or faint spots instead of the spots
#     VARIANTS=accurate-synth12-raw-fibre ...  # and/or fibres (short dark strands) as a
#                                                # fourth kind of anomaly
#     PIXEL=1 ...  # also `ad test` every model: pixel AUROC / AUPRO per seed
#     VARIANTS=accurate-synth12-log ...  # and/or the head regressing ln(1 + target)
#     VARIANTS=accurate-synth12-raw ...  # and/or the teacher's maps unblurred (its patch
#                                          # scores as the targets)
#     VARIANTS=accurate-synth12-raw-grid ...  # and/or the image score read off the grid
#     VARIANTS=accurate-synth12-raw-h4 ...  # and/or four heads on the same patches (their
#                                              # maps averaged; tools/student_heads.py keeps
#                                              # the first k of them); -boot: each head on
#                                              # its own bootstrap sample of the images
#     VARIANTS=accurate-synth12-raw-splits2 ...  # and/or two fold splits (every image scored
#                                                 # by two teachers, two sets of copies)
#     VARIANTS=accurate-synth12-raw-pseed0 ...  # and/or the prototypes of seed 0 whatever
#                                                # the seed (prototype_seed = 0)
#     VARIANTS=accurate-synth12-raw-skip ...  # and/or the nearest prototype's distance added
#                                              # to the head's output (nearest_skip = true)
#     VARIANTS=accurate-synth12-raw-noise0.25 ...  # and/or feature-space anomalies: that
#                                                   # fraction of the good patches moved by
#                                                   # Gaussian noise (feature_noise = 0.25)
#     VARIANTS=fast-r2-noise0.25 ...  # and/or the moved patches' largest radius (2 median
#                                      # nearest-good-patch distances; feature_noise_radius)
#     VARIANTS=fast-cov-noise0.25 ...  # and/or the moved patches' directions drawn as the
#                                       # difference of two good patches (covariance);
#                                       # -iso: a standard Gaussian vector (isotropic)
#     VARIANTS=fast-noise0.25-group ...  # and/or identical images kept in one fold
#                                         # (group_identical = true)
#     VARIANTS=fast-noise0.25-distill4 ...  # and/or ensemble distillation: four member
#                                            # students first, their mean regressed (distill)
#     VARIANTS="fast-b192 fast-b192-noise0.25" ...  # and/or the backbone on 192 x 192 pixels
#                                                    # (backbone_size, `ad --backbone-size`)
#     VARIANTS="fast-taps4 fast-taps4.7-noise0.25" ...  # and/or the student on its own taps
#                                         # (blocks' indices: ["blocks.4"], ["blocks.4", "blocks.7"])
#     VARIANTS=fast-noise0.25-bright ...  # and/or brightness normalisation (student and
#                                          # teacher: `--brightness imagenet`)
#     VARIANTS="fast fast-raw fast-synth12-raw" ...  # the default student, and with the same
#                                                     # modifiers
set -euo pipefail
cd "$(dirname "$0")/.."
cls=${1:-PA_FVN01_TL}
root=${2:-../shared/datasets/piped}
# AD=path/to/ad: that binary, not built here (e.g. one built in another target directory
# while a run uses target/release/ad)
if [ -z "${AD:-}" ]; then cargo build --release -p ad-cli; fi
ad=${AD:-target/release/ad}
# OUT_ROOT: where the runs go (default out/student_seeds); training is deterministic on one
# CPU, not across SIMD kernels, so runs on another CPU want their own root
out=${OUT_ROOT:-out/student_seeds}/$cls
# set_key FILE KEY VALUE: the first `KEY = ...` line of a printed config (the student's own
# table comes before [preprocess] and [teacher]) set to VALUE, and checked.
set_key() {
  sed -i "0,/^$2 = .*\$/s//$2 = $3/" "$1"
  grep -qxF "$2 = $3" "$1"
}
mkdir -p "$out"
uptime
variants=${VARIANTS:-constant cosine folds4 maxpool}
seeds=${SEEDS:-0 1 2 3}
for variant in $variants; do
  case $variant in
    constant) flags=(--model student --lr-schedule constant) ;;
    cosine) flags=(--model student --lr-schedule cosine) ;;
    maxpool) flags=(--model student --lr-schedule constant --target-pool max) ;;
    folds4)
      $ad run --model student --lr-schedule constant --print-config 2>/dev/null |
        sed 's/^folds = 2$/folds = 4/' > "$out/folds4.toml"
      flags=(-c "$out/folds4.toml") ;;
    fast | fast-* | accurate | accurate-*)
      # The accurate student as measured before 2026-12-02 (three synthetic copies per image),
      # or with its head widened to 512 -> 128 (-wide) and/or N copies, kinds in turn (-synthN);
      # fast-*: the default student with the same modifiers
      toml=$out/$variant.toml
      n=3
      if [[ $variant =~ -synth([0-9]+) ]]; then n=${BASH_REMATCH[1]}; fi
      # -bright: brightness normalisation (`--brightness imagenet`), student and teacher
      bright=off
      if [[ $variant == *-bright* ]]; then bright=imagenet; fi
      if [[ $variant == accurate* ]]; then
        $ad run --model student --preset accurate --synthetic-per-image "$n" \
          --brightness "$bright" --print-config 2>/dev/null > "$toml"
      else
        $ad run --model student --synthetic-per-image "$n" --brightness "$bright" \
          --print-config 2>/dev/null > "$toml"
      fi
      # Every variant starts from the teacher's blurred maps, the student's map unblurred and
      # its score the map's maximum (the presets before 2026-12-02 16:00 UTC)
      sed -i '/^\[teacher\]/,$ {/^blur_sigma = /d}' "$toml"
      set_key "$toml" blur_sigma 0.0
      set_key "$toml" image_score '"map-max"'
      if [[ $variant == *-wide* ]]; then set_key "$toml" hidden "[512, 128]"; fi
      if [[ $variant =~ -e([0-9]+) ]]; then set_key "$toml" epochs "${BASH_REMATCH[1]}"; fi
      if [[ $variant =~ -p([0-9]+) ]]; then set_key "$toml" prototypes "${BASH_REMATCH[1]}"; fi
      if [[ $variant =~ -folds([0-9]+) ]]; then set_key "$toml" folds "${BASH_REMATCH[1]}"; fi
      if [[ $variant == *-std* ]]; then set_key "$toml" standardise_inputs true; fi
      if [[ $variant == *-maxpool* ]]; then set_key "$toml" target_pool '"max"'; fi
      if [[ $variant == *-fibre* ]]; then
        set_key "$toml" anomalies '["cut-paste", "thin-curve", "spot", "fibre"]'
      elif [[ $variant == *-faintonly* ]]; then
        set_key "$toml" anomalies '["cut-paste", "thin-curve", "faint-spot"]'
      elif [[ $variant == *-faint* ]]; then
        set_key "$toml" anomalies '["cut-paste", "thin-curve", "spot", "faint-spot"]'
      fi
      if [[ $variant == *-raw* ]]; then
        # [teacher] is the printed config's last table
        [ "$(grep '^\[' "$toml" | tail -n 1)" = "[teacher]" ]
        echo "blur_sigma = 0.0" >> "$toml"
      fi
      if [[ $variant == *-grid* ]]; then set_key "$toml" image_score '"grid-max"'; fi
      if [[ $variant == *-log* ]]; then set_key "$toml" target_transform '"log1p"'; fi
      if [[ $variant == *-sqrtinv* ]]; then set_key "$toml" loss_weights '"sqrt-inverse"'; fi
      if [[ $variant =~ -h([0-9]+) ]]; then set_key "$toml" heads "${BASH_REMATCH[1]}"; fi
      if [[ $variant == *-boot* ]]; then set_key "$toml" bootstrap true; fi
      if [[ $variant =~ -distill([0-9]+) ]]; then set_key "$toml" distill "${BASH_REMATCH[1]}"; fi
      if [[ $variant =~ -splits([0-9]+) ]]; then set_key "$toml" splits "${BASH_REMATCH[1]}"; fi
      if [[ $variant == *-skip* ]]; then set_key "$toml" nearest_skip true; fi
      # No feature-space anomalies unless -noiseF names them (both students before
      # 2026-12-04 20:40-21:00 UTC)
      if [[ $variant =~ -noise([0-9.]+) ]]; then
        set_key "$toml" feature_noise "${BASH_REMATCH[1]}"
      else
        set_key "$toml" feature_noise 0.0
      fi
      if [[ $variant =~ -r([0-9.]+)- ]]; then
        # the moved patches' largest radius, in median nearest-good-patch distances
        set_key "$toml" feature_noise_radius "${BASH_REMATCH[1]}"
      fi
      if [[ $variant == *-cov* ]]; then
        # moved along the difference of two good patches (the good patches' covariance)
        set_key "$toml" feature_noise_directions '"covariance"'
      elif [[ $variant == *-iso* ]]; then
        # moved along a standard Gaussian vector (every column alike)
        set_key "$toml" feature_noise_directions '"isotropic"'
      fi
      # Copies of an image split between folds unless -group keeps them together
      # (group_identical, off by default)
      if [[ $variant == *-group* ]]; then
        set_key "$toml" group_identical true
      else
        set_key "$toml" group_identical false
      fi
      if [[ $variant =~ -pseed([0-9]+) ]]; then
        # not printed while unset: added after the student's own `seed = ...` line
        sed -i "0,/^seed = .*\$/s//&\nprototype_seed = ${BASH_REMATCH[1]}/" "$toml"
        grep -qxF "prototype_seed = ${BASH_REMATCH[1]}" "$toml"
      fi
      if [[ $variant =~ -b([0-9]+) ]]; then
        # the backbone's input size (square; not printed while unset): after `seed = ...`
        b=${BASH_REMATCH[1]}
        sed -i "0,/^seed = .*\$/s//&\nbackbone_size = [$b, $b]/" "$toml"
        grep -qxF "backbone_size = [$b, $b]" "$toml"
      fi
      if [[ $variant =~ -taps([0-9.]+) ]]; then
        # the student's own taps, blocks' indices joined by dots: -taps4 = ["blocks.4"]
        taps=$(echo "${BASH_REMATCH[1]}" | sed 's/\([0-9]\+\)/"blocks.\1"/g; s/\./, /g; s/"blocks, /"blocks./g')
        set_key "$toml" taps "[$taps]"
      fi
      if [[ $variant =~ -avg([0-9]+) ]]; then
        set_key "$toml" average_epochs "${BASH_REMATCH[1]}"
      fi
      flags=(-c "$out/$variant.toml") ;;
  esac
  for seed in $seeds; do
    if [ -s "$out/$variant-s$seed.jsonl" ]; then continue; fi
    $ad fit --quiet "${flags[@]}" --seed $seed --threshold none --data "$root" --category "$cls" \
        --out "$out/$variant-s$seed.model"
    $ad predict "$out/$variant-s$seed.model" "$root/$cls/test/*/*.png" > "$out/$variant-s$seed.jsonl"
  done
  if [ -n "${PIXEL:-}" ]; then
    for seed in $seeds; do
      test_out=$out/$variant-s$seed.test
      if [ -s "$test_out/report.json" ]; then continue; fi
      $ad test --quiet "$out/$variant-s$seed.model" "$root/$cls" --out "$test_out" --overlays 0 > /dev/null
    done
  fi
done
uptime
python3 - "$out" "$seeds" $variants <<'PY'
import json, os, sys
sys.path.insert(0, "tools")
from compare_scores import auroc, load
out, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split()]
n = len(seeds)
print(f"| variant | {' | '.join(f'seed {s}' for s in seeds)} | mean of the {n} "
      f"| {n} seeds' scores averaged |")
print("| --- " * (n + 3) + "|")
for variant in sys.argv[3:]:
    runs = [load(f"{out}/{variant}-s{s}.jsonl") for s in seeds]
    paths = sorted(runs[0])
    labels = ["/good/" not in p for p in paths]
    each = [100 * auroc([r[p] for p in paths], labels) for r in runs]
    avg = 100 * auroc([sum(r[p] for r in runs) / n for p in paths], labels)
    cells = " | ".join(f"{a:.2f}" for a in each)
    print(f"| {variant} | {cells} | {sum(each) / n:.2f} | {avg:.2f} |")
if os.environ.get("PIXEL"):
    print()
    print(f"| variant, pixel AUROC / AUPRO % | {' | '.join(f'seed {s}' for s in seeds)} "
          f"| mean of the {n} (pixel AUROC) |")
    print("| --- " * (n + 2) + "|")
    for variant in sys.argv[3:]:
        rows = [json.load(open(f"{out}/{variant}-s{s}.test/report.json"))["rows"][0]
                for s in seeds]
        cells = " | ".join(f"{100 * r['pixel_auroc']:.2f} / {100 * r['aupro']:.2f}" for r in rows)
        mean = sum(100 * r["pixel_auroc"] for r in rows) / n
        print(f"| {variant} | {cells} | {mean:.2f} |")
PY
