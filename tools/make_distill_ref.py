#!/usr/bin/env python3
"""make_distill_ref.py - the torch reference of test_train_distill's row losses (src/train/distill.c):
alpha CE + (1 - alpha) tau^2 {KL(p_T||p_S), KL(p_S||p_T), JSD_beta(p_T||p_S)} on random logits,
per-row terms and the gradient of the mean over rows w.r.t. the student's logits (torch autograd,
float64). Usage: /usr/bin/python3 tools/make_distill_ref.py tests/data/distill_rows_ref.json
(Debian python3-torch). JSD_beta(P||Q) = beta KL(P||M) + (1-beta) KL(Q||M), M = beta P + (1-beta) Q
(GKD), P = p_T, Q = p_S."""
import json
import sys

import torch

torch.manual_seed(18)
N, V = 4, 11
z = (torch.randn(N, V, dtype=torch.float64) * 3).float().double()
zt = (torch.randn(N, V, dtype=torch.float64) * 3).float().double()
y = torch.randint(0, V, (N,))
cases = [("kl", 0.5, 1.0, 0.0), ("kl", 0.5, 2.0, 0.3), ("rkl", 0.5, 1.5, 0.0), ("rkl", 0.5, 2.0, 0.6),
         ("jsd", 0.1, 1.0, 0.0), ("jsd", 0.5, 2.0, 0.25), ("jsd", 0.9, 0.7, 0.0), ("none", 0.5, 1.0, 1.0)]
out = {"n": N, "V": V, "z": z.flatten().tolist(), "zt": zt.flatten().tolist(), "y": y.tolist(), "cases": []}
for kind, beta, tau, alpha in cases:
    zz = z.clone().requires_grad_(True)
    ce = -torch.log_softmax(zz, -1).gather(1, y[:, None])[:, 0]
    ls, lt = torch.log_softmax(zz / tau, -1), torch.log_softmax(zt / tau, -1)
    ps, pt = ls.exp(), lt.exp()
    if kind == "kl":
        lg = (pt * (lt - ls)).sum(-1)
    elif kind == "rkl":
        lg = (ps * (ls - lt)).sum(-1)
    elif kind == "jsd":
        lm = torch.log(beta * pt + (1 - beta) * ps)
        lg = beta * (pt * (lt - lm)).sum(-1) + (1 - beta) * (ps * (ls - lm)).sum(-1)
    else:
        lg = torch.zeros(N, dtype=torch.float64)
    lg = lg * tau * tau
    total = (alpha * ce + (1 - alpha) * lg).mean()
    total.backward()
    out["cases"].append({"logit": kind, "beta": beta, "tau": tau, "alpha": alpha,
                         "ce": (ce if alpha > 0 else torch.zeros(N)).tolist(),
                         "lg": (lg if alpha < 1 else torch.zeros(N)).tolist(),
                         "grad": zz.grad.flatten().tolist()})
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=0)
    f.write("\n")
