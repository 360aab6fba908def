#!/usr/bin/env python3
"""Reads pare's compressed model with the compressed-tensors package and compares every weight it
decompresses with pare's own dense export of the same model (`pare decompress`).

Usage: check_compressed_tensors.py COMPRESSED_DIR DENSE_DIR (both written by pare: `pare quantize` or
`pare prune`, then `pare decompress` of its output)
Exit 0 when compressed-tensors accepts the config and the tensors, and every weight it decompresses
equals pare's value; prints one line saying what it read.

Two readers, both from scripts/python-env:
- Quantized layouts (int-quantized, pack-quantized; no sparsity, or sparsity stored dense): the
  current release, through the steps transformers takes to load a compressed model. The model's
  modules are built on the meta device, the quantization config applied and the modules compressed,
  which names every tensor the checkpoint must hold: none may be unexpected (buffers aside), and
  none missing except tied weights and float modules that pare does not write (BERT's pooler, absent
  from its dense export too). Then the stored tensors are loaded and every module decompressed.
- sparse-bitmask and sparse-24-bitmask: compressed-tensors 0.14.0.1, the last release that
  decompresses these layouts (0.15 removed them; transformers 5 ignores `sparsity_config`),
  installed beside the environment and put on the import path here, for these layouts only.
"""
import json
import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")
BITMASK_LAYOUTS = ("sparse-bitmask", "sparse-24-bitmask")


def bitmask_reader_dir():
    """Where scripts/python-env installs compressed-tensors 0.14.0.1: inside the environment's
    directory, outside its import path."""
    return os.path.join(sys.prefix, "bitmask-reader")


def compare(name, got, want, rounded):
    """Raises unless `got` (decompressed by compressed-tensors) equals pare's float value `want`."""
    import torch

    if got.dtype != torch.float32 and got.is_floating_point():
        # compressed-tensors multiplies in the scales' dtype (f16 for pack-quantized int4): the exact
        # product, rounded once to that type, is what it must give.
        want = want.to(got.dtype)
        rounded.add(str(got.dtype).removeprefix("torch."))
    got, want = got.float(), want.float()
    if got.shape != want.shape:
        raise SystemExit(f"{name}: shape {tuple(got.shape)} vs pare {tuple(want.shape)}")
    diff = (got - want).abs().max().item()
    if diff != 0.0:
        raise SystemExit(f"{name}: compressed-tensors and pare differ by up to {diff}")


def read_current(comp_dir, qcfg, dense, stored):
    """The current release, as transformers' loader drives it. Returns (weights checked, formats, dtypes
    pare's values were rounded to, tensors the model has and pare does not write)."""
    from copy import deepcopy

    import torch
    import transformers
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.quantization import apply_quantization_config

    config = transformers.AutoConfig.from_pretrained(comp_dir)
    arch = (config.architectures or [None])[0]
    if not hasattr(transformers, str(arch)):
        raise SystemExit(f"config.json names architecture {arch!r}, which transformers does not have")
    with torch.device("meta"):
        model = getattr(transformers, arch)(config)
    ct_config = transformers.CompressedTensorsConfig.from_dict(qcfg)
    mc = ModelCompressor.from_compression_config(ct_config)
    if mc.quantization_config is None:
        raise SystemExit("quantization_config holds no quantization for compressed-tensors to read")
    apply_quantization_config(model, deepcopy(mc.quantization_config), run_compressed=False)
    mc.compress_model(model)
    quantized = {n for n, m in model.named_modules() if getattr(m, "quantization_scheme", None) is not None}
    formats = sorted({str(m.quantization_scheme.format.value) for n, m in model.named_modules() if n in quantized})

    expected = set(model.state_dict())
    buffers = {n for n, _ in model.named_buffers()}
    tied = set(getattr(model, "_tied_weights_keys", None) or {}) if config.get_text_config().tie_word_embeddings else set()
    unexpected = sorted(set(stored) - expected - buffers)
    if unexpected:
        raise SystemExit(f"tensors compressed-tensors does not expect: {', '.join(unexpected[:8])}")
    missing = sorted(expected - set(stored) - tied)
    for name in missing:
        module = name.rpartition(".")[0]
        if module in quantized or name in dense:
            raise SystemExit(f"{name}: compressed-tensors expects it and the checkpoint lacks it")

    model.to_empty(device="cpu")
    model.load_state_dict({k: v for k, v in stored.items() if k in expected}, strict=False, assign=True)
    mc.decompress_model(model)
    state = model.state_dict()
    rounded = set()
    checked = 0
    for module in sorted(quantized):
        name = f"{module}.weight"
        if name not in dense:
            raise SystemExit(f"{name}: quantized in the checkpoint, absent from pare's dense export")
        compare(name, state[name], dense[name], rounded)
        checked += 1
    return checked, formats, rounded, missing


