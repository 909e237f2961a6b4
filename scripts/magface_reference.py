#!/usr/bin/python3
"""magface_reference.py - our own PyTorch iResNet, written from ../shared/MAGFACE.md.

It is the yardstick for the C engine: it builds an iResNet with random but realistic
weights (BatchNorm statistics calibrated on face images, so activations have the ranges
of a trained network), saves it in the layouts the official MagFace checkpoints use, and
computes the expected raw features for a few images.

    /usr/bin/python3 scripts/magface_reference.py gen --arch iresnet50 --out DIR
    /usr/bin/python3 scripts/magface_reference.py gen --arch iresnet18 \
        --widths 8,8,16,16 --dim 32 --name tiny --layouts all --out tests/fixtures/model

Writes into DIR:
  <name>.h5       /tensors/<key> (the state_dict, float32; num_batches_tracked int64),
                  /reference/images (N,112,112,3) u8 BGR,
                  /reference/features (N,dim) f32 raw, attr arch
  <name>_<layout>.pth for each layout: dp (zip, 'module.features.'), ddp (zip,
                  'features.module.'), bare (zip, bare state_dict), legacy_dp (legacy
                  format, 'module.features.'), legacy_ddp (legacy, 'features.module.')
Only /usr/bin/python3 has torch (Debian's python3-torch 1.13).
"""
import argparse
import glob
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn as nn

ARCHS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}
EPS = 2e-5  # MagFace uses 2e-5 everywhere (insightface's 1e-5 would be wrong)
LAYOUTS = ("dp", "ddp", "bare", "legacy_dp", "legacy_ddp")


def bn2d(c):
    return nn.BatchNorm2d(c, eps=EPS)


class Block(nn.Module):
    """bn1 -> conv1 3x3 s1 -> bn2 -> prelu -> conv2 3x3 s -> bn3, plus shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = bn2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = bn2d(cout)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = bn2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), bn2d(cout))

    def forward(self, x):
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    def __init__(self, blocks, widths=(64, 128, 256, 512), dim=512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = bn2d(widths[0])
        self.prelu = nn.PReLU(widths[0])
        cin = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            layer = [Block(cin, w, 2)] + [Block(w, w, 1) for _ in range(n - 1)]
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*layer))
            cin = w
        self.bn2 = bn2d(cin)
        self.fc = nn.Linear(cin * 7 * 7, dim)   # flatten order c*49 + h*7 + w
        self.features = nn.BatchNorm1d(dim, eps=EPS)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)   # Dropout2d is the identity at inference
        return self.features(self.fc(x))


def randomise(model, gen):
    """Weights in the ranges a trained iResNet shows (before BN calibration)."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.data = torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5
            if m.bias is not None:
                m.bias.data = torch.randn(m.bias.shape, generator=gen) * 0.05
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            # residual branches end small in trained nets (bn3), elsewhere near 1
            scale = 0.3 if name.endswith("bn3") else 1.0
            c = m.weight.shape[0]
            m.weight.data = scale * (1 + 0.2 * torch.randn(c, generator=gen))
            m.bias.data = 0.1 * torch.randn(c, generator=gen)
        elif isinstance(m, nn.PReLU):
            c = m.weight.shape[0]
            m.weight.data = 0.25 + 0.05 * torch.randn(c, generator=gen)


def face_image(rng):
    """A procedural aligned 'face': skin ellipse, eyes, nose, mouth at the alignment
    template positions, hair, background, noise and blur. BGR u8 112x112x3."""
    import cv2
    img = np.zeros((112, 112, 3), np.float32)
    bg = rng.uniform(20, 230, 3)
    yy, xx = np.mgrid[0:112, 0:112].astype(np.float32)
    img[:] = bg + (yy[..., None] / 112.0) * rng.uniform(-60, 60, 3)
    skin = np.array([rng.uniform(60, 200), rng.uniform(90, 210), rng.uniform(120, 240)])
    cx, cy = 56 + rng.normal(0, 2), 62 + rng.normal(0, 2)
    cv2.ellipse(img, (int(cx), int(cy)), (int(rng.uniform(30, 38)), int(rng.uniform(42, 50))),
                0, 0, 360, skin.tolist(), -1)
    hair = rng.uniform(10, 120, 3)
    cv2.ellipse(img, (int(cx), int(cy - 30)), (40, 22), 0, 180, 360, hair.tolist(), -1)
    for ex, ey in ((38.3, 51.7), (73.5, 51.5)):
        cv2.ellipse(img, (int(ex + rng.normal(0, 1)), int(ey + rng.normal(0, 1))), (6, 3), 0, 0,
                    360, (skin * 0.3).tolist(), -1)
        cv2.circle(img, (int(ex), int(ey)), 2, (20, 20, 20), -1)
    cv2.line(img, (56, 60), (55, 74), (skin * 0.7).tolist(), 2)
    cv2.ellipse(img, (56, 92), (int(rng.uniform(10, 16)), 4), 0, 0, 180,
                (skin * np.array([0.5, 0.5, 0.9])).tolist(), -1)
    img += rng.normal(0, 6, img.shape)
    img = cv2.GaussianBlur(img, (3, 3), 0.8)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def calibration_images(rng, n, shared_dir):
    """Real aligned faces from ../shared/reference/magface-toy when present (read with
    OpenCV, hence BGR), topped up with procedural faces."""
    import cv2
    imgs = []
    for path in sorted(glob.glob(os.path.join(shared_dir, "*.jpg")))[:n]:
        im = cv2.imread(path, cv2.IMREAD_COLOR)
        if im is not None and im.shape == (112, 112, 3):
            imgs.append(im)
    while len(imgs) < n:
        imgs.append(face_image(rng))
    return np.stack(imgs)


