# Copyright 2026 The vanilla-transformer authors.
# SPDX-License-Identifier: Apache-2.0
"""Input checks, loading policy and library hooks of the Vanilla Transformer: what the model file needs beyond the
paper, kept out of its path.

Bad input gets an error naming the problem and what to do, never a silent wrong result or an index assert deep in
a kernel. Value checks (id ranges, empty mask rows) need the data, so they are skipped under `torch.compile` and
tracing, where the shape checks still run. Each public forward of the model calls one `validate_*` function here.

Shipped to the Hub with the model (a flat sibling of `modeling_vanilla_transformer.py`): imports only torch and
transformers.
"""

import torch
from torch import nn
from transformers.cache_utils import Cache, EncoderDecoderCache

# ---------------------------------------------------------------------------------------------------------
# Single checks
# ---------------------------------------------------------------------------------------------------------


def value_checks_enabled() -> bool:
    """False under torch.compile / tracing, where data-dependent checks would break the graph."""
    return not (torch.compiler.is_compiling() or torch.jit.is_tracing())


def check_token_ids(ids: torch.Tensor, vocab_size: int, name: str, ignore_index: int | None = None) -> None:
    """Raise if `ids` (B, L) is not a 2-D integer tensor of ids in [0, vocab_size) (or `ignore_index`)."""
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold integer token ids, got dtype {ids.dtype}.")
    if ids.dim() != 2:
        raise ValueError(f"`{name}` must have shape (batch, length), got {tuple(ids.shape)}.")
    if ids.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(ids.shape)}): batches and sequences need >= 1 token.")
    if value_checks_enabled():
        valid = ids if ignore_index is None else ids[ids != ignore_index]
        if valid.numel():
            low, high = torch.aminmax(valid)
            low, high = int(low), int(high)
            if low < 0 or high >= vocab_size:
                bad = low if low < 0 else high
                raise ValueError(f"`{name}` holds token id {bad}, outside the vocabulary [0, {vocab_size}).")


def check_length(length: int, max_positions: int, name: str, cached: int | torch.Tensor = 0) -> None:
    """Raise if positions `cached .. cached + length - 1` do not fit the sinusoidal table of `max_positions`."""
    if isinstance(cached, torch.Tensor):  # a static cache counts its length in a tensor
        if not value_checks_enabled():
            return
        cached = int(cached)
    if cached + length > max_positions:
        if cached:  # incremental decoding, i.e. generate(): the output outgrew the table
            raise ValueError(
                f"{name} position {cached + length - 1} ({cached} cached + {length} new tokens) is beyond "
                f"`max_position_embeddings` ({max_positions}): generate at most {max_positions} new tokens "
                "(`max_new_tokens`, or `max_length` counting the start token) or build the model with a larger "
                "`max_position_embeddings`."
            )
        raise ValueError(
            f"{name} of length {length} is longer than `max_position_embeddings` ({max_positions}); "
            "truncate the input or build the model with a larger `max_position_embeddings`."
        )


def check_mask(mask: torch.Tensor | None, shape: tuple[int, ...], name: str, forbid_empty_rows: bool) -> None:
    """Raise if a 2-D padding mask does not match `shape` (B, L) or, when asked, masks out a whole row."""
    if mask is None or mask.dim() == 4:  # 4-D masks are prepared by the caller and used as given
        return
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"`{name}` has shape {tuple(mask.shape)} but the input has shape {tuple(shape)}.")
    if forbid_empty_rows and value_checks_enabled() and bool((mask.sum(-1) == 0).any()):
        row = int((mask.sum(-1) == 0).nonzero()[0, 0])
        raise ValueError(f"`{name}` masks out every token of batch row {row}: there is nothing to attend to.")


# ---------------------------------------------------------------------------------------------------------
# One entry per public forward
# ---------------------------------------------------------------------------------------------------------


