#!/usr/bin/env python3
"""Write the VGG-16 parity fixtures of the ad-backbone crate (run by hand, not in CI).

    pip install torch torchvision numpy
    python3 tools/vgg_fixtures.py      # from the repository root

torchvision's `vgg16` filled with the deterministic weights of `ad_backbone::formula_tensor`
(seed 0; the formula lives in tools/backbone_fixtures.py), run on a 40x40 deterministic input
(odd pool sizes: 40 -> 20 -> 10 -> 5 -> 2 -> 1, torch floors). Writes
crates/ad-backbone/tests/fixtures/:
- vgg16_fixtures.bin / .json: little-endian f32 arrays (input, taps features.9, .16, .29, .30,
  and the ImageNet logits) with a manifest, plus torchvision's state-dict keys and shapes;
- vgg16_block1.pt: the first block's tensors (features.0, features.2) as torch.save writes a
  checkpoint, for the loader test (torchvision key names).
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from backbone_fixtures import OUT, Writer, fill_formula, make_input  # noqa: E402


def main():
    import torchvision

    torch.set_grad_enabled(False)
    model = fill_formula(torchvision.models.vgg16()).eval()
    x = torch.from_numpy(make_input(40, 40, 0.7))
    w = Writer()
    w.add("input/40x40", x.numpy())
    h = x
    taps = {9: None, 16: None, 29: None, 30: None}
    for i, layer in enumerate(model.features):
        h = layer(h)
        if i in taps:
            w.add("vgg16/40x40/features.%d" % i, h.numpy())
    w.add("vgg16/40x40/logits", model(x).numpy())
    keys = {k: list(v.shape) for k, v in model.state_dict().items()}
    block1 = {k: v for k, v in model.state_dict().items() if k.startswith(("features.0.", "features.2."))}
    torch.save(block1, os.path.join(OUT, "vgg16_block1.pt"))
    data = np.concatenate(w.chunks).astype("<f4")
    data.tofile(os.path.join(OUT, "vgg16_fixtures.bin"))
    meta = {"tensors": w.manifest, "state_dict": keys, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "formula_seed": 0}
    with open(os.path.join(OUT, "vgg16_fixtures.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("wrote %d floats (%.1f KB)" % (data.size, data.nbytes / 1024))


if __name__ == "__main__":
    sys.exit(main())
