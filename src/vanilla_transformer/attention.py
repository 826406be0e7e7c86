"""See the three kinds of attention of a trained model: the numbers (`attention_maps`) and the pictures.

    python -m vanilla_transformer.attention --model PATH --source "I love easy courses" --out attention/
    python -m vanilla_transformer.attention --model PATH --source "..." --target "..." --out attention/

The model reads the source and is teacher-forced on a target: the given `--target`, or else its own greedy
translation. The decoder input is the target shifted right behind the start token (`<s> I love easy courses`)
and each of its rows is one decoding step, as in the seeds. Written per layer (one panel per head):

- `encoder_self_layer{l}.png`: encoder self-attention, source x source; every token sees every token;
- `decoder_self_layer{l}.png`: decoder masked self-attention, target x target; the masked (future) upper
  triangle is drawn grey: step t attends to steps <= t only;
- `cross_layer{l}.png`: encoder-decoder cross-attention, target x source (the seeds' [5 x 4] matrix);
- `summary.png`: the three kinds side by side, averaged over the heads of one layer (the last by default).

Rows are queries, columns keys; each row is a softmax and sums to 1. Needs matplotlib
(`pip install "vanilla-transformer[viz]"`); `attention_maps` needs only torch.
"""

import argparse
import os
import sys
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

KINDS = ("encoder_self", "decoder_self", "cross")
TITLES = {
    "encoder_self": "Encoder self-attention",
    "decoder_self": "Decoder masked self-attention",
    "cross": "Encoder-decoder cross-attention",
}
AXES = {"encoder_self": ("source", "source"), "decoder_self": ("target", "target"), "cross": ("target", "source")}


@dataclass
class AttentionMaps:
    """Attention weights of one sentence pair, every layer and head. Rows are queries and sum to 1.

    Attributes:
        source_tokens: the S source tokens (encoder input).
        target_tokens: the T decoder input tokens: start token + target without its last token.
        predicted_tokens: the T tokens the decoder is trained to / did predict at each step.
        encoder_self: (N_enc, H, S, S) encoder self-attention.
        decoder_self: (N_dec, H, T, T) decoder masked self-attention (zero above the diagonal).
        cross: (N_dec, H, T, S) cross-attention of each decoding step over the source.
    """

    source_tokens: list[str]
    target_tokens: list[str]
    predicted_tokens: list[str]
    encoder_self: torch.Tensor
    decoder_self: torch.Tensor
    cross: torch.Tensor

    def kind(self, name: str) -> torch.Tensor:
        """The (N, H, rows, cols) weights of one of `KINDS`."""
        if name not in KINDS:
            raise ValueError(f"Unknown attention kind {name!r}; choose one of {KINDS}.")
        return getattr(self, name)

    def labels(self, name: str) -> tuple[list[str], list[str]]:
        """(row labels, column labels) of one kind: queries, keys."""
        return {
            "encoder_self": (self.source_tokens, self.source_tokens),
            "decoder_self": (self.target_tokens, self.target_tokens),
            "cross": (self.target_tokens, self.source_tokens),
        }[name]


@torch.no_grad()
def attention_maps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    source: str,
    target: str | None = None,
    max_new_tokens: int = 64,
) -> AttentionMaps:
    """Run the model on one sentence pair and return every attention matrix.

    Args:
        model: an encoder-decoder model returning `encoder_attentions`, `decoder_attentions` and
            `cross_attentions` (ours, Marian, BART, ...). Run with the eager attention (the only one that
            returns its weights) and switched back afterwards.
        tokenizer: the model's tokenizer.
        source: the sentence to encode.
        target: the target to teacher-force; default: the model's own greedy translation.
        max_new_tokens: longest greedy translation when `target` is None.

    Returns:
        `AttentionMaps` with (N, H, rows, cols) float32 tensors on the CPU.
    """
    if not source or not source.strip():
        raise ValueError("`source` is empty: give a sentence to encode.")
    if target is not None and not target.strip():
        raise ValueError("`target` is empty: give a sentence, or leave it out to use the model's translation.")
    implementation = model.config._attn_implementation
    if implementation != "eager":
        model.set_attn_implementation("eager")
    try:
        return _attention_maps(model.eval(), tokenizer, source, target, max_new_tokens)
    finally:
        if implementation != "eager":
            model.set_attn_implementation(implementation)  # leave the caller's model as it was


