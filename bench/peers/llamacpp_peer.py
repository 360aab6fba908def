"""llama.cpp (through llama-cpp-python) on a GGUF decoder, measured with pare's decoder benchmark
protocol, for side-by-side figures with `pare bench MODEL --json` in the same run.

Usage (the python of bench/peers/install-llamacpp):
  python llamacpp_peer.py MODEL.gguf [--threads 2] [--runs 5] [--warmup 1]
                          [--reference reference.json] [--ppl-text FILE]
Prints one JSON object: prefill of 128 and 512 tokens from an empty cache (last logits only) and decode
of 128 tokens one at a time after the 128-token prefill, in tokens/s (median, p10, min, max, samples);
peak RSS; with --reference, token-id and last-position top-1 agreement with a fixture; with --ppl-text,
the perplexity of its first 4096 tokens in windows of 1024 without overlap (no special tokens).
The benchmark text is pare's (`DECODER_BENCH_TEXT`).
"""
import argparse, json, math, resource, statistics, time
import numpy as np
from llama_cpp import Llama

TEXT = "In the beginning God created the heaven and the earth. "

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--warmup", type=int, default=1)
ap.add_argument("--ctx", type=int, default=1024)
ap.add_argument("--reference")
ap.add_argument("--ppl-text")
a = ap.parse_args()
out = {"engine": "llama.cpp (llama-cpp-python)", "model": a.model, "threads": a.threads, "runs": a.runs,
       "warmup": a.warmup, "ctx": a.ctx}

def log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))

if a.reference or a.ppl_text:
    llm = Llama(model_path=a.model, n_ctx=max(a.ctx, 1025), n_threads=a.threads, n_threads_batch=a.threads,
                n_batch=1024, logits_all=True, verbose=False)
    if a.reference:
        ref = json.load(open(a.reference))
        same_ids = same_top1 = 0
        for r in ref["records"]:
            same_ids += llm.tokenize(r["text"].encode(), add_bos=False, special=False) == r["token_ids"]
            llm.reset(); llm.eval(r["token_ids"])
            same_top1 += int(np.array(llm.scores[llm.n_tokens - 1]).argmax() == r["last_top10"][0][0])
        out["token_ids_identical"] = [same_ids, len(ref["records"])]
        out["last_top1_identical"] = [same_top1, len(ref["records"])]
    if a.ppl_text:
        text = open(a.ppl_text, encoding="utf-8").read()[:100000]
        ids = llm.tokenize(text.encode(), add_bos=False, special=False)[:4096]
        nll, n = 0.0, 0
        for i in range(0, len(ids) - 1, 1024):
            ch = ids[i:i + 1025]
            llm.reset(); llm.eval(ch[:-1])
            lp = log_softmax(np.array(llm.scores[:len(ch) - 1]))
            nll -= lp[np.arange(len(ch) - 1), ch[1:]].sum(); n += len(ch) - 1
        out["perplexity"] = {"value": math.exp(nll / n), "tokens": n, "window": 1024}
    del llm

fast = Llama(model_path=a.model, n_ctx=a.ctx, n_threads=a.threads, n_threads_batch=a.threads, n_batch=512,
             logits_all=False, verbose=False)
ids = fast.tokenize((TEXT * 60).encode(), add_bos=False, special=False)
assert len(ids) >= 512, len(ids)
phases = {"prefill_128": [], "prefill_512": [], "decode_128": []}
for run in range(a.warmup + a.runs):
    fast.reset()
    t = time.perf_counter(); fast.eval(ids[:128]); pp = (time.perf_counter() - t) * 1e3
    t = time.perf_counter()
    for k in range(128):
        fast.eval([ids[128 + k % 128]])
    tg = (time.perf_counter() - t) * 1e3
    fast.reset()
    t = time.perf_counter(); fast.eval(ids[:512]); pp512 = (time.perf_counter() - t) * 1e3
    if run >= a.warmup:
        phases["prefill_128"].append(pp); phases["decode_128"].append(tg); phases["prefill_512"].append(pp512)

def summary(tokens, ms):
    tps = sorted(tokens * 1e3 / m for m in ms)
    p10 = tps[max(0, math.ceil(0.1 * len(tps)) - 1)]
    return {"tokens": tokens, "tokens_per_s": {"median": tokens * 1e3 / statistics.median(ms), "p10": p10,
            "min": tps[0], "max": tps[-1], "samples": [tokens * 1e3 / m for m in ms]}}

for name, ms in phases.items():
    out[name] = summary(int(name.split("_")[1]), ms)
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
