"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017), for transformers 5.x.

Read top to bottom in the paper's order: shifted decoder inputs (teacher forcing), sinusoidal positional
encoding (Section 3.5), scaled dot-product and multi-head attention (Sections 3.2.1-3.2.3: encoder
self-attention, decoder masked self-attention, encoder-decoder cross-attention), position-wise feed-forward
network (Section 3.3), the encoder and decoder layers (Section 3.1), the stacks, and the output projection
tied to the embeddings (Section 3.4). `outputs.loss` is the plain cross-entropy, as in every transformers model;
the paper's label smoothing (Section 5.4) is part of the training recipe (`vanilla_transformer.losses`).

Shape legend: B batch, S source length, T target length, H heads, D head dim (d_k = d_v), E d_model,
F d_ff, V vocabulary size, P past (cached) target length.

Deviations from the paper (also listed in model_card.md):
- Attention projections and the feed-forward layers have biases (as in BART/Marian, so their checkpoints
  convert); the paper writes the projections as plain matrices W^Q, W^K, W^V, W^O.
- Initialisation is not specified by the paper. Linear weights use Xavier-uniform, embeddings N(0, d_model^-0.5)
  (the tensor2tensor convention), biases zero, LayerNorm gain one; `init_std` switches linear layers and
  embeddings to N(0, init_std), the BART/Marian convention.
- Optional, off by default: pre-norm (`normalize_before`), dropout on attention weights
  (`attention_dropout`) and after the ReLU (`activation_dropout`), Marian's "concatenated" sinusoid layout and
  fixed `final_logits_bias` (for converted OPUS-MT checkpoints), other activations.
- The loss is summed over target tokens and divided by the number of non-ignored target tokens in the whole
  (possibly accumulated or distributed) batch, the paper's per-token normalisation.
