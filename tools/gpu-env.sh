# Sourced by the device scripts (tools/gpu-machine.sh, gpu-predict-sweep.sh, gpu-timing.sh) on a
# lent GPU machine, from the repository root, with ship/ (tools/gpu-ship.sh), .gl and .whl
# carried: the Vulkan loader and the NVIDIA ICD, the peer's model code (efficientnet_lite_pytorch)
# when the machine lacks it, `ad` unpacked into $bin, the weights for `ad` and the peer.
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
gunzip -c ship/ad.gz > "$bin/ad"
chmod +x "$bin/ad"
export AD_WEIGHTS_DIR="$PWD/ship/weights"
export AD_LITE0_WEIGHTS="$AD_WEIGHTS_DIR/efficientnet-lite0-57934424.pth"
