"""A Hugging Face decoder directory written by `pare decompress` against the SmolLM2 fixture, in
transformers: the tokenizer.json gives the fixture's token ids; AutoModelForCausalLM gives its top-10
next tokens with log-probabilities (within 1e-3) at the last position of every prompt and the same
greedy next token at every position.

Usage: python check_hf_decoder.py HF_DIR reference.json
Prints one JSON object; exit 1 when a check fails.
"""
import json, sys
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM

hf_dir, ref_path = sys.argv[1:3]
torch.set_num_threads(2)
ref = json.load(open(ref_path))
tok = Tokenizer.from_file(hf_dir + "/tokenizer.json")
model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
same_ids = same_top10 = same_greedy = positions = 0
worst = 0.0
with torch.no_grad():
    for r in ref["records"]:
        same_ids += tok.encode(r["text"], add_special_tokens=False).ids == r["token_ids"]
        logp = torch.log_softmax(model(torch.tensor([r["token_ids"]])).logits[0].float(), -1)
        top = torch.topk(logp[-1], 10)
        same_top10 += [int(i) for i in top.indices] == [p[0] for p in r["last_top10"]]
        worst = max(worst, max(abs(float(logp[-1][p[0]]) - p[1]) for p in r["last_top10"]))
        greedy = [int(i) for i in logp.argmax(-1)]
        same_greedy += sum(a == b for a, b in zip(greedy, r["greedy_next"]))
        positions += len(greedy)
n = len(ref["records"])
out = {"prompts": n, "token_ids_identical": same_ids, "top10_identical": same_top10,
       "worst_abs_logprob_diff": worst, "greedy_identical": [same_greedy, positions]}
print(json.dumps(out))
ok = same_ids == n and same_top10 == n and worst <= 1e-3 and same_greedy >= 0.99 * positions
sys.exit(0 if ok else 1)