- The start token of the decoder input is `decoder_start_token_id` (the seeds' `<start>`), and sequences
  longer than `max_position_embeddings` are rejected, although sinusoids could extrapolate.
"""

import dataclasses
import math
from collections.abc import Callable

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import create_bidirectional_mask, create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import logging

from .configuration_vanilla_transformer import VanillaTransformerConfig

logger = logging.get_logger(__name__)


# ---------------------------------------------------------------------------------------------------------
# Input checks: bad input gets an error naming the problem, never a silent wrong result. Value checks need the
# data, so they are skipped under torch.compile / tracing, where shape checks still run.
# ---------------------------------------------------------------------------------------------------------
def _value_checks_enabled() -> bool:
    return not (torch.compiler.is_compiling() or torch.jit.is_tracing())


def _check_token_ids(ids: torch.Tensor, vocab_size: int, name: str, ignore_index: int | None = None) -> None:
    """Raise if `ids` (B, L) is not a 2-D integer tensor of ids in [0, vocab_size) (or `ignore_index`)."""
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold integer token ids, got dtype {ids.dtype}.")
    if ids.dim() != 2:
        raise ValueError(f"`{name}` must have shape (batch, length), got {tuple(ids.shape)}.")
    if ids.numel() == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(ids.shape)}): batches and sequences need >= 1 token.")
    if _value_checks_enabled():
        valid = ids if ignore_index is None else ids[ids != ignore_index]
        if valid.numel():
            low, high = torch.aminmax(valid)
            low, high = int(low), int(high)
            if low < 0 or high >= vocab_size:
                bad = low if low < 0 else high
                raise ValueError(f"`{name}` holds token id {bad}, outside the vocabulary [0, {vocab_size}).")


def _check_length(length: int, max_positions: int, name: str, cached: int | torch.Tensor = 0) -> None:
    """Raise if positions `cached .. cached + length - 1` do not fit the sinusoidal table of `max_positions`."""
    if isinstance(cached, torch.Tensor):  # a static cache counts its length in a tensor
        if not _value_checks_enabled():
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


# The name of the outputs' cache field: `cache` from transformers 5.24 on, `past_key_values` before.
_CACHE_FIELD = next(
    (field.name for field in dataclasses.fields(Seq2SeqLMOutput) if field.name == "cache"), "past_key_values"
)


def _one_cache(past_key_values: Cache | None, cache: Cache | None) -> Cache | None:
    """The cache, under either of its names.

    transformers 5.24 renamed the cache argument `past_key_values` to `cache` (`generate()` passes `cache`, 5.23 and
    earlier pass `past_key_values`). Both are accepted so the shipped code runs on either; a cache under an
    unknown name would otherwise fall into `**kwargs` and decoding would silently restart at every step.
    """
    if past_key_values is not None and cache is not None:
        raise ValueError("Pass the cache once, as `cache` or as `past_key_values`, not both.")
    return cache if cache is not None else past_key_values


def _check_mask(mask: torch.Tensor | None, shape: tuple[int, ...], name: str, forbid_empty_rows: bool) -> None:
    if mask is None or mask.dim() == 4:  # 4-D masks are prepared by the caller and used as given
        return
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"`{name}` has shape {tuple(mask.shape)} but the input has shape {tuple(shape)}.")
    if forbid_empty_rows and _value_checks_enabled() and bool((mask.sum(-1) == 0).any()):
        row = int((mask.sum(-1) == 0).nonzero()[0, 0])
        raise ValueError(f"`{name}` masks out every token of batch row {row}: there is nothing to attend to.")


# ---------------------------------------------------------------------------------------------------------
# Teacher forcing: decoder input = target shifted right behind <start>.
# ---------------------------------------------------------------------------------------------------------
def shift_tokens_right(labels: torch.Tensor, pad_token_id: int, decoder_start_token_id: int) -> torch.Tensor:
    """Build decoder inputs from targets: `I love easy courses <end>` -> `<start> I love easy courses`.

    Args:
        labels: (B, T) target ids; -100 marks positions ignored by the loss.
    Returns:
        (B, T) decoder input ids; -100 becomes `pad_token_id`.
    """
    if pad_token_id is None or decoder_start_token_id is None:
        raise ValueError("`config.pad_token_id` and `config.decoder_start_token_id` must be set to shift labels.")
    shifted = labels.new_zeros(labels.shape)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


# ---------------------------------------------------------------------------------------------------------
# Section 3.5: positional encoding. PE(pos, 2i) = sin(pos / 10000^(2i/E)), PE(pos, 2i+1) = cos(same).
# ---------------------------------------------------------------------------------------------------------
class VanillaTransformerSinusoidalPositionalEncoding(nn.Module):
    """Fixed sinusoidal table (max_positions, E), rebuilt by `_init_weights` (it is not saved)."""

    def __init__(self, max_positions: int, embed_dim: int, layout: str = "interleaved") -> None:
        super().__init__()
        self.max_positions, self.embed_dim, self.layout = max_positions, embed_dim, layout
        self.register_buffer("pe", self.create(), persistent=False)

    def create(self) -> torch.Tensor:
        """Returns: (max_positions, E) float32 table, computed in float64."""
        position = torch.arange(self.max_positions, dtype=torch.float64)[:, None]
        dim = torch.arange(self.embed_dim, dtype=torch.float64)
        angle = position / torch.pow(10000.0, 2 * torch.div(dim, 2, rounding_mode="floor") / self.embed_dim)
        if self.layout == "interleaved":  # the paper: even dims sine, odd dims cosine
            table = torch.where(dim.long() % 2 == 0, torch.sin(angle), torch.cos(angle))
        else:  # "concatenated" (Marian): sines of the even angles first, then cosines of the odd angles
            table = torch.cat([torch.sin(angle[:, 0::2]), torch.cos(angle[:, 1::2])], dim=-1)
        return table.float()

    def forward(self, length: int, offset: int | torch.Tensor = 0) -> torch.Tensor:
        """Returns: (length, E) encodings of positions offset .. offset + length - 1."""
        if isinstance(offset, torch.Tensor):  # static cache: gather, so torch.compile needs no data-dependent slice
            return self.pe.index_select(0, torch.arange(length, device=self.pe.device) + offset.to(self.pe.device))
        return self.pe[offset : offset + length]


# ---------------------------------------------------------------------------------------------------------
# Section 3.2.1: scaled dot-product attention, softmax(Q K^T / sqrt(d_k)) V. This is the "eager" path; "sdpa",
# "flash_attention_2" and "flex_attention" come from transformers' attention interface and compute the same.
# ---------------------------------------------------------------------------------------------------------
def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Args: query (B, H, T, D), key/value (B, H, S, D), additive mask (B, 1, T, S) or None.

    Returns: output (B, T, H, D) and attention weights (B, H, T, S), each row summing to 1.
    """
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, T, S)
    if attention_mask is not None:
        scores = scores + attention_mask  # -inf (dtype min) where a query may not look
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (B, T, H, D)
    return output, weights


