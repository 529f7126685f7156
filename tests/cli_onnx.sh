#!/usr/bin/env bash
# evlm export-onnx checked by ONNX Runtime (npm's onnxruntime-node, scripts/ort_run.mjs): the
# fp32 decoder graphs of llama-tiny, the Qwen2 text half of qwen2vl-tiny (text-only prompts,
# where M-RoPE's three positions are equal) and the text half of smolvlm-tiny give evlm's float
# logits for every prompt position within 1e-3 x max(1, |ref|) (the prompt prefilled in chunks
# of --ar, the last one padded) and evlm's greedy ids through the AR-1 graph with the KV cache
# as I/O; manifest.json describes both graphs; hostile settings fail with one line naming the
# setting and leave nothing behind. Skipped (77) without ../shared, node or onnxruntime-node
# (scripts/deps.sh installs it into build/npm), under the sanitizers and the aarch64 build
# (no ONNX export there; test_onnx covers the writer and the export under ASan).
set -u
ONNX_FIXTURE=llama-tiny
. "$(dirname "$0")/onnx_common.sh"

P="Once upon a time there was a little robot who liked the quick brown fox"
for m in llama-tiny qwen2vl-tiny smolvlm-tiny; do
  M="$F/$m"; O="$tmp/$m"
  [ -d "$M" ] || { bad "$M missing"; continue; }
  "$BIN" export-onnx -m "$M" -o "$O" --ar 8 --ctx 64 >/dev/null || { bad "$m: export"; continue; }
  "$BIN" logits -m "$M" -p "$P" --raw --out "$tmp/$m.ref" > "$tmp/$m.ids.json" || bad "$m: logits"
  ids=$(python3 -c "import json, sys; print(','.join(map(str, json.load(sys.stdin)['ids'])))" \
        < "$tmp/$m.ids.json")
  node "$RUN" "$O" --ids "$ids" -n 12 --logits-out "$tmp/$m.ort" > "$tmp/$m.ort.out" ||
    bad "$m: ort_run"
  "$BIN" run -m "$M" -p "$P" --raw -n 12 --temp 0 --json > "$tmp/$m.run.json" || bad "$m: run"
  python3 - "$O" "$tmp/$m" <<'PY' && ok || bad "$m: ONNX Runtime vs evlm"
import json, os, struct, sys
o, t = sys.argv[1], sys.argv[2]
man = json.load(open(o + "/manifest.json"))
n = len(json.load(open(t + ".ids.json"))["ids"]); V = man["model"]["vocab_size"]
ref = open(t + ".ref", "rb").read(); got = open(t + ".ort", "rb").read()
assert len(ref) == len(got) == 4 * n * V, (len(ref), len(got), n, V)
r = struct.unpack("<%df" % (n * V), ref); g = struct.unpack("<%df" % (n * V), got)
worst = max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(r, g))
ort_ids = json.loads(open(t + ".ort.out").read().strip().splitlines()[-1])["ids"]
evlm_ids = json.load(open(t + ".run.json"))["output_ids"]
print("%s: %d prompt tokens, worst logit error %.2e, greedy %s"
      % (os.path.basename(t), n, worst, ort_ids))
assert worst <= 1e-3, worst
assert ort_ids == evlm_ids, (ort_ids, evlm_ids)
# the manifest: both graphs, every role, the KV layout, files present
L, KV, HD = man["model"]["n_layers"], man["model"]["n_kv_heads"], man["model"]["head_dim"]
assert [g["name"] for g in man["graphs"]] == ["prefill", "decode"] + (
    ["vision"] if "vision" in man else [])  # SmolVLM: tests/cli_onnx_vlm.sh checks it
for g, N in zip(man["graphs"], (8, 1)):
    assert g["n_tokens"] == N and g["past_len"] == 64 - N and os.path.isfile(o + "/" + g["file"])
    roles = {}
    for x in g["inputs"] + g["outputs"]:
        roles.setdefault(x["role"], []).append(x)
    for r_ in ("past_key", "past_value"):
        assert sorted(x["layer"] for x in roles[r_]) == list(range(L))
        assert all(x["shape"] == [1, KV, 64 - N, HD] for x in roles[r_])
    for r_ in ("present_key", "present_value"):
        assert all(x["shape"] == [1, KV, N, HD] for x in roles[r_]) and len(roles[r_]) == L
    assert roles["attention_mask"][0]["shape"] == [1, 1, N, 64]
    assert roles["input_ids"][0]["dtype"] == "int64" and roles["logits"][0]["shape"] == [1, N, V]
assert man["kv"]["present"] == "new_rows" and man["mask"]["kind"] == "additive"
assert os.path.getsize(o + "/" + man["weights"]["file"]) == man["weights"]["bytes"]
PY
done

# hostile settings: one line naming the setting, nothing written
M="$F/llama-tiny"
err "option --ar" "$BIN" export-onnx -m "$M" -o "$tmp/bad" --ar 0
err "\-\-ctx 8 must be larger than --ar 8" "$BIN" export-onnx -m "$M" -o "$tmp/bad" --ar 8 --ctx 8
err "ctx = 4096 is past the model's trained context" \
  "$BIN" export-onnx -m "$M" -o "$tmp/bad" --ar 8 --ctx 4096
err "precision 'w4a16'" "$BIN" export-onnx -m "$M" -o "$tmp/bad" --precision w4a16
err "no output folder" "$BIN" export-onnx -m "$M"
mkdir -p "$tmp/full"; echo x > "$tmp/full/keep"
err "exists and is not empty" "$BIN" export-onnx -m "$M" -o "$tmp/full" --ar 8 --ctx 64
if [ -e "$tmp/bad" ] || [ "$(ls "$tmp/full")" != keep ] ||
   ls -d "$tmp"/*.tmp.* >/dev/null 2>&1; then
  bad "a failed export left files behind"; else ok; fi
# an empty folder is a fine destination
mkdir -p "$tmp/empty"
"$BIN" export-onnx -m "$M" -o "$tmp/empty" --ar 4 --ctx 16 >/dev/null &&
  [ -f "$tmp/empty/decoder_ar4.onnx" ] && ok || bad "export into an empty folder"

echo "cli_onnx: $pass passed, $fail failed"
[ $fail -eq 0 ]
