"""A translation pipeline for encoder-decoder models, registered as the task "vanilla-translation".

transformers 5.x removed `pipeline("translation")`. This file brings it back as a custom pipeline: saved next to
a model with `pipe.save_pretrained(folder)` (which writes `custom_pipelines` into `config.json` and copies this
file), it loads where this package is not installed:

    pipe = pipeline("vanilla-translation", model=folder, trust_remote_code=True)
    pipe(["a sentence", "another one"], num_beams=4, max_new_tokens=64)
    # [{"translation_text": "..."}, {"translation_text": "..."}]
    pipe("a sentence", return_alignments=True)  # + "alignment" from cross-attention, see `attention_alignment`
    pipe = pipeline("vanilla-translation", model=folder, trust_remote_code=True, precision="int8")

Shipped to the Hub as remote code: imports only the standard library, torch, transformers and its flat sibling
`precision.py` (which `save_pretrained` copies beside it; it imports only torch). The task is not
called "translation" because transformers rejects that removed task name before looking at custom pipelines.
"""

import torch
from transformers import AutoModelForSeq2SeqLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import logging

from .precision import to_inference

TASK = "vanilla-translation"
logger = logging.get_logger(__name__)

# Keyword arguments handled by the pipeline itself; every other keyword goes to `model.generate()`.
_PREPROCESS_KEYS = ("truncation", "max_source_length")
_FORWARD_KEYS = ("return_alignments", "alignment_layer")
_POSTPROCESS_KEYS = ("skip_special_tokens", "clean_up_tokenization_spaces")


def attention_alignment(
    cross_attention: torch.Tensor, source_ids: list, output_ids: list, special_ids: set
) -> list[tuple[int, int]]:
    """Word alignment read off cross-attention: each output token and the source token it attends to most.

    Row r of the cross-attention is the decoding step whose query is `output_ids[r]` and which predicts
    `output_ids[r + 1]`; the output token predicted there is aligned to the source token with the largest
    weight in that row. Special tokens (start, end, padding) are left out on both sides and the indices count the
    remaining tokens, so `(i, j)` reads "output token j attends most to source token i", the `i-j` of the
    Pharaoh format. Attention is not a guaranteed alignment: it shows where the model looked, not why.

    Args:
        cross_attention: (L - 1, S) cross-attention weights of one layer (e.g. averaged over its heads), for the
            decoder input `output_ids[:-1]` over the S source tokens.
        source_ids: the S source token ids (padding included, as encoded), or the tokens.
        output_ids: the L generated ids (or tokens), the decoder start token first.
        special_ids: ids (or tokens) to leave out, e.g. the tokenizer's `all_special_ids`.

    Returns:
        `(source_index, output_index)` pairs, one per non-special output token, in output order.
    """
    source_positions = [p for p, token in enumerate(source_ids) if token not in special_ids]
    if not source_positions:
        return []
    columns = cross_attention[:, source_positions]  # (L - 1, S') over the real source tokens
    pairs = []
    for row, token in enumerate(output_ids[1:]):
        if token not in special_ids:
            pairs.append((int(columns[row].argmax()), len(pairs)))
    return pairs


