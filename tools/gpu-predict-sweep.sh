#!/usr/bin/env bash
# Second device check, after tools/gpu-machine.sh: where PatchCore's predict time goes on a GPU.
# On the generated category (60 train, 44 test, 256 px, Lite0), each with one untimed warm-up
# batch: `ad run` on wgpu at batch 8 and 32 with the search on the device (`--knn device`,
# the default there), at batch 8 with the search on the host (`--knn cpu`) and at batch 8
# without the reweighting's second search (`--neighbors 1`), logging each
# batch's "features + 1-NN" time (RUST_LOG=ad_patchcore=debug); then the PyTorch peer on CUDA
# at batch 8 and 32; then PaDiM on wgpu and on the CPU, and CFlow (trained) on wgpu. Same
# carry and output packing as tools/gpu-machine.sh.
#
#     DEVICE=wgpu tools/gpu-predict-sweep.sh
set -uo pipefail
dest="${OUT:-out/gpu-predict-sweep}"
mkdir -p "$dest"
out="$(mktemp -d)"
device="${DEVICE:-wgpu}"
peer_device="${PEER_DEVICE:-cuda}"
log() { echo "== $*" | tee -a "$out/log.txt"; cp "$out/log.txt" "$dest/"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
source "$(dirname "$0")/gpu-env.sh"
data="$(mktemp -d)"
log "machine: $(nproc) cores, load $(load)"
status=0
for run in "8 device 9" "32 device 9" "8 cpu 9" "8 device 1"; do
    set -- $run
    name="ad-$device-b$1-knn-$2-k$3"
    log "$name (load $(load))"
    RUST_LOG=ad_patchcore=debug timeout 90 "$bin/ad" run --model patchcore --device "$device" \
        --batch-size "$1" --knn "$2" --neighbors "$3" --quiet --threshold none --warm-up --overlays 0 --no-save \
        --generated-root "$data" --out "$out/$name" 2>&1 | grep -v 'XDG_RUNTIME\|wgpu_hal' \
        | tee "$out/$name.txt" | grep -E 'predict [0-9]+ images|\| synthetic' || status=1
done
for b in 8 32; do
    name="peer-$peer_device-b$b"
    log "$name (load $(load))"
    timeout 90 python3 benches/peers/patchcore_peer.py --data "$data" --category synthetic \
        --device "$peer_device" --threads "$(nproc)" --batch-size "$b" --warm-up \
        --json "$out/$name.json" 2>&1 | tee "$out/$name.txt" | grep -E '^\| synthetic' || status=1
done
for run in "padim $device 60" "padim cpu 60" "cflow $device 150"; do
    set -- $run
    name="ad-$1-$2"
    log "$name (load $(load))"
    timeout "$3" "$bin/ad" run --model "$1" --device "$2" --quiet --threshold none --warm-up \
        --overlays 0 --no-save --generated-root "$data" --out "$out/$name" 2>&1 \
        | grep -v 'XDG_RUNTIME\|wgpu_hal' | tee "$out/$name.txt" | grep -E '^\| synthetic' || status=1
done
log "done, status $status, load $(load)"
tar czf "$dest/gpu-predict-sweep.tgz" -C "$out" .
exit $status
