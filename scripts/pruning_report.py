"""Issue 16's rows of docs/COMPRESSION.md, called by scripts/compression_report.py (make
compression-report; not a command of its own): pruning (50 % unstructured by magnitude, Wanda,
SparseGPT; 2:4 SparseGPT, alone and with q8_0), structured pruning (--ratio 0.25 / 0.5), low rank
(SVD vs ASVD vs SVD-LLM at --ratio 0.8) and q4_0 GPTQ alone and with low-rank compensation
(--lowrank-bpw 0.25 / 0.5), in the columns of the quantization tables, on the scene VLM and
aidreams260K; the targets of the issue checked from the measured numbers; the Pareto plot.

Not here: the measurements' meaning (docs/compression/*.md, the commentary appended after the
tables), the hand-measured speed rows of the 1.5B shape.
"""
import hashlib, json, os, shutil, subprocess, sys

log = lambda *a: print(*a, file=sys.stderr, flush=True)
CACHE = "build/compression/cache"
REUSE = os.environ.get("REPORT_REUSE") == "1"
_MADE = {}  # the outputs written by this run (intermediate steps shared between rows)


# ---- a measurement cache, so an interrupted run can be resumed (REPORT_REUSE=1) -------------
def _key(args):
    return os.path.join(CACHE, hashlib.sha1("\0".join(args).encode()).hexdigest() + ".json")


def cache_get(args):
    if not REUSE or not os.path.exists(_key(args)):
        return None
    # a command that writes a file is reused only while that file is still there
    if "-o" in args and not os.path.exists(args[args.index("-o") + 1]):
        return None
    with open(_key(args)) as f:
        log("(cached) " + " ".join(args))
        return json.load(f)


def cache_put(args, out):
    os.makedirs(CACHE, exist_ok=True)
    with open(_key(args) + ".tmp", "w") as f:
        json.dump(out, f)
    os.replace(_key(args) + ".tmp", _key(args))


# ---- the variants ------------------------------------------------------------------------------
def variants(calib, quick):
    """(label, output name, evlm subcommand args or None for the source, group)."""
    pr = ["prune", "--method"]
    v = [("50 %, magnitude", "p50-magnitude.gguf", pr + ["magnitude", "--sparsity", "0.5"], "prune"),
         ("50 %, Wanda", "p50-wanda.gguf", pr + ["wanda", "--sparsity", "0.5"] + calib, "prune"),
         ("50 %, SparseGPT", "p50-sparsegpt.gguf", pr + ["sparsegpt", "--sparsity", "0.5"] + calib, "prune"),
         ("2:4, SparseGPT", "p24-sparsegpt.gguf", pr + ["sparsegpt", "--pattern", "2:4"] + calib, "prune"),
         ("2:4, SparseGPT + q8_0 (one pass)", "p24-sparsegpt-q8.gguf",
          pr + ["sparsegpt", "--pattern", "2:4", "--type", "q8_0"] + calib, "prune"),
         ("structured, --ratio 0.25", "s25", ["prune", "--structured", "--ratio", "0.25"] + calib, "structured"),
         ("structured, --ratio 0.5", "s50", ["prune", "--structured", "--ratio", "0.5"] + calib, "structured"),
         ("SVD, --ratio 0.8", "r08-svd.gguf", ["lowrank", "--ratio", "0.8", "--method", "svd"], "lowrank"),
         ("ASVD, --ratio 0.8", "r08-asvd.gguf", ["lowrank", "--ratio", "0.8", "--method", "asvd"] + calib, "lowrank"),
         ("SVD-LLM, --ratio 0.8", "r08-svd-llm.gguf", ["lowrank", "--ratio", "0.8", "--method", "svd-llm"] + calib, "lowrank"),
         ("SVD-LLM, --ratio 0.8, then q8_0 (RTN)", "r08-svd-llm-q8.gguf",
          [["lowrank", "--ratio", "0.8", "--method", "svd-llm"] + calib, ["quantize", "--type", "q8_0"]], "lowrank"),
         ("SVD-LLM, --ratio 0.8, then q4_0 GPTQ", "r08-svd-llm-q4gptq.gguf",
          [["lowrank", "--ratio", "0.8", "--method", "svd-llm"] + calib,
           ["quantize", "--type", "q4_0", "--method", "gptq"] + calib], "lowrank"),
         ("q4_0 GPTQ", "q4-gptq.gguf", ["quantize", "--type", "q4_0", "--method", "gptq"] + calib, "comp"),
         ("q4_0 GPTQ + `--lowrank-bpw 0.25`", "q4-gptq-lr025.gguf",
          ["quantize", "--type", "q4_0", "--method", "gptq", "--lowrank-bpw", "0.25"] + calib, "comp"),
         ("q4_0 GPTQ + `--lowrank-bpw 0.5`", "q4-gptq-lr05.gguf",
          ["quantize", "--type", "q4_0", "--method", "gptq", "--lowrank-bpw", "0.5"] + calib, "comp")]
    if not quick:  # the embedding / head kept bf16: the decoder matrices' error is what KL sees
        keep = ["--keep", "*embed_tokens*=bf16"]
        v += [("q4_0 GPTQ, embedding / head bf16", "q4-gptq-keep.gguf",
               ["quantize", "--type", "q4_0", "--method", "gptq"] + keep + calib, "comp"),
              ("q4_0 GPTQ, embedding / head bf16, + `--lowrank-bpw 0.25`", "q4-gptq-keep-lr025.gguf",
               ["quantize", "--type", "q4_0", "--method", "gptq", "--lowrank-bpw", "0.25"] + keep + calib, "comp"),
              ("q4_0 GPTQ, embedding / head bf16, + `--lowrank-bpw 0.5`", "q4-gptq-keep-lr05.gguf",
               ["quantize", "--type", "q4_0", "--method", "gptq", "--lowrank-bpw", "0.5"] + keep + calib, "comp")]
    return v