# ---------------------------------------------------------------------------------------------------------
# Section 3.2.2: multi-head attention, used three ways (Section 3.2.3).
# ---------------------------------------------------------------------------------------------------------
class VanillaTransformerAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    - encoder self-attention: queries, keys, values from the encoder; every source token sees every other;
    - decoder masked self-attention (`is_causal`): position t sees positions <= t only;
    - cross-attention (`is_cross_attention`): queries from the decoder, keys/values from the encoder output,
      computed once per source and kept in the cache during generation.
    """

    def __init__(
        self,
        config: VanillaTransformerConfig,
        num_heads: int,
        is_causal: bool = False,
        is_cross_attention: bool = False,
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.embed_dim = config.d_model
        self.num_heads = num_heads
        self.head_dim = config.d_model // num_heads
        self.scaling = self.head_dim**-0.5  # 1 / sqrt(d_k)
        self.dropout = config.attention_dropout
        self.is_causal = is_causal
        self.is_cross_attention = is_cross_attention
        self.layer_idx = layer_idx
        self.q_proj = nn.Linear(self.embed_dim, self.embed_dim)  # W^Q for all heads at once
        self.k_proj = nn.Linear(self.embed_dim, self.embed_dim)  # W^K
        self.v_proj = nn.Linear(self.embed_dim, self.embed_dim)  # W^V
        self.out_proj = nn.Linear(self.embed_dim, self.embed_dim)  # W^O

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        output_attentions: bool = False,
        **kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Args:
            hidden_states: (B, T, E) queries' source (and keys'/values' for self-attention).
            key_value_states: (B, S, E) encoder output, for cross-attention only.
            attention_mask: prepared mask for the attention implementation, or None.
            past_key_values: cache; self-attention appends (B, H, T, D) and attends over (B, H, P + T, D).

        Returns:
            (B, T, E) output and, with `output_attentions`, the (B, H, T, S or P + T) weights.
        """
        batch, length = hidden_states.shape[:2]
        query = self.q_proj(hidden_states).view(batch, length, -1, self.head_dim).transpose(1, 2)  # (B, H, T, D)

        cache, cross_cached = past_key_values, False
        if isinstance(past_key_values, EncoderDecoderCache):
            if self.is_cross_attention:
                cache = past_key_values.cross_attention_cache
                cross_cached = past_key_values.is_updated.get(self.layer_idx, False)
            else:
                cache = past_key_values.self_attention_cache
        elif self.is_cross_attention:
            cache = None  # a plain cache holds self-attention only; recompute cross keys/values
        if cross_cached:
            key = cache.layers[self.layer_idx].keys  # (B, H, S, D), computed at the first decoding step
            value = cache.layers[self.layer_idx].values
        else:
            source = key_value_states if self.is_cross_attention else hidden_states
            key = self.k_proj(source).view(batch, source.shape[1], -1, self.head_dim).transpose(1, 2)
            value = self.v_proj(source).view(batch, source.shape[1], -1, self.head_dim).transpose(1, 2)
            if cache is not None:
                key, value = cache.update(key, value, self.layer_idx)
                if self.is_cross_attention:
                    past_key_values.is_updated[self.layer_idx] = True  # the source never changes

        implementation = self.config._attn_implementation
        if output_attentions and implementation != "eager":  # as transformers' own models: warn, weights None
            logger.warning_once(
                f"`output_attentions=True` needs the eager attention, but the model uses {implementation!r}, which "
                "returns no attention weights: load it with `attn_implementation='eager'` or call "
                "`model.set_attn_implementation('eager')`."
            )
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        output, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.dropout if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        output = self.out_proj(output.reshape(batch, length, -1))  # concat heads, then W^O
        return output, weights


