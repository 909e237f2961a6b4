#!/usr/bin/python3
"""Build the input-layer fixtures (tests/fixtures/source/) from the bundled sample faces.

The same 8 images (4 identities x 2, from data/faces) packed in every input kind, so a
test can check that each kind yields the same ids, labels and pixels:
  tree/<id>/<n>.jpg   plain files          faces.tar, faces.tar.gz, faces.zip   archives
  wds-000000.tar      WebDataset shard (<key>.jpg + <key>.cls)
  train.rec/.idx      insightface RecordIO, written by the writer below from the format
                      facts (header record 0, identity records); one payload contains the
                      magic word at an aligned offset, so it is stored split in parts
  faces.list          list with labels and 5 landmarks of unaligned copies (raw/)
and a broken corpus in broken/ (each file named after what is wrong with it).

Also a RecordIO reader written from the format, used by the tests to read what the C
writer produced:  make_source_fixtures.py --dump-rec FILE.rec  prints one line per record:
`key flag label|labels image_size`.

Usage: /usr/bin/python3 scripts/make_source_fixtures.py [--dump-rec FILE]
"""
import io
import os
import shutil
import struct
import sys
import tarfile
import zipfile
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


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--dump-rec":
        dump_rec(sys.argv[2])
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
    tar_write(os.path.join(out, "faces.tar.gz"), "w:gz", plain)
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
