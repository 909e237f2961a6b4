#!/usr/bin/python3
"""Build the input-layer fixtures (tests/fixtures/source/) from the bundled sample faces.

The same 8 images (4 identities x 2, from data/faces) packed in every input kind, so a
test can check that each kind yields the same ids, labels and pixels:
  tree/<id>/<n>.jpg   plain files          faces.tar(.gz,.xz,.zst), faces.zip   archives
  wds-000000.tar      WebDataset shard (<key>.jpg + <key>.cls)
  train.rec/.idx      insightface RecordIO, written by the writer below from the format
                      facts (header record 0, identity records); one payload contains the
                      magic word at an aligned offset, so it is stored split in parts
  faces.list          list with labels and 5 landmarks of unaligned copies (raw/)
and a broken corpus in broken/ (each file named after what is wrong with it).

Also a RecordIO reader written from the format, used by the tests to read what the C
writer produced:  make_source_fixtures.py --dump-rec FILE.rec  prints one line per record:
`key flag label|labels image_size`.

--cv2-refs DIR writes OpenCV reference decodes and alignments for test_image (run at
test time, so nothing derived from OpenCV is committed).

Usage: /usr/bin/python3 scripts/make_source_fixtures.py [--dump-rec FILE | --cv2-refs DIR]
"""
import gzip
import io
import lzma
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile

from make_sample_faces import umeyama  # the one alignment reference of our scripts
import zlib

MAGIC = 0xCED7230A
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
IDS = ["id00", "id01", "id02", "id03"]
PER_ID = 2


