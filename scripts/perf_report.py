#!/usr/bin/env python3
"""make bench: runs the benchmarks and rewrites docs/PERFORMANCE.md (machine, commands, figures).

Standard shapes (issue 4) with random weights from `evlm synth`, the peers' figures measured on this
machine next to ours, lookahead decoding on the real models, and the kernel micro-benchmarks.
Environment: BENCH_REPS (default 3), BENCH_QUICK=1 (skip the Qwen2-1.5B shape and the 256M image),
EVLM (the binary, default build/release/evlm). Models are synthesized once into build/models/.
"""
import datetime, json, os, platform, re, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(ROOT)
EVLM = os.environ.get("EVLM", "build/release/evlm")
REPS = int(os.environ.get("BENCH_REPS", "3"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
SHARED = os.environ.get("EVLM_SHARED", os.path.join(ROOT, "..", "shared"))
MODELS = "build/models"
THREADS = os.environ.get("BENCH_THREADS", str(min(os.cpu_count() or 1, 2)))

# llama.cpp c392e50 (Feb 2025), CPU backend, 2 threads, llama-bench, random weights, this machine (issue 4)
LLAMA_CPP = {
    ("smollm2-135m", "f16"): (490, 107), ("smollm2-135m", "q8_0"): (592, 156), ("smollm2-135m", "q4_0"): (643, 262),
    ("qwen2-1.5b", "f16"): (64, 10.1), ("qwen2-1.5b", "q8_0"): (78, 15.5), ("qwen2-1.5b", "q4_0"): (68, 33.2),
}

from report_common import last_json, log, run  # noqa: E402


def has_quantize():
    return run([EVLM, "quantize", "--help"], check=False).returncode == 0


def synth(name, config, dtype, text_only=False):
    out = os.path.join(MODELS, "%s-%s" % (name, dtype))
    if not os.path.exists(os.path.join(out, "config.json")):
        args = [EVLM, "synth", "--config", config, "-o", out, "--dtype", dtype]
        if text_only:
            args.append("--text-only")
        run(args)
    return out


def quantized(src, qtype):
    out = "%s-%s.gguf" % (src, qtype)
    if not os.path.exists(out):
        run([EVLM, "quantize", "-m", src, "-o", out, "--type", qtype])
    return out


def draft_oracle(dataset):
    """Tokens per pass of an oracle drafter on the greedy answers of the scene VLM to dataset: at each
    step it verifies the longest continuation that followed the current token anywhere earlier
    (previous answers with their prompt tails, or this answer)."""
    seen, steps, toks = [], 0, 0
    with open(dataset) as f:
        items = [json.loads(l) for l in f]
    for it in items:
        j = last_json(run([EVLM, "run", "-m", "models/scenes-vlm", "--image", it["image"], "-p", it["question"],
                           "-n", "32", "-t", THREADS, "--json"]).stdout)
        ans = j["output_ids"]
        hist, pos = j["prompt_ids"][-8:] + ans[:1], 1
        while pos < len(ans):
            best = 0
            for s in seen + [hist]:
                for i in range(len(s) - 1):
                    if s[i] == hist[-1]:
                        k = 0
                        while pos + k < len(ans) and i + 1 + k < len(s) and s[i + 1 + k] == ans[pos + k]:
                            k += 1
                        best = max(best, k)
            acc = ans[pos:pos + best + 1]
            steps, toks, pos = steps + 1, toks + len(acc), pos + len(acc)
            hist += acc
        seen.append(hist)
    return toks / steps if steps else 0.0


def bench_pair(model, extra_a, extra_b):
    """Two settings run alternately, REPS single-repetition runs each (a warm-up inside each), and
    the run with the median decode speed of each: a slow spell of this VM hits both alike."""
    runs_a, runs_b = [], []
    for _ in range(REPS):
        runs_a.append(last_json(run([EVLM, "bench", "-m", model, "-t", THREADS, "-r", "1", "--json"] + extra_a).stdout))
        runs_b.append(last_json(run([EVLM, "bench", "-m", model, "-t", THREADS, "-r", "1", "--json"] + extra_b).stdout))
    med = lambda rs: sorted(rs, key=lambda r: r["decode_tok_s"])[len(rs) // 2]
    return med(runs_a), med(runs_b)


def bench(model, extra):
    r = run([EVLM, "bench", "-m", model, "-t", THREADS, "-r", str(REPS), "--json"] + extra)
    return last_json(r.stdout)


def machine():
    info = {}
    try:
        cpu = open("/proc/cpuinfo").read()
        info["cpu"] = next(l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("model name"))
        flags = next(l.split(":", 1)[1].split() for l in cpu.splitlines() if l.startswith("flags"))
        info["isa"] = ", ".join(f for f in ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_int8"] if f in flags)
    except (OSError, StopIteration):
        info["cpu"], info["isa"] = platform.processor(), "?"
    info["cores"] = os.cpu_count()
    try:
        mem = next(l for l in open("/proc/meminfo") if l.startswith("MemTotal"))
        info["mem_gb"] = int(mem.split()[1]) / 1e6
    except (OSError, StopIteration):
        info["mem_gb"] = 0
    info["cc"] = run(["cc", "--version"], check=False).stdout.splitlines()[0] if run(["cc", "--version"], check=False).returncode == 0 else "?"
    info["commit"] = run(["git", "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "?"
    return info


def membw():
    """The machine's memory read bandwidth now (bench_membw, THREADS threads), or None."""
    exe = os.path.join(os.path.dirname(EVLM), "bench_membw")
    r = run([exe, THREADS], check=False) if os.path.exists(exe) else None
    m = re.search(r"read GB/s: ([0-9.]+)", r.stdout) if r and r.returncode == 0 else None
    return float(m.group(1)) if m else None


def fmt(x, nd=1):
    return "-" if x is None else ("%.*f" % (nd, x))


def previous_figures(path="docs/PERFORMANCE.md"):
    """The standard-shape figures of the report being replaced: ({(shape, weights): (prefill, decode)}, commit)."""
    figs, commit = {}, None
    if not os.path.exists(path):
        return figs, commit
    for line in open(path):
        m = re.search(r"commit ([0-9a-f]{7,})", line)
        if m and commit is None:
            commit = m.group(1)
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        # 12 cells: decode after the 512-token prompt in column 8 (11 cells, older reports: column 5)
        if len(cells) in (11, 12) and cells[0] in ("smollm2-135m", "qwen2-1.5b"):
            try:
                figs[(cells[0], cells[1])] = (float(cells[2]), float(cells[5 if len(cells) == 11 else 8]))
            except ValueError:
                pass
    return figs, commit


def history_section(prev, commit, results):
    """Markdown: this run's standard-shape figures against the previous report's."""
    out = []
    if not prev:
        return out
    out.append("Against the previous `make bench` report (commit %s), same machine and commands:\n" % (commit or "?"))
    out.append("| shape | weights | prefill tok/s before | now | ratio | decode (after 512) tok/s before | now | ratio |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for (name, wt), r in results.items():
        if (name, wt) not in prev:
            continue
        pp, tg = prev[(name, wt)]
        out.append("| %s | %s | %.1f | %.1f | %.2fx | %.1f | %.1f | %.2fx |" % (
            name, wt, pp, r["prefill_tok_s"], r["prefill_tok_s"] / pp, tg, r["decode_tok_s"], r["decode_tok_s"] / tg))
    out.append("")
    return out


def training_section(w):
    """make bench's training rows (issue 17): FMA peak, the training GEMMs, one step on two models."""
    w("## Training\n")
    ops = os.path.join("build/release", "bench_train_ops")
    step = os.path.join("build/release", "bench_train_step")
    peak = None
    if os.path.exists(ops):
        out = run([ops, THREADS]).stdout.strip()
        for line in out.splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 3 and cells[0] == THREADS:
                try:
                    peak = max(float(cells[1]), float(cells[2]))
                except ValueError:
                    pass
        w("`bench_train_ops %s`: the machine's FMA peak (a register-only loop of independent FMAs, 1 and %s threads "
          "at once) and the training GEMM layouts at the SmolLM2-135M shapes (8 x 256 tokens).\n" % (THREADS, THREADS))
        w(out + "\n")
    if os.path.exists(step):
        w("`bench_train_step MODEL 8 256 %s 3`: one training step (forward, cross-entropy over every position but the "
          "last, backward; no optimizer) on batch 8 x 256 tokens, median of 3 after a warm-up. MFU = 6 x parameters x "
          "tokens / time against the %s-thread FMA peak above%s.\n" % (THREADS, THREADS, " (%.1f GFLOP/s)" % peak if peak else ""))
        rows = []
        for label, model in [("scene VLM (text batch)", os.path.join(SHARED, "models/scenes-vlm")),
                             ("SmolLM2-135M shape", os.path.join(MODELS, "smollm2-135m-bf16"))]:
            if not os.path.exists(model):
                rows.append("| %s | not found: %s |" % (label, model))
                continue
            out = run([step, model, "8", "256", THREADS, "3"]).stdout.strip().splitlines()
            if not rows:
                rows += [out[-3], out[-2]]
            last = out[-1].split("|")
            last[1] = " %s " % label
            rows.append("|".join(last))
        w("\n".join(rows))
        if peak:
            w("\nMFU (6 x all parameters x tokens / time / peak; in brackets with the parameters a text batch "
              "multiplies: no vision tower, no input embedding beside a separate head): " +
              ", ".join("%s %.0f %% (%.0f %%)" % (r.split("|")[1].strip(), 100.0 * float(r.split("|")[8]) / peak,
                                                100.0 * float(r.split("|")[10]) / peak)
                        for r in rows[2:] if len(r.split("|")) > 11) + ".\n")
        else:
            w("")


def main():
    os.makedirs(MODELS, exist_ok=True)
    prev, prev_commit = previous_figures()
    bw_start = membw()
    m = machine()
    quant = has_quantize()
    doc = []
    w = doc.append
    w("# Performance\n")
    w("Generated by `make bench` (scripts/perf_report.py) on %s, commit %s. Do not edit by hand: rerun it.\n"
      % (datetime.date.today().isoformat(), m["commit"]))
    w("Machine: %s, %d cores visible, %.0f GB; ISA: %s; %s; release build (per-file ISA flags, kernels chosen at run time). "
      "Threads: %s. Medians of %d repetitions after a warm-up (`evlm bench`). On this 2-core VM decode figures move by up "
      "to 30 %% between runs of `make bench` (memory bandwidth is shared with the host): compare within one run." % (m["cpu"], m["cores"], m["mem_gb"], m["isa"], m["cc"], THREADS, REPS))
    w("")

    # ---- standard text shapes ----
    w("## Standard shapes, random weights\n")
    w("`evlm synth --config C -o DIR --dtype D [--text-only]`, then `evlm bench -m DIR -p 512 -n 64 -t %s -r %d --json` "
      "(prefill, and decode after the 512-token prompt) and `evlm bench -m DIR -p 1 -n N -t %s -r 1 --json --head float` "
      "(decode from an empty context, N = 128 for the 135M shape, 64 for the 1.5B one, the full float output head each "
      "token: the conditions and the work of llama-bench's tg128, which starts from an empty cache and computes all "
      "logits); the same without `--head float` gives the greedy column (the default: greedy ids through the int8 copy "
      "of the head, same ids); these two run alternately, %d single runs each, medians%s. "
      "llama.cpp: build c392e50, CPU backend, 2 threads, `llama-bench` (pp512, tg128) on the same shapes, measured on "
      "this machine (issue 4).\n"
      % (THREADS, REPS, THREADS, REPS, "; quantized models from `evlm quantize -m DIR -o OUT.gguf --type T`" if quant else ""))
    w("| shape | weights | prefill tok/s | llama.cpp | ratio | decode tok/s (empty ctx) | llama.cpp tg128 | ratio | "
      "greedy head tok/s | decode tok/s after 512 | decode GB/s | peak RSS MB | model MB |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    shapes = [("smollm2-135m", os.path.join(SHARED, "reference/smolvlm-256m-instruct/config.json"), True)]
    if not QUICK:
        shapes.append(("qwen2-1.5b", "bench/configs/qwen2-1.5b.json", False))
    results = {}
    for name, config, text_only in shapes:
        if not os.path.exists(config):
            w("| %s | config %s not found | | | | | | | | | | |" % (name, config))
            continue
        variants = [("bf16", synth(name, config, "bf16", text_only)), ("f16", synth(name, config, "f16", text_only))]
        if quant:
            for q in ["q8_0", "q4_0"]:
                variants.append((q, quantized(variants[0][1], q)))
        for wt, path in variants:
            r = bench(path, ["-p", "512", "-n", "64"])
            n_empty = "128" if name == "smollm2-135m" else "64"
            e, g = bench_pair(path, ["-p", "1", "-n", n_empty, "--head", "float"], ["-p", "1", "-n", n_empty])
            r["decode_empty_tok_s"], r["decode_empty_gb_s"] = e["decode_tok_s"], e["decode_gb_s"]
            r["decode_greedy_tok_s"] = g["decode_tok_s"]
            results[(name, wt)] = r
            ref = LLAMA_CPP.get((name, wt)) or LLAMA_CPP.get((name, "f16") if wt == "bf16" else (None, None))
            pp, tg = (ref if ref else (None, None))
            w("| %s | %s | %.1f | %s | %s | %.1f | %s | %s | %.1f | %.1f | %.1f | %.0f | %.0f |" % (
                name, wt, r["prefill_tok_s"], fmt(pp, 0), fmt(r["prefill_tok_s"] / pp, 2) + "x" if pp else "-",
                e["decode_tok_s"], fmt(tg), fmt(e["decode_tok_s"] / tg, 2) + "x" if tg else "-", g["decode_tok_s"],
                r["decode_tok_s"], e["decode_gb_s"], r["peak_rss_mb"], r["model_bytes"] / 1e6))
    w("\nbf16 rows are compared with llama.cpp's F16 (it has no BF16 CPU path in that build). The greedy head only "
      "changes models whose output head is float (the quantized files keep theirs in int8 already); the 512-token "
      "run and peak RSS use the default (greedy head, whose int8 copy adds half the float head's bytes).\n")
    doc.extend(history_section(prev, prev_commit, results))
    w("Against the targets of issue 4 (decode >= 1.25x llama.cpp on the 135M shape and >= 1.05x on the 1.5B shape at every "
      "precision, prefill >= 2x). Decode is compared under llama-bench's conditions (empty context); the ratio after the "
      "512-token prompt, where our cache is longer than llama.cpp's was, is given too:\n")
    w("| shape | weights | decode ratio | after 512 | target | met | prefill ratio | target | met |")
    w("|---|---|---:|---:|---:|---|---:|---:|---|")
    for (name, wt), r in results.items():
        ref = LLAMA_CPP.get((name, "f16" if wt == "bf16" else wt))
        if not ref:
            continue
        dr, pr = r["decode_empty_tok_s"] / ref[1], r["prefill_tok_s"] / ref[0]
        dt = 1.25 if name == "smollm2-135m" else 1.05
        w("| %s | %s | %.2fx | %.2fx | %.2fx | %s | %.2fx | 2.00x | %s |" % (
            name, wt, dr, r["decode_tok_s"] / ref[1], dt, "yes" if dr >= dt else "no", pr, "yes" if pr >= 2 else "no"))
    w("")

    # ---- SmolVLM-256M with one 512x512 image ----
    if not QUICK:
        cfg = os.path.join(SHARED, "reference/smolvlm-256m-instruct/config.json")
        if os.path.exists(cfg):
            w("## SmolVLM-256M, one 512x512 image and a 20-token question\n")
            w("`evlm bench -m DIR --image bench/data/card512.png -p 20 -n 32 -t %s -r 1 --json`. SmolVLM's processor resizes the "
              "longest edge to 2048 (upscaling) and splits 512-pixel tiles plus a global image, so one 512x512 picture is %s encoder passes "
              "of 1024 patches each.\n" % (THREADS, "several"))
            w("| weights | image splitting | image encode ms | image tokens | prefill tok/s | TTFT ms | decode tok/s | peak RSS MB |")
            w("|---|---|---:|---:|---:|---:|---:|---:|")
            vlm = synth("smolvlm-256m", cfg, "bf16")
            variants = [("bf16", vlm)]
            if quant:
                variants.append(("q8_0", quantized(vlm, "q8_0")))
            for split in ["on", "off"]:
                for wt, path in variants:
                    r = run([EVLM, "bench", "-m", path, "--image", "bench/data/card512.png", "-p", "20", "-n", "32", "-t", THREADS,
                             "-r", "1" if split == "on" else str(REPS), "--image-splitting", split, "--json"])
                    j = last_json(r.stdout)
                    w("| %s | %s | %.0f | %d | %.1f | %.0f | %.1f | %.0f |" % (wt, split, j["image_ms"], j["n_image_tokens"], j["prefill_tok_s"], j["ttft_ms"],
                                                                         j["decode_tok_s"], j["peak_rss_mb"]))
            w("\nTarget (issue 4): TTFT <= 0.6 s with the int8 model. `--image-splitting off` (the processor's do_image_splitting "
              "false) encodes the image once at 512x512 (64 image tokens); on (the model's default) is 16 tiles + the global image.\n")

    # ---- Qwen2-VL-2B shape ----
    if not QUICK and os.path.exists(os.path.join(SHARED, "fixtures/qwen2vl-tiny/tokenizer.json")):
        w("## Qwen2-VL-2B shape, one 512x512 image (issue 7)\n")
        w("`evlm synth --config bench/configs/qwen2-vl-2b/config.json --tokenizer ../shared/fixtures/qwen2vl-tiny` (vision depth 32, "
          "embed 1280, 16 heads, merger to 1536; text = the Qwen2-1.5B shape with M-RoPE), then `evlm bench --image "
          "bench/data/card512.png -p 20 -n 16 -r 1`: the image becomes 36x36 patches (324 tokens after merging).\n")
        w("| weights | image encode ms | image tokens | prefill tok/s | TTFT ms | decode tok/s | peak RSS MB |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        out = os.path.join(MODELS, "qwen2-vl-2b-bf16")
        if not os.path.exists(os.path.join(out, "config.json")):
            run([EVLM, "synth", "--config", "bench/configs/qwen2-vl-2b/config.json", "-o", out, "--dtype", "bf16",
                 "--tokenizer", os.path.join(SHARED, "fixtures/qwen2vl-tiny")])
        variants = [("bf16", out)]
        if quant:
            variants.append(("q4_0", quantized(out, "q4_0")))
        for wt, path in variants:
            j = last_json(run([EVLM, "bench", "-m", path, "--image", "bench/data/card512.png", "-p", "20", "-n", "16", "-t", THREADS, "-r", "1", "--json"]).stdout)
            w("| %s | %.0f | %d | %.1f | %.0f | %.1f | %.0f |" % (wt, j["image_ms"], j["n_image_tokens"], j["prefill_tok_s"], j["ttft_ms"], j["decode_tok_s"], j["peak_rss_mb"]))
        w("")

    # ---- lookahead ----
    w("## Lookahead decoding and prompt lookup (issue 6)\n")
    w("Greedy decoding, output identical to one token per pass (checked by tests/test_lookahead.c). "
      "`tokens/pass` counts generated tokens per forward pass after the first token.\n")
    w("| model | workload | plain tok/s | setting | tok/s | tokens/pass | speedup |")
    w("|---|---|---:|---|---:|---:|---:|")
    aid = os.path.join(MODELS, "aidreams260K")
    if not os.path.exists(os.path.join(aid, "config.json")):
        run([EVLM, "convert", "--from", "llama2c", "models/aidreams260K/aidreams260K.bin", "models/aidreams260K/tok512.bin", aid])

    def run_med(model, prompt, extra, n=200):
        rows = []
        for _ in range(REPS):
            rows.append(last_json(run([EVLM, "run", "-m", model, "--raw", "-p", prompt, "-n", str(n), "-t", "1", "--json"] + extra).stdout))
        return statistics.median(r["decode_tok_s"] for r in rows), statistics.median(r["accepted_per_step"] for r in rows)

    stories = os.path.join(MODELS, "stories260K")
    if not os.path.exists(os.path.join(stories, "config.json")) and os.path.exists(os.path.join(SHARED, "reference/llama2c/stories260K.bin")):
        run([EVLM, "convert", "--from", "llama2c", os.path.join(SHARED, "reference/llama2c/stories260K.bin"),
             "models/aidreams260K/tok512.bin", stories])
    llama2c = [("aidreams260K (llama2.c, converted)", aid),
               ("stories260K (llama2.c, converted; aidreams' tokenizer, so ids only)", stories)]
    for label, model in llama2c:
        if not os.path.exists(os.path.join(model, "config.json")):
            continue
        base, _ = run_med(model, "Once upon a time", [])
        for setting in [["--lookahead", "auto"], ["--lookahead", "3,3,3"], ["--prompt-lookup", "8"], ["--lookahead", "4,4,4", "--prompt-lookup", "8"]]:
            tps, aps = run_med(model, "Once upon a time", setting)
            w("| %s | \"Once upon a time\", 200 tokens, 1 thread | %.0f | `%s` | %.0f | %.2f | %.2fx |" % (label, base, " ".join(setting), tps, aps, tps / base))
    scenes_ds = os.path.join(SHARED, "datasets/scenes-dev/dev.jsonl")
    scene_note = ""
    if os.path.exists(scenes_ds):
        sub = os.path.join(MODELS, "scenes-describe-plate.jsonl")
        base_dir = os.path.dirname(scenes_ds)
        with open(scenes_ds) as f, open(sub, "w") as g:
            for line in f:
                it = json.loads(line)
                if it["question"].startswith("Describe") or "plate" in it["question"]:
                    it["image"] = os.path.join(base_dir, it["image"])
                    g.write(json.dumps(it) + "\n")

        def ev(extra):
            return last_json(run([EVLM, "eval", "-m", "models/scenes-vlm", "--dataset", sub, "-n", "32", "-t", THREADS, "--json"] + extra).stdout)

        # plain and every setting in turn, REPS rounds, medians: a single plain run moves by 30 %;
        # the float-head pair (entries 5, 6) shows the same with the full output head
        settings = [[], ["--lookahead", "auto"], ["--lookahead", "0,4,2"], ["--lookahead", "0,6,2"], ["--lookahead", "2,4,2"],
                    ["--head", "float"], ["--head", "float", "--lookahead", "auto"]]
        runs = {i: [] for i in range(len(settings))}
        for _ in range(REPS):
            for i, setting in enumerate(settings):
                runs[i].append(ev(setting))
        med = lambda i, k: statistics.median(r[k] for r in runs[i])
        n_items = runs[0][0].get("n", 0)
        for i in range(1, len(settings)):
            if i == 5:
                continue
            b = 5 if "float" in settings[i] else 0
            b_tps = med(b, "decode_tok_s")
            w("| scenes-vlm (bf16%s) | scenes-dev describe + plate questions (%d), one n-gram pool for the set | %.0f | `%s` | %.0f | %.2f | %.2fx |"
              % (", `--head float`" if b else "", n_items, b_tps, " ".join(settings[i]), med(i, "decode_tok_s"),
                 med(i, "accepted_per_step"), med(i, "decode_tok_s") / b_tps))
        oracle = draft_oracle(sub)
        scene_note = ("The scene answers cap what any drafting can gain: an oracle that drafts, at every step, the "
                      "longest continuation found after the current token anywhere in the earlier answers or this "
                      "one (unlimited guesses) verifies %.2f tokens per pass on this set; the decision words (alert / "
                      "drowsy, open / closed, the emotion, every plate character) cannot be drafted. " % oracle)
        scene_note += ("Scene VLM: plain greedy decoding with the int8 greedy head runs at %.2fx the full float head "
                      "(%.0f vs %.0f tok/s), and `--lookahead auto` on top of it at %.2fx the full-head plain figure. " %
                      (med(0, "decode_tok_s") / med(5, "decode_tok_s"), med(0, "decode_tok_s"), med(5, "decode_tok_s"),
                       med(1, "decode_tok_s") / med(5, "decode_tok_s")))
    s135 = os.path.join(MODELS, "smollm2-135m-bf16")
    if os.path.exists(s135):
        for n_prompt in ["64", "2000"]:
            p, r = bench_pair(s135, ["-p", n_prompt, "-n", "64"], ["-p", n_prompt, "-n", "64", "--lookahead", "auto"])
            w("| SmolLM2-135M shape (random bf16) | bench -p %s -n 64 | %.1f | `--lookahead auto` | %.1f | %.2f | %.2fx |" % (n_prompt, p["decode_tok_s"], r["decode_tok_s"], r["accepted_per_step"], r["decode_tok_s"] / p["decode_tok_s"]))
    w("\nEach row is a median of %d runs (scene rows: %d rounds that run plain and every setting in turn). " % (REPS, REPS))
    w(scene_note)
    w("Target (issue 6): >= 1.5x decode tok/s on the real models at identical output: not reached on this machine. "
      "Verifying k tokens in one pass pays while a pass is bound by reading the weights; here the real models are "
      "bound by multiply-adds instead. The llama2.c models (1 MB) live in each core's L2 and a pass of m rows costs "
      "about 0.45 + 0.55 m one-row passes (m = 4: 2.2x, m = 8: 4.3x), more than the tokens it verifies. The scene VLM's decoder and int8 head "
      "(22 MB) fit this CPU's 32 MB L3: each extra row adds ~20 % of a one-row pass (the int8 head alone runs at "
      "~280 GMAC/s per core from 4 rows), while its answers allow at most the oracle's tokens per pass above; with "
      "the full float head (34 MB, read from DRAM) the ratio is higher because the baseline is slower. On a phone-class "
      "SoC (8-12 MB of shared cache, ~50 GB/s) the same model is bandwidth-bound and the float-head regime applies. ")
    w("Random weights repeat themselves, so their acceptance is higher than a trained model's: the 135M row shows what a bandwidth-bound model gains per accepted token, not a realistic acceptance rate.\n")

    # ---- kernels ----
    w("## Kernels\n")
    for b in ["bench_kernels", "bench_gemm", "bench_quant"]:
        path = os.path.join("build/release", b)
        if os.path.exists(path):
            w("### %s (1 thread)\n" % b)
            w(run([path]).stdout.strip() + "\n")

    training_section(w)

    bw_end = membw()
    at = next(i for i, l in enumerate(doc) if l.startswith("Machine: "))
    doc.insert(at + 1, "\nMemory read bandwidth (`bench_membw %s`, best of 5 passes over 512 MB) at the start / end of this run: %s / %s GB/s. "
               "Decode reads every weight once per token, so its GB/s column is the figure to hold against these."
               % (THREADS, fmt(bw_start), fmt(bw_end)))
    text = "\n".join(doc) + "\n"
    with open("docs/PERFORMANCE.md.tmp", "w") as f:
        f.write(text)
    os.replace("docs/PERFORMANCE.md.tmp", "docs/PERFORMANCE.md")
    print(text)


if __name__ == "__main__":
    main()
