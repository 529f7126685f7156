#!/usr/bin/env python3
"""gguf_strip.py IN.gguf OUT.gguf [PREFIX ...]: a copy of a GGUF file without the metadata keys
that start with PREFIX (default "evlm."), tensors and their data unchanged. Makes a file evlm wrote
look like one llama.cpp's converter wrote (llama.cpp's metadata only), to check that evlm reads
such files (test_llamacpp does the same in C). Standard library only."""
import struct
import sys

SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    prefixes = tuple(p.encode() for p in (sys.argv[3:] or ["evlm."]))
    b = open(src, "rb").read()
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, b, pos)
        pos += struct.calcsize("<" + fmt)
        return v

    def skip_str():
        nonlocal pos
        (n,) = rd("Q")
        s = b[pos:pos + n]
        pos += n
        return s

    def skip_val(t):
        nonlocal pos
        if t == 8:
            skip_str()
        elif t == 9:
            et, n = rd("IQ")
            for _ in range(n):
                skip_val(et)
        else:
            pos += SIZES[t]

    if b[:4] != b"GGUF":
        sys.exit(f"{src}: not a GGUF file")
    pos = 4
    ver, nt, nkv = rd("IQQ")
    kept, align = [], 32
    for _ in range(nkv):
        start = pos
        key = skip_str()
        (t,) = rd("I")
        skip_val(t)
        if key == b"general.alignment":
            align = struct.unpack_from("<I", b, pos - 4)[0]
        if not key.startswith(prefixes):
            kept.append(b[start:pos])
    infos = pos
    for _ in range(nt):
        skip_str()
        (nd,) = rd("I")
        rd("Q" * nd)
        rd("IQ")
    data = (pos + align - 1) // align * align
    out = bytearray(b"GGUF" + struct.pack("<IQQ", ver, nt, len(kept)))
    for kv in kept:
        out += kv
    out += b[infos:pos]
    out += b"\0" * ((-len(out)) % align)
    out += b[data:]
    open(dst, "wb").write(out)
    print(f"{dst}: {nkv - len(kept)} of {nkv} keys removed, {nt} tensors")


if __name__ == "__main__":
    main()
