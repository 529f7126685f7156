#!/usr/bin/env node
// ort_run.mjs - runs an `evlm export-onnx` folder in ONNX Runtime (onnxruntime-node, CPU):
// reads manifest.json, (with --image) runs the vision graph over the image's tiles and places
// its rows at the prompt's image-token positions, prefills the prompt through the AR-N graph (in
// chunks of N, the last one padded), then decodes greedily through the AR-1 graph with the KV
// cache as graph inputs and outputs (a split export: each step runs the parts in order, the
// hidden states handed from one to the next, each part the cache of its layers), and prints as
// its last line one JSON object
//   {"ids": [generated ids, the eos id included when it ends the answer], "logits_first": [...],
//    "text": "..." (with -m)}
// (logits_first: the first 8 logits of the last prompt position).
// Every forward pass runs in ONNX Runtime; this script only moves tensors. Tokenization, the
// chat template, image preprocessing and detokenization come from evlm (`evlm prompt`), and for
// Qwen2-VL, whose vision tower is not exported (the manifest has no vision graph; the prefill
// graph takes image_features), the image features and the M-RoPE positions too (`evlm prompt`
// prints mrope_positions; the graphs take position_ids [3, 1, n]). Not here: sampling other than
// greedy, several images per prompt.
//
// usage: node scripts/ort_run.mjs DIR --ids 1,2,3 [-n N] [--logits-out FILE] [--threads T]
//        node scripts/ort_run.mjs DIR -m MODEL [--image FILE] -p TEXT [--raw] [-n N] ...
//   -n N              tokens to generate (default 16; 0: prefill only)
//   --logits-out FILE the prefill logits of every prompt position, float32 [n_prompt][vocab]
//   -m MODEL          the exported model (evlm reads its tokenizer, template and processor)
//   --image FILE      one image; -p TEXT the user text (chat template unless --raw, where TEXT
//                     holds the <image> marker)
//   --features-out F  the vision graph's image features, float32 [rows][hidden]
//   --evlm BIN        the evlm binary (default: $EVLM_BIN, else build/release/evlm)
// onnxruntime-node is looked up as usual, then in build/npm (scripts/deps.sh --npm installs it
// there).
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function die(msg) {
  process.stderr.write(`ort_run: ${msg}\n`);
  process.exit(1);
}

function loadOrt() {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const bases = [import.meta.url, path.join(here, '..', 'build', 'npm', 'package.json')];
  if (process.env.EVLM_NPM_DIR) bases.unshift(path.join(process.env.EVLM_NPM_DIR, 'package.json'));
  for (const b of bases) {
    try {
      return createRequire(b)('onnxruntime-node');
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  die('onnxruntime-node is not installed (scripts/deps.sh --npm puts it in build/npm)');
}

const args = process.argv.slice(2);
let dir = null, ids = null, nGen = 16, logitsOut = null, threads = 1;
let model = null, image = null, text = null, raw = false, featuresOut = null;
let evlmBin = process.env.EVLM_BIN ||
  path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'build', 'release', 'evlm');
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const val = () => {
    if (i + 1 >= args.length) die(`${a} needs a value`);
    return args[++i];
  };
  if (a === '--ids') {
    ids = val().split(',').filter((s) => s.length).map((s) => {
      const v = Number(s);
      if (!Number.isInteger(v) || v < 0) die(`--ids: '${s}' is not a token id`);
      return v;
    });
  } else if (a === '-n') {
    nGen = Number(val());
    if (!Number.isInteger(nGen) || nGen < 0) die('-n needs an integer >= 0');
  } else if (a === '--logits-out') logitsOut = val();
  else if (a === '-m') model = val();
  else if (a === '--image') image = val();
  else if (a === '-p') text = val();
  else if (a === '--raw') raw = true;
  else if (a === '--features-out') featuresOut = val();
  else if (a === '--evlm') evlmBin = val();
  else if (a === '--threads') threads = Number(val());
  else if (a.startsWith('-')) die(`unknown option '${a}'`);
  else if (!dir) dir = a;
  else die(`unexpected argument '${a}'`);
}
if (!dir) die('usage: node scripts/ort_run.mjs DIR (--ids 1,2,3 | -m MODEL [--image F] -p TEXT)');
if (ids && text !== null) die('--ids and -p exclude each other');
if ((text !== null || image) && !model) die('-p / --image need -m MODEL (for evlm prompt)');
if (image && text === null) die('--image needs -p TEXT');

