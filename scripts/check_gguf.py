#!/usr/bin/env python3
"""The `gguf` package's view of a GGUF file, for pare's tests.

  check_gguf.py FILE.gguf            one JSON line per tensor: name, type, shape (fastest dimension first),
                                     sha256 of gguf's dequantization as little-endian float32
  check_gguf.py --synthetic OUT.gguf writes a GGUF file with one tensor of random blocks of every type pare
                                     reads (scales kept finite), for the same comparison
"""
import hashlib, json, sys
import numpy as np
import gguf
from gguf.quants import dequantize

TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]
# Byte offsets of the f16 scales inside each block (set to finite values in random blocks).
SCALES = {"Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0], "Q4_K": [0, 2], "Q5_K": [0, 2],
          "Q6_K": [208]}


def synthetic(path):
    rng = np.random.default_rng(7)
    w = gguf.GGUFWriter(path, "llama")
    for name in TYPES:
        qt = gguf.GGMLQuantizationType[name]
        block, size = gguf.GGML_QUANT_SIZES[qt]
        rows, cols = 3, 2 * 256
        if name in ("F32", "F16"):
            w.add_tensor("t." + name, rng.standard_normal((rows, cols)).astype({"F32": np.float32, "F16": np.float16}[name]))
            continue
        if name == "BF16":
            data = (rng.standard_normal(rows * cols).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
            data = data.view(np.uint8).reshape(rows, cols * 2)
        else:
            nb = rows * cols // block
            data = rng.integers(0, 256, size=(nb, size), dtype=np.uint8)
            for off in SCALES[name]:
                s = (rng.random(nb).astype(np.float32) * 0.1 + 0.001).astype(np.float16).view(np.uint8).reshape(nb, 2)
                data[:, off:off + 2] = s
            data = data.reshape(rows, -1)
        w.add_tensor("t." + name, data, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def hashes(path):
    r = gguf.GGUFReader(path)
    for t in r.tensors:
        a = np.ascontiguousarray(dequantize(t.data, t.tensor_type).astype("<f4"))
        print(json.dumps({"name": t.name, "type": t.tensor_type.name, "shape": [int(x) for x in t.shape],
                          "sha256": hashlib.sha256(a.tobytes()).hexdigest()}))


if __name__ == "__main__":
    if sys.argv[1] == "--synthetic":
        synthetic(sys.argv[2])
    else:
        hashes(sys.argv[1])