class VanillaTranslationPipeline(Pipeline):
    """Translate text with any seq2seq model that has `generate()` and a tokenizer.

    Call with a string (returns a list with one `{"translation_text": str}` per returned sequence) or a list of
    strings (returns one such result per string; flattened to one dict per string when each has a single
    sequence). Generation keywords (`num_beams`, `length_penalty`, `max_new_tokens`, `num_return_sequences`,
    ...) pass through to `model.generate()`, at construction or per call; `batch_size` batches inputs.

    With `return_alignments=True` each result also has `"alignment"`, a list of `(source_index, output_index)`
    pairs from the cross-attention of layer `alignment_layer` (default -1, the last) averaged over its heads (see
    `attention_alignment`), and the tokens the indices count: `"source_tokens"` and `"translation_tokens"`
    (special tokens left out). This costs one more forward pass with the eager attention.

    `precision` ("fp32", "bf16", "fp16" or "int8", at construction) converts the model to its inference form
    first (`precision.to_inference`, in place); None leaves it as loaded.
    """

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def __init__(self, *args: object, precision: str | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        if precision is not None:
            self.model = to_inference(self.model, precision)

    def _sanitize_parameters(self, **kwargs: object) -> tuple[dict, dict, dict]:
        preprocess = {key: kwargs.pop(key) for key in _PREPROCESS_KEYS if key in kwargs}
        postprocess = {key: kwargs.pop(key) for key in _POSTPROCESS_KEYS if key in kwargs}
        forward = {key: kwargs.pop(key) for key in _FORWARD_KEYS if key in kwargs}
        if "alignment_layer" in forward:
            layers = self.model.config.decoder_layers
            layer = forward["alignment_layer"]
            if not isinstance(layer, int) or not -layers <= layer < layers:
                raise ValueError(
                    f"`alignment_layer` {layer!r} does not exist: the decoder has {layers} layer(s) "
                    f"(use 0..{layers - 1}, or -1 for the last)."
                )
        return preprocess, {**kwargs, **forward}, postprocess  # the rest are generation parameters

    def __call__(self, inputs: str | list[str], **kwargs: object) -> list:
        """Translate one string or a list of strings (see the class docstring for the return format)."""
        if isinstance(inputs, str):
            return super().__call__(inputs, **kwargs)
        if not isinstance(inputs, (list, tuple)) or not all(isinstance(text, str) for text in inputs):
            raise TypeError(f"{TASK} takes a string or a list of strings, got {type(inputs).__name__}.")
        results = super().__call__(list(inputs), **kwargs)
        if all(len(result) == 1 for result in results):
            return [result[0] for result in results]
        return results

    def preprocess(
        self, text: str, truncation: bool = False, max_source_length: int | None = None
    ) -> dict[str, torch.Tensor]:
        """One string -> `input_ids` and `attention_mask` of shape (1, S).

        A sentence longer than the model accepts (`max_source_length`, by default the smaller of the model's
        `max_position_embeddings` and the tokenizer's `model_max_length`) is an error, never cut silently; with
        `truncation=True` it is cut to that length with a warning.
        """
        if not isinstance(text, str):
            raise TypeError(f"{TASK} takes strings, got {type(text).__name__}.")
        if max_source_length is None:
            limits = [getattr(self.model.config, "max_position_embeddings", None), self.tokenizer.model_max_length]
            max_source_length = min(limit for limit in limits if isinstance(limit, int) and limit > 0)
        inputs = self.tokenizer(text, return_tensors="pt")
        length = inputs["input_ids"].shape[-1]
        if length > max_source_length:
            if not truncation:
                raise ValueError(
                    f"The sentence has {length} tokens, more than the model's limit of {max_source_length}: shorten "
                    f"or split it, or pass truncation=True to keep only its first {max_source_length} tokens "
                    f"({text[:60]!r}...)."
                )
            logger.warning(f"Cut a sentence of {length} tokens to the model's {max_source_length}: {text[:60]!r}...")
            inputs = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=max_source_length)
        return inputs

    def _forward(
        self,
        model_inputs: dict[str, torch.Tensor],
        return_alignments: bool = False,
        alignment_layer: int = -1,
        **generate_kwargs: object,
    ) -> dict[str, torch.Tensor]:
        """(B, S) inputs -> `output_ids` (B, R, L) for R = `num_return_sequences` generated sequences each.

        With `return_alignments`, also `cross_attention` (B, R, L - 1, S): the head-averaged cross-attention of
        layer `alignment_layer`, from teacher-forcing the model on its own output, and the `input_ids` (B, S).
        """
        batch = model_inputs["input_ids"].shape[0]
        output_ids = self.model.generate(**model_inputs, **generate_kwargs)
        outputs = {"output_ids": output_ids.reshape(batch, -1, output_ids.shape[-1])}
        if return_alignments:
            weights = self._cross_attention(model_inputs, output_ids, alignment_layer)  # (B * R, L - 1, S)
            outputs["cross_attention"] = weights.reshape(batch, -1, *weights.shape[1:])
            outputs["input_ids"] = model_inputs["input_ids"]
        return outputs

    def _cross_attention(
        self, model_inputs: dict[str, torch.Tensor], output_ids: torch.Tensor, layer: int
    ) -> torch.Tensor:
        """(B * R, L) generated ids -> (B * R, L - 1, S) cross-attention of `layer`, averaged over the heads.

        The same weights the decoder computed while generating (step r's query is `output_ids[:, r]`), recomputed in
        one pass: only the eager attention returns its weights, so the model switches to it and back.
        """
        repeats = output_ids.shape[0] // model_inputs["input_ids"].shape[0]
        encoder_inputs = {key: value.repeat_interleave(repeats, 0) for key, value in model_inputs.items()}
        implementation = self.model.config._attn_implementation
        if implementation != "eager":
            self.model.set_attn_implementation("eager")
        try:
            outputs = self.model(
                **encoder_inputs, decoder_input_ids=output_ids[:, :-1], output_attentions=True, return_dict=True
            )
        finally:
            if implementation != "eager":
                self.model.set_attn_implementation(implementation)
        return outputs.cross_attentions[layer].mean(1).float()

    def postprocess(
        self,
        model_outputs: dict[str, torch.Tensor],
        skip_special_tokens: bool = True,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[dict[str, str]]:
        """(1, R, L) ids of one input -> R dicts `{"translation_text": str}` (+ the alignment, if asked for)."""
        texts = self.tokenizer.batch_decode(
            model_outputs["output_ids"][0],
            skip_special_tokens=skip_special_tokens,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
        )
        results = [{"translation_text": text} for text in texts]
        if "cross_attention" in model_outputs:
            special = set(self.tokenizer.all_special_ids)
            source_ids = model_outputs["input_ids"][0].tolist()
            weights = model_outputs["cross_attention"][0]  # (R, L - 1, S)
            for r, ids in enumerate(model_outputs["output_ids"][0].tolist()):
                results[r]["alignment"] = attention_alignment(weights[r], source_ids, ids, special)
                results[r]["source_tokens"] = self._tokens(source_ids, special)
                results[r]["translation_tokens"] = self._tokens(ids[1:], special)
        return results

    def _tokens(self, ids: list[int], special: set[int]) -> list[str]:
        """The tokens of `ids` without the special ones: what the alignment indices count."""
        return self.tokenizer.convert_ids_to_tokens([token for token in ids if token not in special])


PIPELINE_REGISTRY.register_pipeline(
    TASK, pipeline_class=VanillaTranslationPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
)