def measure_table(name, evlm, src, out_dir, threads, run, size_mb, plot, calib, run_args, quality_args,
                  base_acc, quick):
    """Makes each variant (a failure is a row saying so, never the end of the report), then
    `evlm run` (speed) and `evlm quality` (KL, top-1, accuracy) of it against the source."""
    rows = []
    for label, out, args, group in [("source", None, None, "-")] + variants(calib, quick):
        path = src
        made = None
        try:
            if args is not None:
                path = os.path.join(out_dir, "%s-%s" % (name, out))
                steps = args if isinstance(args[0], list) else [args]  # a chain: each step's output
                step_in = src                                           # (a folder) feeds the next
                for i, a in enumerate(steps):
                    cmd = a[:1] + ["-m", step_in, "-o", None] + a[1:] + ["-t", threads, "--json", "-q"]
                    if i == len(steps) - 1:
                        step_out = path
                    else:  # an intermediate folder, named by its command: made once per run
                        step_out = os.path.join(out_dir, "%s-step-%s" % (name, hashlib.sha1(
                            "\0".join(c for c in cmd if c).encode()).hexdigest()[:12]))
                    cmd[cmd.index(None)] = step_out
                    if step_out not in _MADE:
                        _MADE[step_out] = run([evlm] + cmd)
                    made = _MADE[step_out]
                    step_in = step_out
            info = run([evlm, "info", "-m", path, "--json"])  # what the file stores
            r = run([evlm, "run", "-m", path, "--json", "-t", threads] + run_args)
            qual = run([evlm, "quality", "-m", src, "-q", path, "--json", "-t", threads] + quality_args) if args else None
        except SystemExit as e:  # run() raises it with the command's error
            log("variant %s failed: %s" % (label, e))
            rows.append((label, group, None, None, None, None, None, str(e).splitlines()[-1][:200]))
            continue
        if group == "structured" and made and "ffn_after" in made:  # what remains
            label += " (layers / heads / FFN %d / %d / %d)" % (made["layers_after"], made["heads_after"], made["ffn_after"])
        rows.append((label, group, path, made, info, r, qual, None))
    base = None
    lines = ["| variant | weights MB | vs source | file MB | bpw | peak RSS MB | CPU util | TTFT ms | decode tok/s | mean KL | KL p99 | top-1 | accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    res = {}
    for label, group, path, made, info, r, qual, err in rows:
        if err:
            lines.append("| %s | failed: %s |%s" % (label, err.replace("|", "/"), " |" * 11))
            continue
        wmb = info["n_bytes"] / 1e6  # tensor bytes as stored (evlm info), factors included
        base = base or wmb  # the source's
        bpw = made["bpw"] if made and "bpw" in made else (
            8.0 * info["n_bytes"] / info["n_params"] if info["n_params"] else 0)
        acc = qual.get("accuracy_quant") if qual else base_acc
        res[label] = dict(qual or {}, accuracy=acc, file_mb=size_mb(path))
        if qual:  # the source is the first table's point
            plot.append((name, label, size_mb(path), acc, qual.get("kl_mean")))
        lines.append("| %s | %.1f | %.2fx | %.1f | %s | %.0f | %.2f | %.1f | %.0f | %s | %s | %s | %s |" % (
            label if qual else "source", wmb, wmb / base, size_mb(path),
            "%.2f" % bpw, r["peak_rss_mb"], r["cpu_util"], r["ttft_ms"],
            r["decode_tok_s"], "%.5f" % qual["kl_mean"] if qual and "kl_mean" in qual else "-",
            "%.4f" % qual["kl_p99"] if qual and "kl_p99" in qual else "-",
            "%.1f %%" % (100 * qual["top1_agreement"]) if qual and "top1_agreement" in qual else "-",
            "%.1f %%" % (100 * acc) if acc is not None else ""))
    return "\n".join(lines) + "\n", res


def targets(res, with_acc):
    """The issue's quality targets, checked from this run's numbers (met / not met, as measured)."""
    out = []

    def kl(k):
        return res.get(k, {}).get("kl_mean")

    def say(text, ok):
        out.append("- %s: **%s**" % (text, "met" if ok else "not met"))

    mag = kl("50 %, magnitude")
    for m in ("Wanda", "SparseGPT"):
        x = kl("50 %, " + m)
        if mag and x:
            say("50 %% %s mean KL at least 2x lower than magnitude: %.2fx" % (m, mag / x), mag / x >= 2)
        src_acc = res.get("source", {}).get("accuracy")
        acc = res.get("50 %, " + m, {}).get("accuracy")
        if with_acc and src_acc is not None and acc is not None:
            d = 100 * (src_acc - acc)
            say("50 %% %s accuracy within 2 points of the source: %.1f points below" % (m, d), d <= 2)
    svd, llm = kl("SVD, --ratio 0.8"), kl("SVD-LLM, --ratio 0.8")
    if svd and llm:
        say("SVD-LLM mean KL at least 2x lower than SVD at the same parameter count: %.2fx" % (svd / llm), svd / llm >= 2)
    for pre, what in (("q4_0 GPTQ", ""), ("q4_0 GPTQ, embedding / head bf16", " (embedding / head bf16)")):
        g, c = kl(pre), kl(pre + (", + " if "," in pre else " + ") + "`--lowrank-bpw 0.5`")
        if g and c:
            say("q4_0 GPTQ + `--lowrank-bpw 0.5` mean KL at least 30 %% below GPTQ alone%s: %+.0f %%"
                % (what, 100 * (c / g - 1)), c <= 0.7 * g)
    return "\n".join(out) + "\n" if out else ""


def _calib_train(shared, out_dir, n):
    """n scenes-train items spread over the file (the three scenarios), absolute image paths;
    disjoint from scenes-dev."""
    d = os.path.join(shared, "datasets/scenes-train")
    lines = open(os.path.join(d, "train.jsonl")).read().splitlines()
    path = os.path.join(out_dir, "calib-train%d.jsonl" % n)
    with open(path + ".tmp", "w") as f:
        for l in lines[::max(1, len(lines) // n)][:n]:
            item = json.loads(l)
            item["image"] = os.path.abspath(os.path.join(d, item["image"]))
            f.write(json.dumps(item) + "\n")
    os.replace(path + ".tmp", path)
    return path


def section(evlm, shared, out_dir, threads, quick, run, size_mb, plot):
    os.makedirs(out_dir, exist_ok=True)
    corpus = os.path.join(shared, "fixtures/corpus.txt")
    dev = os.path.join(shared, "datasets/scenes-dev/dev.jsonl")
    items, kl_tokens = (8, 512) if quick else (32, 2048)
    quick_note = " **REPORT_QUICK=1: %d calibration items, %d KL tokens.**" % (items, kl_tokens) if quick else ""
    reuse_note = (" REPORT_REUSE=1: rows measured by an earlier run of the same commands were reused from its "
                  "cache (build/compression/cache), their speed columns as measured then." if REUSE else "")
    doc = ["## Pruning and low rank (issue 16)\n",
           "Generated with the tables above. Every row is made from the source by one command (`evlm prune`, "
           "`evlm prune --structured`, `evlm lowrank`, `evlm quantize`; its options in the row's label, the rest "
           "below) and measured like the quantization rows: `evlm run` for the speed columns, `evlm quality` against "
           "the source for KL, top-1 and accuracy. Pruned and factored files keep the source's dtype unless the label "
           "names a type; unstructured zeros are stored dense (as large and, in float, as fast as the source); "
           "structured rows are Hugging Face folders (`file MB` counts the folder), the others GGUF. `weights MB` counts "
           "the tensors as the file stores them (`evlm info`: every tensor, low-rank factors included); `bpw` is "
           "prune's / quantize's report (every tensor's bits, compensation factors included, over the model's "
           "weights: what `--lowrank-bpw` spends), else the file's bits over the parameters it stores. "
           "The speed columns were measured on a shared 2-core machine running other jobs: compare them "
           "within a table, and only for large differences (load average when this section started: "
           "%.1f / %.1f / %.1f over 1 / 5 / 15 minutes; %s threads).%s%s\n"
           % (os.getloadavg() + (threads, quick_note, reuse_note))]
    if os.path.exists(dev):
        cal = _calib_train(shared, out_dir, items)
        calib = ["--calib", cal, "--calib-items", str(items)]
        doc.append("### Scene VLM\n")
        base_acc = next((a for m, l, _, a, _ in plot if m == "scenes" and a is not None), None)
        table, res = measure_table(
            "scenes", evlm, "models/scenes-vlm", out_dir, threads, run, size_mb, plot, calib,
            ["--image", "models/scenes-vlm/samples/car_030.png", "-p", "Describe the image.", "-n", "32"],
            ["--text", corpus, "--max-tokens", str(kl_tokens), "--dataset", dev, "-n", "16"], base_acc, quick)
        doc.append(table)
        doc.append("Calibration: %d scenes-train items spread over the three scenarios (question + answer with "
                   "the image; disjoint from scenes-dev), `--calib %s --calib-items %d`; magnitude and plain SVD "
                   "use none. KL over `fixtures/corpus.txt` (%d tokens) and the dev answers; accuracy on all 90 "
                   "scenes-dev items (greedy, 16 tokens, exact match). The source's accuracy is the first "
                   "table's.\n" % (items, os.path.relpath(cal), items, kl_tokens))
        doc.append("Targets of issue 16 on this run (scene VLM):\n\n" + targets(res, True))
    aid = "build/models/aidreams260K"
    if os.path.exists(os.path.join(aid, "config.json")):
        calib = ["--calib", corpus, "--calib-tokens", "2048"]
        doc.append("### aidreams260K\n")
        table, res = measure_table("aidreams", evlm, aid, out_dir, threads, run, size_mb, plot, calib,
                                   ["--raw", "-p", "Once upon a time", "-n", "100", "-t", "1"],
                                   ["--text", corpus, "--max-tokens", str(2 * kl_tokens)], None, quick)
        doc.append(table)
        doc.append("Calibration: 2048 corpus tokens; KL over the first %d corpus tokens (the calibration text "
                   "overlaps it: in-sample). No accuracy set.\n" % (2 * kl_tokens))
        doc.append("Targets of issue 16 on this run (aidreams260K, KL only):\n\n" + targets(res, False))
    return "\n".join(doc)


# ---- the plot ------------------------------------------------------------------------------------
def _front(points, better):
    """The Pareto front of (size, value) points: no other point is smaller and better."""
    front, best = [], None  # at one size, the best value first
    for s, v, lab in sorted(points, key=lambda p: (p[0], -p[1] if better(1, 0) else p[1])):
        if best is None or better(v, best):
            front.append((s, v, lab))
            best = v
    return front


def plot(rows, png):
    """Accuracy and mean KL against file size for the scene VLM, one labelled point per variant,
    the Pareto front drawn; needs gnuplot (skipped with a note when missing)."""
    link = "\n## Plot\n\n![accuracy and mean KL against file size, scene VLM](compression/pareto.png)\n\n"
    gp = shutil.which("gnuplot")
    if not gp:
        log("gnuplot not found: the plot is skipped (scripts/deps.sh installs gnuplot-nox)")
        return link + "*gnuplot was missing when this report ran: docs/compression/pareto.png is not up to date.*\n"
    pts = [(mb, acc, kl, lab) for m, lab, mb, acc, kl in rows if m == "scenes"]
    num = {lab: str(i + 1) for i, (_, _, _, lab) in enumerate(pts)}  # points labelled by number
    acc = [(mb, 100 * a, lab) for mb, a, _, lab in pts if a is not None]
    kl = [(mb, k, lab) for mb, _, k, lab in pts if k is not None and k > 0]
    if not acc or not kl:
        return link + "*No scene-model rows were measured: no plot.*\n"
    facc = _front(acc, lambda v, b: v > b)
    fkl = _front(kl, lambda v, b: v < b)
    d = "build/compression/plot"
    os.makedirs(d, exist_ok=True)
    for fn, data in (("acc.dat", acc), ("acc_front.dat", facc), ("kl.dat", kl), ("kl_front.dat", fkl)):
        with open(os.path.join(d, fn), "w") as f:
            for s, v, lab in data:
                f.write('%.3f %.6g "%s"\n' % (s, v, num[lab]))
    tmp = png + ".tmp.png"
    script = """set terminal pngcairo size 1600,800 font ",10"
set output "{tmp}"
set multiplot layout 1,2 title "Scene VLM: quality against file size (Pareto front: no variant smaller and better)"
set termoption noenhanced
set grid
set key below
set offsets 0, graph 0.25, graph 0.05, graph 0.05
set xlabel "file MB"
set ylabel "accuracy on scenes-dev (%)"
plot "{d}/acc.dat" using 1:2 with points pt 7 ps 1 title "variant", \\
     "{d}/acc_front.dat" using 1:2 with linespoints lw 2 pt 6 ps 2 title "Pareto front", \\
     "{d}/acc.dat" using 1:2:3 with labels left offset 0.5,0.4 font ",9" notitle
set logscale y
set format y "%g"
set ylabel "mean KL vs the bf16 source (log)"
plot "{d}/kl.dat" using 1:2 with points pt 7 ps 1 title "variant", \\
     "{d}/kl_front.dat" using 1:2 with linespoints lw 2 pt 6 ps 2 title "Pareto front", \\
     "{d}/kl.dat" using 1:2:3 with labels left offset 0.5,0.4 font ",9" notitle
unset multiplot
""".format(tmp=tmp, d=d)
    r = subprocess.run([gp], input=script, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0 or not os.path.exists(tmp):
        log("gnuplot failed: %s" % r.stderr[-500:])
        return link + "*gnuplot failed when this report ran: docs/compression/pareto.png is not up to date.*\n"
    os.replace(tmp, png)
    return link + ("Left: accuracy (Pareto front: %s). Right: mean KL over the corpus and dev answers (front: %s); "
                   "the source has no KL and is only on the left. Points: %s.\n"
                   % (", ".join(l for _, _, l in facc), ", ".join(l for _, _, l in fkl),
                      "; ".join("%s %s" % (num[lab], lab) for _, _, _, lab in pts)))
