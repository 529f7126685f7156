#!/usr/bin/env python3
"""why.py - for an item where evlm's and llama.cpp's answers differ (tests/interop/vlm.sh):
how close evlm's choice was at the first answer token where the two answers part.

  why.py EVLM LM MMPROJ IMAGE QUESTION LLAMA_ANSWER THREADS

Runs `evlm run --json` (greedy answer ids) and `evlm logits` on the chat prompt plus the answer
tokens both runtimes agree on, and prints one Markdown cell: the answer token index where they
part, evlm's top two tokens there with their probabilities. A small gap (a near-tie) means that a
small change in the image features, such as llama.cpp's own resize filter (not PIL's), flips the
answer; a large gap points at a real difference in the computation.
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile


def run(args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def main():
    evlm, lm, mm, img, q, llama_ans, t = sys.argv[1:8]
    base = [evlm, "run", "-m", lm, "--mmproj", mm, "--image", img, "-p", q, "-n", "64", "-t", t, "--json"]
    r = json.loads(run(base).strip().splitlines()[-1])
    ids = r["output_ids"]
    # the answer tokens both give: evlm's pieces while their text stays a prefix of llama.cpp's
    text, k = "", 0
    want = llama_ans.strip()
    for i in range(len(ids)):
        piece = json.loads(run([evlm, "prompt", "-m", lm, "--mmproj", mm, "--detok", str(ids[i])]))["text"]
        if not want.startswith((text + piece).lstrip()):
            break
        text += piece
        k = i + 1
    if k >= len(ids):
        return print("evlm's answer is a prefix of llama.cpp's (evlm stopped at token %d)" % k)
    # evlm's logits for answer token k: the chat prompt, then answer tokens 0..k-1 (fed by text;
    # the prompt's tokenization of a prefix equals the generated ids for these short answers)
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "l.bin")
        prefix = json.loads(run([evlm, "prompt", "-m", lm, "--mmproj", mm, "--detok", ",".join(map(str, ids[:k]))]))["text"] if k else ""
        info = json.loads(run([evlm, "logits", "-m", lm, "--mmproj", mm, "--image", img, "-p", q, "--out", out, "-t", t]
                              if not k else [evlm, "logits", "-m", lm, "--mmproj", mm, "--image", img, "--raw", "-p",
                                             "<|im_start|>User:<image>%s<end_of_utterance>\nAssistant:%s" % (q, prefix),
                                             "--out", out, "-t", t]).strip().splitlines()[-1])
        V = info["n_vocab"]
        n = len(info["ids"])
        with open(out, "rb") as f:
            f.seek((n - 1) * V * 4)
            row = struct.unpack("<%df" % V, f.read(V * 4))
    top = sorted(range(V), key=lambda i: -row[i])[:2]
    mx = row[top[0]]
    z = sum(math.exp(x - mx) for x in row)
    pieces = [json.loads(run([evlm, "prompt", "-m", lm, "--mmproj", mm, "--detok", str(i)]))["text"] for i in top]
    print("parts at answer token %d: evlm %s p=%.3f vs %s p=%.3f (logit gap %.3f)" % (
        k, json.dumps(pieces[0]), math.exp(row[top[0]] - mx) / z, json.dumps(pieces[1]),
        math.exp(row[top[1]] - mx) / z, row[top[0]] - row[top[1]]))


if __name__ == "__main__":
    main()
