#!/usr/bin/env bash
# Runs on a lent GPU machine, from the repository root, with ship/ carried (tools/gpu-ship.sh):
# 1. `ad parity` on the GPU through Vulkan (PatchCore, PaDiM, CFlow, score student vs flex),
#    with the stand-in weights at 64 px and with the Lite0 weights at 256 px;
# 2. PatchCore fit s and predict ms/img on a generated bottle-sized category (60 train,
#    36 test, 256 px): `ad run` on wgpu and on the CPU, and the PyTorch peer on CUDA and on the
#    CPU (benches/peers/patchcore_peer.py), back to back.
# Everything it prints is also written under $OUT (the device tool's output folder).
#
#     DEVICE=wgpu tools/gpu-machine.sh     # default
#     DEVICE=wgpu-cpu PEER_DEVICE=cpu tools/gpu-machine.sh    # the rehearsal on lavapipe (4 min)
set -uo pipefail
out="${OUT:-out/gpu-machine}"
mkdir -p "$out"
device="${DEVICE:-wgpu}"
peer_device="${PEER_DEVICE:-cuda}"
log() { echo "== $*" | tee -a "$out/log.txt"; }
if ! ldconfig -p | grep -q libvulkan.so.1 && ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
bin="$(mktemp -d)"
gunzip -c ship/ad.gz > "$bin/ad"
chmod +x "$bin/ad"
export AD_WEIGHTS_DIR="$PWD/ship/weights"
log "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$out/log.txt"
status=0
log "parity, stand-in weights, 64 px"
"$bin/ad" parity --device "$device" --json "$out/parity64.json" 2>&1 | grep -v 'XDG_RUNTIME\|wgpu_hal::gles' | tee "$out/parity64.txt" || status=1
log "parity, Lite0 weights, 256 px"
"$bin/ad" parity --device "$device" --pretrained --size 256 --json "$out/parity256.json" 2>&1 | grep -v 'XDG_RUNTIME\|wgpu_hal::gles' | tee "$out/parity256.txt" || status=1
data="$(mktemp -d)"
for d in $(printf '%s\n' "$device" cpu | awk '!seen[$0]++'); do
    log "ad run patchcore on $d (load $(cut -d' ' -f1-3 /proc/loadavg))"
    "$bin/ad" run --model patchcore --device "$d" --quiet --threshold none \
        --generated-root "$data" --out "$out/run-$d" 2>&1 | tail -n 12 | tee -a "$out/log.txt" || status=1
done
for d in $(printf '%s\n' "$peer_device" cpu | awk '!seen[$0]++'); do
    log "PyTorch peer on $d (load $(cut -d' ' -f1-3 /proc/loadavg))"
    python3 benches/peers/patchcore_peer.py --data "$data" --category synthetic --device "$d" \
        --threads "$(nproc)" --json "$out/peer-$d.json" 2>&1 | tail -n 6 | tee -a "$out/log.txt" || status=1
done
log "done, status $status, load $(cut -d' ' -f1-3 /proc/loadavg)"
exit $status
