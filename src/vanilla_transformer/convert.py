"""Import pretrained Marian (OPUS-MT) checkpoints into `VanillaTransformerForConditionalGeneration`.

Marian is the paper's post-norm encoder-decoder Transformer with a few layout choices, each of which is an
explicit field of `VanillaTransformerConfig`, so the converted model computes the same function:

- sines in the first half of the positional vector, cosines in the second:
  `positional_encoding_layout="concatenated"`;
- `scale_embedding` (embeddings times sqrt(d_model) or not): `scale_embedding`;
- the `final_logits_bias` buffer: `add_final_logits_bias=True` (only when the bias is non-zero);
- the feed-forward activation ("swish" in OPUS-MT): `activation_function`;
- `share_encoder_decoder_embeddings=False` or `tie_word_embeddings=False`: `tie_word_embeddings=False`
  (encoder embeddings, decoder embeddings and output projection become independent matrices);
- generation settings (beam size, forced EOS, bad words, decoder start = pad): the copied `generation_config`.

What cannot be represented raises a `ValueError` naming the reason: separate source and target vocabularies of
different sizes (`decoder_vocab_size != vocab_size`; our model has one vocabulary), and FSMT (fairseq WMT19)
checkpoints, whose positional encoding is a different function (see `convert_fsmt`).

Command line (downloads the checkpoint from the Hub unless it is a local folder)::

    python -m vanilla_transformer.convert Helsinki-NLP/opus-mt-en-de opus-mt-en-de-vanilla
"""

import argparse
import copy
import logging
import re
from typing import NoReturn

import torch
from transformers import PreTrainedModel

from .config_file import debug_tracebacks
from .configuration_vanilla_transformer import VanillaTransformerConfig
from .modeling_vanilla_transformer import VanillaTransformerForConditionalGeneration

logger = logging.getLogger(__name__)

# Marian parameter name -> ours. Everything not listed keeps its name (attention projections, layer norms).
_RENAMES = ((re.compile(r"\.layers\.(\d+)\.fc([12])\."), r".layers.\1.ffn.fc\2."),)


def vanilla_name(name: str) -> str:
    """The name of Marian's parameter `name` in our model."""
    for pattern, replacement in _RENAMES:
        name = pattern.sub(replacement, name)
    return name


def marian_config_to_vanilla(marian_config: object, final_logits_bias: torch.Tensor) -> VanillaTransformerConfig:
    """Translate a `MarianConfig` into the `VanillaTransformerConfig` that computes the same function.

    Args:
        marian_config: the `MarianConfig` of the checkpoint.
        final_logits_bias: (1, V) Marian's logits bias; the option is switched on only when it is non-zero.

    Raises:
        ValueError: when the checkpoint uses a layout our model cannot represent.
    """
    c = marian_config
    decoder_vocab_size = c.decoder_vocab_size or c.vocab_size
    if decoder_vocab_size != c.vocab_size:
        raise ValueError(
            f"This Marian checkpoint has separate source and target vocabularies of different sizes "
            f"(vocab_size={c.vocab_size}, decoder_vocab_size={decoder_vocab_size}). VanillaTransformer has one "
            "vocabulary for source and target (`vocab_size`), so it cannot represent this model."
        )
    if getattr(c, "encoder_layerdrop", 0.0) or getattr(c, "decoder_layerdrop", 0.0):
        logger.warning(
            "Marian's layerdrop (%s / %s) is a training-time option VanillaTransformer does not have; the converted "
            "model computes the same function at inference but fine-tunes without layerdrop.",
            c.encoder_layerdrop,
            c.decoder_layerdrop,
        )
    tied = bool(c.share_encoder_decoder_embeddings and c.tie_word_embeddings)
    return VanillaTransformerConfig(
        vocab_size=c.vocab_size,
        d_model=c.d_model,
        encoder_layers=c.encoder_layers,
        decoder_layers=c.decoder_layers,
        encoder_attention_heads=c.encoder_attention_heads,
        decoder_attention_heads=c.decoder_attention_heads,
        encoder_ffn_dim=c.encoder_ffn_dim,
        decoder_ffn_dim=c.decoder_ffn_dim,
        activation_function=c.activation_function,
        dropout=c.dropout,
        attention_dropout=c.attention_dropout,
        activation_dropout=c.activation_dropout,
        max_position_embeddings=c.max_position_embeddings,
        normalize_before=False,  # Marian is post-norm, like the paper
        scale_embedding=c.scale_embedding,
        positional_encoding_layout="concatenated",
        add_final_logits_bias=bool(final_logits_bias.detach().ne(0).any()),
        use_cache=c.use_cache,
        pad_token_id=c.pad_token_id,
        bos_token_id=c.bos_token_id,
        eos_token_id=c.eos_token_id,
        decoder_start_token_id=c.decoder_start_token_id,
        tie_word_embeddings=tied,
    )


