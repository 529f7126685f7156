#!/usr/bin/env python3
"""A/B speed check of two evlm binaries on the same machine in the same run (a refactor that must
not change speed): `scripts/ab_bench.py OLD_EVLM NEW_EVLM [ROUNDS]`.

Runs `evlm bench` on the scene VLM (text, image, --head float), the SmolLM2-135M shape (bf16,
synthesized into build/models/ab-135m, and its q4_0 GGUF), alternating old / new each round
(old first on even rounds) so a slow spell of the machine hits both, and prints the medians as a
Markdown table with after / before ratios. Needs ../shared (the scene VLM and the SmolVLM-256M
config)."""
import json, os, statistics, subprocess, sys

if len(sys.argv) < 3:
    sys.exit(__doc__)
OLD, NEW = sys.argv[1], sys.argv[2]
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("EVLM_SHARED", os.path.join(ROOT, "..", "shared"))
SCENE = os.path.join(SHARED, "models/scenes-vlm")
M135 = os.path.join(ROOT, "build/models/ab-135m")
Q135 = M135 + "-q4_0.gguf"
if not os.path.exists(M135):
    subprocess.run([NEW, "synth", "--config", os.path.join(SHARED, "reference/smolvlm-256m-instruct/config.json"),
                    "-o", M135, "--dtype", "bf16", "--text-only"], check=True)
if not os.path.exists(Q135):
    subprocess.run([NEW, "quantize", "-m", M135, "-o", Q135, "--type", "q4_0", "-q", "--json"], check=True,
                   stdout=subprocess.DEVNULL)
CASES = [
    ("scene VLM text -p 512 -n 64", ["-m", SCENE, "-p", "512", "-n", "64"]),
    ("scene VLM image -p 64 -n 64", ["-m", SCENE, "--image", os.path.join(ROOT, "bench/data/card512.png"),
                                     "-p", "64", "-n", "64"]),
    ("scene VLM --head float -p 512 -n 64", ["-m", SCENE, "-p", "512", "-n", "64", "--head", "float"]),
    ("135M shape bf16 -p 512 -n 64", ["-m", M135, "-p", "512", "-n", "64"]),
    ("135M shape bf16 -p 1 -n 128 --head float", ["-m", M135, "-p", "1", "-n", "128", "--head", "float"]),
    ("135M shape q4_0 -p 512 -n 64", ["-m", Q135, "-p", "512", "-n", "64"]),
]
print("| case | metric | before | after | after / before |")
print("|---|---|---:|---:|---:|")
for name, args in CASES:
    res = {OLD: [], NEW: []}
    for r in range(ROUNDS):
        for b in ((OLD, NEW) if r % 2 == 0 else (NEW, OLD)):
            out = subprocess.run([b, "bench"] + args + ["-t", "2", "-r", "1", "--json"], capture_output=True,
                                 text=True, check=True).stdout
            res[b].append(json.loads(out))
    for metric in ("prefill_tok_s", "decode_tok_s", "ttft_ms", "image_ms"):
        o = statistics.median(x[metric] for x in res[OLD])
        n = statistics.median(x[metric] for x in res[NEW])
        if metric == "image_ms" and o < 1 or metric == "prefill_tok_s" and "-p 1 " in name:
            continue
        print("| %s | %s | %.1f | %.1f | %.3f |" % (name, metric, o, n, n / o if o else 0), flush=True)
