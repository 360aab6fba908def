#!/usr/bin/env python3
"""Runs a `pare export` directory in ONNX Runtime: checks model.onnx with onnx.checker (full check),
then embeds each line of TEXTS one sentence at a time, and also all of them as one padded batch, with
the directory's tokenizer.json (truncated to sentence_bert_config.json's max_seq_length).

  check_onnx.py DIR TEXTS [--threads 1]

Prints one JSON object: opset, ops (operator type → count), embeddings (one list per line, from the
graph's sentence_embedding output), batched (the same from the padded batch), hidden_first (the
last_hidden_state of the first text, flattened). Needs onnx, onnxruntime, numpy, tokenizers.
"""
import argparse, collections, json, os

import numpy as np
import onnx
import onnxruntime
from tokenizers import Tokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("texts")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    path = os.path.join(a.dir, "model.onnx")
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    ops = collections.Counter(n.op_type for n in model.graph.node)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = a.threads, 1
    session = onnxruntime.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    tok = Tokenizer.from_file(os.path.join(a.dir, "tokenizer.json"))
    st = os.path.join(a.dir, "sentence_bert_config.json")
    max_len = json.load(open(st)).get("max_seq_length", 512) if os.path.exists(st) else 512
    tok.no_padding()
    tok.enable_truncation(max_len)
    texts = [t for t in open(a.texts, encoding="utf-8").read().split("\n") if t]
    rows = [tok.encode(t).ids for t in texts]

    def run(batch):
        seq = max(len(r) for r in batch)
        ids = np.zeros((len(batch), seq), np.int64)
        mask = np.zeros_like(ids)
        for i, r in enumerate(batch):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        return session.run(["sentence_embedding", "last_hidden_state"], feeds)

    single = [run([r])[0][0].tolist() for r in rows]
    batched = run(rows)[0].tolist()
    print(json.dumps({
        "opset": model.opset_import[0].version,
        "ops": dict(ops),
        "embeddings": single,
        "batched": batched,
        "hidden_first": run(rows[:1])[1][0].ravel().tolist(),
    }))


if __name__ == "__main__":
    main()
