"""Inference precision: turn a loaded model into the form it translates fastest in.

    model = to_inference(model, "int8")   # or "bf16", "fp16", "fp32"; then model.generate(...) as usual

- "fp32": float32 weights and math (what training produces; the reference).
- "bf16": every floating-point weight and buffer in bfloat16. Fast on CPUs with AVX-512 BF16 or AMX and on
  GPUs; on CPUs without them PyTorch emulates it and it is slower than fp32.
- "fp16": float16, for GPUs (CPUs have few float16 kernels).
- "int8": every `nn.Linear` (attention projections, feed-forward layers, the output projection) replaced by a
  dynamically quantised int8 linear layer: int8 weights, one scale per output channel, activations quantised
  per call (PyTorch's fbgemm/oneDNN kernels, CPU only). Embeddings, LayerNorms and attention stay float32.

Quality: greedy tokens of a trained model in bf16 and int8 agree with fp32 on most sentences
(tests/test_precision.py); measure BLEU per precision on your own test set before you switch.

The int8 path uses `torch.ao.quantization.quantize_dynamic`, which PyTorch has deprecated in favour of `torchao`
but still ships (and tests) in the pinned torch versions. `torchao` 0.18 was evaluated for this on CPU: its
`Int8DynamicActivationInt8WeightConfig` runs and is correct in eager mode, but was slower than float32 there (the
activation quantisation runs as separate small operations), and under `torch.compile`, where it is meant to be
fast, it returned wrong results for (1, 1, E) inputs, which is every step of batch-1 greedy decoding. When a
torchao release fixes that, it can replace `_quantize_int8` here without changing the API.

This module imports only the standard library and torch, so the shipped pipeline file may import it.
"""

import warnings

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> str:
    """Return `precision` if it is one of `PRECISIONS`, else raise a ValueError naming the choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}.")
    return precision


def model_precision(model: nn.Module) -> str:
    """The precision a model is in: "int8" if it holds dynamically quantised linear layers, else its float dtype."""
    if any(isinstance(module, torch.ao.nn.quantized.dynamic.Linear) for module in model.modules()):
        return "int8"
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return {dtype_: name for name, dtype_ in _DTYPES.items()}.get(dtype, str(dtype))


def _quantize_int8(model: nn.Module) -> nn.Module:
    """Every nn.Linear -> int8 weights (per output channel) with dynamic per-call int8 activations, in place."""
    with warnings.catch_warnings():  # the deprecation notice of torch.ao (see the module docstring)
        warnings.filterwarnings("ignore", message=r".*torch\.ao\.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*quantize_per_channel.*deprecated.*")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


def to_inference(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """Put `model` in eval mode and convert it, in place, to `precision` (see the module docstring).

    Converting is one-way and meant for generation: a bf16/fp16 model can be converted back with `.float()`
    (rounded weights), an int8 model cannot and is not for training or `save_pretrained` (load the saved
    float32 model again instead).

    Args:
        model: a loaded model (float32, or any precision when converting to "bf16"/"fp16"/"fp32").
        precision: one of `PRECISIONS`.

    Returns:
        `model` itself, converted.

    Raises:
        ValueError: an unknown `precision`; "int8" for a model that is not on the CPU or already int8.
    """
    check_precision(precision)
    model.eval()
    current = model_precision(model)
    if current == precision:
        return model
    if current == "int8":
        raise ValueError(
            f"The model is already int8 (quantised linear layers) and cannot be converted to {precision}: load the "
            "saved model again."
        )
    if precision != "int8":
        return model.to(_DTYPES[precision])
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(
            f"int8 (dynamic quantisation) runs on the CPU only, but the model is on {device}: use bf16 or fp16 "
            "on a GPU, or move the model to the CPU first."
        )
    return _quantize_int8(model.float())


__all__ = ["PRECISIONS", "check_precision", "model_precision", "to_inference"]
