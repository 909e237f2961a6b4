#!/usr/bin/python3
"""Seed corpora for the libFuzzer harnesses (tests/fuzz/fuzz_<name>.c), generated at test
time into a build folder; nothing generated is committed.

Usage: /usr/bin/python3 scripts/make_fuzz_seeds.py OUTDIR
Writes OUTDIR/<name>/seed_* for every harness: small valid inputs of each kind the
harness reads (taken from tests/fixtures or built here) and a few near misses.
"""
import gzip
import io
import os
import struct
import sys
import tarfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FX = os.path.join(ROOT, "tests", "fixtures")
SRC = os.path.join(FX, "source")


def read(*parts):
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


def put(out, name, seeds):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    for i, data in enumerate(seeds):
        with open(os.path.join(d, "seed_%03d" % i), "wb") as f:
            f.write(data)


def checkpoint():
    d = os.path.join(FX, "checkpoint")
    return [read(d, n) for n in sorted(os.listdir(d)) if n.endswith(".pth")]


def recordio():
    rec, idx = read(SRC, "train.rec"), read(SRC, "train.idx")
    bad, bad_idx = read(SRC, "broken", "badmagic.rec"), read(SRC, "broken", "badmagic.idx")
    with_idx = lambda i, r: b"I" + bytes([min(len(i), 255)]) + i[:255] + r
    dup = idx.replace(b"\n4\t", b"\n3\t", 1)
    return [rec, with_idx(idx, rec), with_idx(bad_idx, bad), with_idx(dup, rec), rec[:1000]]


def image():
    seeds = [read(SRC, "tree", "id00", "0.jpg"), read(SRC, "raw", "id01.jpg")]
    for n in sorted(os.listdir(os.path.join(SRC, "broken"))):
        if n.endswith((".jpg", ".png")):
            seeds.append(read(SRC, "broken", n))
    # a JPEG with an EXIF orientation (APP1 right after SOI), and a PNG with eXIf
    tiff = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + \
        struct.pack("<HHII", 0x0112, 3, 1, 6) + b"\0\0\0\0"
    app1 = b"Exif\0\0" + tiff
    jpg = seeds[0]
    seeds.append(jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpg[2:])
    png = read(SRC, "broken", "good.png")
    chunk = struct.pack(">I", len(tiff)) + b"eXIf" + tiff + b"\0\0\0\0"
    seeds.append(png[:33] + chunk + png[33:])
    return seeds


def lists():
    plain = read(SRC, "faces.list")
    return [b"\0" + plain,
            b"\0a b/c d.jpg 5\na.jpg\t3\nx.jpg 1 2 3 4 5 6 7 8 9 10\n# c\n\n",
            b"\x01" + b"0\t3.000000\ttree/id00/0.jpg\n1\t4.0\t1.0\ta b.jpg\n",
            b"\x02" + b"n/a b.jpg\0n/new\nline.jpg\0",
            b"\x0c" + b"caf\xe9/x.jpg 1\nback\\slash/y.jpg\n",
            b"\0a.jpg 1e99\nb.jpg -7\nc.jpg 12abc\nd.jpg\0e\n"]


def tiny_tar(members, pad=False):
    """A tar without the 10 KB record padding Python adds: small seeds fuzz faster."""
    buf = io.BytesIO()
    for name, data in members:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        buf.write(info.tobuf(tarfile.USTAR_FORMAT))
        buf.write(data + b"\0" * (-len(data) % 512))
    buf.write(b"\0" * 1024)
    return buf.getvalue()


def archives():
    """Small archives of every kind, with a 1x1 PNG as the image (fuzzing speed), and the
    WebDataset fixture; .cls members good and bad; gzip whole, split in two members, and
    with zero padding."""
    import lzma
    import zipfile
    png = read(SRC, "broken", "good.png")
    wds = tiny_tar([("d0/s0.cls", b"3"), ("d0/s0.png", png), ("d1/s1.cls", b"1e99"),
                    ("d1/s1.png", png), ("d1/s2.png", png), ("s3.cls", b"-1"), ("s3.jpg", png)])
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("a/x.png", png)
        z.writestr("a/x.cls", "2")
    half = len(wds) // 2
    return [wds, gzip.compress(wds), gzip.compress(wds[:half]) + gzip.compress(wds[half:]),
            gzip.compress(wds) + b"\0" * 64, lzma.compress(wds), zbuf.getvalue(),
            read(SRC, "faces.tar.zst"), read(SRC, "broken", "cls_twice_crc.tar.gz")]


def store():
    """Recipes for fuzz_store.c (structure-aware: the bytes describe a store that the
    harness writes through the HDF5 API, see its header): a valid store with every
    optional column, a minimal one, and a few with wrong types or lengths."""
    def recipe(rows, dim, optional=True, wrong=0):
        b = bytearray([rows, dim])
        one = struct.pack("<f", 1.5)
        b += bytes([wrong]) + one * (rows * dim)           # embedding
        b += bytes([0]) + struct.pack("<f", 20.0) * rows   # magnitude
        b += bytes([0])                                    # id: variable-length strings
        for i in range(rows):
            name = b"a/%d.jpg" % i
            b += bytes([len(name)]) + name
        b += bytes([0]) + b"".join(struct.pack("<q", i % 3) for i in range(rows))  # label
        if optional:
            b += bytes([1]) + b"".join(struct.pack("<q", i % 2) for i in range(rows))
            b += bytes([1, 1, 5]) + b"x.jpg"               # failed/id: 1 row
            b += bytes([1, 1, 9]) + b"truncated"           # failed/reason
            b += bytes([1, 3]) + b"".join(bytes([1]) + n for n in (b"p", b"q", b"r"))
        else:
            b += bytes([0, 0, 0, 0])
        b += bytes([0xDB, 0x00])                           # mf_format, version 1, dim
        return bytes(b)
    return [recipe(6, 4), recipe(3, 2, optional=False), recipe(4, 3, wrong=2 | 8),
            recipe(2, 1, wrong=4), recipe(0, 4)]


def filter_report():
    head = b"id\tlabel\tmagnitude\trule\tfigure\n"
    return [head + b"a/0.jpg\t3\t12.5000\tlow_magnitude\t12.5000\n"
                   b"a\\tb.jpg\t-1\tnan\tduplicate\t0.9900\nk.jpg\t1\t20.0\tkeep\t0.0\n",
            head, b"rule\tid\nx\\\\y\\nz\tq\n", head + b"a.jpg\t1e99\t1\tr\t1\n"]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    OUT = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    put(OUT, "fuzz_checkpoint", checkpoint())
    put(OUT, "fuzz_recordio", recordio())
    put(OUT, "fuzz_image", image())
    put(OUT, "fuzz_list", lists())
    put(OUT, "fuzz_archive", archives())
    put(OUT, "fuzz_store", store())
    put(OUT, "fuzz_filter_report", filter_report())
