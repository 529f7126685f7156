"""Reference numbers of tests/test_train_loop.c (adamw_vs_torch): five steps of
torch.optim.AdamW (torch 1.13.1, Debian python3-torch, CPU, float32, foreach=False) with
torch.nn.utils.clip_grad_norm_ and a learning rate changed per step, on two trainable tensors
(A: 3x4, B: 5). Inputs are closed-form (sin) so the C test rebuilds them; the printed arrays are
pasted into the test. Run: python3 tests/data/adamw_ref.py
"""
import math
import torch

torch.set_default_dtype(torch.float32)
SHAPES = {"A": (3, 4), "B": (5,)}
LRS = [1e-2, 3e-2, 2e-2, 5e-3, 1e-2]
CLIP = [0.0, 1.5, 0.0, 0.7, 100.0]  # 0: no clipping that step
WD = 0.1


def init(tag, n, step=None):
    k = 1 if tag == "A" else 2
    if step is None:
        return [0.5 * math.sin(0.37 * i + k) for i in range(n)]
    return [math.sin(0.91 * i + 1.3 * step + k) * (1.0 + 0.5 * step) for i in range(n)]


params = {}
for tag, shp in SHAPES.items():
    n = math.prod(shp)
    params[tag] = torch.nn.Parameter(torch.tensor(init(tag, n), dtype=torch.float32).reshape(shp))
opt = torch.optim.AdamW(list(params.values()), lr=LRS[0], betas=(0.9, 0.999), eps=1e-8,
                        weight_decay=WD, foreach=False)
norms = []
for step, lr in enumerate(LRS):
    for tag, p in params.items():
        p.grad = torch.tensor(init(tag, p.numel(), step), dtype=torch.float32).reshape(p.shape)
    if CLIP[step] > 0:
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(params.values()), CLIP[step])))
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()
print("/* norms before clipping:", ", ".join("%.9g" % x for x in norms), "*/")
for tag, p in params.items():
    st = opt.state[p]
    for name, t in (("w", p.detach()), ("m", st["exp_avg"]), ("v", st["exp_avg_sq"])):
        vals = ", ".join("%.9g" % x for x in t.reshape(-1).tolist())
        print("static const float ref_%s_%s[] = {%s};" % (tag, name, vals))
