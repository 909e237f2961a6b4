#!/usr/bin/python3
"""Write small PyTorch checkpoints (and broken ones) for tests/unit/test_checkpoint.c.

    /usr/bin/python3 scripts/make_checkpoint_fixtures.py tests/fixtures/checkpoint
    /usr/bin/python3 scripts/make_checkpoint_fixtures.py --random SEED OUTDIR

The first form writes the committed fixtures plus expected.txt; the second writes
fresh random zip and legacy checkpoints (the unit test runs it when torch is present)
with their own expected.txt. Needs Debian's python3-torch (run with /usr/bin/python3).

expected.txt, one record per line, fields separated by single spaces:
    F <file> <format> <prefix|-> <arch|-> <count> <dropped>   a checkpoint that loads
    T <name> <is_int> <ndim> <dims...> <numel> <sum> <hex...>  its tensors, in file order:
        every value as the float32 bits the reader must produce (torch's .float()),
        sum = float64 sum of those values in row-major order (printed with %.17g)
    E <file> <text>                                           must fail; message has text
The malicious files are built from hand-written pickle bytes; nothing is executed.
"""
import collections
import io
import os
import pickle
import struct
import sys
import zipfile

import torch

ARCH_KEYS = ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
             "bn1.running_var", "bn1.num_batches_tracked", "prelu.weight",
             "fc.weight", "fc.bias", "features.weight", "features.bias",
             "features.running_mean", "features.running_var",
             "features.num_batches_tracked"]


def backbone(g):
    """A tiny state_dict with iResNet's key names (head included: fc and features)."""
    shapes = {"conv1.weight": (4, 3, 3, 3), "prelu.weight": (4,), "fc.weight": (8, 16),
              "fc.bias": (8,)}
    sd = collections.OrderedDict()
    for k in ARCH_KEYS:
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1000 + len(sd), dtype=torch.int64)
        else:
            n = 8 if k.startswith("features") else 4
            sd[k] = torch.randn(shapes.get(k, (n,)), generator=g)
    return sd


def odd_tensors(g):
    """Dtypes, a transposed view, two views sharing one storage, a Parameter."""
    sd = collections.OrderedDict()
    sd["half"] = torch.randn(3, 5, generator=g).half()
    sd["double"] = torch.randn(2, 3, generator=g).double()
    sd["bfloat"] = torch.randn(6, generator=g).bfloat16()
    sd["transposed"] = torch.randn(4, 6, generator=g).t()
    base = torch.randn(40, generator=g)
    sd["shared_a"] = base[3:15].view(3, 4)
    sd["shared_b"] = base[20:40].view(5, 2, 2)[:, 1, :]      # offset + strides
    sd["int32"] = torch.arange(-3, 3, dtype=torch.int32)
    sd["uint8"] = torch.arange(250, 256, dtype=torch.uint8)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    return sd


def f32_hex(values):
    return ["%08x" % struct.unpack("<I", struct.pack("<f", v))[0] for v in values]


def expect_tensor(out, name, t):
    t = t.detach()
    is_int = 0 if t.is_floating_point() else 1
    vals = t.float().contiguous().flatten().tolist()
    total = 0.0
    for v in vals:
        total += v
    dims = [str(d) for d in t.shape]
    out.append(" ".join(["T", name, str(is_int), str(t.dim())] + dims +
                        [str(t.numel()), "%.17g" % total] + f32_hex(vals)))


def expect_file(out, fname, fmt, prefix, arch, kept, dropped):
    out.append("F %s %s %s %s %d %d" % (fname, fmt, prefix or "-", arch or "-", len(kept),
                                         dropped))
    for name, t in kept.items():
        expect_tensor(out, name, t)


def save(obj, path, legacy):
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


def prefixed(sd, prefix):
    return collections.OrderedDict((prefix + k, v) for k, v in sd.items())


def good_fixtures(d, out, g):
    bb = backbone(g)
    classifier = torch.randn(10, 8, generator=g)
    for fmt in ("zip", "legacy"):
        legacy = fmt == "legacy"
        # DataParallel trainer: module.features.<key>, classifier module.fc.weight.
        sd = prefixed(bb, "module.features.")
        sd["module.fc.weight"] = classifier
        opt = torch.optim.SGD([classifier], lr=0.1, momentum=0.9)
        classifier.grad = torch.ones_like(classifier)
        opt.step()
        ck = {"epoch": 25, "arch": "iresnet18", "state_dict": sd,
              "optimizer": opt.state_dict()}
        name = "%s_dp.pth" % fmt
        save(ck, os.path.join(d, name), legacy)
        expect_file(out, name, fmt, "module.features.", "iresnet18", bb, 1)
        # Distributed trainer: features.module.<key>, classifier parallel_fc.weight.
        sd = prefixed(bb, "features.module.")
        sd["parallel_fc.weight"] = classifier
        name = "%s_ddp.pth" % fmt
        save({"epoch": 3, "arch": "iresnet50", "state_dict": sd}, os.path.join(d, name),
             legacy)
        expect_file(out, name, fmt, "features.module.", "iresnet50", bb, 1)
        # A bare state_dict without prefix, with every odd tensor layout.
        odd = odd_tensors(g)
        name = "%s_bare.pth" % fmt
        save(odd, os.path.join(d, name), legacy)
        expect_file(out, name, fmt, "", "", odd, 0)


# Hand-written protocol-2 pickle: os.system('true'), never executed by anyone.
EVIL_PICKLE = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."


