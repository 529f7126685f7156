#!/usr/bin/env python3
"""grad_compare.py GOT.safetensors REF.safetensors: every tensor of REF must be in GOT with the
same shape and max |g - g_ref| <= 1e-3 * max |g_ref| + 1e-6 (the gradient fixtures' tolerance,
../shared/fixtures/grad/README.md; the vision tower's k_proj.bias, exactly 0 in exact arithmetic,
takes max |g_ref| from its layer's q_proj.bias); float32 only, no numpy. Exit 1 with the failing
tensors."""
import json
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {t['dtype']}, not F32")
        a, b = t["data_offsets"]
        out[name] = (t["shape"], struct.unpack(f"<{(b - a) // 4}f", body[a:b]))
    return out


def main():
    got, ref = load(sys.argv[1]), load(sys.argv[2])
    bad = 0
    for name, (shape, r) in ref.items():
        if name not in got:
            print(f"missing: {name}")
            bad += 1
            continue
        gshape, g = got[name]
        if gshape != shape:
            print(f"{name}: shape {gshape}, reference {shape}")
            bad += 1
            continue
        rmax = max((abs(x) for x in r), default=0.0)
        if "vision_model" in name and name.endswith("k_proj.bias"):
            # exactly 0 in exact arithmetic (the README): float32 noise, bounded at the scale of
            # the same layer's q_proj.bias gradient (as test_train_vision / test_train_grad)
            q = ref.get(name[: -len("k_proj.bias")] + "q_proj.bias")
            rmax = max((abs(x) for x in q[1]), default=0.0) if q else rmax
        err = max((abs(x - y) for x, y in zip(g, r)), default=0.0)
        if not err <= 1e-3 * rmax + 1e-6:
            print(f"{name}: max error {err:.3g}, allowed {1e-3 * rmax + 1e-6:.3g}")
            bad += 1
    print(f"{len(ref) - bad} of {len(ref)} tensors within tolerance")
    sys.exit(1 if bad else 0)


main()
