#!/usr/bin/env python3
"""Speed-only factored copy of a safetensors model folder: every decoder matrix
'<proj>.weight' [out, in] for which r (in + out) < in * out becomes '<proj>.lowrank_a' [r, in]
and '<proj>.lowrank_b' [out, r], their bytes cut from the dense weight's (same dtype, random-looking
values of a synth model). For `evlm bench` on large shapes, where a real SVD (`evlm lowrank`) is
slow; the numbers mean nothing. Usage: lowrank_speed_model.py SRC_DIR OUT_DIR RANK"""
import json, os, shutil, struct, sys

src, out, R = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out, exist_ok=True)
f = open(os.path.join(src, "model.safetensors"), "rb")
n = struct.unpack("<Q", f.read(8))[0]
hdr = json.loads(f.read(n))
base = 8 + n
ES = {"BF16": 2, "F16": 2, "F32": 4}
tensors = []
for name, info in hdr.items():
    if name == "__metadata__":
        continue
    a, b = info["data_offsets"]
    f.seek(base + a)
    data = f.read(b - a)
    shape = info["shape"]
    if ".layers." in name and name.endswith("_proj.weight") and len(shape) == 2 \
            and R * (shape[0] + shape[1]) < shape[0] * shape[1]:
        o, i = shape
        es = ES[info["dtype"]]
        stem = name[:-len(".weight")]
        tensors.append((stem + ".lowrank_a", info["dtype"], [R, i], data[:R * i * es]))
        tensors.append((stem + ".lowrank_b", info["dtype"], [o, R], data[:o * R * es]))
    else:
        tensors.append((name, info["dtype"], shape, data))
h, off = {}, 0
for nm, dt, sh, d in tensors:
    h[nm] = {"dtype": dt, "shape": sh, "data_offsets": [off, off + len(d)]}
    off += len(d)
hb = json.dumps(h).encode()
hb += b" " * ((8 - len(hb) % 8) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as g:
    g.write(struct.pack("<Q", len(hb)))
    g.write(hb)
    for _, _, _, d in tensors:
        g.write(d)
for fn in os.listdir(src):
    if fn != "model.safetensors" and os.path.isfile(os.path.join(src, fn)):
        shutil.copy(os.path.join(src, fn), os.path.join(out, fn))
