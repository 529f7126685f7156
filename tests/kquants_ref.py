#!/usr/bin/env python3
"""kquants_ref.py - known-answer blocks for tests/test_kquants.c.

A second, independent transcription of ggml's quantize_row_q4_K_ref / q5_K_ref / q6_K_ref
(ggml/src/ggml-quants.c, read from llama.cpp's source), in plain Python with every float32
operation rounded to float32 (a double result of +, -, *, /, sqrt of float32 operands rounded once
to float32 is the float32 result). It prints, for the rows of kat_row() (the same formula as the
C test's), the quantized bytes as hex, which test_kquants.c holds and compares with the C
quantizers' output. It shares no code with src/quant/kquants.c; it does share its author's reading
of ggml, so it proves the C code computes what this reading says, not that the reading is right.

Run: python3 tests/kquants_ref.py   (standard library only)
"""
import math
import struct

QK_K = 256


def f32(v):
    return struct.unpack('<f', struct.pack('<f', v))[0]


def nearest_int(v):
    t = f32(v + 12582912.0)
    i = struct.unpack('<i', struct.pack('<f', t))[0]
    return (i & 0x007FFFFF) - 0x00400000


def to_f16_bytes(v):
    return struct.pack('<e', v)


def f16_round(v):
    return struct.unpack('<e', struct.pack('<e', v))[0]


