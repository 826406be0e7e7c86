# Copyright 2026 The vanilla-transformer authors. SPDX-License-Identifier: Apache-2.0
"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017), for transformers 5.x.

In the paper's order: teacher forcing (shifted decoder inputs), positional encoding (3.5), scaled dot-product
attention (3.2.1), multi-head attention in its three uses (3.2.2-3.2.3), the feed-forward network (3.3), encoder and
decoder layers (3.1), embeddings (3.4), the stacks, and the output projection tied to the embeddings (3.4). Input
checks, loading policy and library hooks are in `checks_vanilla_transformer.py`; the library records attentions and
hidden states (`_can_record_outputs`), so the layers return hidden states only.

Shape legend: B batch, S source length, T target (decoder input) length, L either S or T, P cached target length,
H heads, D head dimension (d_k = d_v), E d_model, F d_ff, V vocabulary size, N layers per stack.

Deviations from the paper (also listed in model_card.md):
- Attention projections and the feed-forward layers have biases (as in BART/Marian, so their checkpoints
  convert); the paper writes the projections as plain matrices W^Q, W^K, W^V, W^O.
- Initialisation is not specified by the paper. The default is N(0, 0.02) (`init_std`, as BART/Marian) for linear
  layers and embeddings: on Multi30k it learned faster than Xavier (de->en 26.0 against 21.2 test BLEU after 22
  minutes; bench/quality.md in the project). `init_std=None` gives Xavier-uniform linear layers and embeddings
  N(0, d_model^-0.5), the tensor2tensor convention. Biases zero, LayerNorm gain one.
- `outputs.loss` is the plain cross-entropy, summed over target tokens and divided by the number of
  non-ignored target tokens in the whole (possibly accumulated or distributed) batch, as in every transformers
  model; the paper's label smoothing (Section 5.4) belongs to the training recipe (`vanilla_transformer.losses`).
- Optional, off by default: pre-norm (`normalize_before`), dropout on attention weights (`attention_dropout`)
  and after the ReLU (`activation_dropout`), Marian's "concatenated" sinusoid layout and fixed
  `final_logits_bias` (for converted OPUS-MT checkpoints), other activations.