# ---------------------------------------------------------------------------------------------------------
# Section 3.3: position-wise feed-forward network, FFN(x) = max(0, x W_1 + b_1) W_2 + b_2.
# ---------------------------------------------------------------------------------------------------------
class VanillaTransformerFeedForward(nn.Module):
    """(B, L, E) -> (B, L, F) -> (B, L, E), the same two linear maps at every position."""

    def __init__(self, config: VanillaTransformerConfig, ffn_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, config.d_model)
        self.activation_fn = ACT2FN[config.activation_function]
        self.activation_dropout = config.activation_dropout

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = nn.functional.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        return self.fc2(hidden_states)


class _SublayerMixin:
    """Section 5.4 residual dropout and Section 3.1 `LayerNorm(x + Sublayer(x))` (post-norm, the paper), or
    `x + Sublayer(LayerNorm(x))` (pre-norm, `normalize_before`)."""

    normalize_before: bool
    dropout: float
    training: bool

    def _pre(self, hidden_states: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return norm(hidden_states) if self.normalize_before else hidden_states

    def _post(self, residual: torch.Tensor, sublayer_out: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        hidden_states = residual + nn.functional.dropout(sublayer_out, p=self.dropout, training=self.training)
        return hidden_states if self.normalize_before else norm(hidden_states)


# ---------------------------------------------------------------------------------------------------------
# Section 3.1: encoder layer = self-attention + feed-forward; decoder layer = masked self-attention +
# cross-attention + feed-forward; each sub-layer wrapped in a residual connection and layer normalisation.
# ---------------------------------------------------------------------------------------------------------
class VanillaTransformerEncoderLayer(_SublayerMixin, GradientCheckpointingLayer):
    def __init__(self, config: VanillaTransformerConfig, layer_idx: int | None = None) -> None:
        super().__init__()
        self.normalize_before, self.dropout = config.normalize_before, config.dropout
        self.self_attn = VanillaTransformerAttention(config, config.encoder_attention_heads, layer_idx=layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.ffn = VanillaTransformerFeedForward(config, config.encoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(config.d_model)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
        **kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, S, E) -> (B, S, E), plus the (B, H, S, S) self-attention weights when asked for."""
        attn_out, attn_weights = self.self_attn(
            self._pre(hidden_states, self.self_attn_layer_norm),
            attention_mask=attention_mask,
            output_attentions=output_attentions,
            **kwargs,
        )
        hidden_states = self._post(hidden_states, attn_out, self.self_attn_layer_norm)
        ffn_out = self.ffn(self._pre(hidden_states, self.final_layer_norm))
        hidden_states = self._post(hidden_states, ffn_out, self.final_layer_norm)
        return hidden_states, attn_weights


class VanillaTransformerDecoderLayer(_SublayerMixin, GradientCheckpointingLayer):
    def __init__(self, config: VanillaTransformerConfig, layer_idx: int | None = None) -> None:
        super().__init__()
        self.normalize_before, self.dropout = config.normalize_before, config.dropout
        heads = config.decoder_attention_heads
        self.self_attn = VanillaTransformerAttention(config, heads, is_causal=True, layer_idx=layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.encoder_attn = VanillaTransformerAttention(config, heads, is_cross_attention=True, layer_idx=layer_idx)
        self.encoder_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.ffn = VanillaTransformerFeedForward(config, config.decoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(config.d_model)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        output_attentions: bool = False,
        **kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(B, T, E) -> (B, T, E), plus (B, H, T, P + T) self- and (B, H, T, S) cross-attention weights."""
        attn_out, self_weights = self.self_attn(
            self._pre(hidden_states, self.self_attn_layer_norm),
            attention_mask=attention_mask,
            past_key_values=past_key_values,
            output_attentions=output_attentions,
            **kwargs,
        )
        hidden_states = self._post(hidden_states, attn_out, self.self_attn_layer_norm)
        cross_out, cross_weights = self.encoder_attn(
            self._pre(hidden_states, self.encoder_attn_layer_norm),
            key_value_states=encoder_hidden_states,
            attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            output_attentions=output_attentions,
            **kwargs,
        )
        hidden_states = self._post(hidden_states, cross_out, self.encoder_attn_layer_norm)
        ffn_out = self.ffn(self._pre(hidden_states, self.final_layer_norm))
        hidden_states = self._post(hidden_states, ffn_out, self.final_layer_norm)
        return hidden_states, self_weights, cross_weights


class VanillaTransformerPreTrainedModel(PreTrainedModel):
    config: VanillaTransformerConfig
    config_class = VanillaTransformerConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["VanillaTransformerEncoderLayer", "VanillaTransformerDecoderLayer"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _can_compile_fullgraph = True

    def __init__(self, config: VanillaTransformerConfig, *inputs: object, **kwargs: object) -> None:
        if getattr(config, "model_type", None) != VanillaTransformerConfig.model_type:  # e.g. a BartConfig
            raise TypeError(
                f"{type(self).__name__} needs a VanillaTransformerConfig, got {type(config).__name__} "
                f"(model_type {getattr(config, 'model_type', None)!r})."
            )
        super().__init__(config, *inputs, **kwargs)

    def save_pretrained(self, save_directory: str, *args: object, **kwargs: object) -> None:
        """Save as usual; when registered for remote code, also map `AutoModel` to the base model in `auto_map`."""
        if self._auto_class is not None:
            module = VanillaTransformerModel.__module__.rsplit(".", 1)[-1]
            auto_map = dict(getattr(self.config, "auto_map", None) or {})
            auto_map.setdefault("AutoModel", f"{module}.VanillaTransformerModel")
            self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | None, *args: object, **kwargs: object
    ) -> "VanillaTransformerPreTrainedModel | tuple":
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

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.init_std  # None: Xavier / N(0, d_model^-0.5); a number: N(0, std) as in BART/Marian
        if isinstance(module, nn.Linear):
            if std is None:
                init.xavier_uniform_(module.weight)
            else:
                init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=self.config.d_model**-0.5 if std is None else std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, VanillaTransformerSinusoidalPositionalEncoding):
            init.copy_(module.pe, module.create())
        elif isinstance(module, VanillaTransformerForConditionalGeneration) and module.config.add_final_logits_bias:
            init.zeros_(module.final_logits_bias)


class _StackMixin:
    """What encoder and decoder share: scaled token embeddings + positional encodings, then dropout."""

    config: VanillaTransformerConfig

    def _init_stack(self, config: VanillaTransformerConfig) -> None:
        self.dropout = config.dropout
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0  # Section 3.4
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.embed_positions = VanillaTransformerSinusoidalPositionalEncoding(
            config.max_position_embeddings, config.d_model, config.positional_encoding_layout
        )
        self.layer_norm = nn.LayerNorm(config.d_model) if config.normalize_before else None
        self.gradient_checkpointing = False

    def _embed(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, offset: int, name: str
    ) -> torch.Tensor:
        """(B, L) ids or (B, L, E) embeddings -> (B, L, E) = dropout(embedding * sqrt(E) + PE)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError(f"Pass exactly one of `{name}input_ids` and `{name}inputs_embeds`.")
        if input_ids is not None:
            _check_token_ids(input_ids, self.config.vocab_size, f"{name}input_ids")
            inputs_embeds = self.embed_tokens(input_ids)
        elif inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.d_model:
            raise ValueError(
                f"`{name}inputs_embeds` must have shape (batch, length, {self.config.d_model}), "
                f"got {tuple(inputs_embeds.shape)}."
            )
        elif inputs_embeds.shape[0] == 0 or inputs_embeds.shape[1] == 0:
            raise ValueError(f"`{name}inputs_embeds` is empty (shape {tuple(inputs_embeds.shape)}).")
        length = inputs_embeds.shape[1]
        _check_length(length, self.config.max_position_embeddings, "target" if name else "encoder input", offset)
        hidden_states = inputs_embeds * self.embed_scale + self.embed_positions(length, offset).to(inputs_embeds.dtype)
        return nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)


class VanillaTransformerEncoder(_StackMixin, VanillaTransformerPreTrainedModel):
    """N identical encoder layers over the embedded source."""

    def __init__(self, config: VanillaTransformerConfig) -> None:
        super().__init__(config)
        self._init_stack(config)
        self.layers = nn.ModuleList(
            [VanillaTransformerEncoderLayer(config, layer_idx=i) for i in range(config.encoder_layers)]
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> BaseModelOutput | tuple:
        """Args:
            input_ids: (B, S) source ids, or `inputs_embeds` (B, S, E).
            attention_mask: (B, S), 1 for real tokens and 0 for padding.

        Returns:
            `last_hidden_state` (B, S, E); `hidden_states` N + 1 tensors (B, S, E); `attentions` N tensors
            (B, H, S, S).
        """
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        hidden_states = self._embed(input_ids, inputs_embeds, 0, "")
        _check_mask(attention_mask, hidden_states.shape[:2], "attention_mask", forbid_empty_rows=True)
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )

        all_hidden, all_attentions = [], []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden.append(hidden_states)
            hidden_states, weights = layer(hidden_states, mask, output_attentions=output_attentions, **kwargs)
            if output_attentions:
                all_attentions.append(weights)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden.append(hidden_states)

        output = BaseModelOutput(
            last_hidden_state=hidden_states,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )
        return output if return_dict else output.to_tuple()


class VanillaTransformerDecoder(_StackMixin, VanillaTransformerPreTrainedModel):
    """N identical decoder layers over the embedded, right-shifted target and the encoder output."""

    def __init__(self, config: VanillaTransformerConfig) -> None:
        super().__init__(config)
        self._init_stack(config)
        self.layers = nn.ModuleList(
            [VanillaTransformerDecoderLayer(config, layer_idx=i) for i in range(config.decoder_layers)]
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> BaseModelOutputWithPastAndCrossAttentions | tuple:
        """Args:
            input_ids: (B, T) decoder input ids (the newest token only when a cache is passed), or
                `inputs_embeds` (B, T, E).
            attention_mask: (B, P + T) target padding mask; the causal mask is always applied.
            encoder_hidden_states: (B, S, E) encoder output.
            encoder_attention_mask: (B, S) source padding mask.
            past_key_values: `EncoderDecoderCache` of earlier steps' keys/values (created when `use_cache`).

        Returns:
            `last_hidden_state` (B, T, E), `past_key_values`, and when asked `hidden_states` (N + 1 of
            (B, T, E)), `attentions` (N of (B, H, T, P + T)), `cross_attentions` (N of (B, H, T, S)).
        """
        output_attentions = self.config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = (
            self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        )
        return_dict = self.config.return_dict if return_dict is None else return_dict
        use_cache = self.config.use_cache if use_cache is None else use_cache
        past_key_values = _one_cache(past_key_values, cache)
        if encoder_hidden_states is None:
            raise ValueError("The decoder needs `encoder_hidden_states` to attend over (cross-attention).")
        if use_cache and past_key_values is None:
            past_key_values = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0

        hidden_states = self._embed(input_ids, inputs_embeds, past_length, "decoder_")
        batch, length = hidden_states.shape[:2]
        if encoder_hidden_states.dim() != 3 or encoder_hidden_states.shape[-1] != self.config.d_model:
            raise ValueError(
                f"`encoder_hidden_states` must have shape (batch, source length, {self.config.d_model}), got "
                f"{tuple(encoder_hidden_states.shape)}."
            )
        if encoder_hidden_states.shape[0] != batch:
            raise ValueError(
                f"The decoder batch ({batch}) and the encoder batch ({encoder_hidden_states.shape[0]}) differ."
            )
        _check_mask(attention_mask, (batch, past_length + length), "decoder_attention_mask", forbid_empty_rows=False)
        _check_mask(encoder_attention_mask, encoder_hidden_states.shape[:2], "attention_mask", forbid_empty_rows=False)
        self_attn_cache = past_key_values.self_attention_cache if past_key_values is not None else None
        causal_mask = create_causal_mask(
            self.config,
            hidden_states,
            attention_mask,
            self_attn_cache,  # positional: the argument is `past_key_values` before transformers 5.24, `cache` after
        )
        cross_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )

        all_hidden, all_self, all_cross = [], [], []
        for layer in self.layers:
            if output_hidden_states:
                all_hidden.append(hidden_states)
            hidden_states, self_weights, cross_weights = layer(
                hidden_states,
                causal_mask,
                encoder_hidden_states,  # positional, so gradient checkpointing sees it
                encoder_attention_mask=cross_mask,
                past_key_values=past_key_values,
                output_attentions=output_attentions,
                **kwargs,
            )
            if output_attentions:
                all_self.append(self_weights)
                all_cross.append(cross_weights)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden.append(hidden_states)

        output = BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            **{_CACHE_FIELD: past_key_values if use_cache else None},
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_self) if output_attentions else None,
            cross_attentions=tuple(all_cross) if output_attentions else None,
        )
        return output if return_dict else output.to_tuple()


class VanillaTransformerModel(VanillaTransformerPreTrainedModel):
    """Encoder + decoder sharing one source/target embedding matrix (Section 3.4)."""

    _tied_weights_keys = {
        "encoder.embed_tokens.weight": "shared.weight",
        "decoder.embed_tokens.weight": "shared.weight",
    }

    def __init__(self, config: VanillaTransformerConfig) -> None:
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.encoder = VanillaTransformerEncoder(config)
        self.decoder = VanillaTransformerDecoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        """The shared matrix; with `tie_word_embeddings=False` (separate matrices) the encoder's, as in Marian."""
        return self.shared if self.config.tie_word_embeddings else self.encoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        if self.config.tie_word_embeddings:
            self.shared = value
            self.encoder.embed_tokens = value
            self.decoder.embed_tokens = value
        else:  # separate matrices: only the source side (the decoder's is resized with it by resize_token_embeddings)
            self.encoder.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        past_key_values: Cache | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> Seq2SeqModelOutput | tuple:
        """Args: source (B, S) `input_ids` + `attention_mask`, decoder input (B, T) `decoder_input_ids`.

        Returns: `last_hidden_state` (B, T, E) of the decoder, `encoder_last_hidden_state` (B, S, E), the cache,
        and on request all hidden states and the three kinds of attention weights.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        past_key_values = _one_cache(past_key_values, cache)
        flags = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states}
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **flags, **kwargs
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(
                last_hidden_state=encoder_outputs[0],
                hidden_states=encoder_outputs[1] if len(encoder_outputs) > 1 else None,
                attentions=encoder_outputs[2] if len(encoder_outputs) > 2 else None,
            )
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError(
                "Pass `decoder_input_ids` (or `labels` to the ForConditionalGeneration model, which shifts them)."
            )
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            past_key_values=past_key_values,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            return_dict=True,
            **flags,
            **kwargs,
        )
        output = Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            **{_CACHE_FIELD: decoder_outputs[_CACHE_FIELD] if _CACHE_FIELD in decoder_outputs else None},
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return output if return_dict else output.to_tuple()


class VanillaTransformerForConditionalGeneration(VanillaTransformerPreTrainedModel, GenerationMixin):
    """The model plus the pre-softmax linear map, tied to the shared embeddings (Section 3.4)."""

    _tied_weights_keys = {  # all three, as Marian lists them: they are not saved, and reloading re-ties them
        "lm_head.weight": "model.shared.weight",
        "model.encoder.embed_tokens.weight": "model.shared.weight",
        "model.decoder.embed_tokens.weight": "model.shared.weight",
    }

    def __init__(self, config: VanillaTransformerConfig) -> None:
        super().__init__(config)
        self.model = VanillaTransformerModel(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.add_final_logits_bias:
            self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        self.post_init()
        # Tied copies are never saved. Listing them here lets Trainer's `load_best_model_at_end` re-tie them instead
        # of warning that a checkpoint misses keys it never had.
        self._keys_to_ignore_on_save = set(self._keys_to_ignore_on_save or ()) | set(self.all_tied_weights_keys)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        past_key_values: Cache | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs: object,
    ) -> Seq2SeqLMOutput | tuple:
        """Args:
            input_ids, attention_mask: (B, S) source ids and padding mask.
            decoder_input_ids: (B, T); built from `labels` by `shift_tokens_right` when omitted.
            labels: (B, T) target ids aligned with the decoder positions (not shifted again); -100 is ignored.
            logits_to_keep: compute logits for the last `logits_to_keep` positions only (0 = all); generation
                asks for 1.
            num_items_in_batch: target tokens in the whole accumulated/distributed batch (passed by Trainer);
                the loss is the summed cross-entropy divided by it.

        Returns:
            `logits` (B, T or logits_to_keep, V) and, with `labels`, the per-token `loss`.
        """
        return_dict = self.config.return_dict if return_dict is None else return_dict
        past_key_values = _one_cache(past_key_values, cache)
        if labels is not None:
            use_cache = False
            _check_token_ids(labels, self.config.vocab_size, "labels", ignore_index=-100)
            if num_items_in_batch is None and _value_checks_enabled() and not bool((labels != -100).any()):
                raise ValueError("`labels` holds no target token (every position is -100): the loss would be 0 / 0.")
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
            target = decoder_input_ids if decoder_input_ids is not None else decoder_inputs_embeds
            if tuple(labels.shape) != tuple(target.shape[:2]):
                raise ValueError(
                    f"`labels` has shape {tuple(labels.shape)} but the decoder input has shape "
                    f"{tuple(target.shape[:2])}: they must be aligned position by position."
                )

        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if labels is None and isinstance(logits_to_keep, int) and logits_to_keep > 0:
            hidden_states = hidden_states[:, -logits_to_keep:]
        elif labels is None and isinstance(logits_to_keep, torch.Tensor):
            hidden_states = hidden_states[:, logits_to_keep]
        logits = self.lm_head(hidden_states)  # (B, T, V)
        if self.config.add_final_logits_bias:
            logits = logits + self.final_logits_bias

        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]).float(),
                labels.to(logits.device).reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            if num_items_in_batch is None:
                num_items_in_batch = (labels != -100).sum()
            if isinstance(num_items_in_batch, torch.Tensor):
                num_items_in_batch = num_items_in_batch.to(loss.device)
            loss = loss / num_items_in_batch

        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **{_CACHE_FIELD: outputs[_CACHE_FIELD] if _CACHE_FIELD in outputs else None},
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )
        return output if return_dict else output.to_tuple()

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """The library's resize (input embeddings, output projection, config), plus what it does not know about:
        with separate matrices (`tie_word_embeddings=False`) the decoder's embeddings and the `shared` one, and the
        `final_logits_bias` of converted Marian checkpoints (new entries 0)."""
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        size = embeddings.num_embeddings
        if not self.config.tie_word_embeddings:
            for owner, name in ((self.model, "shared"), (self.model.decoder, "embed_tokens")):
                old = getattr(owner, name)
                if old.num_embeddings != size:
                    setattr(owner, name, self._get_resized_embeddings(old, size, mean_resizing=mean_resizing))
        if self.config.add_final_logits_bias and self.final_logits_bias.shape[-1] != size:
            bias = self.final_logits_bias.new_zeros(1, size)
            keep = min(size, self.final_logits_bias.shape[-1])
            bias[:, :keep] = self.final_logits_bias[:, :keep]
            self.register_buffer("final_logits_bias", bias)
        return embeddings

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, T) labels -> (B, T) decoder inputs; `DataCollatorForSeq2Seq` builds them when Trainer pops labels."""
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def _reorder_cache(self, past_key_values: Cache, beam_idx: torch.LongTensor) -> Cache:
        """Beam search hook: follow the surviving beams (`beam_idx`, (B * beams,)) in the self-attention cache.

        The cross-attention keys/values are left as they are: every beam of a source holds the same copy, and
        `beam_idx` only permutes beams within their source, so gathering them would copy (B * beams, H, S, D)
        per layer and step to get the same values back.
        """
        if isinstance(past_key_values, EncoderDecoderCache):
            past_key_values.self_attention_cache.reorder_cache(beam_idx)
        else:
            past_key_values.reorder_cache(beam_idx)
        return past_key_values


__all__ = [
    "VanillaTransformerPreTrainedModel",
    "VanillaTransformerModel",
    "VanillaTransformerForConditionalGeneration",
    "VanillaTransformerEncoder",
    "VanillaTransformerDecoder",
]