# ---- RecordIO, from the format (../shared/FORMATS.md) ------------------------------
def write_record(f, payload):
    """Append one record, splitting where the magic word sits at an aligned offset."""
    magic = struct.pack("<I", MAGIC)
    done, parts = 0, []
    for i in range(0, len(payload) // 4 * 4, 4):
        if payload[i:i + 4] == magic:
            parts.append((1 if done == 0 else 2, payload[done:i]))
            done = i + 4
    parts.append((3 if done else 0, payload[done:]))
    for cflag, data in parts:
        f.write(magic + struct.pack("<I", cflag << 29 | len(data)) + data)
        f.write(b"\0" * (-len(data) % 4))


def header(flag, label, id1=0, id2=0, labels=()):
    return struct.pack("<IfQQ", flag, label, id1, id2) + b"".join(struct.pack("<f", v) for v in labels)


def write_rec(rec_path, items):
    """items: (label, image bytes) sorted by label -> insightface layout."""
    n = len(items)
    ranges = []
    for key, (label, _) in enumerate(items, 1):
        if ranges and ranges[-1][0] == label:
            ranges[-1][2] = key + 1
        else:
            ranges.append([label, key, key + 1])
    idx = []
    with open(rec_path, "wb") as f:
        idx.append((0, f.tell()))
        write_record(f, header(2, 0, labels=(n + 1, n + 1 + len(ranges))))
        for key, (label, img) in enumerate(items, 1):
            idx.append((key, f.tell()))
            write_record(f, header(0, label, key) + img)
        for i, (_, first, end) in enumerate(ranges):
            idx.append((n + 1 + i, f.tell()))
            write_record(f, header(2, 0, labels=(first, end)))
    with open(rec_path[:-4] + ".idx", "w") as f:
        f.writelines("%d\t%d\n" % kv for kv in idx)


def read_rec(rec_path):
    """Yield (offset, payload) joining split parts; raises on damage."""
    data = open(rec_path, "rb").read()
    pos = 0
    while pos < len(data):
        start, payload, first = pos, b"", True
        while True:
            magic, lrec = struct.unpack_from("<II", data, pos)
            if magic != MAGIC:
                raise ValueError("bad magic at %d" % pos)
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            if not first:
                payload += struct.pack("<I", MAGIC)
            payload += data[pos + 8:pos + 8 + length]
            pos += 8 + length + (-length % 4)
            first = False
            if cflag in (0, 3):
                break
        yield start, payload


def dump_rec(rec_path):
    keys = {}
    idx_path = rec_path[:-4] + ".idx"
    if os.path.exists(idx_path):
        for line in open(idx_path):
            k, off = line.split("\t")
            keys[int(off)] = int(k)
    for off, p in read_rec(rec_path):
        flag, label, _, _ = struct.unpack_from("<IfQQ", p)
        labels = struct.unpack_from("<%df" % flag, p, 24) if flag else (label,)
        print(keys.get(off, -1), flag, ",".join("%g" % v for v in labels), len(p) - 24 - 4 * flag)


# ---- fixtures ------------------------------------------------------------------------
def with_magic_comment(jpg, payload_offset):
    """Same JPEG with a COM segment holding the RecordIO magic at a 4-aligned payload
    offset, to exercise split records (decoders ignore COM)."""
    pad = (-(payload_offset + 4)) % 4   # FF FE + 2 length bytes precede the body
    body = b"x" * pad + struct.pack("<I", MAGIC) + b"tail"
    return jpg[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + jpg[2:]


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def broken(out):
    d = os.path.join(out, "broken")
    os.makedirs(d)
    jpg = open(os.path.join(ROOT, "data/faces/id00/0.jpg"), "rb").read()
    open(os.path.join(d, "truncated.jpg"), "wb").write(jpg[:len(jpg) // 2])
    open(os.path.join(d, "empty.jpg"), "wb").close()
    open(os.path.join(d, "notimage.jpg"), "wb").write(b"this is not an image\n")
    raw = b"".join(b"\0" + bytes([(x * 7 + y * 3) % 256 for x in range(8 * 3)]) for y in range(8))
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    good = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")
    open(os.path.join(d, "good.png"), "wb").write(good)
    bad = bytearray(good)
    idat_end = good.index(b"IEND") - 4        # IDAT's CRC is the 4 bytes before IEND's length
    bad[idat_end - 1] ^= 0xFF                 # data intact, checksum wrong
    open(os.path.join(d, "badcrc.png"), "wb").write(bytes(bad))
    huge = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 70000, 70000, 8, 2, 0, 0, 0)) + \
        png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")
    open(os.path.join(d, "huge.png"), "wb").write(huge)
    # JPEG whose SOF0 declares 60000x60000 (the rest of the file is the 112x112 image's).
    i = jpg.index(b"\xff\xc0")
    open(os.path.join(d, "huge.jpg"), "wb").write(jpg[:i + 5] + struct.pack(">HH", 60000, 60000) + jpg[i + 9:])
    # tar whose second member is cut short
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name in ("a.jpg", "b.jpg"):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(jpg), 0
            t.addfile(info, io.BytesIO(jpg))
    tar = buf.getvalue()
    open(os.path.join(d, "truncated.tar"), "wb").write(tar[:512 + (len(jpg) + 511) // 512 * 512 + 512 + len(jpg) // 3])
    # RecordIO: 3 images, the magic of the third record overwritten
    rec = os.path.join(d, "badmagic.rec")
    write_rec(rec, [(0, jpg), (1, jpg), (2, jpg)])
    offs = [int(l.split("\t")[1]) for l in open(rec[:-4] + ".idx")]
    data = bytearray(open(rec, "rb").read())
    data[offs[3]:offs[3] + 4] = b"BAD!"
    open(rec, "wb").write(bytes(data))


def cv2_refs(out):
    """OpenCV references for test_image: decodes of varied JPEG/PNG encodings (EXIF
    orientations in both byte orders included), 5-point alignments and resizes. Writes
    out/index.txt: `decode FILE REF W H`, `align FILE REF m0..m5 x1 y1 .. x5 y5` and
    `resize FILE REF 112 112`."""
    import cv2
    import numpy as np
    from PIL import Image
    os.makedirs(out, exist_ok=True)
    fx = os.path.join(ROOT, "tests/fixtures/source")
    base = cv2.imread(os.path.join(fx, "raw/id00.jpg"))[:90, :140]
    files = []
    for o in range(1, 9):
        for order in "<>":
            tiff = (b"II*\0" if order == "<" else b"MM\0*") + struct.pack(order + "IH", 8, 2) + \
                struct.pack(order + "HHI", 0x010F, 2, 4) + b"abc\0" + \
                struct.pack(order + "HHIHHI", 0x0112, 3, 1, o, 0, 0)
            p = os.path.join(out, "exif%d%s.jpg" % (o, "le" if order == "<" else "be"))
            Image.fromarray(base[:, :, ::-1]).save(p, quality=90, exif=b"Exif\0\0" + tiff)
            files.append(p)
    for ss in (0, 1, 2):
        p = os.path.join(out, "sub%d.jpg" % ss)
        Image.fromarray(base[:83, :77, ::-1]).save(p, quality=92, subsampling=ss)
        files.append(p)
    for name, img, params in (("prog.jpg", base, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                              ("gray.jpg", cv2.cvtColor(base, cv2.COLOR_BGR2GRAY), []),
                              ("rgba.png", np.dstack([base, base[:, :, 1]]), []),
                              ("gray16.png", cv2.cvtColor(base, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257 + 3, []),
                              ("rgb16.png", base.astype(np.uint16) * 250, [])):
        p = os.path.join(out, name)
        cv2.imwrite(p, img, params)
        files.append(p)
    p = os.path.join(out, "cmyk.jpg")
    Image.fromarray(base[:, :, ::-1]).convert("CMYK").save(p, quality=90)
    files.append(p)
    p = os.path.join(out, "pal.png")
    Image.fromarray(base[:, :, ::-1]).convert("P", palette=Image.ADAPTIVE).save(p)
    files.append(p)
    p = os.path.join(out, "bw.png")
    Image.fromarray(base[:, :, 0]).convert("1").save(p)
    files.append(p)
    # PNG eXIf: OpenCV honours it before or after IDAT, and ignores an "Exif\0\0" prefix
    rows = b"".join(b"\0" + base[y].tobytes() for y in range(base.shape[0]))
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", base.shape[1], base.shape[0], 8, 2, 0, 0, 0))
    idat = png_chunk(b"IDAT", zlib.compress(rows))
    for o, where, order, prefix in ((6, "before", ">", b""), (3, "after", "<", b""), (8, "after", ">", b""),
                                    (6, "before", "<", b"Exif\0\0")):
        tiff = (b"II*\0" if order == "<" else b"MM\0*") + struct.pack(order + "IH", 8, 1) + \
            struct.pack(order + "HHIHHI", 0x0112, 3, 1, o, 0, 0)
        ex = png_chunk(b"eXIf", prefix + tiff)
        body = [ihdr, ex, idat] if where == "before" else [ihdr, idat, ex]
        p = os.path.join(out, "exif%d_%s%s.png" % (o, where, "_prefixed" if prefix else ""))
        open(p, "wb").write(b"\x89PNG\r\n\x1a\n" + b"".join(body) + png_chunk(b"IEND", b""))
        files.append(p)
    for d in ("tree", "raw"):
        for root, _, names in sorted(os.walk(os.path.join(fx, d))):
            files += [os.path.join(root, n) for n in sorted(names)]
    lines = []
    for i, p in enumerate(files):
        ref = cv2.imread(p)
        rp = os.path.join(out, "dec%d.raw" % i)
        ref.tofile(rp)
        lines.append("decode %s %s %d %d" % (p, rp, ref.shape[1], ref.shape[0]))
    template = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]])
    rng = np.random.default_rng(7)
    for l in open(os.path.join(fx, "faces.list")):
        f = l.split()
        if len(f) != 12:
            continue
        img = cv2.imread(os.path.join(fx, f[0]))
        lm0 = np.array([float(v) for v in f[2:]]).reshape(5, 2)
        for trial in range(5):   # jittered landmarks: least squares with a real residual;
            shift = (-95, 60) if trial == 4 else (0, 0)   # the last one mostly off the image
            lm = (lm0 + shift + rng.normal(0, 2.5 * trial, lm0.shape)).astype(np.float32).astype(np.float64)
            m = umeyama(lm, template)
            ref = cv2.warpAffine(img, m, (112, 112), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            rp = os.path.join(out, "align%d.raw" % len(lines))
            ref.tofile(rp)
            lines.append("align %s %s %s %s" % (os.path.join(fx, f[0]), rp, " ".join("%.17g" % v for v in m.ravel()),
                                                " ".join("%.9g" % v for v in lm.ravel())))
    for sw, sh in ((1, 1), (3, 2), (50, 60), (111, 113), (640, 480), (1000, 37), (250, 250)):
        img = rng.integers(0, 256, (sh, sw, 3), dtype=np.uint8)
        p = os.path.join(out, "resize%dx%d.png" % (sw, sh))
        cv2.imwrite(p, img)
        rp = os.path.join(out, "resize%d.raw" % len(lines))
        cv2.resize(img, (112, 112), interpolation=cv2.INTER_LINEAR).tofile(rp)
        lines.append("resize %s %s 112 112" % (p, rp))
    open(os.path.join(out, "index.txt"), "w").write("\n".join(lines) + "\n")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--dump-rec":
        dump_rec(sys.argv[2])
        return
    if len(sys.argv) == 3 and sys.argv[1] == "--cv2-refs":
        cv2_refs(sys.argv[2])
        return
    out = os.path.join(ROOT, "tests/fixtures/source")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    members = []   # (label, member path, bytes)
    for label, name in enumerate(IDS):
        for n in range(PER_ID):
            rel = "%s/%d.jpg" % (name, n)
            members.append((label, rel, open(os.path.join(ROOT, "data/faces", rel), "rb").read()))
    for _, rel, data in members:
        os.makedirs(os.path.join(out, "tree", os.path.dirname(rel)), exist_ok=True)
        open(os.path.join(out, "tree", rel), "wb").write(data)

    def tar_write(path, mode, items):
        with tarfile.open(path, mode, format=tarfile.USTAR_FORMAT) as t:
            for name, data in items:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                t.addfile(info, io.BytesIO(data))

    plain = [(rel, data) for _, rel, data in members]
    tar_write(os.path.join(out, "faces.tar"), "w", plain)
    tar_bytes = open(os.path.join(out, "faces.tar"), "rb").read()
    with gzip.GzipFile(os.path.join(out, "faces.tar.gz"), "wb", mtime=0) as g:   # reproducible
        g.write(tar_bytes)
    open(os.path.join(out, "faces.tar.xz"), "wb").write(lzma.compress(tar_bytes))
    # zstd: Python has no codec in the standard library; the zstd tool is in Debian
    zst = subprocess.run(["zstd", "-q", "-c", "-19"], input=tar_bytes, stdout=subprocess.PIPE, check=True).stdout
    open(os.path.join(out, "faces.tar.zst"), "wb").write(zst)
    with zipfile.ZipFile(os.path.join(out, "faces.zip"), "w", zipfile.ZIP_STORED) as z:
        for rel, data in plain:
            z.writestr(zipfile.ZipInfo(rel, (1980, 1, 1, 0, 0, 0)), data)
    wds = []
    for label, rel, data in members:
        key = "%s_%s" % (rel.split("/")[0], rel.split("/")[1][:-4])
        wds += [(key + ".cls", b"%d" % label), (key + ".jpg", data), (key + ".json", b"{}")]
    tar_write(os.path.join(out, "wds-000000.tar"), "w", wds)
    items = [(label, data) for label, _, data in members]
    # key 3's payload gets the magic inside: header (24 bytes) + JPEG, COM right after SOI
    items[2] = (items[2][0], with_magic_comment(items[2][1], 24 + 2))
    write_rec(os.path.join(out, "train.rec"), items)

    os.makedirs(os.path.join(out, "raw"))
    lines = ["# path label x1 y1 ... x5 y5"]
    for l in open(os.path.join(ROOT, "data/faces.list")):
        if l.startswith("#") or not l.strip():
            continue
        f = l.split()
        if len(lines) > 2:
            break
        shutil.copy(os.path.join(ROOT, "data", f[0]), os.path.join(out, "raw", os.path.basename(os.path.dirname(f[0])) + ".jpg"))
        lines.append("raw/%s.jpg %s" % (os.path.basename(os.path.dirname(f[0])), " ".join(f[1:])))
    lines.append("tree/id00/0.jpg 0")
    lines.append("tree/id00/1.jpg")
    lines.append("tree/id01/0.jpg 7 not numbers")
    open(os.path.join(out, "faces.list"), "w").write("\n".join(lines) + "\n")
    broken(out)


if __name__ == "__main__":
    main()