def read_bitmask(comp_dir, qcfg, dense, stored):
    """compressed-tensors 0.14.0.1 on a bitmask layout. Returns (weights checked, formats, dtypes
    pare's values were rounded to)."""
    # The reader of the layouts the current release dropped, ahead of it on the path; nothing has
    # imported compressed_tensors yet in this process.
    assert "compressed_tensors" not in sys.modules
    sys.path.insert(0, bitmask_reader_dir())
    import compressed_tensors
    from compressed_tensors.compressors import ModelCompressor

    if not compressed_tensors.__version__.startswith("0.14."):
        raise SystemExit(f"the bitmask reader is compressed-tensors {compressed_tensors.__version__}, expected 0.14")
    mc = ModelCompressor.from_compression_config(qcfg)
    rounded = set()
    checked = 0
    quant = None
    if mc.quantization_compressor:
        if len(mc.quantization_compressor) != 1:
            raise SystemExit(f"one quantization format expected, found {sorted(mc.quantization_compressor)}")
        ((qformat, quant),) = mc.quantization_compressor.items()
    # Stacked compressors decompress sparsity first, leaving the quantization parameters to the
    # quantization compressor, as ModelCompressor.decompress does.
    skip = quant.compression_param_names if quant is not None else None
    sparse = dict(mc.sparsity_compressor.decompress(comp_dir, params_to_skip_load=skip))
    if quant is None:
        for name, got in sparse.items():
            compare(name, got, dense[name], rounded)
            checked += f"{name.removesuffix('.weight')}.bitmask" in stored
        return checked, ["float"], rounded
    groups = mc.quantization_config.config_groups
    ignore = set(mc.quantization_config.ignore or [])

    def scheme_for(module):
        # pare prunes encoders only: BERT's embedding tables are `embeddings.*`, the rest Linears.
        kind = "Embedding" if module.startswith("embeddings.") else "Linear"
        for g in groups.values():
            if module in g.targets or kind in g.targets:
                return g
        raise SystemExit(f"no group covers {module}")

    modules = [k[: -len(".weight_scale")] for k in stored if k.endswith(".weight_scale")]
    names_to_scheme = {m: scheme_for(m) for m in modules if m not in ignore}
    state = dict(stored)
    state.update(sparse)
    for module, data in quant.decompress(state, names_to_scheme=names_to_scheme):
        compare(f"{module}.weight", data["weight"], dense[f"{module}.weight"], rounded)
        checked += 1
    return checked, [qformat], rounded


def main():
    comp_dir, dense_dir = sys.argv[1:3]
    qcfg = json.load(open(os.path.join(comp_dir, "config.json")))["quantization_config"]
    layout = (qcfg.get("sparsity_config") or {}).get("format")
    from safetensors.torch import load_file

    dense = load_file(os.path.join(dense_dir, "model.safetensors"))
    stored = load_file(os.path.join(comp_dir, "model.safetensors"))
    missing = []
    if layout in BITMASK_LAYOUTS:
        checked, formats, rounded = read_bitmask(comp_dir, qcfg, dense, stored)
    else:
        checked, formats, rounded, missing = read_current(comp_dir, qcfg, dense, stored)
    if checked == 0:
        raise SystemExit("no compressed tensor found")
    version = sys.modules["compressed_tensors"].__version__
    note = f" (pare's values rounded to {', '.join(sorted(rounded))}, the dtype it decompresses to)" if rounded else ""
    absent = f"; not written by pare: {', '.join(missing)}" if missing else ""
    print(
        f"compressed-tensors {version} read {checked} tensors ({', '.join(formats)}, {layout or 'no sparsity'});"
        f" all equal pare's values{note}{absent}"
    )


if __name__ == "__main__":
    main()
