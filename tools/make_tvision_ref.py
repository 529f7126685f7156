"""The reference of tests/test_train_vision.c: the Idefics3 vision tower + connector of
../shared/fixtures/smolvlm-tiny in float64 torch autograd, on two tiles (tile 0 of the fixture's
pixel_values, full; the global tile, padded: only rows < PAD_H and columns < PAD_W are real,
the rest zero, as a non-square image gives), with loss = sum(features * R), R fixed.

Writes OUT (f32 safetensors): pixels [2,3,S,S], mask [2,S,S] (U8), R and features
[2*tokens, text_hidden], loss [1], and the gradient of every tower / connector parameter under
its Hugging Face name. The tower is transformers' Idefics3VisionTransformer written out: patch
mask = any real pixel, NaViT position ids (bucketized fractional coordinates), padding patches
masked as keys (queries still run), GELU tanh, post-LayerNorm, Idefics3Connector.pixel_shuffle.

Usage (Debian: python3-torch, python3-numpy):
  python3 tools/make_tvision_ref.py ../shared/fixtures/smolvlm-tiny tests/data/tvision_ref.safetensors
"""
import json, os, struct, sys

import numpy as np
import torch

PAD_H, PAD_W = 44, 52


def st_load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        raw = bytearray(b[8 + n + s:8 + n + e])
        if v["dtype"] == "BF16":
            a = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            t = torch.from_numpy(a.view(np.float32).copy())
        elif v["dtype"] == "F32":
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.float32).copy())
        else:
            continue
        out[k] = t.reshape(v["shape"])
    return out


def st_save(path, tensors):
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous()
        if t.dtype == torch.uint8:
            raw, dt = t.numpy().tobytes(), "U8"
        else:
            raw, dt = t.float().numpy().astype(np.float32).tobytes(), "F32"
        header[k] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for r in blobs:
            f.write(r)
    os.replace(path + ".tmp", path)


def position_ids(pmask, G):
    """Idefics3VisionEmbeddings: pmask [G, G] bool -> ids [G*G] (padding patches 0)."""
    boundaries = torch.arange(1 / G, 1.0, 1 / G)
    nb_h, nb_w = int(pmask[:, 0].sum()), int(pmask[0].sum())
    ch = torch.arange(0, 1 - 1e-6, 1 / torch.tensor(nb_h, dtype=torch.float32))
    cw = torch.arange(0, 1 - 1e-6, 1 / torch.tensor(nb_w, dtype=torch.float32))
    bh = torch.bucketize(ch, boundaries, right=True)
    bw = torch.bucketize(cw, boundaries, right=True)
    ids = torch.zeros(G * G, dtype=torch.long)
    ids[pmask.reshape(-1)] = (bh[:, None] * G + bw).flatten()
    return ids


def tower(cfg, P, pixels, mask):
    vc = cfg["vision_config"]
    ps, D, nh, eps = vc["patch_size"], vc["hidden_size"], vc["num_attention_heads"], vc["layer_norm_eps"]
    pre = "model.vision_model."
    T, S = pixels.shape[0], pixels.shape[-1]
    G = S // ps
    pm = mask.reshape(T, G, ps, G, ps).sum(dim=(2, 4)) > 0  # [T, G, G]
    x = torch.nn.functional.conv2d(pixels, P[pre + "embeddings.patch_embedding.weight"],
                                   P[pre + "embeddings.patch_embedding.bias"], stride=ps)
    x = x.flatten(2).transpose(1, 2)  # [T, N, D]
    N = x.shape[1]
    pos = torch.stack([position_ids(pm[t], G) for t in range(T)])
    x = x + P[pre + "embeddings.position_embedding.weight"][pos]
    keymask = torch.zeros(T, 1, 1, N, dtype=x.dtype)
    keymask[~pm.reshape(T, 1, 1, N)] = float("-inf")
    hd = D // nh
    for l in range(vc["num_hidden_layers"]):
        L = pre + "encoder.layers.%d." % l
        ln = lambda t, k: torch.nn.functional.layer_norm(t, (D,), P[L + k + ".weight"], P[L + k + ".bias"], eps)
        lin = lambda t, k: t @ P[L + k + ".weight"].T + P[L + k + ".bias"]
        h = ln(x, "layer_norm1")
        q = lin(h, "self_attn.q_proj").view(T, N, nh, hd).transpose(1, 2)
        k = lin(h, "self_attn.k_proj").view(T, N, nh, hd).transpose(1, 2)
        v = lin(h, "self_attn.v_proj").view(T, N, nh, hd).transpose(1, 2)
        a = torch.softmax((q @ k.transpose(2, 3)) * hd ** -0.5 + keymask, dim=-1) @ v
        x = x + lin(a.transpose(1, 2).reshape(T, N, D), "self_attn.out_proj")
        h = torch.nn.functional.gelu(lin(ln(x, "layer_norm2"), "mlp.fc1"), approximate="tanh")
        x = x + lin(h, "mlp.fc2")
    x = torch.nn.functional.layer_norm(x, (D,), P[pre + "post_layernorm.weight"],
                                       P[pre + "post_layernorm.bias"], eps)
    sf = cfg["scale_factor"]
    bsz, seq, emb = x.shape
    h = w = int(seq ** 0.5)
    x = x.view(bsz, h, w, emb).view(bsz, h, w // sf, emb * sf).permute(0, 2, 1, 3)
    x = x.reshape(bsz, w // sf, h // sf, emb * sf * sf).permute(0, 2, 1, 3)
    x = x.reshape(bsz, seq // (sf * sf), emb * sf * sf)
    return x @ P["model.connector.modality_projection.proj.weight"].T


def main():
    fdir, out = sys.argv[1], sys.argv[2]
    cfg = json.load(open(os.path.join(fdir, "config.json")))
    W = st_load(os.path.join(fdir, "model.safetensors"))
    ref = st_load(os.path.join(fdir, "ref_outputs.safetensors"))
    pv = ref["pixel_values"][0]  # [5, 3, S, S]
    S = pv.shape[-1]
    pixels = torch.stack([pv[0], pv[4]]).clone()
    mask = torch.ones(2, S, S, dtype=torch.uint8)
    mask[1, PAD_H:, :] = 0
    mask[1, :, PAD_W:] = 0
    pixels[1] *= mask[1].float()
    names = [k for k in W if "vision_model" in k or "connector" in k]
    P = {k: W[k].double().requires_grad_(k in names) for k in W}
    # the reference's own check: full tiles reproduce transformers' image_hidden_states
    with torch.no_grad():
        f = tower(cfg, P, pv.double(), torch.ones(5, S, S)).float()
        e = (f - ref["image_hidden_states"]).abs().max().item()
        print("image_hidden_states max err %.2e (max |ref| %.2f)" % (e, ref["image_hidden_states"].abs().max().item()))
        assert e <= 1e-4 * ref["image_hidden_states"].abs().max().item()
    feats = tower(cfg, P, pixels.double(), mask.double()).reshape(-1, cfg["text_config"]["hidden_size"])
    R = torch.randn(feats.shape, generator=torch.Generator().manual_seed(17), dtype=torch.float64)
    R = R.float().double()  # what the file stores is what the loss used
    loss = (feats * R).sum()
    loss.backward()
    t = {k: P[k].grad for k in names}
    t.update({"pixels": pixels, "mask": mask, "R": R, "features": feats, "loss": loss.reshape(1)})
    st_save(out, t)
    print("loss %.6f, %d parameter gradients, %d bytes" % (loss.item(), len(names), os.path.getsize(out)))


if __name__ == "__main__":
    main()