- The start token of the decoder input is `decoder_start_token_id` (`<start>` in the paper's figures), and
  sequences longer than `max_position_embeddings` are rejected, although sinusoids could extrapolate.
"""

import math
from collections.abc import Callable
from typing import Unpack

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
from transformers.utils import TransformersKwargs, can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .checks_vanilla_transformer import (
    LibraryHooksMixin,
    validate_decoder_inputs,
    validate_encoder_inputs,
    validate_labels,
)
from .configuration_vanilla_transformer import VanillaTransformerConfig


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
        self.config, self.num_heads, self.head_dim = config, num_heads, config.d_model // num_heads
        self.scaling, self.dropout = self.head_dim**-0.5, config.attention_dropout  # scaling = 1 / sqrt(d_k)
        self.is_causal, self.is_cross_attention, self.layer_idx = is_causal, is_cross_attention, layer_idx
        self.q_proj = nn.Linear(config.d_model, config.d_model)  # W^Q of all heads at once
        self.k_proj = nn.Linear(config.d_model, config.d_model)  # W^K
        self.v_proj = nn.Linear(config.d_model, config.d_model)  # W^V
        self.out_proj = nn.Linear(config.d_model, config.d_model)  # W^O

    def _project(self, projection: nn.Linear, states: torch.Tensor) -> torch.Tensor:
        """(B, L, E) -> (B, H, L, D): one projection for all heads, then split into heads."""
        return projection(states).view(*states.shape[:2], -1, self.head_dim).transpose(1, 2)

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        hidden_states: torch.Tensor,
        key_value_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: object,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Args:
            hidden_states: (B, T, E) the queries' source (and the keys'/values' for self-attention).
            key_value_states: (B, S, E) encoder output, for cross-attention only.
            attention_mask: the mask prepared for the attention implementation, or None.
            cache: self-attention appends (B, H, T, D) and attends over (B, H, P + T, D); cross-attention
                computes its (B, H, S, D) keys/values at the first step and reuses them.

        Returns:
            (B, T, E) output and the (B, H, T, S or P + T) weights (None for implementations that compute none).
        """
        query = self._project(self.q_proj, hidden_states)  # (B, H, T, D)
        layer_cache, reuse = cache, False
        if isinstance(cache, EncoderDecoderCache):
            layer_cache = cache.cross_attention_cache if self.is_cross_attention else cache.self_attention_cache
            reuse = self.is_cross_attention and cache.is_updated.get(self.layer_idx, False)
        elif self.is_cross_attention:
            layer_cache = None  # a plain cache holds self-attention only; recompute cross keys/values
        if reuse:
            key, value = layer_cache.layers[self.layer_idx].keys, layer_cache.layers[self.layer_idx].values
        else:
            source = key_value_states if self.is_cross_attention else hidden_states
            key, value = self._project(self.k_proj, source), self._project(self.v_proj, source)
            if layer_cache is not None:
                key, value = layer_cache.update(key, value, self.layer_idx)
                if self.is_cross_attention:
                    cache.is_updated[self.layer_idx] = True  # the source never changes
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        dropout = self.dropout if self.training else 0.0
        output, weights = attention(
            self, query, key, value, attention_mask, dropout=dropout, scaling=self.scaling, **kwargs
        )
        return self.out_proj(output.reshape(*hidden_states.shape[:2], -1)), weights  # concat heads, then W^O


# ---------------------------------------------------------------------------------------------------------
# Section 3.3: position-wise feed-forward network, FFN(x) = max(0, x W_1 + b_1) W_2 + b_2.
# ---------------------------------------------------------------------------------------------------------
class VanillaTransformerFeedForward(nn.Module):
    """(B, L, E) -> (B, L, F) -> (B, L, E), the same two linear maps at every position."""

    def __init__(self, config: VanillaTransformerConfig, ffn_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, config.d_model)
        self.activation_fn, self.activation_dropout = ACT2FN[config.activation_function], config.activation_dropout

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.activation_fn(self.fc1(hidden_states))
        hidden_states = nn.functional.dropout(hidden_states, p=self.activation_dropout, training=self.training)
        return self.fc2(hidden_states)


# ---------------------------------------------------------------------------------------------------------
# Section 3.1: encoder layer = self-attention + feed-forward; decoder layer = masked self-attention +
# cross-attention + feed-forward. Each sub-layer's output is dropped out (Section 5.4), added to its input and
# normalised: LayerNorm(x + Sublayer(x)) (post-norm, the paper), or x + Sublayer(LayerNorm(x)) (pre-norm).
# ---------------------------------------------------------------------------------------------------------
class _SublayerConnection:
    """The residual connection around each sub-layer, post-norm or pre-norm (`normalize_before`)."""

    def _norm_in(self, hidden_states: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        return norm(hidden_states) if self.normalize_before else hidden_states

    def _residual(self, residual: torch.Tensor, sublayer_out: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        hidden_states = residual + nn.functional.dropout(sublayer_out, p=self.dropout, training=self.training)
        return hidden_states if self.normalize_before else norm(hidden_states)


class VanillaTransformerEncoderLayer(_SublayerConnection, GradientCheckpointingLayer):
    def __init__(self, config: VanillaTransformerConfig, layer_idx: int | None = None) -> None:
        super().__init__()
        self.normalize_before, self.dropout = config.normalize_before, config.dropout
        self.self_attn = VanillaTransformerAttention(config, config.encoder_attention_heads, layer_idx=layer_idx)
        self.self_attn_layer_norm = nn.LayerNorm(config.d_model)
        self.ffn = VanillaTransformerFeedForward(config, config.encoder_ffn_dim)
        self.final_layer_norm = nn.LayerNorm(config.d_model)

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: object
    ) -> torch.Tensor:
        """(B, S, E) -> (B, S, E)."""
        attn_out, _ = self.self_attn(
            self._norm_in(hidden_states, self.self_attn_layer_norm), attention_mask=attention_mask, **kwargs
        )
        hidden_states = self._residual(hidden_states, attn_out, self.self_attn_layer_norm)
        ffn_out = self.ffn(self._norm_in(hidden_states, self.final_layer_norm))
        return self._residual(hidden_states, ffn_out, self.final_layer_norm)


class VanillaTransformerDecoderLayer(_SublayerConnection, GradientCheckpointingLayer):
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

    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        **kwargs: object,
    ) -> torch.Tensor:
        """(B, T, E) decoder states and (B, S, E) encoder output -> (B, T, E)."""
        attn_out, _ = self.self_attn(
            self._norm_in(hidden_states, self.self_attn_layer_norm),
            attention_mask=attention_mask,
            cache=cache,
            **kwargs,
        )
        hidden_states = self._residual(hidden_states, attn_out, self.self_attn_layer_norm)
        cross_out, _ = self.encoder_attn(
            self._norm_in(hidden_states, self.encoder_attn_layer_norm),
            key_value_states=encoder_hidden_states,
            attention_mask=encoder_attention_mask,
            cache=cache,
            **kwargs,
        )
        hidden_states = self._residual(hidden_states, cross_out, self.encoder_attn_layer_norm)
        ffn_out = self.ffn(self._norm_in(hidden_states, self.final_layer_norm))
        return self._residual(hidden_states, ffn_out, self.final_layer_norm)


class VanillaTransformerPreTrainedModel(LibraryHooksMixin, PreTrainedModel):
    config: VanillaTransformerConfig
    config_class = VanillaTransformerConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["VanillaTransformerEncoderLayer", "VanillaTransformerDecoderLayer"]
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _can_compile_fullgraph = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.init_std  # a number: N(0, std) as in BART/Marian; None: Xavier / N(0, d_model^-0.5)
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


# ---------------------------------------------------------------------------------------------------------
# Sections 3.4 and 3.1: embeddings * sqrt(d_model) + positional encoding, then the stacks of N layers.
# ---------------------------------------------------------------------------------------------------------
class _Embeddings:
    """What encoder and decoder share: scaled token embeddings + positional encodings, then dropout."""

    def _init_embeddings(self, config: VanillaTransformerConfig) -> None:
        self.dropout = config.dropout
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0  # Section 3.4
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.embed_positions = VanillaTransformerSinusoidalPositionalEncoding(
            config.max_position_embeddings, config.d_model, config.positional_encoding_layout
        )
        self.layer_norm = nn.LayerNorm(config.d_model) if config.normalize_before else None  # pre-norm's last norm
        self.gradient_checkpointing = False

    def _embed(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, offset: int | torch.Tensor
    ) -> torch.Tensor:
        """(B, L) ids or (B, L, E) embeddings -> (B, L, E) = dropout(embedding * sqrt(E) + PE(offset ..))."""
        if input_ids is not None:
            inputs_embeds = self.embed_tokens(input_ids)
        positions = self.embed_positions(inputs_embeds.shape[1], offset).to(inputs_embeds.dtype)
        hidden_states = inputs_embeds * self.embed_scale + positions
        return nn.functional.dropout(hidden_states, p=self.dropout, training=self.training)


class VanillaTransformerEncoder(_Embeddings, VanillaTransformerPreTrainedModel):
    """N identical encoder layers over the embedded source."""

    _can_record_outputs = {
        "hidden_states": VanillaTransformerEncoderLayer,
        "attentions": OutputRecorder(VanillaTransformerAttention, index=1, layer_name="self_attn"),
    }

    def __init__(self, config: VanillaTransformerConfig) -> None:
        super().__init__(config)
        self._init_embeddings(config)
        self.layers = nn.ModuleList(VanillaTransformerEncoderLayer(config, i) for i in range(config.encoder_layers))
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        """Args:
            input_ids: (B, S) source ids, or `inputs_embeds` (B, S, E).
            attention_mask: (B, S), 1 for real tokens and 0 for padding.

        Returns:
            `last_hidden_state` (B, S, E); on request `hidden_states` (N + 1 of (B, S, E)) and `attentions`
            (N of (B, H, S, S)).
        """
        validate_encoder_inputs(self.config, input_ids, inputs_embeds, attention_mask)
        hidden_states = self._embed(input_ids, inputs_embeds, 0)
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, **kwargs)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        return BaseModelOutput(last_hidden_state=hidden_states)


