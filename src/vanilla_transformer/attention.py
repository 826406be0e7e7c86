"""See the three kinds of attention of a trained model: the numbers, a step-through of generation, pictures, a page.

    python -m vanilla_transformer.attention runs/quickstart "siebenhundertvierundvierzig" --html attention.html
    python -m vanilla_transformer.attention --model PATH --source "..." --target "..." --out attention/

The model reads the source and is teacher-forced on a target: the given `--target`, or else its own translation
(greedy, or beam search with `--num-beams`). The decoder input is the target shifted right behind the start token
(`<s> seven hundred and forty-four`) and each of its rows is one decoding step. Three kinds of attention:

- encoder self-attention, source x source: every source token sees every source token;
- decoder masked self-attention, target x target: step t attends to steps <= t only (the upper triangle is masked);
- encoder-decoder cross-attention, target x source: queries from the decoder, keys and values from the encoder
  output, which is computed once and read again at every step.

`--html FILE` writes one self-contained page (no network needed, ever): the three kinds for any layer and head,
hover to see what a token attends to and what attends to it, and a step-through of generation that replays the
model's cached decoding step by step (`generation_trace`): at step t the query is the newest token, the keys and
values of decoder self-attention are the t + 1 cached ones, and the top-k next-token probabilities are shown.
`--out DIR` writes PNGs (needs matplotlib, `pip install "vanilla-transformer[viz]"`):

- `encoder_self_layer{l}.png`, `decoder_self_layer{l}.png`, `cross_layer{l}.png`: one panel per head;
- `summary.png`: the three kinds side by side, averaged over the heads of one layer (the last by default).

Rows are queries, columns keys; each row is a softmax and sums to 1. `attention_maps` and `generation_trace` need
only torch.
"""

