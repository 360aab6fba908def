#!/usr/bin/env python3
"""Sentence-embedding model directories written by pare, loaded the way users load them:
`transformers.AutoModel.from_pretrained(DIR)` (mean pooling over the real tokens, L2 normalisation)
and `sentence_transformers.SentenceTransformer(DIR)`, both with no extra arguments. One process for
every directory (importing torch and transformers costs most of the time).

Usage: check_hf_encoder.py JOB.json
JOB: {"sentences": [str], "models": [{"name": str, "dir": str, "dense_dir": str}]}; `dense_dir` is
pare's own float export of `dir` (`pare decompress`), used only to tell which missing tensors pare
does not write at all (BERT's pooler).

Prints one JSON object per line, per model and loader: name, loader ("AutoModel" or
"SentenceTransformer"), ok, error (the exception, when loading or embedding raised), embeddings (one
list of floats per sentence), and the load report transformers gives: missing, unexpected and
mismatched keys (AutoModel: its loading info; SentenceTransformer: the LOAD REPORT it logs, with
`{0, 1, ...}` groups expanded), and missing_pare_writes: the missing keys that pare's dense export
does hold (a loader that drops those runs with random weights).
"""
import io
import itertools
import json
import logging
import os
import re
import sys
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

REPORT_LINE = re.compile(r"^(.+?)\s+\|\s+(MISSING|UNEXPECTED|MISMATCH\w*)\s+\|")


def expand(key):
    """`a.{0, 1}.b` → [`a.0.b`, `a.1.b`] (the load report groups layers that way)."""
    parts = re.split(r"\{([^}]*)\}", key)
    choices = [[p] if i % 2 == 0 else [c.strip() for c in p.split(",")] for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def parse_report(text):
    out = {"missing": [], "unexpected": [], "mismatched": []}
    for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines():
        m = REPORT_LINE.match(line.strip())
        if m:
            kind = {"MISSING": "missing", "UNEXPECTED": "unexpected"}.get(m.group(2), "mismatched")
            out[kind].extend(expand(m.group(1)))
    return {k: sorted(v) for k, v in out.items()}


class Captured:
    """The `transformers` logger's output (where the load report goes) while active."""

    def __enter__(self):
        self.buf = io.StringIO()
        self.handler = logging.StreamHandler(self.buf)
        self.logger = logging.getLogger("transformers")
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)

    def text(self):
        return self.buf.getvalue()


def auto_model(d, sentences):
    model, info = AutoModel.from_pretrained(d, output_loading_info=True)
    tok = AutoTokenizer.from_pretrained(d)
    enc = tok(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model.eval()(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1)
    report = {
        "missing": sorted(info.get("missing_keys", [])),
        "unexpected": sorted(info.get("unexpected_keys", [])),
        "mismatched": sorted(str(k) for k in info.get("mismatched_keys", [])),
    }
    return emb.double().numpy(), report


def sentence_transformer(d, sentences):
    model = SentenceTransformer(d, device="cpu")
    emb = model.encode(sentences, convert_to_numpy=True, batch_size=len(sentences))
    return emb.astype(np.float64), None


def main():
    job = json.load(open(sys.argv[1]))
    torch.set_num_threads(2)
    sentences = job["sentences"]
    for m in job["models"]:
        with safe_open(os.path.join(m["dense_dir"], "model.safetensors"), "pt") as f:
            pare_writes = set(f.keys())
        for loader, fn in (("AutoModel", auto_model), ("SentenceTransformer", sentence_transformer)):
            # The same random initialisation for whatever a loader leaves unloaded, run after run.
            torch.manual_seed(0)
            rec = {"name": m["name"], "loader": loader}
            with Captured() as log:
                try:
                    emb, report = fn(m["dir"], sentences)
                    rec.update(ok=True, embeddings=emb.tolist())
                except Exception as e:  # the failure is the result: reported, not raised
                    rec.update(ok=False, error="".join(traceback.format_exception_only(type(e), e)).strip()[-2000:])
            if rec["ok"]:
                rec.update(report or parse_report(log.text()))
                rec["missing_pare_writes"] = sorted(set(rec["missing"]) & pare_writes)
            rec["log"] = log.text()[-4000:]
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