def validate_embedding_inputs(
    config: object, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, prefix: str, offset: object
) -> None:
    """Exactly one of (B, L) ids in the vocabulary or (B, L, E) embeddings, with positions that fit the table."""
    if prefix and input_ids is None and inputs_embeds is None:
        raise ValueError(
            "Pass `decoder_input_ids` (or `labels` to the ForConditionalGeneration model, which shifts them)."
        )
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError(f"Pass exactly one of `{prefix}input_ids` and `{prefix}inputs_embeds`.")
    if input_ids is not None:
        check_token_ids(input_ids, config.vocab_size, f"{prefix}input_ids")
        length = input_ids.shape[1]
    else:
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.d_model:
            raise ValueError(
                f"`{prefix}inputs_embeds` must have shape (batch, length, {config.d_model}), "
                f"got {tuple(inputs_embeds.shape)}."
            )
        if inputs_embeds.shape[0] == 0 or inputs_embeds.shape[1] == 0:
            raise ValueError(f"`{prefix}inputs_embeds` is empty (shape {tuple(inputs_embeds.shape)}).")
        length = inputs_embeds.shape[1]
    check_length(length, config.max_position_embeddings, "target" if prefix else "encoder input", offset)


def validate_encoder_inputs(
    config: object,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
) -> None:
    """The encoder's source: ids or embeddings, and a (B, S) padding mask that leaves every row something."""
    validate_embedding_inputs(config, input_ids, inputs_embeds, "", 0)
    shape = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
    check_mask(attention_mask, shape, "attention_mask", forbid_empty_rows=True)


def validate_decoder_inputs(
    config: object,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    encoder_hidden_states: torch.Tensor | None,
    encoder_attention_mask: torch.Tensor | None,
    past_length: int | torch.Tensor,
) -> None:
    """The decoder's input after `past_length` cached positions, its (B, P + T) mask and the encoder output."""
    if encoder_hidden_states is None:
        raise ValueError("The decoder needs `encoder_hidden_states` to attend over (cross-attention).")
    validate_embedding_inputs(config, input_ids, inputs_embeds, "decoder_", past_length)
    batch, length = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
    if encoder_hidden_states.dim() != 3 or encoder_hidden_states.shape[-1] != config.d_model:
        raise ValueError(
            f"`encoder_hidden_states` must have shape (batch, source length, {config.d_model}), got "
            f"{tuple(encoder_hidden_states.shape)}."
        )
    if encoder_hidden_states.shape[0] != batch:
        raise ValueError(
            f"The decoder batch ({batch}) and the encoder batch ({encoder_hidden_states.shape[0]}) differ."
        )
    full = (batch, past_length + length) if isinstance(past_length, int) else None
    if full is not None:
        check_mask(attention_mask, full, "decoder_attention_mask", forbid_empty_rows=False)
    check_mask(encoder_attention_mask, encoder_hidden_states.shape[:2], "attention_mask", forbid_empty_rows=False)


def validate_labels(
    config: object,
    labels: torch.Tensor,
    decoder_input: torch.Tensor | None,
    num_items_in_batch: object,
) -> None:
    """(B, T) labels in the vocabulary (or -100), aligned with the (B, T) decoder input, not all ignored."""
    check_token_ids(labels, config.vocab_size, "labels", ignore_index=-100)
    if num_items_in_batch is None and value_checks_enabled() and not bool((labels != -100).any()):
        raise ValueError("`labels` holds no target token (every position is -100): the loss would be 0 / 0.")
    if decoder_input is not None and tuple(labels.shape) != tuple(decoder_input.shape[:2]):
        raise ValueError(
            f"`labels` has shape {tuple(labels.shape)} but the decoder input has shape "
            f"{tuple(decoder_input.shape[:2])}: they must be aligned position by position."
        )


# ---------------------------------------------------------------------------------------------------------
# Loading policy and library hooks
# ---------------------------------------------------------------------------------------------------------


