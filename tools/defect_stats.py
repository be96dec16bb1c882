#!/usr/bin/env python3
"""Contrast and size of a category's real defects, in the units of the synthetic anomalies of
`ad_regress::synth` (docs/results.md, "Faint spots"): for every connected component of every
ground-truth mask, its peak contrast (the darkest pixel of the component against the median of
a 4-px ring around the defects, in ImageNet-normalised units: the change divided by the
channel's std, channel-averaged) and its radius (sqrt(area / pi)) in pixels at the image's own
resolution; beside them, the darkest local contrast of the good training images (each pixel
against the median of its 9x9 neighbourhood), the texture's own darkest specks. Prints
percentiles. Needs numpy, pillow and scipy (`pip install numpy pillow scipy`); run by hand.

    python3 tools/defect_stats.py ../shared/datasets/piped/PA_FVN01_TL
"""
import glob
import sys

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation, label, median_filter

STD = np.array([0.229, 0.224, 0.225]) * 255


def rgb(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = sys.argv[1].rstrip("/")
    masks = sorted(glob.glob(f"{root}/ground_truth/*/*.png"))
    if not masks:
        sys.exit(f"no masks under {root}/ground_truth")
    peaks, radii, per_image = [], [], []
    for path in masks:
        mask = np.asarray(Image.open(path).convert("L")) > 0
        image = rgb(path.replace("/ground_truth/", "/test/").replace("_mask.png", ".png"))
        components, n = label(mask)
        per_image.append(n)
        around = binary_dilation(mask, iterations=1)
        for k in range(1, n + 1):
            c = components == k
            ring = binary_dilation(c, iterations=4) & ~around
            background = np.median(image[ring], axis=0)
            pixels = image[c]
            darkest = pixels[np.argmin(pixels.mean(axis=1))]
            peaks.append(((darkest - background) / STD).mean())
            radii.append(np.sqrt(c.sum() / np.pi))
    specks = []
    for path in sorted(glob.glob(f"{root}/train/good/*.png")):
        image = rgb(path)
        local = (image - median_filter(image, size=(9, 9, 1))) / STD
        specks.append(local.mean(axis=2).min())
    q = [10, 25, 50, 75, 90]
    fmt = lambda a: " / ".join(f"{v:.2f}" for v in np.percentile(a, q))
    print(f"{len(masks)} defective images, {len(peaks)} components "
          f"({min(per_image)}-{max(per_image)} per image, mean {np.mean(per_image):.1f})")
    print(f"percentiles {q}")
    print(f"peak contrast of a component (normalised units): {fmt(peaks)}")
    print(f"radius of a component (px at {mask.shape[1]}x{mask.shape[0]}): {fmt(radii)}")
    print(f"darkest local contrast of a good training image ({len(specks)}): {fmt(specks)}")


if __name__ == "__main__":
    main()
