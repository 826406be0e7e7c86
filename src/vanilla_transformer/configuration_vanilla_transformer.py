# Copyright 2026 The vanilla-transformer authors.
# SPDX-License-Identifier: Apache-2.0
"""Configuration of the "Attention Is All You Need" encoder-decoder Transformer (Vaswani et al., 2017).

Shipped to the Hub as remote code: imports only the standard library, huggingface_hub and transformers.
"""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.activations import ACT2FN

POSITIONAL_ENCODING_LAYOUTS = ("interleaved", "concatenated")


@strict
class VanillaTransformerConfig(PreTrainedConfig):
    r"""Configuration of [`VanillaTransformerModel`] and [`VanillaTransformerForConditionalGeneration`].

    The defaults are the paper's *base* model (Table 3, row "base"). Paper symbol of each field:

    | field                                         | paper        | base  | big   |
    |-----------------------------------------------|--------------|-------|-------|
    | `encoder_layers`, `decoder_layers`            | N            | 6     | 6     |
    | `d_model`                                     | d_model      | 512   | 1024  |
    | `encoder_ffn_dim`, `decoder_ffn_dim`          | d_ff         | 2048  | 4096  |
    | `encoder_attention_heads`, `decoder_attention_heads` | h     | 8     | 16    |
    | `d_model / heads`                             | d_k = d_v    | 64    | 64    |
    | `dropout`                                     | P_drop       | 0.1   | 0.3   |
    | `vocab_size` (shared source/target BPE)       | ~37000 (EN-DE) |     |       |

    Label smoothing (epsilon_ls = 0.1) belongs to the training recipe, not to the model: `outputs.loss` is the plain
    cross-entropy. `train.py` applies it (`training.label_smoothing`) through `vanilla_transformer.losses`. Configs
    saved by earlier versions with a `label_smoothing` field still load; the field has no effect.

    Args:
        vocab_size: Size of the shared source/target vocabulary.
        d_model: Width of every sub-layer output and of the embeddings (d_model).
        encoder_layers: Number of encoder layers (N).
        decoder_layers: Number of decoder layers (N).
        encoder_attention_heads: Heads of encoder self-attention (h).
        decoder_attention_heads: Heads of decoder self- and cross-attention (h).
        encoder_ffn_dim: Inner width of the encoder's position-wise feed-forward network (d_ff).
        decoder_ffn_dim: Inner width of the decoder's position-wise feed-forward network (d_ff).
        activation_function: Feed-forward non-linearity; the paper uses "relu". Any name of
            `transformers.activations.ACT2FN` (e.g. "gelu", "swish" for converted OPUS-MT models).
        dropout: Residual dropout P_drop, applied to each sub-layer output before the residual sum
            and to the sums of embeddings and positional encodings.
        attention_dropout: Dropout on the attention weights (not in the paper; 0 by default).
        activation_dropout: Dropout after the feed-forward activation (not in the paper; 0 by default).
        max_position_embeddings: Longest source or target sequence the model accepts (the size of the
            sinusoidal table).
        normalize_before: False (the paper): post-norm, `LayerNorm(x + Sublayer(x))`. True: pre-norm,
            `x + Sublayer(LayerNorm(x))` with a final LayerNorm after each stack.
        scale_embedding: Multiply token embeddings by sqrt(d_model) (the paper, Section 3.4).
        positional_encoding_layout: "interleaved" is the paper's PE(pos, 2i) = sin, PE(pos, 2i+1) = cos;
            "concatenated" puts all sines first, then all cosines (Marian / OPUS-MT checkpoints).
        add_final_logits_bias: Add a learned-free bias buffer to the logits (Marian's `final_logits_bias`,
            for converted checkpoints). The paper has none.
        init_std: Initialisation (not specified by the paper). A number (default 0.02): N(0, init_std) for linear
            layers and embeddings, as BART/Marian. None: Xavier-uniform linear layers and embeddings
            N(0, d_model^-0.5), the tensor2tensor/fairseq convention. On Multi30k (bench/quality.md) 0.02 learned
            faster per step in both directions (validation loss 3.55 against 4.08 after 650 steps, en->de).
        use_cache: Return and reuse key/value caches during generation.
        pad_token_id, bos_token_id, eos_token_id, decoder_start_token_id: Special token ids; the decoder
            input starts with `decoder_start_token_id` (`<start>` in the paper's figures).
        tie_word_embeddings: Share the pre-softmax linear transformation with the embeddings (Section 3.4).
            False: the encoder embeddings, the decoder embeddings and the output projection are three
            independent matrices over the same vocabulary (converted Marian checkpoints with
            `share_encoder_decoder_embeddings=False` or `tie_word_embeddings=False`).
    """

    model_type = "vanilla_transformer"
    keys_to_ignore_at_inference = ["cache"]  # the cache output is not a prediction
    attribute_map = {
        "num_attention_heads": "encoder_attention_heads",
        "hidden_size": "d_model",
        "num_hidden_layers": "encoder_layers",
    }

    vocab_size: int = 37000
    d_model: int = 512
    encoder_layers: int = 6
    decoder_layers: int = 6
    encoder_attention_heads: int = 8
    decoder_attention_heads: int = 8
    encoder_ffn_dim: int = 2048
    decoder_ffn_dim: int = 2048
    activation_function: str = "relu"
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.0
    activation_dropout: float | int = 0.0
    max_position_embeddings: int = 1024
    normalize_before: bool = False
    scale_embedding: bool = True
    positional_encoding_layout: str = "interleaved"
    add_final_logits_bias: bool = False
    init_std: float | None = 0.02
    use_cache: bool = True
    is_encoder_decoder: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = 1
    tie_word_embeddings: bool = True

    def validate_architecture(self) -> None:
        """Reject configurations the model cannot be built from, naming the field (runs at construction)."""
        if self.model_type != type(self).model_type:  # e.g. a BART or Marian config.json loaded into this class
            raise ValueError(
                f"This config has `model_type` {self.model_type!r}, but {type(self).__name__} is "
                f"{type(self).model_type!r}: load it with the config class of {self.model_type!r} (or AutoConfig)."
            )
        for name in (
            "vocab_size",
            "d_model",
            "encoder_layers",
            "decoder_layers",
            "encoder_attention_heads",
            "decoder_attention_heads",
            "encoder_ffn_dim",
            "decoder_ffn_dim",
            "max_position_embeddings",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {getattr(self, name)}.")
        for name in ("encoder_attention_heads", "decoder_attention_heads"):
            heads = getattr(self, name)
            if self.d_model % heads != 0:
                raise ValueError(f"`d_model` ({self.d_model}) must be divisible by `{name}` ({heads}).")
        if self.activation_function not in ACT2FN:
            raise ValueError(
                f"Unknown `activation_function` {self.activation_function!r}; choose one of {sorted(ACT2FN)}."
            )
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)}.")
        if self.init_std is not None and not self.init_std > 0:
            raise ValueError(f"`init_std` must be a positive number or None (Xavier), got {self.init_std}.")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            ids = getattr(self, name)
            for token_id in ids if isinstance(ids, list) else [ids]:
                if token_id is not None and not 0 <= token_id < self.vocab_size:
                    raise ValueError(f"`{name}` ({token_id}) is outside the vocabulary [0, {self.vocab_size}).")
        if self.positional_encoding_layout not in POSITIONAL_ENCODING_LAYOUTS:
            raise ValueError(
                f"Unknown `positional_encoding_layout` {self.positional_encoding_layout!r}; "
                f"choose one of {POSITIONAL_ENCODING_LAYOUTS}."
            )


__all__ = ["VanillaTransformerConfig"]
