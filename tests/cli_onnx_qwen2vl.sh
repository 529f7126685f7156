#!/usr/bin/env bash
# Qwen2-VL in ONNX Runtime (scripts/ort_run.mjs): qwen2vl-tiny's decoder graphs take M-RoPE
# positions as position_ids [3, 1, n] (temporal / height / width, `evlm prompt`'s
# mrope_positions) and image features as the prefill graph's image_features. Without --grid the
# features come from evlm's encoder; with --grid 4x6 (the fixture image's patch grid) from the
# exported tower + PatchMerger (vision.onnx), whose features equal evlm's within 1e-4 x
# max(1, |ref|), and then every forward pass runs in ONNX Runtime. On the fixture's image prompt
# and on a text prompt, every prompt position's logits equal evlm's float logits within
# 1e-3 x max(1, |ref|), and greedy AR-1 decoding gives `evlm run --temp 0`'s ids (on the image
# prompt also the transformers reference greedy_ids of ref_outputs.json); again split into two
# parts, and in w8a16 against `evlm logits --sim` within cli_onnx_qdq.sh's tolerance (worst <= 4
# steps, mean <= 0.5 step of the coarsest activation scale). The manifest names the layout; an
# image of another grid than the vision graph's, --tiles on Qwen2-VL and --grid on SmolVLM are
# refused naming why. Skipped (77) as cli_onnx.sh is.
set -u
ONNX_FIXTURE=qwen2vl-tiny
. "$(dirname "$0")/onnx_common.sh"

M="$F/qwen2vl-tiny"
IMG="$M/ref_image.png"
PI='<|im_start|>user
<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|>
<|im_start|>assistant
'
PT='<|im_start|>user
Describe a red car on a quiet road.<|im_end|>
<|im_start|>assistant
'
for i in 1 2 3 4; do echo "A red car $i drives on a quiet road past a small house."; done \
  > "$tmp/calib.txt"

# check NAME EXPORT SIM(0|1) PROMPT [--image FILE]
check() {
  local name=$1 o=$2 sim=$3 p=$4; shift 4
  local simarg=()
  [ "$sim" = 1 ] && simarg=(--sim "$o")
  "$BIN" logits -m "$M" --raw "$@" -p "$p" --out "$tmp/$name.ref" "${simarg[@]}" \
    > "$tmp/$name.ids.json" || { bad "$name: evlm logits"; return; }
  "$BIN" prompt -m "$M" --raw "$@" -p "$p" --features-out "$tmp/$name.fref" >/dev/null ||
    { bad "$name: evlm prompt"; return; }
  node "$RUN" "$o" -m "$M" --raw "$@" -p "$p" -n 12 --evlm "$BIN" --logits-out "$tmp/$name.ort" \
    --features-out "$tmp/$name.fort" > "$tmp/$name.ort.out" 2>/dev/null ||
    { bad "$name: ort_run"; return; }
  "$BIN" run -m "$M" --raw "$@" -p "$p" -n 12 --temp 0 --json "${simarg[@]}" \
    > "$tmp/$name.run.json" || { bad "$name: evlm run"; return; }
  python3 - "$o" "$tmp/$name" "$M" "$sim" "$#" <<'PY' && ok || bad "$name: ONNX Runtime vs evlm"
import json, os, struct, sys
o, t, m, sim, image = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5] != "0"
man = json.load(open(o + "/manifest.json"))
V = man["model"]["vocab_size"]
ref = open(t + ".ref", "rb").read(); got = open(t + ".ort", "rb").read()
n = len(ref) // (4 * V)
assert n > 0 and len(ref) == len(got) == 4 * n * V, (len(ref), len(got), V)
r = struct.unpack("<%df" % (n * V), ref); g = struct.unpack("<%df" % (n * V), got)
d = [abs(a - b) for a, b in zip(r, g)]
ort_ids = json.loads(open(t + ".ort.out").read().strip().splitlines()[-1])["ids"]
evlm_ids = json.load(open(t + ".run.json"))["output_ids"]
if sim:
    s = max(p["scale"] for p in man["quantization"]["activations"])
    worst, mean = max(d), sum(d) / len(d)
    print("%s: %d positions, worst |d| %.2f steps, mean %.3f steps, greedy %s"
          % (os.path.basename(t), n, worst / s, mean / s, ort_ids))
    assert worst <= 4 * s and mean <= 0.5 * s, (worst, mean, s)
else:
    rel = max(x / max(1.0, abs(a)) for x, a in zip(d, r))
    print("%s: %d positions, worst |d| / max(1, |ref|) %.2e, greedy %s"
          % (os.path.basename(t), n, rel, ort_ids))
    assert rel <= 1e-3, rel
