#!/usr/bin/python3
"""Generate the bundled sample faces: procedurally drawn, face-like aligned 112x112 JPEGs.

data/faces/<identity>/<n>.jpg   12 identities x 8 images, aligned to the MagFace template
data/faces_raw/<identity>/<n>.jpg  a few unaligned versions (larger, rotated, shifted)
data/faces.list                 those raw images with their 5 landmarks (path label x1 y1 ... x5 y5)

Identities differ in face shape, skin/hair/eye colour and feature geometry; samples of one
identity differ in pose jitter, lighting, blur and noise. A few samples are deliberately
poor (heavy blur, tiny contrast, occlusion) and a few are not faces at all, so quality
filtering has something to find. Deterministic: fixed seed, so re-running reproduces
the committed files (given the same OpenCV/libjpeg).

Usage: /usr/bin/python3 scripts/make_sample_faces.py [out_root]   (default: repo's data/)
"""
import os
import sys

import cv2
import numpy as np

TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
N_IDS, N_PER_ID, SIZE, SS = 12, 8, 112, 4   # SS: supersampling factor for smooth edges


def identity_params(rng):
    return dict(
        skin=rng.uniform([60, 90, 140], [140, 170, 230]),       # BGR
        hair=rng.uniform([10, 10, 10], [90, 110, 140]),
        iris=rng.uniform([30, 30, 20], [160, 140, 90]),
        face_w=rng.uniform(34, 44), face_h=rng.uniform(46, 56),
        eye_w=rng.uniform(5, 8), eye_h=rng.uniform(2.2, 3.6),
        brow=rng.uniform(6, 10), nose=rng.uniform(6, 12),
        mouth_w=rng.uniform(0.8, 1.2), lip=rng.uniform([60, 60, 120], [110, 110, 200]),
        hair_line=rng.uniform(22, 34),
    )


