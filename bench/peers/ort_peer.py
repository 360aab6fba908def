#!/usr/bin/env python3
"""ONNX Runtime on the same weights as pare, for side-by-side rows in `pare report --peers`.

Builds an ONNX graph of a BERT encoder directly from the model directory's model.safetensors and
config.json (no PyTorch), optionally quantizes it with ONNX Runtime's dynamic int8 (per-channel weights,
u8 activations), then times forward passes on the same input pare times (a fixed English text cut to
--seq tokens, mask all ones) and embeds texts (mean pooling over the mask, L2 normalisation, truncation
to the sentence-transformers max_seq_length).

  ort_peer.py MODEL_DIR --variant fp32|int8 [--seq 128] [--threads 2] [--runs 20] [--warmup 3]
              [--big-batch 8 --big-runs 3] [--texts TEXTS.json] --work DIR
  ort_peer.py MODEL_DIR --onnx FILE ...   # time a given graph instead (pare export's model.onnx)

Prints one JSON object: engine, variant, file_bytes (the ONNX file run), latency_ms and throughput_ms
(every timed run), and with --texts, embeddings (one list per text). Needs numpy, onnx, onnxruntime,
safetensors and tokenizers.
"""
import argparse, json, os, time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file
from tokenizers import Tokenizer

TEXT = ("Model compression makes neural networks smaller and faster: quantization stores weights in fewer bits, "
        "and pruning removes the weights that matter least. ")


