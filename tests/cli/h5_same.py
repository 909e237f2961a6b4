"""h5_same.py A B [--ignore PATH ...]: exit 0 when two HDF5 files hold the same datasets
with the same values (and the same root attributes, but for the ones ignored).

Byte equality is not the test: HDF5 object headers record modification times, and a
derived store's history records the time of the run. Values are compared exactly
(NaN equal to NaN). /history is ignored unless --with-history."""
import sys

import h5py
import numpy as np

IGNORED_ATTRS = {"tool_version"}


def datasets(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return out


def same_values(x, y):
    if x.dtype.kind in "OSU" or y.dtype.kind in "OSU":
        return [v.decode() if isinstance(v, bytes) else v for v in x.ravel()] == \
               [v.decode() if isinstance(v, bytes) else v for v in y.ravel()]
    return x.shape == y.shape and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")


def main(argv):
    a, b = argv[0], argv[1]
    ignore = set(argv[argv.index("--ignore") + 1:]) if "--ignore" in argv else set()
    with_history = "--with-history" in argv
    fa, fb = h5py.File(a, "r"), h5py.File(b, "r")
    da, db = datasets(fa), datasets(fb)
    if not with_history:
        da = {k: v for k, v in da.items() if not k.startswith("history")}
        db = {k: v for k, v in db.items() if not k.startswith("history")}
    da = {k: v for k, v in da.items() if k not in ignore}
    db = {k: v for k, v in db.items() if k not in ignore}
    if set(da) != set(db):
        sys.exit(f"{a} and {b} hold different datasets: {sorted(set(da) ^ set(db))}")
    for k in sorted(da):
        if not same_values(da[k][()], db[k][()]):
            sys.exit(f"{a} and {b} differ in /{k}")
    for k in set(fa.attrs) | set(fb.attrs):
        if k in IGNORED_ATTRS or k in ignore:
            continue
        if k not in fa.attrs or k not in fb.attrs:
            sys.exit(f"root attribute {k} only in one of {a}, {b}")
        if not same_values(np.atleast_1d(fa.attrs[k]), np.atleast_1d(fb.attrs[k])):
            sys.exit(f"{a} and {b} differ in root attribute {k}")


if __name__ == "__main__":
    main(sys.argv[1:])
