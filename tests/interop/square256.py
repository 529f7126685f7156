#!/usr/bin/env python3
"""square256.py - the resize-free control of tests/interop/vlm.sh: copies of the dataset's
images cut or padded (black, centred) to 256 x 256 pixels, no resampling anywhere.

  square256.py DATASET.jsonl OUT_DIR > OUT.jsonl

For the Idefics3 / SmolVLM processor of the scene model (longest edge 256, tiles of 128) a
256 x 256 image needs no resize before the split: the four tiles are plain crops in evlm (PIL's
rules) and in llama.cpp alike, and only the global 128 x 128 view is resampled. If the answers
of the two runtimes agree far more often on these copies than on the originals, their
differences on the originals come from the resampling filters (llama.cpp's own, not PIL's).
PNG only (8-bit RGB, not interlaced: the scenes-dev images); pure Python (zlib).
"""
import json
import os
import struct
import sys
import zlib

S = 256


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("%s: not a PNG" % path)
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color != 2 or interlace:
                raise ValueError("%s: only 8-bit RGB non-interlaced PNGs" % path)
        elif kind == b"IDAT":
            idat += body
    raw, bpp, stride = zlib.decompress(idat), 3, w * 3
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, rows


def write_png(path, rows):
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", S, S, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    open(path, "wb").write(png)


def main():
    ds, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    base = os.path.dirname(os.path.abspath(ds))
    for line in open(ds):
        if not line.strip():
            continue
        d = json.loads(line)
        src = d["image"] if os.path.isabs(d["image"]) else os.path.join(base, d["image"])
        w, h, rows = read_png(src)
        sq = [bytearray(S * 3) for _ in range(S)]
        # centre: crop what is over 256, pad what is under
        for y in range(S):
            sy = y + (h - S) // 2
            if 0 <= sy < h:
                for x in range(S):
                    sx = x + (w - S) // 2
                    if 0 <= sx < w:
                        sq[y][3 * x:3 * x + 3] = rows[sy][3 * sx:3 * sx + 3]
        dst = os.path.join(out, os.path.basename(src))
        write_png(dst, sq)
        d["image"] = dst
        print(json.dumps(d))


if __name__ == "__main__":
    main()