class VanillaTransformerDecoder(_Embeddings, VanillaTransformerPreTrainedModel):
    """N identical decoder layers over the embedded, right-shifted target and the encoder output."""

    _can_record_outputs = {
        "hidden_states": VanillaTransformerDecoderLayer,
        "attentions": OutputRecorder(VanillaTransformerAttention, index=1, layer_name="self_attn"),
        "cross_attentions": OutputRecorder(VanillaTransformerAttention, index=1, layer_name="encoder_attn"),
    }

    def __init__(self, config: VanillaTransformerConfig) -> None:
        super().__init__(config)
        self._init_embeddings(config)
        self.layers = nn.ModuleList(VanillaTransformerDecoderLayer(config, i) for i in range(config.decoder_layers))
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        """Args:
            input_ids: (B, T) decoder input ids (the newest token only when a cache is passed), or
                `inputs_embeds` (B, T, E).
            attention_mask: (B, P + T) target padding mask; the causal mask is always applied.
            encoder_hidden_states: (B, S, E) encoder output; encoder_attention_mask: (B, S) its padding mask.
            cache: `EncoderDecoderCache` (or a plain self-attention `Cache`) of the earlier steps.

        Returns:
            `last_hidden_state` (B, T, E), `cache`; on request `hidden_states` (N + 1 of (B, T, E)),
            `attentions` (N of (B, H, T, P + T)) and `cross_attentions` (N of (B, H, T, S)).
        """
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        past = cache.get_seq_length() if cache is not None else 0  # P
        masks = (attention_mask, encoder_hidden_states, encoder_attention_mask)
        validate_decoder_inputs(self.config, input_ids, inputs_embeds, *masks, past)
        hidden_states = self._embed(input_ids, inputs_embeds, past)
        self_attn_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        causal_mask = create_causal_mask(self.config, hidden_states, attention_mask, cache=self_attn_cache)
        cross_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )
        for layer in self.layers:  # the encoder output goes positionally, so gradient checkpointing sees it
            hidden_states = layer(hidden_states, causal_mask, encoder_hidden_states, cross_mask, cache=cache, **kwargs)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        cache = cache if use_cache else None
        return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states, cache=cache)


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
            self.shared = self.encoder.embed_tokens = self.decoder.embed_tokens = value
        else:  # separate matrices: only the source side (the decoder's is resized with it by resize_token_embeddings)
            self.encoder.embed_tokens = value

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqModelOutput:
        """Args: source (B, S) `input_ids` + `attention_mask`, decoder input (B, T) `decoder_input_ids`.

        Returns: `last_hidden_state` (B, T, E) of the decoder, `encoder_last_hidden_state` (B, S, E), the cache,
        and on request all hidden states and the three kinds of attention weights.
        """
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids, attention_mask, inputs_embeds, **kwargs)
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs[:3])
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