assert ort_ids == evlm_ids, (ort_ids, evlm_ids)
if image and not sim:
    want = json.load(open(m + "/ref_outputs.json"))["greedy_ids"]
    assert ort_ids == want[:len(ort_ids)], (ort_ids, want)
# the features (from the vision graph, or evlm's own passed through)
if image:
    fr = open(t + ".fref", "rb").read(); fg = open(t + ".fort", "rb").read()
    assert len(fr) == len(fg) > 0, (len(fr), len(fg))
    k = len(fr) // 4
    a = struct.unpack("<%df" % k, fr); b = struct.unpack("<%df" % k, fg)
    fw = max(abs(x - y) / max(1.0, abs(x)) for x, y in zip(a, b))
    print("  %d feature rows (%s), worst %.2e" % (k // man["model"]["hidden_size"],
          "vision.onnx" if "vision" in man else "evlm", fw))
    assert fw <= 1e-4, fw
# the manifest: M-RoPE positions, image features as a prefill input, the vision graph or a note
assert man["model"]["rope"] == "mrope" and man["model"]["mrope_section"] == [2, 3, 3]
if "vision" in man:
    v = man["vision"]
    assert v["tower"] == "qwen2vl" and v["grid"] == [1, 4, 6] and v["tokens_per_tile"] == 6
    gv = [g for g in man["graphs"] if g["name"] == "vision"][0]
    assert gv["inputs"][0]["shape"] == [24, v["patch_dim"]]
    assert gv["outputs"][0]["shape"] == [6, man["model"]["hidden_size"]]
else:
    assert "Qwen2-VL" in man["vision_note"]
for gr in [g for g in man["graphs"] if g["name"] != "vision"]:
    ins = {x["role"]: x for x in gr["inputs"]}
    assert ins["position_ids"]["shape"] == [3, 1, gr["n_tokens"]], ins["position_ids"]
    assert ins["position_ids"]["layout"].startswith("mrope")
    if gr["name"] == "prefill" and gr.get("part", 0) == 0:
        assert ins["image_features"]["shape"] == [1, gr["n_tokens"], man["model"]["hidden_size"]]
PY
}

"$BIN" export-onnx -m "$M" -o "$tmp/fp32" --ar 16 --ctx 128 >/dev/null || bad "fp32: export"
check image "$tmp/fp32" 0 "$PI" --image "$IMG"
check text "$tmp/fp32" 0 "$PT"
"$BIN" export-onnx -m "$M" -o "$tmp/parts" --ar 8 --ctx 64 --parts 2 >/dev/null ||
  bad "parts: export"
check image_parts "$tmp/parts" 0 "$PI" --image "$IMG"
"$BIN" export-onnx -m "$M" -o "$tmp/w8a16" --ar 16 --ctx 128 --precision w8a16 \
  --calib "$tmp/calib.txt" >/dev/null || bad "w8a16: export"
check image_w8a16 "$tmp/w8a16" 1 "$PI" --image "$IMG"

# the tower as vision.onnx for the fixture image's grid: every pass in ONNX Runtime
"$BIN" export-onnx -m "$M" -o "$tmp/grid" --ar 16 --ctx 128 --grid 4x6 >/dev/null ||
  bad "grid: export"
check image_grid "$tmp/grid" 0 "$PI" --image "$IMG"
check text_grid "$tmp/grid" 0 "$PT"
"$BIN" export-onnx -m "$M" -o "$tmp/grid44" --ar 16 --ctx 128 --grid 4x4 >/dev/null ||
  bad "grid 4x4: export"
err "patch grid 1x4x6 is not the vision graph's 1x4x4 (export-onnx --grid 4x6" node "$RUN" \
  "$tmp/grid44" -m "$M" --raw --image "$IMG" -p "$PI" -n 2 --evlm "$BIN"

err "Qwen2-VL's vision graph is one fixed patch grid" "$BIN" export-onnx -m "$M" \
  -o "$tmp/bad" --ar 16 --ctx 128 --tiles 2
err "grid = 3x6: patch rows and columns must be multiples of the merge size 2" "$BIN" \
  export-onnx -m "$M" -o "$tmp/bad" --ar 16 --ctx 128 --grid 3x6
err "grid = 4x4: a Qwen2-VL vision graph" "$BIN" export-onnx -m "$F/smolvlm-tiny" \
  -o "$tmp/bad" --ar 16 --ctx 128 --grid 4x4
[ -e "$tmp/bad" ] && bad "a refused export left files behind" || ok

echo "cli_onnx_qwen2vl: $pass passed, $fail failed"
[ $fail -eq 0 ]
