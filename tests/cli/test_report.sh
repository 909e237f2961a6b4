#!/usr/bin/env bash
# mf-report: one self-contained page with every section, escaped text, images that
# decode; rendered in headless Chromium (skipped, exit 77, without chromium): every
# image loads and a screenshot is taken (kept when MF_REPORT_SHOT names a path).
source "$(dirname "$0")/lib.sh"
need_python_module h5py
need_python_module cv2
FIX="$MF_SOURCE_DIR/tests/cli/export_fixture.py"
CHK="$MF_SOURCE_DIR/tests/cli/report_check.py"

"$PY" "$FIX" make s.h5 60 2
cut=$("$PY" "$CHK" inputs s.h5 f.h5 dropped.tsv)
sum_before=$(sha256sum f.h5)

expect_exit 0 mf-report --filter-report dropped.tsv -o rep/report.html f.h5
grep -q "with the filter's magnitude cut" "$T/err" || fail "cut not found in mf_filter"
n_img=$("$PY" "$CHK" page rep/report.html "$cut") || fail "page check"
[ "$n_img" -gt 40 ] || fail "too few images: $n_img"
[ "$(ls rep)" = "report.html" ] || fail "temporaries left"
[ "$(sha256sum f.h5)" = "$sum_before" ] || fail "the store was modified"

# --- a store without /cluster or filter: sections still there, saying why
"$PY" -c "
import h5py, shutil
shutil.copy('s.h5', 'plain.h5')
with h5py.File('plain.h5', 'a') as f: del f['cluster']"
expect_exit 0 mf-report -o plain.html plain.h5
for s in summary histogram lowest dropped clusters split merged; do
  grep -q "<section id=\"$s\">" plain.html || fail "section $s missing without /cluster"
done
grep -q "no /cluster" plain.html || fail "clusters section must say why it is empty"

# --- missing images: shown as missing, each named, exit 3
mv src/pack.tar moved.tar
expect_exit 3 mf-report -o miss.html f.h5
grep -q "missing 'src/pack.tar//" "$T/err" || fail "missing images not named"
grep -q 'class="noimg"' miss.html || fail "missing images not marked in the page"
mv moved.tar src/pack.tar
expect_exit 2 mf-report f.h5
expect_exit 1 mf-report -o x.html --filter-report nothere.tsv f.h5; expect_one_line_error nothere.tsv

# --- Chromium: render, probe every image, screenshot
CHROME=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROME" ] || skip "chromium not installed (apt-get install -y chromium)"
flags=(--headless --no-sandbox --disable-gpu --disable-background-networking
       --disable-component-update --disable-sync --no-first-run --user-data-dir="$T/prof")
# The page itself has no script (and its CSP forbids one): the probe goes into a copy.
sed -e '/Content-Security-Policy/d' rep/report.html > probe.html
cat >> probe.html <<'EOF'
<script>
addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.title = 'loaded=' + ok + ' broken=' + (imgs.length - ok);
});
</script>
EOF
timeout 120 "$CHROME" "${flags[@]}" --virtual-time-budget=5000 --dump-dom \
  "file://$T/probe.html" > dom.html 2>chrome.err || { tail -5 chrome.err; fail "chromium --dump-dom"; }
"$PY" "$CHK" dom dom.html "$n_img" || fail "images broken in Chromium"
shot=${MF_REPORT_SHOT:-$T/shot.png}
timeout 120 "$CHROME" "${flags[@]}" --screenshot="$shot" --window-size=1200,3000 \
  "file://$T/rep/report.html" >/dev/null 2>chrome.err || { tail -5 chrome.err; fail "screenshot"; }
"$PY" -c "
import cv2, sys
img = cv2.imread(sys.argv[1])
assert img is not None and img.shape[:2] == (3000, 1200), 'screenshot size'
assert img.std() > 10, 'blank screenshot'" "$shot" || fail "screenshot"
# --- the cut over the rows before filtering, the quality curve, captions, plurals
mf-synth -q -o q.h5 --identities 60 --rows 2400 --dim 64 --seed 11
mf-filter -q q.h5 -o qf.h5 --drop-lowest 10 --outliers
mf-cluster -q qf.h5 -o qc.h5
expect_exit 3 mf-report -o q.html qc.h5 # synthetic ids name no images: exit 3
"$PY" - <<'PY' || fail "report: before-filtering histogram, curve, captions"
import re
h = open("q.html").read()
before = re.findall(r'<rect class="before"[^>]*><title>[^<]*: (\d+) rows? before', h)
kept = re.findall(r'<rect class="bar"[^>]*><title>[^<]*: (\d+) rows?<', h)
assert len(before) == len(kept) == 64, (len(before), len(kept))
assert sum(map(int, before)) == 2400 and sum(map(int, kept)) < 2400, "grey = all rows, blue = kept"
assert 'id="cut"' in h, "the cut line"
m = re.search(r"magnitude rules removed (\d+) rows \(([\d.]+)% of the rows before", h)
assert m and int(m.group(1)) == 240 and abs(float(m.group(2)) - 10.0) < 0.05, m
assert ">rows</text>" in h, "the y axis has a title"
assert 'id="curve"' in h and "Error-versus-reject curve" in h, "the quality curve"
points = re.search(r'id="curve"[^>]*points="([^"]*)"', h).group(1).split()
ys = [float(p.split(",")[1]) for p in points]
assert len(ys) == 11, ys   # 0%, 5%, ..., 50% rejected
assert " 1 rows" not in h and "1 labels," not in h, "plurals"
PY
# a long id shows its tail, the whole id in the title
"$PY" - <<'PY'
import h5py
f = h5py.File("qc.h5", "r+")
ids = f["id"].asstr()[:]
ids[0] = "/very/long/path/to/the/dataset/of/faces/identity_0042/image_000123.jpg"
del f["id"]
f.create_dataset("id", data=list(ids), dtype=h5py.string_dtype())
f["magnitude"][0] = 0.001   # the lowest face: shown first
PY
expect_exit 3 mf-report -o long.html --overwrite qc.h5
grep -q ">…[^<]*/identity_0042/image_000123.jpg</span>" long.html || fail "caption is not the id's tail"
grep -q 'title="/very/long/path/to/the/dataset/of/faces/identity_0042/image_000123.jpg"' long.html ||
    fail "the whole id is not in the title"
echo ok
