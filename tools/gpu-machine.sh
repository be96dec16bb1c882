#!/usr/bin/env bash
# Runs on a lent GPU machine, from the repository root, with ship/ carried (tools/gpu-ship.sh),
# and .gl (Vulkan/EGL loaders) and .whl (efficientnet_lite_pytorch, the peer's model code) when
# the machine lacks them (docs/backends.md, "On a real GPU"). In order of value, each step
# under its own time limit and skipped when the whole run's budget (BUDGET s) would overrun:
# 1. `ad parity` on the GPU through Vulkan (PatchCore, PaDiM, CFlow, score student vs flex),
#    stand-in weights at 64 px;
# 2. PatchCore on a generated bottle-sized category (60 train, 36 test, 256 px, Lite0):
#    `ad run` on wgpu, then the PyTorch peer (benches/peers/patchcore_peer.py) on CUDA, back to
#    back, both with one untimed warm-up batch;
# 3. `ad parity` with the Lite0 weights at 256 px;
# 4. the same PatchCore run and peer on the machine's CPU cores;
# 5. the score student (fast preset) on wgpu on the same category (its predict ms/img against
#    step 2's teacher).
# Everything it prints and writes lands in a work folder that is packed after every step into
# $OUT/gpu-machine.tgz (the device tool brings back at most 8 files), beside $OUT/log.txt.
#
#     DEVICE=wgpu tools/gpu-machine.sh     # default
#     DEVICE=wgpu-cpu PEER_DEVICE=cpu tools/gpu-machine.sh    # the rehearsal on lavapipe
set -uo pipefail
dest="${OUT:-out/gpu-machine}"
mkdir -p "$dest"
out="$(mktemp -d)"
device="${DEVICE:-wgpu}"
peer_device="${PEER_DEVICE:-cuda}"
budget="${BUDGET:-540}"
start=$(date +%s)
log() { echo "== $*" | tee -a "$out/log.txt"; cp "$out/log.txt" "$dest/"; }
pack() { tar czf "$dest/gpu-machine.tgz" -C "$out" .; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
status=0
# step NAME LIMIT_S COMMAND...: runs COMMAND under `timeout LIMIT_S` when the budget allows,
# appends its output to $out/NAME.txt and its wall time to the log.
step() {
    local name=$1 limit=$2
    shift 2
    local used=$(( $(date +%s) - start ))
    if (( used + limit > budget )); then
        log "$name: skipped (${used} s used, ${limit} s more would pass the ${budget} s budget)"
        return
    fi
    log "$name (limit ${limit} s, load $(load))"
    local t0=$(date +%s)
    timeout "$limit" bash -c '"$@"' "$name" "$@" 2>&1 | grep -v 'XDG_RUNTIME\|wgpu_hal::gles' | tee -a "$out/$name.txt" | tail -n 14
    local rc=${PIPESTATUS[0]}
    log "$name: exit $rc after $(( $(date +%s) - t0 )) s (load $(load))"
    (( rc == 0 )) || status=1
    pack
}
source "$(dirname "$0")/gpu-env.sh"
data="$(mktemp -d)"
export bin data
log "machine: $(nproc) cores, load $(load), budget ${budget} s"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$out/log.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tee -a "$out/log.txt"
run_ad() { # run_ad DEVICE MODEL OUTDIR: fit + test on the generated category
    "$bin/ad" run --model "$2" --device "$1" --quiet --threshold none --warm-up --overlays 0 \
        --no-save --generated-root "$data" --out "$3"
}
run_peer() { # run_peer DEVICE JSON
    python3 benches/peers/patchcore_peer.py --data "$data" --category synthetic --device "$1" \
        --threads "$(nproc)" --warm-up --json "$2"
}
export -f run_ad run_peer
step parity64 150 "$bin/ad" parity --device "$device" --json "$out/parity64.json"
step run-patchcore-"$device" 120 run_ad "$device" patchcore "$out/run-patchcore-$device"
step peer-"$peer_device" 90 run_peer "$peer_device" "$out/peer-$peer_device.json"
step parity256 180 "$bin/ad" parity --device "$device" --pretrained --size 256 --json "$out/parity256.json"
if [ "$device" != cpu ]; then
    step run-patchcore-cpu 90 run_ad cpu patchcore "$out/run-patchcore-cpu"
fi
if [ "$peer_device" != cpu ]; then
    step peer-cpu 90 run_peer cpu "$out/peer-cpu.json"
fi
step run-student-"$device" 150 run_ad "$device" student "$out/run-student-$device"
log "done, status $status, $(( $(date +%s) - start )) s, load $(load)"
pack
exit $status
