#!/usr/bin/env python3
"""make npu-report: rewrites the section of docs/NPU.md between <!-- npu-report --> and
<!-- /npu-report --> (issue 19's figures on the scene model):

1. exports of models/scenes-vlm (../shared/models/scenes-vlm) at fp32, fp16, w8a16, w8a8
   (target sa8295) and w4a16 (target sa8255; round-to-nearest and `--method gptq` weights),
   calibrated on an evenly spaced subset of
   scenes-train (NPU_REPORT_CALIB items, default 256: the decoder's encodings on their text, the
   quantized vision graph's on the images of the first 16), file sizes;
2. accuracy on scenes-dev (`evlm eval --sim DIR`) for each, next to float and evlm's CPU int8 /
   int4 (`evlm quantize` q8_0 / q4_0 GGUFs, `evlm eval`);
3. ONNX Runtime (scripts/ort_run.mjs, every forward pass in ONNX Runtime) on the fp32 and QDQ
   graphs against evlm's `--sim DIR` greedy answers on the scenes-dev items (NPU_REPORT_ITEMS,
   default all, evenly spaced): agreements, and every disagreement with both answers;
4. the planner's predictions (`evlm plan --json`) for the scene model and the published
   Llama-3.2-1B / 3B configs (tests/data) beside the published device numbers.

Not here: anything run on a device (there is none), timings of ONNX Runtime, scenes-train as an
evaluation set (it calibrates only). Environment: EVLM (binary, default build/release/evlm),
EVLM_SHARED (../shared), NPU_REPORT_ITEMS, NPU_REPORT_CALIB, ORT_THREADS (default 2),
NPU_REPORT_ORT_OPT (ONNX Runtime's graph optimization level of the agreement check, default
"disabled": the graphs as written, whose QDQ arithmetic --sim reproduces; w8a8 is also run at ONNX
Runtime's default level, reported beside it, docs/NPU.md). Work files go to build/npu-report/.
"""
import datetime, json, os, platform, re, shutil, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(ROOT)
EVLM = os.environ.get("EVLM", "build/release/evlm")
SHARED = os.environ.get("EVLM_SHARED", os.path.join(ROOT, "..", "shared"))
MODEL = os.path.join(SHARED, "models", "scenes-vlm")
DEV = os.path.join(SHARED, "datasets", "scenes-dev", "dev.jsonl")
TRAIN = os.path.join(SHARED, "datasets", "scenes-train", "train.jsonl")
OUT = "build/npu-report"
DOC = "docs/NPU.md"
BEGIN, END = "<!-- npu-report -->", "<!-- /npu-report -->"
N_CALIB = int(os.environ.get("NPU_REPORT_CALIB", "256"))
ORT_THREADS = os.environ.get("ORT_THREADS", "2")
ORT_OPT = os.environ.get("NPU_REPORT_ORT_OPT", "disabled")
AR, CTX, NPRED = 64, 256, 64
# label, precision, target (None: no --target), checked in ONNX Runtime
EXPORTS = [("fp32", "fp32", None, True), ("fp16", "fp16", "sa8295", False),
           ("w8a16", "w8a16", "sa8295", True), ("w8a8", "w8a8", "sa8295", True),
           ("w4a16", "w4a16", "sa8255", True), ("w4a16-gptq", "w4a16", "sa8255", True)]
from report_common import cpu_name, last_json, log, run  # noqa: E402


def machine():
    name = cpu_name()
    ort = "?"
    for p in ("build/npm/node_modules/onnxruntime-node/package.json",):
        if os.path.exists(p):
            ort = json.load(open(p)).get("version", "?")
    node = run(["node", "--version"], check=False).stdout.strip() or "?"
    commit = run(["git", "rev-parse", "--short", "HEAD"], check=False).stdout.strip() or "?"
    return "%s, %d cores; onnxruntime-node %s (CPU), node %s; evlm %s" % (
        name, os.cpu_count() or 0, ort, node, commit)


def size_mb(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) / 1e6
    return os.path.getsize(path) / 1e6


def eval_answers(model, extra):
    """evlm eval -v on scenes-dev: (accuracy, [answer per item in file order])."""
    r = run([EVLM, "eval", "-m", model, "--dataset", DEV, "--json", "-v", "-n", str(NPRED)]
            + extra)
    answers = []
    for line in r.stderr.splitlines():
        m = re.match(r'^(ok  |FAIL) .* \| got "(.*)" want "(.*)"$', line)
        if m:
            answers.append(m.group(2))
    return last_json(r.stdout)["accuracy"], answers


