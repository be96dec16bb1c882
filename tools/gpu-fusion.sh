#!/usr/bin/env bash
# Fourth device check: Burn's kernel fusion and autotuning (`burn/fusion`, `burn/autotune`, off
# in the first three checks) on a GPU, through wgpu's default shader path (`--features wgpu`,
# `--device wgpu`) and pinned to Vulkan with cubecl's SPIR-V compiler (`--features vulkan`,
# `--device vulkan`). ship/ carries both builds xz-compressed (ad-wgpu.xz, ad-vulkan.xz) and the
# Lite0 weights; .gl and .whl as for tools/gpu-machine.sh. In order, each step under a time
# limit and skipped past the run's budget (BUDGET s):
# 1. PatchCore on the generated category with its test images five times over (220), batch 8,
#    one untimed warm-up batch: the wgpu build, the vulkan build, the PyTorch peer on CUDA;
# 2. `ad parity` (64 px, stand-in weights) with the wgpu build;
# 3. step 1 again;
# 4. one CFlow epoch on the generated category with each build, and on the CPU;
# 5. `ad parity` with the vulkan build.
# The vulkan build's later steps are skipped once one of its runs fails or times out.
# Packed into $OUT/gpu-fusion.tgz after every step.
#
#     BUDGET=300 tools/gpu-fusion.sh
#     DEV_WGPU=cpu DEV_VULKAN=cpu PEER_DEVICE=cpu BUDGET=900 tools/gpu-fusion.sh   # rehearsal
set -uo pipefail
dest="${OUT:-out/gpu-fusion}"
mkdir -p "$dest"
out="$(mktemp -d)"
budget="${BUDGET:-300}"
dw="${DEV_WGPU:-wgpu}" dv="${DEV_VULKAN:-vulkan}" pd="${PEER_DEVICE:-cuda}"
start=$(date +%s)
status=0
load() { cut -d' ' -f1-3 /proc/loadavg; }
log() { echo "== $*" | tee -a "$out/log.txt"; cp "$out/log.txt" "$dest/"; tar czf "$dest/gpu-fusion.tgz" -C "$out" .; }
# step NAME LIMIT_S COMMAND...: as tools/gpu-machine.sh, output in $out/NAME.txt.
step() {
    local name=$1 limit=$2
    shift 2
    local used=$(( $(date +%s) - start ))
    if (( used + limit > budget )); then
        log "$name: skipped (${used} s used)"
        return
    fi
    log "$name (limit ${limit} s, load $(load))"
    local t0=$(date +%s)
    timeout "$limit" bash -c '"$@"' "$name" "$@" 2>&1 | grep -v 'XDG_RUNTIME\|wgpu_hal' \
        | tee "$out/$name.txt" | grep -E '^\| (big|synthetic|patchcore|padim|cflow|student) |^all pass|fail'
    local rc=${PIPESTATUS[0]}
    log "$name: exit $rc after $(( $(date +%s) - t0 )) s"
    (( rc == 0 )) || status=1
}
if ! ldconfig -p | grep -q libvulkan.so.1 && ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
if ! python3 -c 'import efficientnet_lite_pytorch' 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
bin="$(mktemp -d)"
for b in wgpu vulkan; do
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "ship/ad-$b.xz" "$bin/ad-$b"
    chmod +x "$bin/ad-$b"
done
export AD_WEIGHTS_DIR="$PWD/ship/weights"
export AD_LITE0_WEIGHTS="$AD_WEIGHTS_DIR/efficientnet-lite0-57934424.pth"
data="$(mktemp -d)"
export bin data out pd
log "machine: $(nproc) cores, load $(load), budget ${budget} s"
quiet="--quiet --threshold none --warm-up --overlays 0 --no-save"
"$bin/ad-wgpu" run --model patchcore --device cpu $quiet --generated-root "$data" \
    --out "$out/generate" > "$out/generate.txt" 2>&1 || status=1
src="$data/synthetic" big="$data/big"
mkdir -p "$big"
ln -s "$src/train" "$big/train"
for dir in "$src"/test/*/; do
    kind=$(basename "$dir")
    mkdir -p "$big/test/$kind"
    [ "$kind" = good ] || mkdir -p "$big/ground_truth/$kind"
    for f in "$dir"*.png; do
        stem=$(basename "$f" .png)
        for i in 0 1 2 3 4; do
            cp "$f" "$big/test/$kind/r${i}_$stem.png"
            [ "$kind" = good ] || cp "$src/ground_truth/$kind/${stem}_mask.png" "$big/ground_truth/$kind/r${i}_${stem}_mask.png"
        done
    done
done
log "test images: $(find "$big/test" -name '*.png' | wc -l)"
ad_run() { # ad_run BUILD DEVICE MODEL CATEGORY NAME [ARGS...]
    local b=$1 d=$2 m=$3 c=$4 n=$5
    shift 5
    "$bin/ad-$b" run --model "$m" --device "$d" --quiet --threshold none --warm-up --overlays 0 \
        --no-save --data "$data" --category "$c" --out "$out/$n" "$@"
}
peer() { # peer NAME
    python3 benches/peers/patchcore_peer.py --data "$data" --category big --device "$pd" \
        --threads "$(nproc)" --warm-up --json "$out/$1.json"
}
export -f ad_run peer
vulkan_ok=1
for r in 1 2; do
    step "r$r-wgpu" 60 ad_run wgpu "$dw" patchcore big "r$r-wgpu"
    if (( vulkan_ok )); then
        before=$status status=0
        step "r$r-vulkan" 45 ad_run vulkan "$dv" patchcore big "r$r-vulkan"
        (( status == 0 )) || vulkan_ok=0
        (( before == 0 )) || status=1
    fi
    step "r$r-peer-cuda" 40 peer "r$r-peer-cuda"
    if [ "$r" = 1 ]; then
        step parity-wgpu 60 "$bin/ad-wgpu" parity --device "$dw" --json "$out/parity-wgpu.json"
    fi
done
step cflow-wgpu 60 ad_run wgpu "$dw" cflow synthetic cflow-wgpu --epochs 1
(( vulkan_ok )) && step cflow-vulkan 60 ad_run vulkan "$dv" cflow synthetic cflow-vulkan --epochs 1
step cflow-cpu 25 ad_run wgpu cpu cflow synthetic cflow-cpu --epochs 1
(( vulkan_ok )) && step parity-vulkan 60 "$bin/ad-vulkan" parity --device "$dv" --json "$out/parity-vulkan.json"
log "done, status $status, $(( $(date +%s) - start )) s, load $(load)"
exit $status