class LibraryHooksMixin:
    """A config of this model only; strict, safe `from_pretrained`; `save_pretrained` that also maps `AutoModel`
    for remote code; resizing that knows separate embedding matrices and `final_logits_bias`; beam search's cache
    reordering.

    Mixed into the model's `PreTrainedModel` (before it, so these methods wrap the library's).
    """

    def __init__(self, config: object, *inputs: object, **kwargs: object) -> None:
        if getattr(config, "model_type", None) != "vanilla_transformer":  # e.g. a BartConfig
            raise TypeError(
                f"{type(self).__name__} needs a VanillaTransformerConfig, got {type(config).__name__} "
                f"(model_type {getattr(config, 'model_type', None)!r})."
            )
        super().__init__(config, *inputs, **kwargs)

    def post_init(self) -> None:
        """The library's, then: tied copies are never saved, and listing them lets Trainer's
        `load_best_model_at_end` re-tie them instead of warning that a checkpoint misses keys it never had."""
        super().post_init()
        self._keys_to_ignore_on_save = set(self._keys_to_ignore_on_save or ()) | set(self.all_tied_weights_keys)

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """The library's resize (input embeddings, output projection, config), plus what it does not know about:
        with separate matrices (`tie_word_embeddings=False`) the decoder's embeddings and the `shared` one, and the
        `final_logits_bias` of converted Marian checkpoints (new entries 0)."""
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        size = embeddings.num_embeddings
        base = getattr(self, self.base_model_prefix, self)  # the encoder-decoder, with or without the LM head
        if not self.config.tie_word_embeddings:
            for owner, name in ((base, "shared"), (base.decoder, "embed_tokens")):
                old = getattr(owner, name)
                if old.num_embeddings != size:
                    setattr(owner, name, self._get_resized_embeddings(old, size, mean_resizing=mean_resizing))
        bias = getattr(self, "final_logits_bias", None)
        if bias is not None and bias.shape[-1] != size:
            resized = bias.new_zeros(1, size)
            keep = min(size, bias.shape[-1])
            resized[:, :keep] = bias[:, :keep]
            self.register_buffer("final_logits_bias", resized)
        return embeddings

    def _reorder_cache(self, cache: Cache, beam_idx: torch.LongTensor) -> Cache:
        """Beam search hook: follow the surviving beams (`beam_idx`, (B * beams,)) in the self-attention cache.

        The cross-attention keys/values are left as they are: every beam of a source holds the same copy, and
        `beam_idx` only permutes beams within their source, so gathering them would copy (B * beams, H, S, D)
        per layer and step to get the same values back.
        """
        if isinstance(cache, EncoderDecoderCache):
            cache.self_attention_cache.reorder_cache(beam_idx)
        else:
            cache.reorder_cache(beam_idx)
        return cache

    def save_pretrained(self, save_directory: str, *args: object, **kwargs: object) -> None:
        """Save as usual; when registered for remote code, also map `AutoModel` to the base model in `auto_map`."""
        if self._auto_class is not None:
            module = type(self).__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.setdefault("AutoModel", f"{module}.VanillaTransformerModel")
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | None, *args: object, **kwargs: object) -> object:
        """Load as usual, but strictly and safely:

        - from safetensors only unless `use_safetensors=False` is passed (pickled `.bin` weights can run code);
        - a corrupt or truncated safetensors file is reported with its checkpoint;
        - a checkpoint that lacks weights of the model, or holds weights the model lacks (another depth), is an
          error instead of a model with silently random or dropped layers; pass `output_loading_info=True` to get
          the model and the key lists anyway. Weights of another size follow `ignore_mismatched_sizes`.
          An explicit `state_dict=` is taken as given (the library's behaviour: what it lacks is initialised).
        """
        kwargs.setdefault("use_safetensors", True)
        explicit_state_dict = kwargs.get("state_dict") is not None
        wants_info = kwargs.get("output_loading_info", False)
        kwargs["output_loading_info"] = True
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except Exception as error:
            if type(error).__name__ != "SafetensorError":  # shipped code does not import safetensors
                raise
            raise OSError(
                f"The weights of {str(pretrained_model_name_or_path)!r} are not a readable safetensors file "
                f"(corrupt or truncated: {error}); re-save or re-download the checkpoint."
            ) from error
        if wants_info or explicit_state_dict:
            return (model, info) if wants_info else model
        missing, unexpected = sorted(info.get("missing_keys", ())), sorted(info.get("unexpected_keys", ()))
        if missing or unexpected:
            raise RuntimeError(
                f"The checkpoint {str(pretrained_model_name_or_path)!r} does not fit {cls.__name__}: "
                f"{len(missing)} weight(s) of the model are not in it {missing[:3]} and {len(unexpected)} of its "
                f"weights are not in the model {unexpected[:3]}. Compare the config you passed (layers, sizes) with "
                "the checkpoint's config.json, or pass `output_loading_info=True` to load it anyway."
            )
        return model
