#!/usr/bin/python3
"""bench_net.py - mfkit's iResNet against PyTorch, side by side in one run.

    /usr/bin/python3 bench/bench_net.py [--build build] [--archs iresnet18,iresnet50,iresnet100]
                                        [--threads 2] [--batch 16] [--seconds 20] [--rounds 2]

For each architecture: the same weights (scripts/magface_reference.py, cached in
<build>/model-ref) are run by `mf-convert --bench` on the native model file and by
PyTorch 1.13 frozen with torch.jit.freeze + optimize_for_inference, both at the same
batch size and thread count, each in its own process (so peak RSS is its own). The
rounds alternate ours / PyTorch so that load from other processes on a shared machine
hits both alike; the best round of each is reported (the least disturbed one). The
last columns divide by CPU time instead of wall time (x threads): what each achieves
while it actually holds the cores, a steadier figure when the machine is shared.
GFLOP/s counts direct-convolution FLOPs (2 x MACs), as PyTorch's would be counted.
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SGEMM_PEAK = 151.0  # OpenBLAS sgemm, 2 threads, measured (../shared/FORMATS.md)


def torch_worker(a):
    """Run in a child process: time the frozen PyTorch model, print img/s and RSS."""
    import torch
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import magface_reference as ref
    torch.set_num_threads(a.threads)
    model = ref.IResNet(ref.ARCHS[a.arch]).eval()
    x = torch.rand(a.batch, 3, 112, 112)
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
        frozen(x), frozen(x)  # warm-up (the first calls optimise the graph)
        t0, c0, batches = time.perf_counter(), time.process_time(), 0
        while True:
            frozen(x)
            batches += 1
            t = time.perf_counter() - t0
            if t >= a.seconds and batches >= 3:
                break
    cpu = time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("torch %.3f img/s cpu %.3f rss %.0f MB" % (batches * a.batch / t,
                                                     batches * a.batch / cpu * a.threads, rss))


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out.stdout


def common_args(p):
    """The options every network benchmark here takes."""
    p.add_argument("--build", default=os.path.join(ROOT, "build"))
    p.add_argument("--archs", default="iresnet18,iresnet50,iresnet100")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--rounds", type=int, default=2)


def mfkit_bench(build, model, threads, batch, seconds, precision="fp32"):
    """`mf-convert --bench --json`: img_per_s, gflops, img_per_cpu_s_x_threads,
    peak_rss_mb, kernels."""
    return json.loads(run([os.path.join(build, "bin", "mf-convert"), "--bench", "--json",
                           "-j", str(threads), "--batch", str(batch), "--seconds",
                           str(seconds), "--precision", precision, model]))


def ensure_model(build, arch):
    """A native model of `arch` converted from a checkpoint in the official layout (the
    unit tests' generated ones in <build>/model-ref when present)."""
    d = os.path.join(build, "model-ref")
    native = os.path.join(d, arch + ".mfmodel")
    if os.path.exists(native):
        return native
    pth = sorted(glob.glob(os.path.join(d, arch + "_*.pth")))
    if not pth:
        run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "magface_reference.py"), "gen",
             "--arch", arch, "--images", "3", "--no-tensors", "--layouts", "dp", "--out", d])
        pth = [os.path.join(d, arch + "_dp.pth")]
    run([os.path.join(build, "bin", "mf-convert"), "-q", pth[0], "-o", native])
    return native


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(p)
    p.add_argument("--torch-worker", metavar="ARCH", dest="arch")
    a = p.parse_args()
    if a.arch:
        return torch_worker(a)
    print("machine: %s, %d cpus, load average %.2f" % (cpu_name(), os.cpu_count(),
                                                       os.getloadavg()[0]))
    print("%-11s %10s %10s %6s %9s %8s %9s %9s   %s" % ("arch", "mfkit", "pytorch", "ratio",
          "GFLOP/s", "of sgemm", "RSS mfkit", "RSS torch",
          "img per CPU-s x threads: mfkit pytorch ratio"))
    for arch in a.archs.split(","):
        model = ensure_model(a.build, arch)
        ours, theirs = [], []
        for _ in range(a.rounds):
            r = mfkit_bench(a.build, model, a.threads, a.batch, a.seconds)
            ours.append((r["img_per_s"], r["gflops"], int(r["peak_rss_mb"]),
                         r["img_per_cpu_s_x_threads"]))
            out = run(["/usr/bin/python3", os.path.abspath(__file__), "--torch-worker", arch,
                       "--threads", str(a.threads), "--batch", str(a.batch), "--seconds",
                       str(a.seconds)])
            m = re.search(r"torch ([\d.]+) img/s cpu ([\d.]+) rss (\d+) MB", out)
            theirs.append((float(m.group(1)), int(m.group(3)), float(m.group(2))))
        o, t = max(ours), max(theirs)
        oc, tc = max(x[3] for x in ours), max(x[2] for x in theirs)
        print("%-11s %10.2f %10.2f %5.2fx %9.1f %7.0f%% %6d MB %6d MB   %6.2f %6.2f %5.2fx" % (
            arch, o[0], t[0], o[0] / t[0], o[1], 100 * o[1] / SGEMM_PEAK, o[2], t[1],
            oc, tc, oc / tc))
        sys.stdout.flush()


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown cpu"


if __name__ == "__main__":
    sys.exit(main())
