"""Writes PIL resize fixtures for ad-mvtec's preprocessing parity test (run by hand).

    python3 tools/preprocess_fixtures.py

Creates a deterministic RGB image from a formula, saves it as PNG, and stores PIL's
BILINEAR (antialiased) resizes to several sizes as raw RGB bytes, plus the normalised float
values torchvision's ToTensor + Normalize would produce for one of them.
"""
import json
import pathlib

import numpy as np
from PIL import Image

out = pathlib.Path(__file__).resolve().parent.parent / "crates/ad-mvtec/tests/fixtures"
out.mkdir(parents=True, exist_ok=True)

h, w = 61, 97
y, x = np.mgrid[0:h, 0:w]
rgb = np.stack(
    [
        (x * 255 // (w - 1)),
        (128 + 100 * np.sin(x * 0.37) * np.cos(y * 0.21)),
        ((x * 7 + y * 13) % 256),
    ],
    axis=-1,
).astype(np.uint8)
Image.fromarray(rgb, "RGB").save(out / "resize_src.png")

sizes = [(32, 32), (48, 20), (200, 150), (97, 30), (13, 61)]
meta = {"source": "resize_src.png", "pillow": Image.__version__, "cases": []}
src = Image.open(out / "resize_src.png").convert("RGB")
for (tw, th) in sizes:
    r = src.resize((tw, th), Image.BILINEAR)
    name = f"resize_{tw}x{th}.rgb"
    (out / name).write_bytes(np.asarray(r).tobytes())
    meta["cases"].append({"width": tw, "height": th, "file": name})

# Normalised CHW of the 32x32 case (ImageNet mean/std), little-endian f32.
arr = np.asarray(src.resize((32, 32), Image.BILINEAR)).astype(np.float32) / 255.0
mean = np.array([0.485, 0.456, 0.406], dtype=np.float32)
std = np.array([0.229, 0.224, 0.225], dtype=np.float32)
chw = ((arr - mean) / std).transpose(2, 0, 1).astype("<f4")
(out / "normalized_32x32.f32").write_bytes(chw.tobytes())
(out / "resize_cases.json").write_text(json.dumps(meta, indent=1))
print("wrote", out)