# ---------------------------------------------------------------------------------------------------------
# Section 3.4: the pre-softmax linear transformation, tied to the embeddings; the loss.
# ---------------------------------------------------------------------------------------------------------
def token_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """(B, T, V) logits, (B, T) labels (-100 ignored) -> summed cross-entropy / target tokens of the whole batch.

    `num_items_in_batch` (passed by Trainer) counts the target tokens of the whole accumulated/distributed batch;
    without it the loss is the mean over this batch's target tokens.
    """
    loss = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), labels.to(logits.device).reshape(-1), reduction="sum"
    )
    if num_items_in_batch is None:
        num_items_in_batch = (labels != -100).sum()
    if isinstance(num_items_in_batch, torch.Tensor):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    return loss / num_items_in_batch


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

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        num_items_in_batch: int | torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> Seq2SeqLMOutput:
        """Args:
            input_ids, attention_mask: (B, S) source ids and padding mask.
            decoder_input_ids: (B, T); built from `labels` by `shift_tokens_right` when omitted.
            labels: (B, T) target ids aligned with the decoder positions (not shifted again); -100 is ignored.
            logits_to_keep: logits for the last `logits_to_keep` positions only (0 = all); generation asks for 1.
            num_items_in_batch: target tokens in the whole accumulated/distributed batch (passed by Trainer).

        Returns: `logits` (B, T or logits_to_keep, V) and, with `labels`, the per-token cross-entropy `loss`.
        """
        if labels is not None:
            use_cache = False
            decoder_input = decoder_input_ids if decoder_input_ids is not None else decoder_inputs_embeds
            validate_labels(self.config, labels, decoder_input, num_items_in_batch)
            if decoder_input is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        keep = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep  # 0: all
        logits = self.lm_head(outputs.last_hidden_state if labels is not None else outputs.last_hidden_state[:, keep])
        if self.config.add_final_logits_bias:
            logits = logits + self.final_logits_bias
        loss = None if labels is None else token_cross_entropy(logits, labels, num_items_in_batch)
        decoder_and_encoder = {k: v for k, v in outputs.items() if k != "last_hidden_state"}  # cache, attentions...
        return Seq2SeqLMOutput(loss=loss, logits=logits, **decoder_and_encoder)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, T) labels -> (B, T) decoder inputs; `DataCollatorForSeq2Seq` builds them when Trainer pops labels."""
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)


__all__ = [
    "VanillaTransformerPreTrainedModel",
    "VanillaTransformerModel",
    "VanillaTransformerForConditionalGeneration",
    "VanillaTransformerEncoder",
    "VanillaTransformerDecoder",
]
