#!/usr/bin/python3
"""bench_precision.py - mfkit's fp32/bf16/int8 paths against their anchors, and the
fidelity gates of the lower precisions, side by side in one run.

    /usr/bin/python3 bench/bench_precision.py [--build build] [--archs iresnet18,iresnet50,iresnet100]
        [--threads 2] [--batch 16] [--seconds 20] [--rounds 2] [--faces 1166] [--calib 212]
        [--precisions int8,bf16] [--no-speed] [--no-gates]
        [--anchors torch,torch-int8,torch-bf16,ort]

Speed, per architecture, the same weights (scripts/magface_reference.py, BatchNorm
calibrated on faces; <build>/model-ref) at the same batch and thread count, each in its
own process, rounds alternating so that load from other processes hits all alike; the
best round of each is kept:
  mfkit fp32 / bf16 / int8     mf-convert --bench --precision P (int8: calibrated model)
  torch fp32                   PyTorch frozen (torch.jit.freeze + optimize_for_inference)
  torch int8                   PyTorch post-training static quantisation of the same
                               network (FX graph mode; fbgemm where the build has it, else
                               onednn), calibrated on the same faces as ours
  torch bf16                   torch.autocast("cpu", torch.bfloat16) on the frozen model
  ort fp32                     ONNX Runtime (npm onnxruntime-node, installed here into
                               <build>/bench-cache/onnxruntime with --ignore-scripts),
                               model exported with torch.onnx (opset 13), graph
                               optimisation "all", intra-op threads = --threads
Ratios are to mfkit fp32 (and fp32's to the anchors). Also the images per CPU-second x
threads, steadier on a shared machine.

Gates, per architecture: >= --faces aligned faces (the sample faces of
../shared/reference/magface-toy and data/faces, and varied copies: mirrored, shifted,
rotated a little, other exposure, contrast, blur and noise; written as JPEG files), the
int8 model calibrated on --calib other variants of the same faces; mf-embed runs each
precision over the JPEG files and the stores are compared with the fp32 store:
per-face cosine and magnitude relative error (min/mean, max/mean), magnitude Spearman
rank correlation, agreement of the rows kept by a 10% lowest-magnitude cut, and of the
10 nearest neighbours. End to end: mf-embed's images/s (read, decode, network, store)
against the network alone (mf-convert --bench, run right after at the same precision),
and the same per CPU-second (the decoding thread's CPU counts against end to end).
"""
import argparse
import glob
import json
import os
import re
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import bench_net  # noqa: E402  (ensure_model, cpu_name)

GATES = {"int8": (0.995, 1e-2), "bf16": (0.999, 2e-3)}  # min cosine, max magnitude error
ORT_VERSION = "1.30.0"


def log(*a):
    print(*a, file=sys.stderr)
    sys.stderr.flush()


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


# ---- faces ---------------------------------------------------------------------------

def base_faces():
    import cv2
    paths = sorted(glob.glob(os.path.join(ROOT, "..", "shared", "reference", "magface-toy",
                                          "*.jpg")))
    paths += sorted(glob.glob(os.path.join(ROOT, "data", "faces", "*", "*.jpg")))
    faces = [cv2.imread(p, cv2.IMREAD_COLOR) for p in paths]
    return [f for f in faces if f is not None and f.shape == (112, 112, 3)]


def variant(img, rng):
    """A face as datasets vary: mirrored, shifted/rotated/scaled a little, another exposure
    and contrast, sometimes blurred, some sensor noise."""
    import cv2
    im = img.astype(np.float32)
    if rng.random() < 0.5:
        im = im[:, ::-1]
    dx, dy = rng.integers(-3, 4, 2)
    rot = cv2.getRotationMatrix2D((56, 56), rng.uniform(-6, 6), rng.uniform(0.95, 1.05))
    rot[:, 2] += (dx, dy)
    im = cv2.warpAffine(np.ascontiguousarray(im), rot, (112, 112), borderMode=cv2.BORDER_REFLECT)
    im = im * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
    if rng.random() < 0.3:
        im = cv2.GaussianBlur(im, (5, 5), rng.uniform(0.5, 1.5))
    im = im + rng.normal(0, rng.uniform(0, 6), im.shape)
    return np.clip(np.rint(im), 0, 255).astype(np.uint8)