def _attention_maps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    source: str,
    target: str | None,
    max_new_tokens: int,
) -> AttentionMaps:
    device = model.device
    encoded = tokenizer(source, return_tensors="pt").to(device)
    start = model.config.decoder_start_token_id
    if target is None:
        sequence = model.generate(**encoded, num_beams=1, do_sample=False, max_new_tokens=max_new_tokens)[0]
    else:
        labels = tokenizer(text_target=target, return_tensors="pt")["input_ids"][0].to(device)
        sequence = torch.cat([labels.new_tensor([start]), labels])
    decoder_input_ids, predicted = sequence[:-1][None], sequence[1:]
    outputs = model(**encoded, decoder_input_ids=decoder_input_ids, output_attentions=True, return_dict=True)

    def stack(weights: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return torch.stack([w[0] for w in weights]).float().cpu()  # N x (H, rows, cols) -> (N, H, rows, cols)

    return AttentionMaps(
        source_tokens=tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist()),
        target_tokens=tokenizer.convert_ids_to_tokens(decoder_input_ids[0].tolist()),
        predicted_tokens=tokenizer.convert_ids_to_tokens(predicted.tolist()),
        encoder_self=stack(outputs.encoder_attentions),
        decoder_self=stack(outputs.decoder_attentions),
        cross=stack(outputs.cross_attentions),
    )


def _pyplot() -> object:
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            'Drawing attention maps needs matplotlib: pip install "vanilla-transformer[viz]" (or matplotlib).'
        ) from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _draw(
    ax: object, weights: torch.Tensor, name: str, rows: list[str], cols: list[str], title: str, ylabel: bool
) -> object:
    """One (rows, cols) heat map of attention kind `name` with token labels; masked future cells grey."""
    import numpy as np

    plt = _pyplot()
    data = weights.numpy()
    if name == "decoder_self":
        data = np.ma.masked_where(np.triu(np.ones_like(data, dtype=bool), k=1), data)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")
    image = ax.imshow(data, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    row_axis, col_axis = AXES[name]
    ax.set_xlabel(f"{col_axis} (keys)", fontsize=9)
    if ylabel:
        ax.set_ylabel(f"{row_axis} (queries)", fontsize=9)
    ax.set_title(title, fontsize=9)
    return image


def save_attention_plots(maps: AttentionMaps, out_dir: str, summary_layer: int = -1, dpi: int = 100) -> list[str]:
    """Write one PNG per attention kind and layer (a panel per head) and `summary.png`; return the paths.

    Args:
        maps: from `attention_maps`.
        out_dir: folder to write to (created if missing).
        summary_layer: layer averaged over heads in `summary.png` (negative counts from the last).
        dpi: resolution of the PNGs.
    """
    for name in KINDS:  # checked before anything is drawn or written
        layers = maps.kind(name).shape[0]
        if not -layers <= summary_layer < layers:
            raise ValueError(
                f"The summary layer {summary_layer} does not exist: the {TITLES[name].lower()} has {layers} "
                f"layer(s) (use 0..{layers - 1}, or -1 for the last)."
            )
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name in KINDS:
        weights = maps.kind(name)
        rows, cols = maps.labels(name)
        layers, heads = weights.shape[:2]
        panel = (max(2.5, 0.3 * len(cols) + 1.2), max(2.2, 0.3 * len(rows) + 1.2))
        for layer in range(layers):
            fig, axes = plt.subplots(
                1, heads, figsize=(panel[0] * heads, panel[1]), squeeze=False, layout="constrained"
            )
            for head in range(heads):
                image = _draw(axes[0, head], weights[layer, head], name, rows, cols, f"head {head + 1}", head == 0)
            fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
            fig.suptitle(f"{TITLES[name]}, layer {layer + 1}")
            path = os.path.join(out_dir, f"{name}_layer{layer + 1}.png")
            fig.savefig(path, dpi=dpi, bbox_inches="tight")
            plt.close(fig)
            paths.append(path)

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.5), layout="constrained")
    for ax, name in zip(axes, KINDS, strict=True):
        weights = maps.kind(name)
        layer = range(weights.shape[0])[summary_layer]
        rows, cols = maps.labels(name)
        title = f"{TITLES[name]}\n({len(rows)} x {len(cols)}, layer {layer + 1}, mean of {weights.shape[1]} heads)"
        image = _draw(ax, weights[layer].mean(0), name, rows, cols, title, True)
    fig.colorbar(image, ax=axes.tolist(), shrink=0.8)
    path = os.path.join(out_dir, "summary.png")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m vanilla_transformer.attention",
        description="Draw the encoder, decoder and cross-attention of a model.",
    )
    parser.add_argument("--model", required=True, help="model folder or Hub id (model + tokenizer)")
    parser.add_argument("--source", required=True, help="source sentence")
    parser.add_argument("--target", help="target to teacher-force (default: the model's greedy translation)")
    parser.add_argument("--out", default="attention", help="output folder for the PNGs")
    parser.add_argument("--layer", type=int, default=-1, help="layer of summary.png (default: the last)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        _pyplot()
    except ImportError as error:
        sys.exit(str(error))

    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(args.model, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    maps = attention_maps(model, tokenizer, args.source, args.target, max_new_tokens=args.max_new_tokens)
    print("source :", " ".join(maps.source_tokens))
    print("decoder:", " ".join(maps.target_tokens))
    for path in save_attention_plots(maps, args.out, summary_layer=args.layer, dpi=args.dpi):
        print(path)


if __name__ == "__main__":
    main()