def to_input(imgs_u8):
    """(N,112,112,3) BGR u8 -> (N,3,112,112) float32, u8/255.0 (true division)."""
    return torch.from_numpy(imgs_u8).permute(0, 3, 1, 2).float() / 255.0


def calibrate(model, imgs_u8):
    """BatchNorm statistics from one train-mode pass (cumulative average)."""
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(to_input(imgs_u8))
    model.eval()


def save_layouts(model, arch, out, name, layouts):
    sd = model.state_dict()
    for lay in layouts:
        legacy = lay.startswith("legacy_")
        kind = lay[len("legacy_"):] if legacy else lay
        if kind == "bare":
            obj = sd
        else:
            pre = "module.features." if kind == "dp" else "features.module."
            state = {pre + k: v for k, v in sd.items()}
            # the margin head's weight sits next to the backbone in real files
            head = "module.fc.weight" if kind == "dp" else "parallel_fc.weight"
            state[head] = torch.zeros(4, 8)
            obj = {"epoch": 25, "arch": arch, "state_dict": state,
                   "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}
        path = os.path.join(out, "%s_%s.pth" % (name, lay))
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


def save_h5(model, arch, imgs, feats, path):
    with h5py.File(path + ".tmp", "w") as f:
        f.attrs["arch"] = arch
        g = f.create_group("tensors")
        for k, v in model.state_dict().items():
            g.create_dataset(k, data=v.numpy())
        r = f.create_group("reference")
        r.create_dataset("images", data=imgs)
        r.create_dataset("features", data=feats)
    os.replace(path + ".tmp", path)


def cmd_gen(a):
    torch.set_num_threads(a.threads)
    gen = torch.Generator().manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    widths = tuple(int(w) for w in a.widths.split(","))
    model = IResNet(ARCHS[a.arch], widths, a.dim)
    randomise(model, gen)
    shared = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                          "reference", "magface-toy")
    calibrate(model, calibration_images(rng, a.calib, a.shared or shared))
    imgs = np.stack([face_image(rng) for _ in range(a.images)])
    with torch.no_grad():
        feats = model(to_input(imgs)).numpy().astype(np.float32)
    os.makedirs(a.out, exist_ok=True)
    save_h5(model, a.arch, imgs, feats, os.path.join(a.out, a.name + ".h5"))
    layouts = LAYOUTS if a.layouts == "all" else [s for s in a.layouts.split(",") if s]
    save_layouts(model, a.arch, a.out, a.name, layouts)
    mags = np.linalg.norm(feats, axis=1)
    print("%s: %s widths=%s dim=%d magnitudes %s" % (a.name, a.arch, widths, a.dim,
          " ".join("%.2f" % m for m in mags)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen", help="random calibrated model, checkpoints, expected features")
    g.add_argument("--arch", choices=sorted(ARCHS), required=True)
    g.add_argument("--widths", default="64,128,256,512")
    g.add_argument("--dim", type=int, default=512)
    g.add_argument("--name", default=None)
    g.add_argument("--out", required=True)
    g.add_argument("--images", type=int, default=4)
    g.add_argument("--calib", type=int, default=16, help="calibration batch size")
    g.add_argument("--layouts", default="dp", help="comma list of %s, or all" % ",".join(LAYOUTS))
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--shared", default=None, help="directory of aligned face JPEGs")
    a = p.parse_args()
    a.name = a.name or a.arch
    cmd_gen(a)


if __name__ == "__main__":
    sys.exit(main())