def convert_marian(marian: PreTrainedModel) -> VanillaTransformerForConditionalGeneration:
    """Return a `VanillaTransformerForConditionalGeneration` computing the same function as a `MarianMTModel`.

    The converted model has the same logits (up to float rounding) on every input, the same loss on the same
    labels, and the same `generation_config`, so `generate()` returns the same sequences.

    Args:
        marian: a `transformers.MarianMTModel` (loaded or randomly initialised), in any dtype.

    Returns:
        The converted model in eval mode, on the device and in the dtype of `marian`.

    Raises:
        TypeError: for anything but a `MarianMTModel` (FSMT: see `convert_fsmt`).
        ValueError: for Marian layouts the model cannot represent.
    """
    from transformers import FSMTForConditionalGeneration, MarianMTModel

    if isinstance(marian, FSMTForConditionalGeneration):
        convert_fsmt(marian)
    if not isinstance(marian, MarianMTModel):
        raise TypeError(f"Expected a transformers.MarianMTModel, got {type(marian).__name__}.")
    marian_state = marian.state_dict()
    config = marian_config_to_vanilla(marian.config, marian_state["final_logits_bias"])
    weight = next(marian.parameters())
    model = VanillaTransformerForConditionalGeneration(config).to(device=weight.device, dtype=weight.dtype)

    state = {}
    for name, tensor in marian_state.items():
        if name.endswith("embed_positions.weight"):
            continue  # fixed sinusoids, rebuilt from `positional_encoding_layout`
        if name == "final_logits_bias" and not config.add_final_logits_bias:
            continue  # all zeros: the option stays off
        state[vanilla_name(name)] = tensor
    encoder_embed = state["model.encoder.embed_tokens.weight"]
    state.setdefault("model.shared.weight", encoder_embed)  # absent when Marian does not share embeddings
    expected = set(model.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ValueError(
            f"Marian checkpoint does not map onto VanillaTransformer: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}."
        )
    model.load_state_dict(state, strict=True)
    model.generation_config = copy.deepcopy(marian.generation_config)
    return model.eval()


def convert_fsmt(fsmt: PreTrainedModel) -> NoReturn:
    """FSMT (fairseq WMT19) checkpoints cannot be converted; this raises a `ValueError` that says why.

    FSMT differs from VanillaTransformer in ways that are not layout choices but different functions:

    1. Positional encoding. fairseq uses frequencies 10000^(-i / (d_model/2 - 1)) instead of the paper's
       10000^(-2i / d_model), numbers positions from `padding_idx + 1` and gives padding tokens a zero vector
       (positions depend on where the padding is, so left-padded inputs get other positions). Our sinusoid
       table is indexed 0, 1, 2, ... whatever the tokens are.
    2. Vocabularies. FSMT has separate source and target vocabularies (`src_vocab_size`, `tgt_vocab_size`)
       with their own embedding matrices; our model has one vocabulary, as in the paper (Section 3.4).

    Args:
        fsmt: a `transformers.FSMTForConditionalGeneration`.

    Raises:
        ValueError: always.
    """
    raise _fsmt_error(fsmt.config)


def _fsmt_error(config: object) -> ValueError:
    return ValueError(
        "FSMT (fairseq) checkpoints cannot be converted to VanillaTransformer: (1) fairseq's sinusoidal positions "
        "use frequencies 10000^(-i/(d_model/2-1)) instead of the paper's 10000^(-2i/d_model), start at "
        "padding_idx+1 and give padding tokens a zero vector, so positions depend on the padding; (2) FSMT has "
        f"separate source/target vocabularies (src_vocab_size={config.src_vocab_size}, "
        f"tgt_vocab_size={config.tgt_vocab_size}) with separate embeddings, while VanillaTransformer has one. "
        "Use FSMTForConditionalGeneration directly."
    )


def convert_checkpoint(name_or_path: str, output_dir: str, save_pipeline: bool = True) -> str:
    """Load a Marian checkpoint and its tokenizer, convert, and save both (with the model code) to `output_dir`.

    Args:
        name_or_path: Hub model id (e.g. "Helsinki-NLP/opus-mt-en-de") or local folder.
        output_dir: where to write the converted model, its tokenizer and the remote code.
        save_pipeline: also save the custom translation pipeline, so that
            `pipeline("vanilla-translation", model=output_dir, trust_remote_code=True)` works.

    Returns:
        `output_dir`.
    """
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    config = AutoConfig.from_pretrained(name_or_path)
    if config.model_type == "fsmt":
        raise _fsmt_error(config)
    if config.model_type != "marian":
        raise ValueError(f"{name_or_path} is a {config.model_type!r} model; only Marian checkpoints convert.")
    marian = AutoModelForSeq2SeqLM.from_pretrained(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    model = convert_marian(marian)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    if save_pipeline:
        from .pipeline_vanilla_transformer import VanillaTranslationPipeline

        VanillaTranslationPipeline(model=model, tokenizer=tokenizer).save_pretrained(output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    """Command line: `python -m vanilla_transformer.convert MARIAN_ID_OR_PATH OUTPUT_DIR`."""
    parser = argparse.ArgumentParser(
        prog="python -m vanilla_transformer.convert",
        description="Convert a Marian (OPUS-MT) checkpoint to VanillaTransformer.",
    )
    parser.add_argument("source", help="Hub model id (e.g. Helsinki-NLP/opus-mt-en-de) or local Marian folder")
    parser.add_argument("output_dir", help="folder to write the converted model and tokenizer to")
    parser.add_argument("--no-pipeline", action="store_true", help="do not save the custom translation pipeline")
    args = parser.parse_args(argv)
    try:  # a user error is one line and exit status 2; VT_DEBUG=1 keeps the traceback
        path = convert_checkpoint(args.source, args.output_dir, save_pipeline=not args.no_pipeline)
    except (ValueError, OSError) as error:
        if debug_tracebacks():
            raise
        parser.error(str(error))
    print(f"Converted {args.source} -> {path}")


if __name__ == "__main__":
    main()
