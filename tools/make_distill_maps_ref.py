#!/usr/bin/env python3
"""make_distill_maps_ref.py - the torch reference of test_train_distill's white-box terms
(src/train/distill.c) on raw activations: the attention-map KL (two packed causal sequences, a
student of 3 query / 1 key-value heads of width 4, a teacher of 4 / 2 heads of width 6; each
model's softmax probabilities averaged over its own heads; loss = sum over rows of
KL(A_T || A_S) / rows; gradients w.r.t. the student's q and k after RoPE) and the hidden-state
MSE through a projection (loss = sum (h_S W^T - h_T)^2 / (rows x teacher width); gradients
w.r.t. h_S and W). torch autograd in float64 from float32-rounded inputs.
Usage: /usr/bin/python3 tools/make_distill_maps_ref.py tests/data/distill_maps_ref.json"""
import json
import math
import sys

import torch

torch.manual_seed(180)
f32 = lambda t: t.float().double()
lens = [5, 4]
n = sum(lens)
S = dict(nh=3, nkv=1, hd=4)
T = dict(nh=4, nkv=2, hd=6)
qs = f32(torch.randn(n, S["nh"] * S["hd"]) * 1.5).requires_grad_(True)
ks = f32(torch.randn(n, S["nkv"] * S["hd"]) * 1.5).requires_grad_(True)
qt = f32(torch.randn(n, T["nh"] * T["hd"]) * 1.5)
kt = f32(torch.randn(n, T["nkv"] * T["hd"]) * 1.5)


def head_mean(q, k, m):
    """[n][n] causal attention probabilities within each sequence, averaged over heads"""
    out = torch.zeros(n, n, dtype=torch.float64)
    g = m["nh"] // m["nkv"]
    off = 0
    for L in lens:
        acc = torch.zeros(L, L, dtype=torch.float64)
        for h in range(m["nh"]):
            qh = q[off:off + L, h * m["hd"]:(h + 1) * m["hd"]]
            kh = k[off:off + L, (h // g) * m["hd"]:(h // g + 1) * m["hd"]]
            sc = qh @ kh.T / math.sqrt(m["hd"])
            sc = sc.masked_fill(torch.triu(torch.ones(L, L, dtype=torch.bool), 1), float("-inf"))
            acc = acc + torch.softmax(sc, -1)
        out[off:off + L, off:off + L] = acc / m["nh"]
        off += L
    return out


As, At = head_mean(qs, ks, S), head_mean(qt, kt, T)
mask = At > 0
attn = (At[mask] * (At[mask].log() - As[mask].log())).sum() / n
attn.backward()

Hs, Ht = 5, 7
hs = f32(torch.randn(n, Hs)).requires_grad_(True)
ht = f32(torch.randn(n, Ht))
W = f32(torch.randn(Ht, Hs) * 0.5).requires_grad_(True)
hid = ((hs @ W.T - ht) ** 2).sum() / (n * Ht)
hid.backward()

fl = lambda t: t.detach().flatten().tolist()
out = {"lens": lens, "student": S, "teacher": T, "qs": fl(qs), "ks": fl(ks), "qt": fl(qt), "kt": fl(kt),
       "attn": attn.item(), "dqs": fl(qs.grad), "dks": fl(ks.grad),
       "width_s": Hs, "width_t": Ht, "h_s": fl(hs), "h_t": fl(ht), "W": fl(W), "hidden": hid.item(),
       "dhs": fl(hs.grad), "dW": fl(W.grad)}
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=0)
    f.write("\n")
