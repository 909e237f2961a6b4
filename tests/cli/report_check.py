"""Inputs and checks for mf-report (independent of mfkit).

  report_check.py inputs STORE.h5 OUT.h5 DROPPED.tsv
        OUT.h5 = STORE.h5 with an mf_filter attribute (a magnitude cut + hostile text),
        DROPPED.tsv = a filter report (id, label, magnitude, rule, figure) with rows of
        two rules, one of them an image whose file name holds HTML metacharacters
  report_check.py page REPORT.html CUT
        parse the page (html.parser): sections present, no external reference, no
        script, every <img> a data: URI that decodes as an image (cv2), the hostile
        names escaped, the cut line drawn at CUT; prints the number of images
  report_check.py dom DUMPED.html N
        Chromium's --dump-dom of the page with the probe: title says N images loaded
        with naturalWidth > 0 and none broken
"""
import base64
import html.parser
import json
import re
import shutil
import sys

import cv2
import h5py
import numpy as np

HOSTILE = "src/img/a&b<i>\"q'.jpg"
SECTIONS = ["summary", "histogram", "lowest", "dropped", "clusters", "split", "merged"]


def cmd_inputs(args):
    store, out, tsv = args
    shutil.copy(store, out)
    with h5py.File(out, "a") as f:
        mag = f["magnitude"][:]
        ids = f["id"].asstr()[:]
        labels = f["label"][:]
        cut = float(np.percentile(mag, 20))
        f.attrs["mf_filter"] = json.dumps({"rules": {"min_magnitude": cut},
                                           "note": "</pre><script>alert(1)</script>"})
        # identity names (as mf-embed --label-from-dir keeps them), hostile too
        names = [f"person-{k}<b>&" for k in range(int(labels.max()) + 1)]
        if "labels" in f:
            del f["labels"]
        f.create_dataset("labels/name", data=np.array(names, dtype=object),
                         dtype=h5py.string_dtype())
    img = np.zeros((112, 112, 3), np.uint8)
    img[:, :, 2] = 200
    cv2.imwrite(HOSTILE, img)
    with open(tsv, "w") as t:
        t.write("id\tlabel\tmagnitude\trule\tfigure\n")
        for r in np.argsort(mag)[:9]:
            t.write(f"{ids[r]}\t{labels[r]}\t{mag[r]}\tmin-magnitude\t{mag[r]}\n")
        t.write(f"{HOSTILE}\t3\t20.5\tcenter-cos\t0.12\n")
        t.write(f"{ids[1]}\t{labels[1]}\t{mag[1]}\tcenter-cos\t0.2\n")
    print(cut)


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids, self.imgs, self.bad, self.text = [], [], [], []
        self.cut_x = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        if tag == "script" or tag in ("link", "iframe", "object", "embed"):
            self.bad.append(tag)
        for k in ("href", "src"):
            v = a.get(k) or ""
            if v and not v.startswith("#") and not v.startswith("data:image/"):
                self.bad.append(f"{tag} {k}={v[:60]}")
        if tag == "line" and a.get("id") == "cut":
            self.cut_x = float(a["x1"])

    def handle_data(self, data):
        self.text.append(data)


def cmd_page(args):
    path, cut = args[0], float(args[1])
    raw = open(path, encoding="utf-8").read()
    p = Page()
    p.feed(raw)
    missing = [s for s in SECTIONS if s not in p.ids]
    assert not missing, f"sections missing: {missing}"
    assert not p.bad, f"external references or scripts: {p.bad}"
    assert p.imgs, "no images"
    for src in p.imgs:
        head, b64 = src.split(",", 1)
        assert re.fullmatch(r"data:image/(jpeg|png);base64", head), head
        img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] > 0, "a data: URI does not decode"
    text = "".join(p.text)
    assert HOSTILE in text, "the hostile id must appear as text (escaped in the source)"
    assert re.search(r"label (\d+) \(person-\1<b>&\)", text), "captions name the identity"
    assert "<b>&" not in raw, "identity names must be escaped"
    assert "<script>alert(1)</script>" in text and "<script>" not in raw, "JSON not escaped"
    assert p.cut_x is not None, "cut line missing"
    m = re.search(r"cut ([0-9.]+)</text>", raw)
    assert m and abs(float(m.group(1)) - cut) < 1e-3, ("cut label", m and m.group(1), cut)
    assert "min-magnitude: 9 rows" in text and "center-cos: 2 rows" in text, "rule counts"
    split = re.search(r'<section id="split">.*?</section>', raw, re.S).group(0)
    merged = re.search(r'<section id="merged">.*?</section>', raw, re.S).group(0)
    assert "<h3>label 2: " in split and "<h4>cluster 7: " in split, "identity 2 was split"
    assert "<h3>cluster 3: " in merged and "<h4>label 4: " in merged, "3 and 4 were merged"
    assert "<h3>label" not in split.replace("<h3>label 2: ", ""), "only identity 2 is split"
    print(len(p.imgs))


def cmd_dom(args):
    dom, n = open(args[0], encoding="utf-8").read(), int(args[1])
    m = re.search(r"<title>loaded=(\d+) broken=(\d+)</title>", dom)
    assert m, "probe result not found in the DOM"
    assert int(m.group(1)) == n and int(m.group(2)) == 0, m.group(0)


if __name__ == "__main__":
    {"inputs": cmd_inputs, "page": cmd_page, "dom": cmd_dom}[sys.argv[1]](sys.argv[2:])