def ort_answer(d, item, opt=ORT_OPT):
    """ONNX Runtime's answer at graph optimization level opt ("": its default)."""
    img = os.path.join(os.path.dirname(DEV), item["image"])
    os.environ.pop("ORT_OPT", None)
    if opt:
        os.environ["ORT_OPT"] = opt
    r = run(["node", "scripts/ort_run.mjs", d, "-m", MODEL, "--image", img, "-p",
             item["question"], "-n", str(NPRED), "--evlm", EVLM, "--threads", ORT_THREADS])
    return last_json(r.stdout)["text"]


def sim_run_answer(d, item):
    img = os.path.join(os.path.dirname(DEV), item["image"])
    r = run([EVLM, "run", "-m", MODEL, "--image", img, "-p", item["question"], "-n", str(NPRED),
             "--temp", "0", "--json"] + (["--sim", d] if d else []))
    return last_json(r.stdout)["text"]


def plan(config, target, precision, ctx):
    r = run([EVLM, "plan", "-m", config, "--target", target, "--precision", precision,
             "--ctx", str(ctx), "--json"], check=False)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return last_json(r.stdout)


def pct(x):
    return "%.1f %%" % (100 * x)


def main():
    for p in (MODEL, DEV, TRAIN):
        if not os.path.exists(p):
            raise SystemExit("npu-report: %s not found" % p)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    level = ORT_OPT or "its default"
    dev = [json.loads(l) for l in open(DEV) if l.strip()]
    n_items = int(os.environ.get("NPU_REPORT_ITEMS", "0")) or len(dev)
    n_items = min(n_items, len(dev))
    picked = [round(i * len(dev) / n_items) for i in range(n_items)]

    # calibration: an evenly spaced subset of scenes-train
    train = [l for l in open(TRAIN) if l.strip()]
    calib = os.path.join(OUT, "calib.jsonl")
    with open(calib, "w") as f:  # images by absolute path: the calibration file lives in OUT
        for i in range(N_CALIB):
            it = json.loads(train[i * len(train) // N_CALIB])
            it["image"] = os.path.abspath(os.path.join(os.path.dirname(TRAIN), it["image"]))
            f.write(json.dumps(it) + "\n")

    exports = {}
    for label, prec, target, _ in EXPORTS:
        d = os.path.join(OUT, label)
        args = [EVLM, "export-onnx", "-m", MODEL, "-o", d, "--precision", prec,
                "--ar", str(AR), "--ctx", str(CTX)]
        if target:
            args += ["--target", target]
        if prec not in ("fp32", "fp16"):
            args += ["--calib", calib, "--calib-tokens", "1000000"]
        if label.endswith("-gptq"):  # GPTQ onto the same grids, Hessians from the same tokens
            args += ["--method", "gptq"]
        run(args)
        man = json.load(open(os.path.join(d, "manifest.json")))
        q = man.get("quantization", {})
        exports[label] = {"dir": d, "target": target or "generic", "precision": prec,
                          "decoder_mb": size_mb(os.path.join(d, "decoder.weights.bin")),
                          "vision_mb": size_mb(os.path.join(d, "vision.weights.bin")),
                          "total_mb": size_mb(d),
                          "calib_tokens": q.get("calibration_tokens"),
                          "vision_q": man.get("vision", {}).get("quantization"),
                          "kv_bits": man.get("kv", {}).get("quantized_bits")}

    # accuracy: float, CPU int8 / int4, each export simulated
    acc = {}
    acc["float"], float_ans = eval_answers(MODEL, [])
    for qt in ("q8_0", "q4_0"):
        g = os.path.join(OUT, "scenes-%s.gguf" % qt)
        run([EVLM, "quantize", "-m", MODEL, "-o", g, "--type", qt])
        acc[qt], _ = eval_answers(g, [])
        exports[qt] = {"total_mb": size_mb(g)}
    sim_ans = {}
    for label, *_ in EXPORTS:
        acc[label], sim_ans[label] = eval_answers(MODEL, ["--sim", exports[label]["dir"]])

    # ONNX Runtime against --sim, item by item
    ort, ort_default = {}, {}
    runs = [(label, ORT_OPT) for label, _, _, checked in EXPORTS if checked]
    if ORT_OPT:  # w8a8 at ONNX Runtime's default level too (its rewrites: docs/NPU.md)
        runs.append(("w8a8", ""))
    for label, opt in runs:
        agree, diffs = 0, []
        for i in picked:
            item = dev[i]
            got = ort_answer(exports[label]["dir"], item, opt)
            ref = sim_ans[label][i] if i < len(sim_ans[label]) else None
            if ref is None or got.strip() != ref.strip():
                # confirm with `evlm run --sim` itself before calling it a disagreement
                ref = sim_run_answer(exports[label]["dir"], item)
            if got.strip() == ref.strip():
                agree += 1
            else:
                diffs.append((item["image"], item["question"], ref, got))
        (ort if opt == ORT_OPT else ort_default)[label] = (agree, diffs)

    # the planner
    cfgs = [("scene model", os.path.join(MODEL, "config.json")),
            ("Llama-3.2-1B", "tests/data/llama-3.2-1b-config.json"),
            ("Llama-3.2-3B", "tests/data/llama-3.2-3b-config.json")]
    published = {("Llama-3.2-1B", "sa8295"): (11.0, 225.0, 4096, "calibration point"),
                 ("Llama-3.2-3B", "sa8295"): (3.523, 373.1, 1024, "prediction")}
    plans = []
    for name, cfg in cfgs:
        precs = ["w8a16", "w4a16"] if name == "scene model" else ["w4"]
        for target in ("sa8295", "sa8255", "sa8775"):
            for prec in precs:
                pub = published.get((name, target))
                ctx = pub[2] if pub else (CTX if name == "scene model" else 4096)
                plans.append((name, target, prec, ctx, plan(cfg, target, prec, ctx), pub))

    # the section
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    L = [BEGIN, "", "## Report (`make npu-report`)", "",
         "Generated by `make npu-report` (scripts/npu_report.py) on %s: %s." % (now, machine()),
         "Scene model `models/scenes-vlm` (../shared), exports with `--ar %d --ctx %d` (5 tiles),"
         " QDQ precisions calibrated on %d evenly spaced scenes-train items (the decoder's"
         " encodings on their question + answer through the chat template, %s tokens; the"
         " quantized vision graph's on the images of the first %s of them, %s tiles). Accuracy: `evlm eval` on all %d scenes-dev items (greedy,"
         " up to %d tokens, exact match; one item is %.1f points); scenes-train is never"
         " evaluated." % (AR, CTX, N_CALIB, exports["w8a16"]["calib_tokens"] or "?",
                          (exports["w8a16"]["vision_q"] or {}).get("calibration_images", "?"),
                          (exports["w8a16"]["vision_q"] or {}).get("calibration_tiles", "?"),
                          len(dev),
                          NPRED, 100.0 / len(dev)), "",
         "| model | target | weights | accuracy | vs float | decoder.weights.bin MB |"
         " vision.weights.bin MB | folder / file MB |",
         "| --- | --- | --- | --- | --- | --- | --- | --- |",
         "| float (safetensors, no --sim) | CPU | bf16 / f32 | %s | - | - | - | %.1f |"
         % (pct(acc["float"]), size_mb(os.path.join(MODEL, "model.safetensors")))]
    for qt, name in (("q8_0", "CPU int8 (`evlm quantize` q8_0)"),
                     ("q4_0", "CPU int4 (`evlm quantize` q4_0)")):
        L.append("| %s | CPU | %s | %s | %+.1f | - | - | %.1f |"
                 % (name, qt, pct(acc[qt]), 100 * (acc[qt] - acc["float"]),
                    exports[qt]["total_mb"]))
    for label, prec, target, _ in EXPORTS:
        e = exports[label]
        L.append("| export %s, `--sim` | %s%s | %s | %s | %+.1f | %.1f | %.1f | %.1f |"
                 % (label, e["target"], " (%d-bit KV)" % e["kv_bits"] if e["kv_bits"] else "",
                    prec, pct(acc[label]), 100 * (acc[label] - acc["float"]),
                    e["decoder_mb"], e["vision_mb"], e["total_mb"]))
    L += ["", "The vision graph (SigLIP tower + connector) is float32 in the fp32 / fp16 exports"
          " and QDQ in the others: int8 weights per output channel (w4a16 too: int8 tower,"
          " docs/NPU.md), activations of the precision's bits (uint16; uint8 for w8a8) at every"
          " matmul input, simulated by `--sim` (the images of every prompt encoded through it);"
          " the decoder file keeps a float32 embedding table for `Gather` (about 50 MB; fp32"
          " reads the head from it, the other precisions store their own head copy, hence fp16"
          " above fp32). The folder also holds the .onnx graphs and `encodings.json` (AIMET"
          " text: one entry per output channel, for w4a16 per block, hence its size).", "",
          "ONNX Runtime (`ORT_OPT=%s node scripts/ort_run.mjs DIR -m MODEL --image F -p Q -n"
          " %d`, every forward pass in ONNX Runtime, graph optimization level %s) against"
          " evlm's greedy answer with `--sim DIR` (the"
          " answers `evlm eval -v --sim DIR` printed; any that differ re-checked with `evlm run"
          " --sim DIR --temp 0`), on %d of %d scenes-dev items%s:"
          % (ORT_OPT or "", NPRED, level, n_items, len(dev), "" if n_items == len(dev) else
             " (NPU_REPORT_ITEMS=%d, evenly spaced)" % n_items), "",
          "| export | identical answers | disagreements |", "| --- | --- | --- |"]
    for label, (agree, diffs) in ort.items():
        L.append("| %s | %d / %d | %d |" % (label, agree, n_items, len(diffs)))
    for label, (agree, diffs) in ort_default.items():
        L.append("| %s, ONNX Runtime's default level (not the target: its rewrites, docs/NPU.md)"
                 " | %d / %d | %d |" % (label, agree, n_items, len(diffs)))
    all_diffs = [(l, d) for l, (_, ds) in ort.items() for d in ds]
    shown = all_diffs + [(l + " (default level)", d) for l, (_, ds) in ort_default.items()
                         for d in ds]
    if shown:
        L += ["", "| export | image | question | evlm --sim | ONNX Runtime |",
              "| --- | --- | --- | --- | --- |"]
        for l, (img, q, ref, got) in shown:
            L.append("| %s | %s | %s | %s | %s |" % (l, img, q, ref, got))
    L += ["", "The planner (`evlm plan --json`, nothing run on a device) beside the published"
          " device numbers this file cites ([aihub-perf]; SA8255P / SA8775P: none published):", "",
          "| model | target | precision | ctx | fits | total GiB | parts | decode tok/s |"
          " published tok/s | error | TTFT ms (one chunk) | published TTFT ms |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, target, prec, ctx, p, pub in plans:
        if "error" in p:
            L.append("| %s | %s | %s | %d | refused: %s | - | - | - | - | - | - | - |"
                     % (name, target, prec, ctx, p["error"].replace("|", "/")))
            continue
        err = "-"
        if pub:
            err = "%+.1f %%%s" % (100 * (p["decode_tok_s"] / pub[0] - 1),
                                  " (calibration)" if pub[3] == "calibration point" else "")
        L.append("| %s | %s | %s | %d | %s | %.2f | %d | %.2f | %s | %s | %.0f | %s |"
                 % (name, target, prec, ctx, "yes" if p["fits"] else "no",
                    p["total_bytes"] / 2**30, p["parts"], p["decode_tok_s"],
                    "%.3g" % pub[0] if pub else "-", err, p["ttft_ms"],
                    "%.1f" % pub[1] if pub else "-"))
    w8, w4 = acc["w8a16"] - acc["float"], acc["w4a16"] - acc["float"]
    w4g = acc["w4a16-gptq"] - acc["float"]
    same = all(not ds for _, ds in ort.values())
    L += ["", "Issue 19's targets: w8a16 within 1 point of float: %s (%+.1f points); w4a16"
          " within 2 points: %s with round-to-nearest weights (%+.1f points), %s with GPTQ"
          " weights (%+.1f points; no QAT);"
          " ONNX Runtime (level %s) == `--sim` on every item: %s (%d disagreements on %d items x"
          " %d exports)." % ("met" if w8 >= -0.01 else "not met", 100 * w8,
                          "met" if w4 >= -0.02 else "not met", 100 * w4,
                          "met" if w4g >= -0.02 else "not met", 100 * w4g, level,
                          "met" if same and n_items == len(dev) else
                          ("not met" if not same else "met on the items run"),
                          len(all_diffs), n_items, len(ort)), "", END]
    section = "\n".join(L) + "\n"
    doc = open(DOC).read()
    if BEGIN in doc and END in doc:
        a = doc.index(BEGIN)
        b = doc.index(END) + len(END)
        doc = doc[:a] + section.rstrip("\n") + doc[b:]
    else:
        doc = doc.rstrip("\n") + "\n\n" + section
    open(DOC, "w").write(doc)
    print(section)


if __name__ == "__main__":
    main()
