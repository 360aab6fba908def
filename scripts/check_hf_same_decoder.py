"""Two Hugging Face decoder directories in transformers' AutoModelForCausalLM, given only the
directory: a compressed one (say pare's `--scheme int4`, pack-quantized) and its float export
(`pare decompress`). Both must load every tensor they declare (no missing, no unexpected key) and give
the same logits on a fixed prompt.

Usage: python check_hf_same_decoder.py COMPRESSED_DIR FLOAT_DIR
Prints one JSON object (missing and unexpected keys, max |Δ| of the logits, share of equal argmax);
exit 1 when a check fails.
"""
import json, sys
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

compressed, dense = sys.argv[1:3]
torch.set_num_threads(2)
ids = Tokenizer.from_file(dense + "/tokenizer.json").encode(
    "In the beginning God created the heaven and the earth. And the earth was without form, and void").ids
out, logits = {}, []
for name, d in (("compressed", compressed), ("float", dense)):
    model, info = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, output_loading_info=True)
    out[name] = {"missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"])}
    with torch.no_grad():
        logits.append(model.eval()(torch.tensor([ids])).logits[0])
out["max_abs_logit_diff"] = float((logits[0] - logits[1]).abs().max())
out["same_argmax"] = float((logits[0].argmax(-1) == logits[1].argmax(-1)).float().mean())
print(json.dumps(out))
clean = all(not v["missing"] and not v["unexpected"] for v in (out["compressed"], out["float"]))
sys.exit(0 if clean and out["max_abs_logit_diff"] <= 1e-3 else 1)