def write_faces(d, want, calib):
    """<d>/eval/*.jpg (the sample faces, then variants up to `want`) and <d>/calib/*.jpg
    (`calib` other variants), with list files; reused when present."""
    import cv2
    lists = os.path.join(d, "eval.list"), os.path.join(d, "calib.list")
    meta = os.path.join(d, "faces.json")
    if os.path.exists(meta) and json.load(open(meta)) == [want, calib]:
        return lists
    base = base_faces()
    if not base:
        sys.exit("no sample faces found (data/faces)")
    for sub, n, seed, originals in (("eval", want, 0, True), ("calib", calib, 7, False)):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        rng = np.random.default_rng(seed)
        names = []
        for i in range(n):
            img = base[i] if originals and i < len(base) else variant(base[i % len(base)], rng)
            name = os.path.join(d, sub, "%05d.jpg" % i)
            cv2.imwrite(name, img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            names.append(name)
        with open(lists[0] if sub == "eval" else lists[1], "w") as f:
            f.write("\n".join(names) + "\n")
    json.dump([want, calib], open(meta, "w"))
    return lists


# ---- gates -----------------------------------------------------------------------------

def read_store(path):
    import h5py
    with h5py.File(path, "r") as f:
        ids = [x.decode() if isinstance(x, bytes) else x for x in f["id"][:]]
        emb = f["embedding"][:].astype(np.float64)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    order = np.argsort(ids)
    return np.array(ids)[order], emb[order], attrs


def ranks(v):
    r = np.empty(len(v))
    r[np.argsort(v, kind="stable")] = np.arange(len(v))
    return r


def knn(unit, k=10):
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :k]