def draw_face(p, rng, lm):
    """Draw at SS x resolution around landmarks lm (5x2, in 112-pixel units)."""
    s = SS
    bg = rng.uniform(40, 220, 3)
    img = np.empty((SIZE * s, SIZE * s, 3), np.float32)
    img[:] = bg
    P = lambda x, y: (int(round(x * s)), int(round(y * s)))
    eyes_c = (lm[0] + lm[1]) / 2
    cx, cy = eyes_c[0], eyes_c[1] + 14
    angle = np.degrees(np.arctan2(lm[1][1] - lm[0][1], lm[1][0] - lm[0][0]))
    cv2.ellipse(img, P(cx, cy - 8), P(p["face_w"] + 4, p["face_h"] + 6), angle, 180, 360, p["hair"].tolist(), -1)
    cv2.ellipse(img, P(cx, cy), P(p["face_w"], p["face_h"]), angle, 0, 360, p["skin"].tolist(), -1)
    cv2.ellipse(img, P(cx, cy - p["face_h"] + p["hair_line"] / 3), P(p["face_w"] * 0.95, p["hair_line"] / 2),
                angle, 180, 360, p["hair"].tolist(), -1)
    for e in lm[:2]:
        cv2.ellipse(img, P(*e), P(p["eye_w"], p["eye_h"]), angle, 0, 360, (245, 245, 245), -1)
        cv2.circle(img, P(*e), int(p["eye_h"] * s * 0.9), p["iris"].tolist(), -1)
        cv2.circle(img, P(*e), int(p["eye_h"] * s * 0.4), (15, 15, 15), -1)
        cv2.ellipse(img, P(e[0], e[1] - p["brow"]), P(p["eye_w"] + 2, 2), angle, 180, 360, p["hair"].tolist(), 2 * s)
    shade = (p["skin"] * 0.7).tolist()
    cv2.line(img, P(lm[2][0] - 1, lm[2][1] - p["nose"]), P(*lm[2]), shade, 2 * s)
    cv2.ellipse(img, P(*lm[2]), P(4, 2), angle, 0, 180, shade, 2 * s)
    mc = (lm[3] + lm[4]) / 2
    half = np.linalg.norm(lm[4] - lm[3]) / 2 * p["mouth_w"]
    cv2.ellipse(img, P(*mc), P(half, 3), angle, 0, 180, p["lip"].tolist(), -1)
    cv2.ellipse(img, P(*mc), P(half, 1.5), angle, 180, 360, (p["lip"] * 0.8).tolist(), -1)
    return cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def degrade(img, rng, kind):
    """Per-sample variation; kind selects a deliberately poor sample."""
    gain, bias = rng.uniform(0.75, 1.2), rng.uniform(-25, 25)
    img = img * gain + bias
    grad = np.linspace(rng.uniform(-20, 0), rng.uniform(0, 20), SIZE, dtype=np.float32)
    img += grad[None, :, None] if rng.random() < 0.5 else grad[:, None, None]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0))
    if kind == "blur":
        img = cv2.GaussianBlur(img, (0, 0), 6.0)
    elif kind == "contrast":
        img = img.mean() + (img - img.mean()) * 0.08
    elif kind == "occluded":
        x, y = int(rng.uniform(10, 50)), int(rng.uniform(30, 60))
        cv2.rectangle(img, (x, y), (x + 60, y + 45), rng.uniform(0, 80, 3).tolist(), -1)
    img += rng.normal(0, rng.uniform(1, 5), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def non_face(rng):
    """Texture or gradient: something a face detector might hand over by mistake."""
    small = rng.uniform(0, 255, (8, 8, 3)).astype(np.float32)
    img = cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 8, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def umeyama(src, dst):
    """Least-squares similarity (Umeyama 1991) as a 2x3 matrix."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.ones(2)
    if np.linalg.det(cov) < 0:
        e[1] = -1
    r = u @ np.diag(e) @ vt
    scale = (sig * e).sum() / s.var(0).sum()
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]])


def unaligned(face, rng):
    """Place an aligned face into a larger rotated frame; return image and landmarks."""
    size = 200
    ang, sc = rng.uniform(-25, 25), rng.uniform(1.1, 1.5)
    c = np.array([56.0, 56.0])
    m = cv2.getRotationMatrix2D((56.0, 56.0), ang, sc)
    m[:, 2] += np.array([size / 2, size / 2]) - c + rng.uniform(-15, 15, 2)
    canvas = cv2.warpAffine(face, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    lm = np.hstack([TEMPLATE, np.ones((5, 1))]) @ m.T
    return canvas, lm


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data")
    rng = np.random.default_rng(20261127)
    list_lines = []
    for i in range(N_IDS):
        name = "id%02d" % i
        p = identity_params(rng)
        os.makedirs(os.path.join(root, "faces", name), exist_ok=True)
        for n in range(N_PER_ID):
            kind = {(3, 7): "blur", (5, 6): "contrast", (8, 5): "occluded", (10, 7): "nonface",
                    (1, 6): "nonface"}.get((i, n), "ok")
            if kind == "nonface":
                img = non_face(rng)
            else:
                lm = TEMPLATE + rng.normal(0, 1.2, TEMPLATE.shape)
                img = degrade(draw_face(p, rng, lm), rng, kind)
            path = os.path.join(root, "faces", name, "%d.jpg" % n)
            cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if n == 0 and i < 6 and kind == "ok":
                raw, lmr = unaligned(img, rng)
                rel = os.path.join("faces_raw", name, "%d.jpg" % n)
                os.makedirs(os.path.join(root, "faces_raw", name), exist_ok=True)
                cv2.imwrite(os.path.join(root, rel), raw, [cv2.IMWRITE_JPEG_QUALITY, 90])
                list_lines.append("%s %d %s" % (rel, i, " ".join("%.2f" % v for v in lmr.ravel())))
    with open(os.path.join(root, "faces.list"), "w") as f:
        f.write("# path label x1 y1 ... x5 y5 (left eye, right eye, nose, left/right mouth corner)\n")
        f.write("\n".join(list_lines) + "\n")


if __name__ == "__main__":
    main()
