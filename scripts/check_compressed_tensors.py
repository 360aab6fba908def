#!/usr/bin/env python3
"""Reads pare's compressed model with the compressed-tensors package and compares every tensor it
decompresses with pare's own dense export of the same model (`pare decompress`).

Usage: check_compressed_tensors.py COMPRESSED_DIR DENSE_DIR (both written by pare: `pare quantize`, then
`pare decompress` of its output)
Exit 0 when compressed-tensors parses the config and every decompressed weight equals pare's value.

Environment: compressed-tensors 0.9.4 on Debian's CPU build of torch 1.13 (scripts/python-env).
That torch predates the float8 dtypes, which compressed-tensors names at import for its FP8 schemes;
they are given placeholder values here. pare's int8 and sparse paths never use them.
"""
import json, sys
import torch

for name in ("float8_e4m3fn", "float8_e5m2"):
    if not hasattr(torch, name):
        setattr(torch, name, torch.uint8)

from compressed_tensors.compressors import ModelCompressor  # noqa: E402
from safetensors.torch import load_file  # noqa: E402


def main():
    comp_dir, dense_dir = sys.argv[1:3]
    cfg = json.load(open(f"{comp_dir}/config.json"))
    qcfg = cfg["quantization_config"]
    mc = ModelCompressor.from_compression_config(qcfg)
    dense = load_file(f"{dense_dir}/model.safetensors")
    checked = 0
    rounded = set()
    stored = load_file(f"{comp_dir}/model.safetensors")
    sparse = {}
    if mc.sparsity_compressor is not None:
        # Stacked compressors decompress sparsity first, leaving quantization parameters to the
        # quantization compressor, as ModelCompressor.decompress does.
        skip = mc.quantization_compressor.compression_param_names if mc.quantization_compressor else None
        for name, tensor in mc.sparsity_compressor.decompress(comp_dir, params_to_skip_load=skip):
            sparse[name] = tensor
        if mc.quantization_compressor is None:
            for name, got in sparse.items():
                want = dense[name]
                diff = (got.float() - want).abs().max().item()
                if got.shape != want.shape or diff != 0.0:
                    raise SystemExit(f"{name}: sparse decompression differs from pare by {diff}")
                checked += 1
    if mc.quantization_compressor is not None:
        groups = mc.quantization_config.config_groups
        ignore = set(mc.quantization_config.ignore or [])

        def scheme_for(module):
            kind = "Embedding" if module.startswith("embeddings.") else "Linear"
            for g in groups.values():
                if module in g.targets or kind in g.targets:
                    return g
            raise SystemExit(f"no group covers {module}")

        modules = [k[: -len(".weight_scale")] for k in stored if k.endswith(".weight_scale")]
        modules = [m for m in modules if m not in ignore]
        names_to_scheme = {m: scheme_for(m).weights for m in modules}
        if sparse:
            state = dict(stored)
            state.update(sparse)
            source = state
        else:
            source = comp_dir
        for module, data in mc.quantization_compressor.decompress(source, names_to_scheme=names_to_scheme):
            got = data["weight"]
            want = dense[f"{module}.weight"]
            if got.dtype != torch.float32:
                # compressed-tensors multiplies in the scales' dtype (f16 for pack-quantized int4): the
                # exact product, rounded once to that type, is what it must give.
                want = want.to(got.dtype)
                rounded.add(str(got.dtype).removeprefix("torch."))
            got, want = got.float(), want.float()
            if got.shape != want.shape:
                raise SystemExit(f"{module}: shape {tuple(got.shape)} vs pare {tuple(want.shape)}")
            diff = (got - want).abs().max().item()
            if diff != 0.0:
                raise SystemExit(f"{module}: compressed-tensors and pare differ by up to {diff}")
            checked += 1
    layout = mc.sparsity_config.format if mc.sparsity_compressor is not None else "dense"
    quant = mc.quantization_config.format if mc.quantization_compressor is not None else "float"
    if checked == 0:
        raise SystemExit("no compressed tensor found")
    version = __import__("compressed_tensors").__version__
    note = f" (pare's values rounded to {', '.join(sorted(rounded))}, the dtype it decompresses to)" if rounded else ""
    print(f"compressed-tensors {version} read {checked} tensors ({quant}, {layout}); all equal pare's values{note}")


if __name__ == "__main__":
    main()