def write_zip(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries:
            z.writestr(name, data)


def legacy_header():
    """The first three pickles of a legacy file, as torch writes them."""
    buf = io.BytesIO()
    pickle.dump(0x1950a86a20f9469cfc6c, buf, protocol=2)
    pickle.dump(1001, buf, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, buf, protocol=2)
    return buf.getvalue()


def bad_fixtures(d, out, g):
    write_zip(os.path.join(d, "evil_global.pth"),
              [("evil_global/data.pkl", EVIL_PICKLE), ("evil_global/version", b"3\n")])
    out.append("E evil_global.pth forbidden global 'os.system'")
    with open(os.path.join(d, "evil_global_legacy.pth"), "wb") as f:
        f.write(legacy_header() + EVIL_PICKLE)
    out.append("E evil_global_legacy.pth forbidden global 'os.system'")
    write_zip(os.path.join(d, "not_checkpoint.zip"),
              [("docs/readme.txt", b"hello\n"), ("docs/data/0", b"\0" * 8)])
    out.append("E not_checkpoint.zip without data.pkl")
    for fmt in ("zip", "legacy"):
        data = open(os.path.join(d, "%s_dp.pth" % fmt), "rb").read()
        name = "truncated_%s.pth" % fmt
        with open(os.path.join(d, name), "wb") as f:
            f.write(data[: len(data) * 2 // 3])
        out.append("E %s truncated" % name)
    # A storage shorter than its tensor: rewrite data/0 of a real file with half the bytes.
    src = os.path.join(d, "small.tmp")
    save({"w": torch.randn(16, generator=g)}, src, False)
    with zipfile.ZipFile(src) as z:
        entries = [(n, z.read(n)) for n in z.namelist()]
    os.unlink(src)
    entries = [(n.replace("small.tmp", "small_storage"),
                b[: len(b) // 2] if n.endswith("/data/0") else b) for n, b in entries]
    write_zip(os.path.join(d, "small_storage.pth"), entries)
    out.append("E small_storage.pth too small")
    save({"c": torch.randn(3, dtype=torch.complex64, generator=g)},
         os.path.join(d, "complex.pth"), False)
    out.append("E complex.pth unsupported dtype")


class _Storage:
    """Stands for a storage: pickled as its persistent id."""
    def __init__(self, pid):
        self.pid = pid


class _Tensor:
    """Pickled exactly as torch pickles a tensor: a REDUCE of _rebuild_tensor_v2."""
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Storage) else None


def legacy_views(d, out, g):
    """Legacy storage views (old torch wrote them; 1.13 only reads them): a 6-item
    persistent id ('storage', cls, root, 'cpu', root_numel, (view_key, offset, size)).
    torch.load itself gives the expected values."""
    root = torch.randn(20, generator=g)
    whole = _Storage(("storage", torch.FloatStorage, "root", "cpu", 20, None))
    view = _Storage(("storage", torch.FloatStorage, "root", "cpu", 20, ("view", 4, 8)))
    bad = _Storage(("storage", torch.FloatStorage, "root", "cpu", 20, ("bad", 15, 8)))
    for name, obj in (("legacy_views.pth", collections.OrderedDict(
            [("whole", _Tensor(whole, 2, (3, 2), (1, 3))),
             ("view", _Tensor(view, 1, (2, 3), (3, 1)))])),
            ("legacy_bad_view.pth", {"w": _Tensor(bad, 0, (8,), (1,))})):
        buf = io.BytesIO()
        buf.write(legacy_header())
        _Pickler(buf, protocol=2).dump(obj)
        pickle.dump(["root"], buf, protocol=2)
        buf.write(struct.pack("<q", 20) + root.numpy().tobytes())
        with open(os.path.join(d, name), "wb") as f:
            f.write(buf.getvalue())
    kept = torch.load(os.path.join(d, "legacy_views.pth"))
    expect_file(out, "legacy_views.pth", "legacy", "", "", kept, 0)
    out.append("E legacy_bad_view.pth too small")


def random_checkpoints(seed, d):
    """Random shapes/dtypes/layouts in both formats; every value checked by the test."""
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for i in range(12):
        nd = int(torch.randint(0, 5, (1,), generator=g))
        shape = [int(x) for x in torch.randint(1, 6, (nd,), generator=g)]
        t = torch.randn(shape, generator=g) * 10
        kind = i % 6
        if kind == 1:
            t = t.half()
        elif kind == 2:
            t = t.double()
        elif kind == 3 and nd >= 2:
            t = t.transpose(0, nd - 1)
        elif kind == 4:
            t = (t * 1000).long()
        elif kind == 5 and t.numel() > 2:
            t = t.flatten()[1:]
        sd["module.features.layer%d.weight" % i] = t
    sd["module.fc.weight"] = torch.randn(3, 4, generator=g)
    out = []
    kept = collections.OrderedDict((k[len("module.features."):], v) for k, v in sd.items()
                                   if k.startswith("module.features."))
    for fmt in ("zip", "legacy"):
        name = "random_%s.pth" % fmt
        save({"epoch": 1, "arch": "random", "state_dict": sd}, os.path.join(d, name),
             fmt == "legacy")
        expect_file(out, name, fmt, "module.features.", "random", kept, 1)
    return out


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--random":
        d = sys.argv[3]
        out = random_checkpoints(int(sys.argv[2]), d)
    elif len(sys.argv) == 2:
        d = sys.argv[1]
        g = torch.Generator().manual_seed(20210325)
        out = []
        good_fixtures(d, out, g)
        bad_fixtures(d, out, g)
        legacy_views(d, out, g)
    else:
        sys.exit(__doc__)
    with open(os.path.join(d, "expected.txt"), "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