const man = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
if (man.format !== 'evlm-onnx') die(`${dir}/manifest.json: not an evlm-onnx manifest`);

// evlm prompt: the ids (and the image's pixel values) exactly as `evlm run` builds them
function evlm(args) {
  try {
    return JSON.parse(execFileSync(evlmBin, ['prompt', '-m', model, ...args],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 28 }));
  } catch (e) {
    die(`${evlmBin} prompt failed${e.status ? ` (exit ${e.status})` : `: ${e.message}`}`);
  }
}
let pixels = null, nTiles = 0, extFeats = null, imageToken = -1, mpos = null, mnext = 0;
// an export without a vision graph whose prefill graph takes image features (Qwen2-VL)
const extImages = !man.vision &&
  man.graphs.some((g) => g.name === 'prefill' && g.inputs.some((x) => x.role === 'image_features'));
if (text !== null) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ort_run.'));
  const pxFile = path.join(tmp, 'pixels.bin'), ftFile = path.join(tmp, 'features.bin');
  try {
    const args = ['-p', text];
    if (raw) args.push('--raw');
    const q2 = man.vision && man.vision.tower === 'qwen2vl'; // patch rows of one fixed grid
    if (image && extImages) args.push('--image', image, '--features-out', ftFile);
    else if (image && q2) args.push('--image', image, '--patches-out', pxFile);
    else if (image) args.push('--image', image, '--pixels-out', pxFile);
    // the processor's tiling as the export was made (export-onnx --image-splitting)
    if (image && man.vision && typeof man.vision.image_splitting === 'boolean')
      args.push('--image-splitting', man.vision.image_splitting ? 'on' : 'off');
    const r = evlm(args);
    ids = r.ids;
    if (r.mrope_positions) {
      mpos = r.mrope_positions;
      mnext = r.mrope_next;
    }
    if (image && extImages) {
      const b = fs.readFileSync(ftFile);
      extFeats = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
      imageToken = r.image_token_id;
    } else if (image) {
      const b = fs.readFileSync(pxFile);
      pixels = new Float32Array(b.buffer, b.byteOffset, b.length / 4);
      nTiles = r.n_tiles;
      if (q2) {
        const want = man.vision.grid.join('x'), got = r.grid.join('x');
        if (want !== got)
          die(`the image's patch grid ${got} is not the vision graph's ${want} (export-onnx ` +
              `--grid ${r.grid[1]}x${r.grid[2]} makes one for it)`);
        nTiles = 1;
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
if (!ids || !ids.length) die('no prompt ids (--ids 1,2,3 or -p TEXT)');

const M = man.model;
const V = M.vocab_size, L = M.n_layers, KV = M.n_kv_heads, HD = M.head_dim, C = man.ctx;
const HIDDEN = man.mask.hidden;
const eos = new Set(M.eos_token_ids || []);
for (const id of ids) if (id >= V) die(`token id ${id} is outside the vocabulary [0, ${V})`);

const ort = loadOrt();
const graphOf = (name) => man.graphs.find((g) => g.name === name) || die(`no ${name} graph`);
// ORT_OPT=disabled|basic|extended|all: ONNX Runtime's graph optimization level (default: its own,
// all); docs/NPU.md uses "disabled" to separate its fused uint8 kernels from the QDQ arithmetic
const opts = { executionProviders: ['cpu'], intraOpNumThreads: threads, interOpNumThreads: 1 };
if (process.env.ORT_OPT) opts.graphOptimizationLevel = process.env.ORT_OPT;
// the decoder's parts in order (manifest "parts"; an export without a split has one): each runs
// after the previous one, taking its hidden_states
const nParts = (man.parts || []).length || 1;
async function partsOf(name) {
  const chain = [];
  for (let k = 0; k < nParts; k++) {
    const g = man.graphs.find((x) => x.name === name && (x.part || 0) === k) ||
      die(`no ${name} graph of part ${k}`);
    chain.push({ g, sess: await ort.InferenceSession.create(path.join(dir, g.file), opts) });
  }
  return chain;
}
const pre = await partsOf('prefill'), dec = await partsOf('decode');
const gPre = pre[0].g;

// the cache: per layer, key and value [KV][C][HD]
const kCache = [], vCache = [];
for (let l = 0; l < L; l++) {
  kCache.push(new Float32Array(KV * C * HD));
  vCache.push(new Float32Array(KV * C * HD));
}
let nPast = 0;

// the image: the vision graph over the tiles, T at a time (tiles are independent; a short last
// pass is padded with copies of its first tile and the extra rows dropped)
const H = M.hidden_size;
let feats = null; // [n image tokens][H]
if (pixels) {
  const vis = man.vision ||
    die(`${dir}: no vision graph in the manifest (exported with --tiles 0?)`);
  const gVis = graphOf('vision');
  // a tile: [3, S, S] of Idefics3's [T, 3, S, S]; Qwen2-VL's one grid [N, patch_dim] is one
  const T = gVis.n_tiles, tileLen = gVis.inputs[0].shape.reduce((a, b) => a * b, 1) / T;
  const TOK = vis.tokens_per_tile;
  if (pixels.length !== nTiles * tileLen)
    die(`pixel values of ${nTiles} tiles do not match the vision graph's tile shape`);
  const sVis = await ort.InferenceSession.create(path.join(dir, gVis.file), opts);
  feats = new Float32Array(nTiles * TOK * H);
  for (let t0 = 0; t0 < nTiles; t0 += T) {
    const n = Math.min(T, nTiles - t0);
    const buf = new Float32Array(T * tileLen);
    buf.set(pixels.subarray(t0 * tileLen, (t0 + n) * tileLen));
    for (let i = n; i < T; i++) buf.copyWithin(i * tileLen, 0, tileLen);
    const inp = gVis.inputs[0];
    const out = await sVis.run({ [inp.name]: new ort.Tensor('float32', buf, inp.shape) });
    feats.set(out[gVis.outputs[0].name].data.subarray(0, n * TOK * H), t0 * TOK * H);
  }
  const nImg = ids.filter((id) => id === vis.image_token_id).length;
  if (nImg !== nTiles * TOK)
    die(`the prompt has ${nImg} image tokens for ${nTiles * TOK} image feature rows`);
  if (featuresOut) fs.writeFileSync(featuresOut, Buffer.from(feats.buffer));
}
if (extFeats) {
  feats = extFeats;
  const nImg = ids.filter((id) => id === imageToken).length;
  if (nImg * H !== feats.length)
    die(`the prompt has ${nImg} image tokens for ${feats.length / H} image feature rows`);
  if (featuresOut) fs.writeFileSync(featuresOut, Buffer.from(feats.buffer));
} else if (image && !pixels) die('--image: no vision graph and no image_features input');
if (feats && !extFeats) imageToken = man.vision.image_token_id;
const imgRow = new Int32Array(ids.length).fill(-1); // feature row of each prompt position
if (feats) {
  let r = 0;
  ids.forEach((id, i) => { if (id === imageToken) imgRow[i] = r++; });
}
// position of the token at slot j: its index, or with M-RoPE positions (a Qwen2-VL image prompt)
// the prompt's own, then on from mrope_next; pos(j, sec) for the section sec
const mdelta = mpos ? mnext - ids.length : 0;
const pos = (j, sec) => (mpos && j < ids.length ? mpos[sec][j] : j + mdelta);

// Runs the chain of part graphs on tokens (t valid of n_tokens) at positions nPast.., returns
// the last part's logits rows.
async function step(chain, toks, rows = null) {
  let hidden = null, logits = null;
  for (const { sess, g } of chain) {
    const r = await stepPart(sess, g, toks, rows, hidden);
    hidden = r.hidden;
    logits = r.logits;
  }
  if (!logits) die('the last part gives no logits');
  nPast += toks.length;
  return logits.subarray(0, toks.length * V);
}

// Runs one part's graph g; the KV cache rows of its layers are written at nPast...
async function stepPart(sess, g, toks, rows, hiddenIn) {
  const N = g.n_tokens, P = g.past_len, t = toks.length;
  if (nPast > P) die(`${nPast} cached tokens do not fit the ${g.name} graph's ${P} past slots`);
  const feeds = {};
  const posIn = g.inputs.find((x) => x.role === 'position_ids');
  const nSec = posIn && posIn.shape.length === 3 ? posIn.shape[0] : 1; // M-RoPE: [3, 1, N]
  const idArr = new BigInt64Array(N), posArr = new BigInt64Array(nSec * N);
  for (let i = 0; i < N; i++) {
    idArr[i] = BigInt(i < t ? toks[i] : 0);
    for (let sec = 0; sec < nSec; sec++) posArr[sec * N + i] = BigInt(pos(nPast + i, sec));
  }
  const mask = new Float32Array(N * C).fill(HIDDEN);
  for (let i = 0; i < N; i++) {
    for (let j = 0; j < nPast; j++) mask[i * C + j] = 0;
    for (let j = 0; j <= i; j++) mask[i * C + P + j] = 0;
  }
  for (const inp of g.inputs) {
    const dims = inp.shape;
    if (inp.role === 'input_ids') feeds[inp.name] = new ort.Tensor('int64', idArr, dims);
    else if (inp.role === 'position_ids') feeds[inp.name] = new ort.Tensor('int64', posArr, dims);
    else if (inp.role === 'attention_mask') feeds[inp.name] = new ort.Tensor('float32', mask, dims);
    else if (inp.role === 'hidden_states') {
      if (!hiddenIn) die(`${g.file}: takes hidden_states but no part before it gives them`);
      feeds[inp.name] = new ort.Tensor('float32', hiddenIn, dims);
    }
    else if (inp.role === 'image_features' || inp.role === 'image_mask') {
      const w = inp.role === 'image_features' ? H : 1, buf = new Float32Array(N * w);
      for (let i = 0; i < t && rows; i++) {
        if (rows[i] < 0) continue;
        if (w === 1) buf[i] = 1;
        else buf.set(feats.subarray(rows[i] * H, (rows[i] + 1) * H), i * H);
      }
      feeds[inp.name] = new ort.Tensor('float32', buf, dims);
    }
    else if (inp.role === 'past_key' || inp.role === 'past_value') {
      const src = (inp.role === 'past_key' ? kCache : vCache)[inp.layer];
      const buf = new Float32Array(KV * P * HD);
      for (let h = 0; h < KV; h++)
        buf.set(src.subarray(h * C * HD, h * C * HD + P * HD), h * P * HD);
      feeds[inp.name] = new ort.Tensor('float32', buf, dims);
    } else die(`${g.name}: input ${inp.name} has an unknown role '${inp.role}'`);
  }
  const out = await sess.run(feeds);
  let logits = null, hidden = null;
  for (const o of g.outputs) {
    const d = out[o.name].data;
    if (o.role === 'logits') logits = d;
    else if (o.role === 'hidden_states') hidden = d;
    else if (o.role === 'present_key' || o.role === 'present_value') {
      const dst = (o.role === 'present_key' ? kCache : vCache)[o.layer];
      for (let h = 0; h < KV; h++)
        for (let i = 0; i < t; i++)
          dst.set(d.subarray((h * N + i) * HD, (h * N + i + 1) * HD), (h * C + nPast + i) * HD);
    }
  }
  return { logits, hidden };
}

function argmax(row) {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i; // lowest id on ties
  return best;
}

// prefill in chunks of N
const prompt = new Float32Array(ids.length * V);
for (let s = 0; s < ids.length; s += gPre.n_tokens) {
  const toks = ids.slice(s, s + gPre.n_tokens);
  prompt.set(await step(pre, toks, imgRow.subarray(s, s + toks.length)), s * V);
}
if (logitsOut) fs.writeFileSync(logitsOut, Buffer.from(prompt.buffer));
const last = prompt.subarray((ids.length - 1) * V, ids.length * V);
const gen = [];
let next = argmax(last);
while (gen.length < nGen) {
  gen.push(next);
  if (eos.has(next) || gen.length === nGen) break;
  if (nPast + 1 > C) break; // the window is full
  next = argmax(await step(dec, [next]));
}
const result = { ids: gen, logits_first: Array.from(last.subarray(0, 8)) };
if (model) result.text = evlm(['--detok', gen.join(',')]).text;
console.log(JSON.stringify(result));