import argparse
import inspect
import math
import os
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
# Word-start markers of subword tokenizers: SentencePiece / Metaspace ("▁seven") and byte-level BPE ("Ġseven").
WORD_START_MARKERS = ("\u2581", "\u0120")


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
        special_tokens: the tokenizer's special tokens (`<s>`, `</s>`, `<pad>`, ...), for labels.
    """

    source_tokens: list[str]
    target_tokens: list[str]
    predicted_tokens: list[str]
    encoder_self: torch.Tensor
    decoder_self: torch.Tensor
    cross: torch.Tensor
    special_tokens: tuple[str, ...] = ()

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


@dataclass
class GenerationStep:
    """One step of cached decoding: the newest token is the query, earlier keys and values come from the cache.

    Attributes:
        query: position of the query token in the decoder input (step t has query t).
        cache_length: keys/values per decoder layer in the self-attention cache at this step, the query's own
            included (t + 1): what the query attends over.
        self_attention: (N_dec, H, t + 1) decoder self-attention of the query over the cached positions.
        cross: (N_dec, H, S) cross-attention of the query over the source (the same encoder output every step).
        top_k: the k most probable next tokens and their probabilities (the model's softmax, before any
            generation constraint).
        next_token: the token that came next in the decoded (or forced) sequence.
        next_probability: its probability at this step.
        next_rank: its rank among all tokens (1 = the most probable; beam search may keep a lower one).
    """

    query: int
    cache_length: int
    self_attention: torch.Tensor
    cross: torch.Tensor
    top_k: list[tuple[str, float]]
    next_token: str
    next_probability: float
    next_rank: int


@dataclass
class GenerationTrace:
    """The decoding of one sentence replayed step by step with the model's cache.

    Attributes:
        source_tokens: the S source tokens.
        tokens: the decoded sequence, start token first (the decoder input plus the last predicted token).
        steps: one `GenerationStep` per decoder input position.
        encoder_runs: how many times the encoder ran (once: its output is reused at every step).
    """

    source_tokens: list[str]
    tokens: list[str]
    steps: list[GenerationStep]
    encoder_runs: int


def _check_text(source: str, target: str | None) -> None:
    if not isinstance(source, str) or not source.strip():
        raise ValueError("`source` is empty: give a sentence to encode.")
    if target is not None and not target.strip():
        raise ValueError("`target` is empty: give a sentence, or leave it out to use the model's translation.")


class _eager_attention:
    """Context manager: the model with the eager attention (the only one returning weights), then as it was."""

    def __init__(self, model: PreTrainedModel) -> None:
        self.model = model
        self.implementation = model.config._attn_implementation

    def __enter__(self) -> PreTrainedModel:
        if self.implementation != "eager":
            self.model.set_attn_implementation("eager")
        return self.model

    def __exit__(self, *exc: object) -> None:
        if self.implementation != "eager":
            self.model.set_attn_implementation(self.implementation)  # leave the caller's model as it was


def decoded_sequence(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    encoded: dict[str, torch.Tensor],
    target: str | None,
    num_beams: int = 1,
    max_new_tokens: int | None = None,
) -> torch.Tensor:
    """(L,) ids: the decoder start token + the given `target`'s ids, or + the model's own translation.

    The translation is greedy (`num_beams=1`) or the best beam of beam search (with the length penalty of the
    model's generation config), without sampling; `max_new_tokens` None keeps the generation config's limit
    (min(256, `max_position_embeddings`) if it sets none).
    """
    if num_beams < 1:
        raise ValueError(f"`num_beams` must be >= 1, got {num_beams}.")
    if target is None:
        saved = model.generation_config
        if max_new_tokens is None and saved.max_new_tokens is None and saved.max_length is None:
            max_new_tokens = min(256, getattr(model.config, "max_position_embeddings", 256))  # not transformers' 20
        lengths = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
        return model.generate(**encoded, num_beams=num_beams, do_sample=False, **lengths)[0]
    labels = tokenizer(text_target=target, return_tensors="pt")["input_ids"][0].to(model.device)
    return torch.cat([labels.new_tensor([model.config.decoder_start_token_id]), labels])


@torch.no_grad()
def attention_maps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    source: str,
    target: str | None = None,
    max_new_tokens: int | None = None,
    num_beams: int = 1,
) -> AttentionMaps:
    """Run the model on one sentence pair and return every attention matrix.

    Args:
        model: an encoder-decoder model returning `encoder_attentions`, `decoder_attentions` and
            `cross_attentions` with `output_attentions=True` (ours, Marian, BART, ...). Run with the eager
            attention (the only one that returns its weights) and switched back afterwards.
        tokenizer: the model's tokenizer.
        source: the sentence to encode.
        target: the target to teacher-force; default: the model's own translation.
        max_new_tokens: longest translation when `target` is None (default: the generation config's).
        num_beams: 1 = greedy translation, more = beam search's best hypothesis.

    Returns:
        `AttentionMaps` with (N, H, rows, cols) float32 tensors on the CPU: the weights the model returns with
        `output_attentions=True`, batch dimension removed, layers stacked in order.
    """
    _check_text(source, target)
    with _eager_attention(model.eval()):
        encoded = tokenizer(source, return_tensors="pt").to(model.device)
        sequence = decoded_sequence(model, tokenizer, encoded, target, num_beams, max_new_tokens)
        return _attention_maps(model, tokenizer, encoded, sequence)


def _attention_maps(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, encoded: dict, sequence: torch.Tensor
) -> AttentionMaps:
    """The maps of source `encoded` teacher-forced on the (L,) ids `sequence` (start token first)."""
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
        special_tokens=tuple(tokenizer.all_special_tokens),
    )


def _new_cache(model: PreTrainedModel) -> tuple[str, object]:
    """(forward keyword, empty cache): an `EncoderDecoderCache`, under the name this transformers version uses."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    parameters = inspect.signature(model.forward).parameters
    name = "cache" if "cache" in parameters else "past_key_values"  # renamed in transformers 5.24
    return name, EncoderDecoderCache(DynamicCache(), DynamicCache())


@torch.no_grad()
def generation_trace(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    source: str,
    target: str | None = None,
    max_new_tokens: int | None = None,
    num_beams: int = 1,
    top_k: int = 5,
) -> GenerationTrace:
    """Replay the decoding of `source` one token at a time, as `generate()` runs it, recording every step.

    The encoder runs once; then each step feeds only the newest token with the cache of the earlier steps, so
    decoder self-attention sees exactly the cached keys/values and cross-attention reads the one encoder output.
    The sequence replayed is the model's own translation (greedy, or beam search's best hypothesis) or the given
    `target`, so the weights equal the rows of `attention_maps` for the same sentence pair.

    Args:
        model, tokenizer, source, target, max_new_tokens, num_beams: as for `attention_maps`.
        top_k: how many of the most probable next tokens to keep per step.

    Returns:
        A `GenerationTrace` with one step per decoder input token.
    """
    _check_text(source, target)
    if top_k < 1:
        raise ValueError(f"`top_k` must be >= 1, got {top_k}.")
    with _eager_attention(model.eval()):
        encoded = tokenizer(source, return_tensors="pt").to(model.device)
        sequence = decoded_sequence(model, tokenizer, encoded, target, num_beams, max_new_tokens)
        return _generation_trace(model, tokenizer, encoded, sequence, top_k)


def _generation_trace(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, encoded: dict, sequence: torch.Tensor, top_k: int
) -> GenerationTrace:
    """The trace of source `encoded` decoding the (L,) ids `sequence` (start token first)."""
    encoder_outputs = model.get_encoder()(**encoded, return_dict=True)
    cache_name, cache = _new_cache(model)
    steps = []
    for t in range(len(sequence) - 1):
        outputs = model(
            encoder_outputs=encoder_outputs,
            attention_mask=encoded["attention_mask"],
            decoder_input_ids=sequence[None, t : t + 1],  # the newest token only
            use_cache=True,
            output_attentions=True,
            return_dict=True,
            **{cache_name: cache},  # updated in place
        )
        probabilities = outputs.logits[0, -1].float().softmax(-1)
        best = probabilities.topk(min(top_k, probabilities.numel()))
        chosen = int(sequence[t + 1])
        candidates = tokenizer.convert_ids_to_tokens(best.indices.tolist())
        steps.append(
            GenerationStep(
                query=t,
                cache_length=int(cache.get_seq_length()),
                self_attention=torch.stack([w[0, :, 0] for w in outputs.decoder_attentions]).float().cpu(),
                cross=torch.stack([w[0, :, 0] for w in outputs.cross_attentions]).float().cpu(),
                top_k=[(token, float(p)) for token, p in zip(candidates, best.values.tolist(), strict=True)],
                next_token=tokenizer.convert_ids_to_tokens(chosen),
                next_probability=float(probabilities[chosen]),
                next_rank=int((probabilities > probabilities[chosen]).sum()) + 1,
            )
        )
    return GenerationTrace(
        source_tokens=tokenizer.convert_ids_to_tokens(encoded["input_ids"][0].tolist()),
        tokens=tokenizer.convert_ids_to_tokens(sequence.tolist()),
        steps=steps,
        encoder_runs=1,
    )


def alignment(maps: AttentionMaps, layer: int = -1) -> list[tuple[int, int]]:
    """Word alignment of a sentence pair from its cross-attention: `(source_index, output_index)` pairs.

    Each predicted token is aligned to the source token with the largest head-averaged cross-attention weight of
    `layer` at the step that predicts it; special tokens are left out and the indices count the others (as the
    translation pipeline's `return_alignments`). Attention shows where the model looked, which is often but not
    always the word it translates: it is not a guaranteed alignment.
    """
    from .pipeline_vanilla_transformer import attention_alignment

    _check_layer(maps, layer, ("cross",), "alignment")
    sequence = maps.target_tokens[:1] + maps.predicted_tokens
    return attention_alignment(maps.cross[layer].mean(0), maps.source_tokens, sequence, set(maps.special_tokens))


def pharaoh(pairs: list[tuple[int, int]]) -> str:
    """`[(0, 0), (2, 1)]` -> `"0-0 2-1"`: the `i-j` format of Moses/fast_align (source i, target j)."""
    return " ".join(f"{i}-{j}" for i, j in pairs)


def word_starts(tokens: list[str], special_tokens: tuple[str, ...] = ()) -> list[bool]:
    """Whether each token begins a word, for drawing word boundaries between subword pieces.

    With a subword tokenizer that marks word starts (`▁seven`, `Ġseven`), pieces without the marker continue the
    previous word; with one that does not (a word-level vocabulary), every token is a word. Special tokens are
    words of their own.
    """
    marked = any(token.startswith(WORD_START_MARKERS) for token in tokens)
    starts = []
    for position, token in enumerate(tokens):
        previous_special = position > 0 and tokens[position - 1] in special_tokens
        starts.append(
            not marked
            or position == 0
            or token in special_tokens
            or previous_special
            or token.startswith(WORD_START_MARKERS)
        )
    return starts


def display_token(token: str) -> str:
    """The token as a label: without its word-start marker (the boundary is drawn instead); never empty."""
    shown = token[1:] if token.startswith(WORD_START_MARKERS) else token
    return shown if shown.strip() else "\u2423"  # a lone marker or space shows as an open box


def _check_layer(maps: AttentionMaps, layer: int, kinds: tuple[str, ...], what: str) -> None:
    for name in kinds:
        layers = maps.kind(name).shape[0]
        if not isinstance(layer, int) or not -layers <= layer < layers:
            raise ValueError(
                f"The {what} layer {layer} does not exist: the {TITLES[name].lower()} has {layers} "
                f"layer(s) (use 0..{layers - 1}, or -1 for the last)."
            )


# Pictures
# --------
CELL_INCHES = 0.32  # side of one attention cell in the PNGs: figures grow with the number of tokens


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
    ax: object,
    weights: torch.Tensor,
    name: str,
    maps: AttentionMaps,
    title: str,
    row_labels: bool = True,
    col_labels: bool = True,
) -> object:
    """One (rows, cols) heat map of attention kind `name`: token labels, word boundaries, masked cells grey."""
    import numpy as np

    plt = _pyplot()
    rows, cols = maps.labels(name)
    data = weights.numpy()
    if name == "decoder_self":
        data = np.ma.masked_where(np.triu(np.ones_like(data, dtype=bool), k=1), data)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#d9d9d9")
    image = ax.imshow(data, cmap=cmap, vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
    fontsize = 8 if max(len(rows), len(cols)) <= 24 else 6
    ax.set_xticks(range(len(cols)), [display_token(t) for t in cols] if col_labels else [])
    ax.set_yticks(range(len(rows)), [display_token(t) for t in rows] if row_labels else [])
    ax.tick_params(axis="x", labelrotation=90, labelsize=fontsize, length=2)
    ax.tick_params(axis="y", labelsize=fontsize, length=2)
    for axis_line, tokens in ((ax.axvline, cols), (ax.axhline, rows)):  # white lines between words
        for position, start in enumerate(word_starts(tokens, maps.special_tokens)):
            if start and position > 0:
                axis_line(position - 0.5, color="white", linewidth=1.5)
    row_axis, col_axis = AXES[name]
    if col_labels:
        ax.set_xlabel(f"{col_axis} (keys)", fontsize=fontsize + 1)
    if row_labels:
        ax.set_ylabel(f"{row_axis} (queries)", fontsize=fontsize + 1)
    ax.set_title(title, fontsize=fontsize + 1)
    return image


def _label_inches(tokens: list[str]) -> float:
    """Room for the longest label of `tokens` at the label font size."""
    return 0.3 + 0.075 * max(len(display_token(t)) for t in tokens)


def save_attention_plots(maps: AttentionMaps, out_dir: str, summary_layer: int = -1, dpi: int = 100) -> list[str]:
    """Write one PNG per attention kind and layer (a panel per head) and `summary.png`; return the paths.

    Figures grow with the number of tokens (a fixed cell size), heads are laid out in a grid, labels show the
    tokens without the word-start marker and white lines mark where a new word begins; one colour bar per figure.

    Args:
        maps: from `attention_maps`.
        out_dir: folder to write to (created if missing).
        summary_layer: layer averaged over heads in `summary.png` (negative counts from the last).
        dpi: resolution of the PNGs.
    """
    _check_layer(maps, summary_layer, KINDS, "summary")  # checked before anything is drawn or written
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name in KINDS:
        weights = maps.kind(name)
        rows, cols = maps.labels(name)
        layers, heads = weights.shape[:2]
        columns = min(heads, 4)
        grid = (math.ceil(heads / columns), columns)
        panel = (max(1.4, CELL_INCHES * len(cols)), max(1.4, CELL_INCHES * len(rows)))
        size = (
            grid[1] * panel[0] + _label_inches(rows) + 1.2,  # + y labels of the first column + colour bar
            grid[0] * (panel[1] + 0.35) + _label_inches(cols) + 0.6,  # + titles, x labels of the last row
        )
        for layer in range(layers):
            fig, axes = plt.subplots(*grid, figsize=size, squeeze=False, layout="constrained")
            for head in range(grid[0] * grid[1]):
                ax = axes.flat[head]
                if head >= heads:
                    ax.set_axis_off()
                    continue
                row, column = divmod(head, grid[1])
                image = _draw(
                    ax,
                    weights[layer, head],
                    name,
                    maps,
                    f"head {head + 1}",
                    row_labels=column == 0,
                    col_labels=row == grid[0] - 1 or head + grid[1] >= heads,
                )
            fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.04, aspect=25, label="attention weight")
            fig.suptitle(f"{TITLES[name]}, layer {layer + 1} ({len(rows)} x {len(cols)})", fontsize=10)
            path = os.path.join(out_dir, f"{name}_layer{layer + 1}.png")
            fig.savefig(path, dpi=dpi)
            plt.close(fig)
            paths.append(path)

    widths = [max(1.6, CELL_INCHES * len(maps.labels(name)[1])) for name in KINDS]
    height = max(1.6, CELL_INCHES * max(len(maps.source_tokens), len(maps.target_tokens)))
    labels = _label_inches(maps.source_tokens + maps.target_tokens)
    fig, axes = plt.subplots(
        1,
        3,
        figsize=(sum(widths) + 3 * labels + 1.6, height + labels + 1.0),
        layout="constrained",
        width_ratios=widths,
    )
    for ax, name in zip(axes, KINDS, strict=True):
        weights = maps.kind(name)
        layer = range(weights.shape[0])[summary_layer]
        rows, cols = maps.labels(name)
        title = f"{TITLES[name]}\n[{len(rows)} x {len(cols)}], layer {layer + 1}, mean of {weights.shape[1]} heads"
        image = _draw(ax, weights[layer].mean(0), name, maps, title)
    fig.colorbar(image, ax=axes.tolist(), fraction=0.03, aspect=25, label="attention weight")
    path = os.path.join(out_dir, "summary.png")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    paths.append(path)
    return paths


# The interactive page
# --------------------
def _rounded(weights: torch.Tensor, digits: int = 4) -> list:
    return torch.round(weights, decimals=digits).tolist()


def explorer_data(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    source: str,
    target: str | None = None,
    max_new_tokens: int | None = None,
    num_beams: int = 1,
    top_k: int = 5,
    model_name: str = "",
) -> dict:
    """Everything the attention page shows, as JSON-ready lists (weights rounded to 4 decimals).

    The full matrices come from `attention_maps` (one teacher-forced pass with `output_attentions=True`), the
    step-through from `generation_trace` (cached decoding, one token per step) of the same sequence.
    """
    _check_text(source, target)
    if top_k < 1:
        raise ValueError(f"`top_k` must be >= 1, got {top_k}.")
    with torch.no_grad(), _eager_attention(model.eval()):
        encoded = tokenizer(source, return_tensors="pt").to(model.device)
        sequence = decoded_sequence(model, tokenizer, encoded, target, num_beams, max_new_tokens)
        maps = _attention_maps(model, tokenizer, encoded, sequence)
        trace = _generation_trace(model, tokenizer, encoded, sequence, top_k)
    config = model.config
    special = maps.special_tokens
    translation = tokenizer.decode(tokenizer.convert_tokens_to_ids(maps.predicted_tokens), skip_special_tokens=True)
    if target is not None:
        decoding = "teacher-forced on the given target"
    elif num_beams == 1:
        decoding = "greedy decoding"
    else:
        decoding = f"beam search, {num_beams} beams (the best hypothesis)"
    return {
        "model": model_name,
        "source": source,
        "translation": translation,
        "decoding": decoding,
        "forced": target is not None,
        "dims": {
            "d_model": config.d_model,
            "encoder_layers": maps.encoder_self.shape[0],
            "decoder_layers": maps.decoder_self.shape[0],
            "encoder_heads": maps.encoder_self.shape[1],
            "decoder_heads": maps.decoder_self.shape[1],
            "d_k_encoder": config.d_model // maps.encoder_self.shape[1],
            "d_k_decoder": config.d_model // maps.decoder_self.shape[1],
        },
        "source_tokens": maps.source_tokens,
        "target_tokens": maps.target_tokens,
        "predicted_tokens": maps.predicted_tokens,
        "special_tokens": [t for t in special if t in maps.source_tokens + trace.tokens],
        "word_starts": {
            "source": word_starts(maps.source_tokens, special),
            "target": word_starts(trace.tokens, special),
        },
        "encoder_self": _rounded(maps.encoder_self),
        "decoder_self": _rounded(maps.decoder_self),
        "cross": _rounded(maps.cross),
        "alignment": alignment(maps),
        "encoder_runs": trace.encoder_runs,
        "steps": [
            {
                "query": step.query,
                "cache_length": step.cache_length,
                "self": _rounded(step.self_attention),
                "cross": _rounded(step.cross),
                "top_k": [[token, round(p, 4)] for token, p in step.top_k],
                "next": step.next_token,
                "next_probability": round(step.next_probability, 4),
                "next_rank": step.next_rank,
            }
            for step in trace.steps
        ],
    }


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m vanilla_transformer.attention",
        description="Show the encoder, decoder and cross-attention of a model: an interactive page and/or PNGs.",
    )
    parser.add_argument("model_path", nargs="?", metavar="MODEL", help="model folder or Hub id (or --model)")
    parser.add_argument("source_text", nargs="?", metavar="SOURCE", help="source sentence (or --source)")
    parser.add_argument("--model", help="model folder or Hub id (model + tokenizer)")
    parser.add_argument("--source", help="source sentence")
    parser.add_argument("--target", help="target to teacher-force (default: the model's translation)")
    parser.add_argument("--html", help="write the interactive page to this file")
    parser.add_argument("--out", help="write the PNGs into this folder (default: attention/ when --html is not given)")
    parser.add_argument("--layer", type=int, default=-1, help="layer of summary.png (default: the last)")
    parser.add_argument("--num-beams", type=int, default=1, help="1 = greedy translation, more = beam search")
    parser.add_argument("--top-k", type=int, default=5, help="next-token candidates shown per step in the page")
    parser.add_argument("--max-new-tokens", type=int, help="default: the model's generation config")
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)
    for flag, positional in (("model", "model_path"), ("source", "source_text")):
        given = [value for value in (getattr(args, flag), getattr(args, positional)) if value is not None]
        if len(given) != 1:
            parser.error(f"give the {flag} once: as {positional.split('_')[0].upper()} or as --{flag}")
        setattr(args, flag, given[0])
    if not args.source.strip():
        parser.error("the source sentence is empty")
    if args.target is not None and not args.target.strip():
        parser.error("--target is empty: give a sentence, or leave it out to use the model's translation")
    for flag in ("num_beams", "top_k", "max_new_tokens", "dpi"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    out = args.out if args.out is not None or args.html else "attention"
    if out is not None:
        try:
            _pyplot()
        except ImportError as error:
            parser.exit(2, f"{error}\n")

    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(args.model, attn_implementation="eager")
        tokenizer = AutoTokenizer.from_pretrained(args.model)
    except OSError as error:
        parser.exit(2, f"Cannot load the model {args.model!r}: {error}\n")
    maps = attention_maps(
        model, tokenizer, args.source, args.target, max_new_tokens=args.max_new_tokens, num_beams=args.num_beams
    )
    try:
        _check_layer(maps, args.layer, KINDS, "summary")
    except ValueError as error:
        parser.error(str(error))
    print("source :", " ".join(maps.source_tokens))
    print("decoder:", " ".join(maps.target_tokens))
    if args.html:
        from .attention_html import write_html

        data = explorer_data(
            model,
            tokenizer,
            args.source,
            args.target,
            max_new_tokens=args.max_new_tokens,
            num_beams=args.num_beams,
            top_k=args.top_k,
            model_name=args.model,
        )
        print(write_html(data, args.html))
    if out is not None:
        for path in save_attention_plots(maps, out, summary_layer=args.layer, dpi=args.dpi):
            print(path)


if __name__ == "__main__":
    main()