def gates(got, ref):
    mg, mr = np.linalg.norm(got, axis=1), np.linalg.norm(ref, axis=1)
    cos = (got * ref).sum(1) / (mg * mr)
    rel = np.abs(mg - mr) / mr
    rg, rr = ranks(mg), ranks(mr)
    n = len(mg)
    rho = 1 - 6 * ((rg - rr) ** 2).sum() / (n * (n * n - 1.0))
    cut = n // 10
    agree = np.mean((rg >= cut) == (rr >= cut))
    kg, kr = knn(got / mg[:, None]), knn(ref / mr[:, None])
    nn = np.mean([len(set(a) & set(b)) / 10.0 for a, b in zip(kg, kr)])
    return dict(n=n, min_cos=cos.min(), mean_cos=cos.mean(), max_rel=rel.max(),
                mean_rel=rel.mean(), bias=np.mean((mg - mr) / mr), spearman=rho,
                cut=agree, knn=nn)


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def embed(a, model, listfile, prec, out):
    """mf-embed over the JPEG files: images/s end to end (mf-embed's own figure, model
    loading excluded) and per CPU-second x threads (model loading included)."""
    if os.path.exists(out):
        os.unlink(out)
    c0 = child_cpu()
    proc = subprocess.run([os.path.join(a.build, "bin", "mf-embed"), "-m", model, "-o", out,
                           "--list", listfile, "--precision", prec, "-j", str(a.threads),
                           "--batch", str(a.batch)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    m = re.search(r"embedded (\d+) images.* ([\d.]+) img/s end to end", proc.stderr)
    n, e2e = int(m.group(1)), float(m.group(2))
    return e2e, n / (child_cpu() - c0) * a.threads


# ---- speed -----------------------------------------------------------------------------

def mfkit_speed(a, model, prec):
    r = bench_net.mfkit_bench(a.build, model, a.threads, a.batch, a.seconds, prec)
    return r["img_per_s"], r["img_per_cpu_s_x_threads"], int(r["peak_rss_mb"]), r["kernels"]


def torch_speed(a, arch, kind, calib_list):
    out = run(["/usr/bin/python3", os.path.abspath(__file__), "--worker", kind, "--arch", arch,
               "--threads", str(a.threads), "--batch", str(a.batch), "--seconds",
               str(a.seconds), "--build", a.build, "--calib-list", calib_list])
    m = re.search(r"speed ([\d.]+) cpu ([\d.]+) rss (\d+) note (.*)", out)
    return float(m.group(1)), float(m.group(2)), int(m.group(3)), m.group(4).strip()


def ensure_ort(a):
    d = os.path.join(a.build, "bench-cache", "onnxruntime")
    mod = os.path.join(d, "node_modules", "onnxruntime-node")
    if not os.path.exists(mod):
        os.makedirs(d, exist_ok=True)
        log("installing onnxruntime-node %s into %s ..." % (ORT_VERSION, d))
        run(["npm", "install", "--prefix", d, "--ignore-scripts", "--no-audit", "--no-fund",
             "onnxruntime-node@" + ORT_VERSION])
    return mod


def ort_speed(a, arch):
    mod = ensure_ort(a)
    onnx = os.path.join(a.build, "model-ref", "%s_b%d.onnx" % (arch, a.batch))
    if not os.path.exists(onnx):
        run(["/usr/bin/python3", os.path.abspath(__file__), "--worker", "export-onnx", "--arch",
             arch, "--batch", str(a.batch), "--build", a.build])
    out = run(["node", os.path.join(HERE, "ort_bench.js"), mod, onnx, str(a.threads),
               str(a.batch), str(a.seconds)])
    m = re.search(r"speed ([\d.]+) cpu ([\d.]+) rss (\d+)", out)
    return float(m.group(1)), float(m.group(2)), int(m.group(3)), "onnxruntime-node " + ORT_VERSION


# ---- PyTorch workers (child processes) ---------------------------------------------------

def reference_model(a):
    import torch
    import magface_reference as ref
    d = os.path.join(a.build, "model-ref")
    pth = sorted(glob.glob(os.path.join(d, a.arch + "_*.pth")))[0]
    sd = torch.load(pth, map_location="cpu")
    sd = sd.get("state_dict", sd)
    for pre in ("module.features.", "features.module."):
        if any(k.startswith(pre) for k in sd):
            sd = {k[len(pre):]: v for k, v in sd.items() if k.startswith(pre)}
    model = ref.IResNet(ref.ARCHS[a.arch]).eval()
    model.load_state_dict(sd)
    return model


def load_list_faces(path, n):
    import cv2
    import torch
    import magface_reference as ref
    names = [l.strip() for l in open(path) if l.strip()][:n]
    imgs = np.stack([cv2.imread(p, cv2.IMREAD_COLOR) for p in names])
    return ref.to_input(imgs)


def timed(fn, x, seconds, warm=2, least=3):
    for _ in range(warm):
        fn(x)
    t0, c0, n = time.perf_counter(), time.process_time(), 0
    while True:
        fn(x)
        n += 1
        t = time.perf_counter() - t0
        if t >= seconds and n >= least:
            break
    return n * x.shape[0] / t, n * x.shape[0] / (time.process_time() - c0)


def worker(a):
    import torch
    torch.set_num_threads(a.threads)
    if a.worker == "export-onnx":
        model = reference_model(a)
        out = os.path.join(a.build, "model-ref", "%s_b%d.onnx" % (a.arch, a.batch))
        torch.onnx.export(model, torch.rand(a.batch, 3, 112, 112), out + ".tmp",
                          opset_version=13, input_names=["x"], output_names=["y"])
        os.replace(out + ".tmp", out)
        return
    model = reference_model(a)
    x = torch.rand(a.batch, 3, 112, 112)
    note = ""
    warm, least = 2, 3
    with torch.no_grad():
        if a.worker == "torch":
            fn = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
            note = "jit.freeze + optimize_for_inference"
        elif a.worker == "torch-bf16":  # the frozen graph refuses autocast: eager
            def fn(v):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return model(v)
            warm, least = 1, 1  # without AVX512_BF16 a batch can take minutes
            note = "eager, autocast bfloat16"
        else:  # torch-int8: post-training static quantisation, FX graph mode
            from torch.ao.quantization import get_default_qconfig_mapping
            from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
            engines = torch.backends.quantized.supported_engines
            engine = next(e for e in ("fbgemm", "x86", "onednn", "qnnpack") if e in engines)
            torch.backends.quantized.engine = engine
            prepared = prepare_fx(model, get_default_qconfig_mapping(engine), (x,))
            calib = load_list_faces(a.calib_list, 256)
            for i in range(0, len(calib), a.batch):
                prepared(calib[i:i + a.batch])
            fn = torch.jit.freeze(torch.jit.trace(convert_fx(prepared), x))
            note = "FX post-training static, %s engine (available: %s)" % (
                engine, ",".join(engines))
        speed, cpu = timed(fn, x, a.seconds, warm, least)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("speed %.3f cpu %.3f rss %.0f note %s" % (speed, cpu * a.threads, rss, note))


# ---- main --------------------------------------------------------------------------------

def calibrated(a, arch, native, calib_list):
    out = native.replace(".mfmodel", ".int8.mfmodel")
    if not os.path.exists(out):
        run([os.path.join(a.build, "bin", "mf-convert"), "-q", native, "--calibrate",
             calib_list, "-o", out])
    return out


def speed_table(a, arch, models, calib_list):
    entries = ["mfkit fp32", "mfkit bf16", "mfkit int8"] + ["%s" % x for x in a.anchors]
    best = {}
    for r in range(a.rounds):
        for e in entries:
            try:
                if e.startswith("mfkit"):
                    prec = e.split()[1]
                    res = mfkit_speed(a, models[prec], prec)
                elif e == "ort":
                    res = ort_speed(a, arch)
                else:
                    res = torch_speed(a, arch, e, calib_list)
            except (subprocess.CalledProcessError, RuntimeError, AttributeError) as ex:
                msg = getattr(ex, "stderr", "") or str(ex)
                log("%s %s: did not run: %s" % (arch, e, msg.strip().splitlines()[-1:]))
                best.setdefault(e, None)
                continue
            if best.get(e) is None or res[0] > best[e][0]:
                best[e] = res
            log("%s round %d %-12s %7.2f img/s (%.2f per busy cores)" % (arch, r + 1, e,
                                                                          res[0], res[1]))
    base = best.get("mfkit fp32")
    print("\n%s, batch %d, %d threads (best of %d rounds; ratio = mfkit fp32 / it, or it / "
          "mfkit fp32 for mfkit rows)" % (arch, a.batch, a.threads, a.rounds))
    print("  %-12s %9s %8s %14s %8s %8s  %s" % ("path", "img/s", "ratio", "img/CPU-s x T",
                                               "ratio", "RSS MB", "what"))
    for e in entries:
        r = best.get(e)
        if r is None:
            print("  %-12s %9s %8s %14s %8s %8s  %s" % (e, "-", "-", "-", "-", "-", "did not run"))
            continue
        own = e.startswith("mfkit")
        ratio = r[0] / base[0] if own else base[0] / r[0]
        cratio = r[1] / base[1] if own else base[1] / r[1]
        print("  %-12s %9.2f %7.2fx %14.2f %7.2fx %8d  %s" % (e, r[0], ratio, r[1], cratio,
                                                              r[2], r[3]))
    sys.stdout.flush()
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    bench_net.common_args(p)
    p.add_argument("--faces", type=int, default=1166)
    p.add_argument("--calib", type=int, default=212)
    p.add_argument("--precisions", default="int8,bf16", help="lower precisions for the gates")
    p.add_argument("--anchors", default="torch,torch-int8,torch-bf16,ort")
    p.add_argument("--no-speed", dest="speed", action="store_false")
    p.add_argument("--no-gates", dest="gates", action="store_false")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--arch", help=argparse.SUPPRESS)
    p.add_argument("--calib-list", help=argparse.SUPPRESS)
    a = p.parse_args()
    a.build = os.path.abspath(a.build)
    if a.worker:
        return worker(a)
    a.anchors = [x for x in a.anchors.split(",") if x]
    info = run([os.path.join(a.build, "bin", "mf-convert"), "--info",
                os.path.join(ROOT, "tests", "fixtures", "model", "tiny.h5")])
    print("machine: %s, %d cpus, load average %.2f, %s" % (
        bench_net.cpu_name(), os.cpu_count(), os.getloadavg()[0], time.strftime("%Y-%m-%d")))
    for line in info.splitlines():
        if line.startswith(("cpu:", "fp32 kernel", "int8 kernel", "bf16 kernel")):
            print("  " + line)
    d = os.path.join(a.build, "bench-cache", "precision-faces")
    eval_list, calib_list = write_faces(d, a.faces, a.calib)
    for arch in a.archs.split(","):
        native = bench_net.ensure_model(a.build, arch)
        models = {"fp32": native, "bf16": native,
                  "int8": calibrated(a, arch, native, calib_list)}
        if a.speed:
            best = speed_table(a, arch, models, calib_list)
        if not a.gates:
            continue
        print("\n%s gates on %d faces (int8 calibrated on %d others; mf-embed on JPEG files)" %
              (arch, a.faces, a.calib))
        print("  %-5s %9s %9s %9s %9s %9s %9s %8s %8s   %s" % (
            "path", "cos min", "cos mean", "|dm| max", "|dm| mean", "dm bias", "Spearman",
            "cut10%", "10-NN", "end to end vs network alone"))
        stores = {}
        for prec in ["fp32"] + [x for x in a.precisions.split(",") if x]:
            out = os.path.join(d, "%s.%s.h5" % (arch, prec))
            e2e, e2e_cpu = embed(a, models[prec], eval_list, prec, out)
            alone, alone_cpu = mfkit_speed(a, models[prec], prec)[:2]  # right after
            vs = "%.2f img/s end to end = %.2fx the network alone (per CPU-s: %.2fx)" % (
                e2e, e2e / alone, e2e_cpu / alone_cpu)
            stores[prec] = read_store(out)
            if prec == "fp32":
                print("  %-5s %s  [%s]" % (prec, " " * 88, vs))
                continue
            ids, emb, attrs = stores[prec]
            assert list(ids) == list(stores["fp32"][0]) and attrs.get("precision") == prec
            g = gates(emb, stores["fp32"][1])
            cos_gate, mag_gate = GATES[prec]
            ok = (g["min_cos"] >= cos_gate and g["max_rel"] <= mag_gate and
                  g["spearman"] >= 0.998 and g["cut"] >= 0.99 and g["knn"] >= 0.95)
            print("  %-5s %9.5f %9.5f %9.2e %9.2e %+9.1e %9.5f %8.4f %8.4f   %s  [%s]" % (
                prec, g["min_cos"], g["mean_cos"], g["max_rel"], g["mean_rel"], g["bias"],
                g["spearman"], g["cut"], g["knn"], "PASS" if ok else "FAIL", vs))
            sys.stdout.flush()
    print("\ngates: int8 cosine >= 0.995 and |dm| <= 1e-2, bf16 cosine >= 0.999 and |dm| <= "
          "2e-3 on every face; Spearman >= 0.998; cut agreement >= 0.99; 10-NN >= 0.95")


if __name__ == "__main__":
    sys.exit(main())