class Graph:
    """Accumulates ONNX nodes and initializers with generated names."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, name, value):
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op, inputs, **attrs):
        self.count += 1
        out = f"t{self.count}_{op}"
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out


def encoder_graph(model_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    tensors = load_file(os.path.join(model_dir, "model.safetensors"))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in tensors else ""
    get = lambda name: tensors[prefix + name]
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    head_dim, eps = hidden // heads, cfg.get("layer_norm_eps", 1e-12)
    g = Graph()

    def dense(x, name):
        w = g.const(name + ".weight_t", np.ascontiguousarray(get(name + ".weight").T))
        return g.node("Add", [g.node("MatMul", [x, w]), g.const(name + ".bias", get(name + ".bias"))])

    def norm(x, name):
        return g.node("LayerNormalization", [x, g.const(name + ".gamma", get(name + ".weight")),
                                             g.const(name + ".beta", get(name + ".bias"))], axis=-1, epsilon=eps)

    x = g.node("Gather", [g.const("emb.word", get("embeddings.word_embeddings.weight")), "input_ids"])
    x = g.node("Add", [x, g.node("Gather", [g.const("emb.pos", get("embeddings.position_embeddings.weight")), "position_ids"])])
    x = g.node("Add", [x, g.node("Gather", [g.const("emb.type", get("embeddings.token_type_embeddings.weight")), "token_type_ids"])])
    x = norm(x, "embeddings.LayerNorm")
    # Additive mask: 0 for tokens, -10000 for padding, shaped [batch, 1, 1, seq].
    keep = g.node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = g.node("Mul", [g.node("Sub", [keep, g.const("c.one", np.float32(1.0))]), g.const("c.big", np.float32(1e4))])
    bias = g.node("Unsqueeze", [bias, g.const("c.axes", np.array([1, 2], np.int64))])
    to_heads = g.const("c.heads", np.array([0, 0, heads, head_dim], np.int64))
    to_hidden = g.const("c.hidden", np.array([0, 0, hidden], np.int64))
    scale = g.const("c.scale", np.float32(head_dim ** -0.5))
    for layer in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."
        split = lambda t, perm: g.node("Transpose", [g.node("Reshape", [t, to_heads])], perm=perm)
        q = split(dense(x, p + "attention.self.query"), [0, 2, 1, 3])
        k = split(dense(x, p + "attention.self.key"), [0, 2, 3, 1])
        v = split(dense(x, p + "attention.self.value"), [0, 2, 1, 3])
        scores = g.node("Add", [g.node("Mul", [g.node("MatMul", [q, k]), scale]), bias])
        ctx = g.node("MatMul", [g.node("Softmax", [scores], axis=-1), v])
        ctx = g.node("Reshape", [g.node("Transpose", [ctx], perm=[0, 2, 1, 3]), to_hidden])
        x = norm(g.node("Add", [dense(ctx, p + "attention.output.dense"), x]), p + "attention.output.LayerNorm")
        up = dense(x, p + "intermediate.dense")
        # Exact GELU: 0.5·u·(1 + erf(u/√2)).
        erf = g.node("Erf", [g.node("Mul", [up, g.const(p + "c.rsqrt2", np.float32(2 ** -0.5))])])
        gelu = g.node("Mul", [g.node("Mul", [up, g.const(p + "c.half", np.float32(0.5))]),
                              g.node("Add", [erf, g.const(p + "c.one", np.float32(1.0))])])
        x = norm(g.node("Add", [dense(gelu, p + "output.dense"), x]), p + "output.LayerNorm")
    g.nodes.append(helper.make_node("Identity", [x], ["hidden_states"]))
    ints = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
            for n in ("input_ids", "token_type_ids", "position_ids", "attention_mask")]
    outs = [helper.make_tensor_value_info("hidden_states", TensorProto.FLOAT, ["batch", "seq", hidden])]
    model = helper.make_model(helper.make_graph(g.nodes, "encoder", ints, outs, g.inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def feeds(rows, names):
    ids = np.asarray(rows, np.int64)
    pos = np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape).copy()
    all_inputs = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "position_ids": pos,
                  "attention_mask": np.ones_like(ids)}
    return {k: v for k, v in all_inputs.items() if k in names}


def timed(session, inputs, warmup, runs):
    first = [session.get_outputs()[0].name]
    for _ in range(warmup):
        session.run(first, inputs)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(first, inputs)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--variant", choices=["fp32", "int8"])
    ap.add_argument("--onnx", help="an ONNX file with inputs input_ids, attention_mask, token_type_ids")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--big-batch", type=int, default=8)
    ap.add_argument("--big-runs", type=int, default=3)
    ap.add_argument("--texts")
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    import onnxruntime

    os.makedirs(a.work, exist_ok=True)
    if a.onnx:
        path = a.onnx
    else:
        path = os.path.join(a.work, "encoder.fp32.onnx")
        onnx.save(encoder_graph(a.model_dir), path)
    if a.variant == "int8" and not a.onnx:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        qpath = os.path.join(a.work, "encoder.int8.onnx")
        quantize_dynamic(path, qpath, weight_type=QuantType.QInt8, per_channel=True)
        path = qpath
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = a.threads, 1
    session = onnxruntime.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    output = session.get_outputs()[0].name

    tok = Tokenizer.from_file(os.path.join(a.model_dir, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    ids = tok.encode(TEXT * 64).ids[: a.seq]
    result = {
        "engine": "onnxruntime " + onnxruntime.__version__,
        "variant": a.variant or "onnx",
        "file_bytes": os.path.getsize(path),
        "latency_ms": timed(session, feeds([ids], names), a.warmup, a.runs),
        "throughput_ms": timed(session, feeds([ids] * a.big_batch, names), 1, a.big_runs),
    }
    if a.texts:
        st = os.path.join(a.model_dir, "sentence_bert_config.json")
        max_len = json.load(open(st)).get("max_seq_length", 512) if os.path.exists(st) else 512
        tok.enable_truncation(max_len)
        emb = []
        for text in json.load(open(a.texts)):
            row = tok.encode(text).ids
            states = session.run([output], feeds([row], names))[0][0]
            e = states.mean(0)
            emb.append((e / np.linalg.norm(e)).tolist())
        result["embeddings"] = emb
    print(json.dumps(result))


if __name__ == "__main__":
    main()