def kat_row(r):
    """row r (0..2) of 256 floats, all exactly representable in float32"""
    out = []
    for j in range(QK_K):
        v = ((j * 7919 + r * 104729) % 2001 - 1000) / 512.0
        if r == 1:
            v = v * float(1 << (j // 32)) / 16.0 + 3.0
        elif r == 2:
            v = 0.0 if 64 <= j < 96 else v / 64.0
            if j == 200:
                v = -40.0
        out.append(f32(v))
    return out


def make_qkx2(n, nmax, x, w, rmin, rdelta, nstep):
    mn = x[0]
    mx = x[0]
    sum_w = w[0]
    sum_x = f32(sum_w * x[0])
    for i in range(1, n):
        if x[i] < mn:
            mn = x[i]
        if x[i] > mx:
            mx = x[i]
        sum_w = f32(sum_w + w[i])
        sum_x = f32(sum_x + f32(w[i] * x[i]))
    if mn > 0:
        mn = 0.0
    if mx == mn:
        return 0.0, -mn, [0] * n
    rng = f32(mx - mn)
    iscale = f32(float(nmax) / rng)
    scale = f32(1.0 / iscale)
    L = []
    best = 0.0
    for i in range(n):
        l = max(0, min(nmax, nearest_int(f32(iscale * f32(x[i] - mn)))))
        L.append(l)
        diff = f32(f32(f32(scale * l) + mn) - x[i])
        best = f32(best + f32(w[i] * f32(diff * diff)))
    for s in range(nstep + 1):
        # as in ggml, the trials after an improvement measure from the improved minimum
        iscale = f32(f32(f32(rmin + f32(rdelta * s)) + nmax) / f32(mx - mn))
        sl = sl2 = sxl = 0.0
        La = []
        for i in range(n):
            l = max(0, min(nmax, nearest_int(f32(iscale * f32(x[i] - mn)))))
            La.append(l)
            wl = f32(w[i] * l)
            sl = f32(sl + wl)
            sl2 = f32(sl2 + f32(wl * l))
            sxl = f32(sxl + f32(wl * x[i]))
        D = f32(f32(sum_w * sl2) - f32(sl * sl))
        if D > 0:
            ts = f32(f32(f32(sum_w * sxl) - f32(sum_x * sl)) / D)
            tm = f32(f32(f32(sl2 * sum_x) - f32(sl * sxl)) / D)
            if tm > 0:
                tm = 0.0
                ts = f32(sxl / sl2)
            err = 0.0
            for i in range(n):
                diff = f32(f32(f32(ts * La[i]) + tm) - x[i])
                err = f32(err + f32(w[i] * f32(diff * diff)))
            if err < best:
                L = La
                best = err
                scale = ts
                mn = tm
    return scale, -mn, L


def scale_min_k4(j, q):
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def q45_super(x, nmax, rmin, rdelta, nstep):
    L = [0] * QK_K
    sc = [0.0] * 8
    mn = [0.0] * 8
    max_scale = max_min = 0.0
    for j in range(8):
        xj = x[32 * j:32 * j + 32]
        sx2 = 0.0
        for v in xj:
            sx2 = f32(sx2 + f32(v * v))
        av = f32(math.sqrt(f32(sx2 / 32.0)))
        w = [f32(av + abs(v)) for v in xj]
        sc[j], mn[j], Lj = make_qkx2(32, nmax, xj, w, rmin, rdelta, nstep)
        L[32 * j:32 * j + 32] = Lj
        if sc[j] > max_scale:
            max_scale = sc[j]
        if mn[j] > max_min:
            max_min = mn[j]
    inv_s = f32(63.0 / max_scale) if max_scale > 0 else 0.0
    inv_m = f32(63.0 / max_min) if max_min > 0 else 0.0
    s12 = [0] * 12
    for j in range(8):
        ls = min(63, nearest_int(f32(inv_s * sc[j])) & 0xFF)
        lm = min(63, nearest_int(f32(inv_m * mn[j])) & 0xFF)
        if j < 4:
            s12[j] = ls
            s12[j + 4] = lm
        else:
            s12[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4)
            s12[j - 4] |= (ls >> 4) << 6
            s12[j] |= (lm >> 4) << 6
    dh = to_f16_bytes(f32(max_scale / 63.0))
    mh = to_f16_bytes(f32(max_min / 63.0))
    d = struct.unpack('<e', dh)[0]
    dm = struct.unpack('<e', mh)[0]
    for j in range(8):
        s, m = scale_min_k4(j, s12)
        dj = f32(d * s)
        if not dj:
            continue
        mj = f32(dm * m)
        for l in range(32):
            L[32 * j + l] = max(0, min(nmax, nearest_int(f32(f32(x[32 * j + l] + mj) / dj))))
    return dh + mh + bytes(s12), L


def q4_K(x):
    head, L = q45_super(x, 15, -1.0, f32(0.1), 20)
    qs = bytearray(128)
    for g in range(4):
        for l in range(32):
            qs[32 * g + l] = L[64 * g + l] | (L[64 * g + 32 + l] << 4)
    return head + bytes(qs)


def q5_K(x):
    head, L = q45_super(x, 31, -0.5, f32(0.1), 15)
    qh = bytearray(32)
    qs = bytearray(128)
    for g in range(4):
        for l in range(32):
            lo = L[64 * g + l]
            hi = L[64 * g + 32 + l]
            if lo > 15:
                lo -= 16
                qh[l] |= 1 << (2 * g)
            if hi > 15:
                hi -= 16
                qh[l] |= 2 << (2 * g)
            qs[32 * g + l] = lo | (hi << 4)
    return head + bytes(qh) + bytes(qs)


def make_qx(n, nmax, x):
    mx = 0.0
    amax = 0.0
    for v in x:
        if abs(v) > amax:
            amax = abs(v)
            mx = v
    if amax < 1e-15:
        return 0.0, [0] * n
    def fit(iscale):
        slx = sl2 = 0.0
        L = []
        for v in x:
            l = max(-nmax, min(nmax - 1, nearest_int(f32(iscale * v))))
            L.append(l + nmax)
            w = f32(v * v)
            slx = f32(slx + f32(f32(w * v) * l))
            sl2 = f32(sl2 + f32(f32(w * l) * l))
        return slx, sl2, L
    slx, sl2, L = fit(f32(-nmax / mx))
    scale = f32(slx / sl2) if sl2 else 0.0
    best = f32(scale * slx)
    for s in range(-9, 10):
        if s == 0:
            continue
        slx, sl2, La = fit(f32(-f32(nmax + f32(f32(0.1) * s)) / mx))
        if sl2 > 0 and f32(slx * slx) > f32(best * sl2):
            L = La
            scale = f32(slx / sl2)
            best = f32(scale * slx)
    return scale, L


def q6_K(x):
    L = [0] * QK_K
    sc = [0.0] * 16
    max_scale = max_abs = 0.0
    for s in range(16):
        sc[s], Ls = make_qx(16, 32, x[16 * s:16 * s + 16])
        L[16 * s:16 * s + 16] = Ls
        if abs(sc[s]) > max_abs:
            max_abs = abs(sc[s])
            max_scale = sc[s]
    if max_abs < 1e-15:
        return bytes(210)
    iscale = f32(-128.0 / max_scale)
    dh = to_f16_bytes(f32(1.0 / iscale))
    d = struct.unpack('<e', dh)[0]
    scales = [min(127, nearest_int(f32(iscale * sc[s]))) for s in range(16)]
    for s in range(16):
        ds = f32(d * scales[s])
        if not ds:
            continue
        for l in range(16):
            L[16 * s + l] = 32 + max(-32, min(31, nearest_int(f32(x[16 * s + l] / ds))))
    ql = bytearray(128)
    qh = bytearray(64)
    for h in range(2):
        Lh = L[128 * h:128 * h + 128]
        for l in range(32):
            ql[64 * h + l] = (Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4)
            ql[64 * h + l + 32] = (Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4)
            qh[32 * h + l] = ((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4)
                              | ((Lh[l + 96] >> 4) << 6))
    return bytes(ql) + bytes(qh) + bytes(s & 0xFF for s in scales) + dh


def main():
    for name, fn in (('q4_K', q4_K), ('q5_K', q5_K), ('q6_K', q6_K)):
        for r in range(3):
            b = fn(kat_row(r))
            print('/* %s row %d */' % (name, r))
            h = b.hex()
            for i in range(0, len(h), 96):
                print('"%s"' % h[i:i + 96])
            print(',')


if __name__ == '__main__':
    main()
