#!/usr/bin/env bash
# Third device check: PatchCore's predict time on a GPU against the PyTorch peer on CUDA, on a
# test set large enough to time (the generated category's 44 test images, each five times:
# 220 images; its 60 train images), in alternating rounds (ad on wgpu, then the peer on CUDA,
# ROUNDS times, default 3), batch 8, one untimed warm-up batch each; then both on the
# machine's CPU cores (CPU_ROUNDS, default 2); then one CFlow training epoch on wgpu and on the
# CPU (the generated category itself), to time training on the device. Same carry as
# tools/gpu-machine.sh; packed into $OUT/gpu-timing.tgz after every step.
#
#     DEVICE=wgpu tools/gpu-timing.sh
#     DEVICE=cpu PEER_DEVICE=cpu CFLOW=0 tools/gpu-timing.sh   # rehearsal here
set -uo pipefail
dest="${OUT:-out/gpu-timing}"
mkdir -p "$dest"
out="$(mktemp -d)"
device="${DEVICE:-wgpu}"
peer_device="${PEER_DEVICE:-cuda}"
rounds="${ROUNDS:-3}"
log() { echo "== $*" | tee -a "$out/log.txt"; cp "$out/log.txt" "$dest/"; tar czf "$dest/gpu-timing.tgz" -C "$out" .; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
source "$(dirname "$0")/gpu-env.sh"
data="$(mktemp -d)"
status=0
log "machine: $(nproc) cores, load $(load)"
quiet=(--quiet --threshold none --warm-up --overlays 0 --no-save)
"$bin/ad" run --model patchcore --device cpu "${quiet[@]}" --generated-root "$data" \
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
ad_run() { # ad_run DEVICE NAME
    timeout 90 "$bin/ad" run --model patchcore --device "$1" "${quiet[@]}" --data "$data" \
        --category big --out "$out/$2" 2>&1 | grep -v 'XDG_RUNTIME\|wgpu_hal' \
        | tee "$out/$2.txt" | grep -E '^\| big' || status=1
}
peer() { # peer DEVICE NAME
    timeout 90 python3 benches/peers/patchcore_peer.py --data "$data" --category big \
        --device "$1" --threads "$(nproc)" --warm-up --json "$out/$2.json" 2>&1 \
        | tee "$out/$2.txt" | grep -E '^\| big' || status=1
}
for r in $(seq 1 "$rounds"); do
    log "round $r: ad on $device (load $(load))"
    ad_run "$device" "ad-$device-r$r"
    log "round $r: peer on $peer_device (load $(load))"
    peer "$peer_device" "peer-$peer_device-r$r"
done
if [ "$device" != cpu ]; then
    for r in $(seq 1 "${CPU_ROUNDS:-2}"); do
        log "cpu round $r: ad (load $(load))"
        ad_run cpu "ad-cpu-r$r"
        log "cpu round $r: peer (load $(load))"
        peer cpu "peer-cpu-r$r"
    done
fi
if [ "${CFLOW:-1}" = 1 ]; then
    for d in $(printf '%s\n' "$device" cpu | awk '!seen[$0]++'); do
        log "cflow, one epoch, on $d (load $(load))"
        timeout 100 "$bin/ad" run --model cflow --epochs 1 --device "$d" "${quiet[@]}" \
            --generated-root "$data" --out "$out/cflow-$d" 2>&1 | grep -v 'XDG_RUNTIME\|wgpu_hal' \
            | tee "$out/cflow-$d.txt" | grep -E '^fit|^\| synthetic' || status=1
    done
fi
log "done, status $status, load $(load)"
exit $status
