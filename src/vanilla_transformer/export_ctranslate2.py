"""Export a saved model to CTranslate2, and translate with the export.

    python -m vanilla_transformer.export_ctranslate2 MODEL_DIR OUT_DIR [--quantization int8] [--force]
    python -m vanilla_transformer.translate --backend ctranslate2 --model OUT_DIR "a sentence"

CTranslate2 (`pip install ctranslate2`, or this package's `ctranslate2` extra) is an inference engine for this
architecture in C++. The export builds its `TransformerSpec` from the model's config and weights through
CTranslate2's specification API (the same one its own converters fill), with:

- post-norm (the paper) or pre-norm layers (`normalize_before`, with the final LayerNorm of each stack);
- the model's own sinusoid table for both layouts ("interleaved", the paper, and "concatenated", Marian), written
  into the export as the position encodings, so CTranslate2's built-in table is never used;
- the embedding scale (sqrt(d_model) or 1), tied or separate embeddings and output projection, the
  `final_logits_bias`, the feed-forward activation, separate encoder and decoder head counts;
- the tokenizer's vocabulary (ids without a token get a placeholder name), special tokens, and the decoder start
  token.

What CTranslate2 cannot represent (an activation it lacks, several end-of-sequence ids, a tokenizer larger than the
model's vocabulary) stops the export with a `CTranslate2ExportError` naming the setting. Weights are stored in
float32 unless `--quantization` names one of CTranslate2's types (int8, int8_float32, int8_float16,
int8_bfloat16, int16, float16, bfloat16, float32); CTranslate2 can still convert them when loading
(`compute_type`). The export folder also holds the tokenizer, the model's generation config and its config (as
`vanilla_transformer_config.json`), so `CTranslate2TranslationPipeline` needs nothing else.

In float32 the export computes what `generate()` computes: the same greedy and beam-search tokens
(tests/test_export_ctranslate2.py). Decoding options map to CTranslate2's: `num_beams` -> `beam_size`,
`length_penalty`, `max_new_tokens` -> `max_decoding_length`, `min_new_tokens` -> `min_decoding_length`,
`num_return_sequences` -> `num_hypotheses`, `repetition_penalty`, `no_repeat_ngram_size`.
"""

import argparse
import copy
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase

from .configuration_vanilla_transformer import VanillaTransformerConfig
from .modeling_vanilla_transformer import VanillaTransformerForConditionalGeneration
from .precision import model_precision

try:
    import ctranslate2
    from ctranslate2.converters.utils import fuse_linear
    from ctranslate2.specs import common_spec, model_spec, transformer_spec
except ImportError:  # optional dependency: the functions below say how to install it
    ctranslate2 = None

CONFIG_FILE = "vanilla_transformer_config.json"  # our config beside CTranslate2's own config.json
QUANTIZATIONS = (
    ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")
    if ctranslate2 is None
    else model_spec.ACCEPTED_MODEL_TYPES
)
# The `--precision` names of translate and `precision.py`, as CTranslate2 compute types (None: as stored).
COMPUTE_TYPES = {None: "default", "fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "int8"}


class CTranslate2ExportError(ValueError):
    """The model has a setting that a CTranslate2 `TransformerSpec` cannot represent (the message names it)."""


def _require_ctranslate2() -> None:
    if ctranslate2 is None:
        raise ImportError(
            "CTranslate2 is not installed: pip install ctranslate2 (or this package's extra, "
            "pip install 'vanilla-transformer[ctranslate2]')."
        )


def _activations() -> dict:
    """transformers' activation names -> CTranslate2's (the functions both compute the same way)."""
    act = common_spec.Activation
    return {
        "relu": act.RELU,
        "gelu": act.GELU,
        "gelu_python": act.GELU,
        "gelu_new": act.GELUTanh,
        "gelu_fast": act.GELUTanh,
        "gelu_pytorch_tanh": act.GELUTanh,
        "quick_gelu": act.GELUSigmoid,
        "silu": act.SWISH,
        "swish": act.SWISH,
        "tanh": act.Tanh,
        "sigmoid": act.Sigmoid,
    }


def vocabulary(tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> list[str]:
    """The model's vocabulary as CTranslate2 wants it: token i is the string of id i, for every id.

    Ids the tokenizer has no token for (a vocabulary padded to a round size) get the placeholder `<unused_{id}>`
    (never produced by the tokenizer, so never seen on the source side).

    Raises:
        CTranslate2ExportError: the tokenizer has ids the model does not (another model's tokenizer).
    """
    tokens: list[str | None] = [None] * vocab_size
    for token, token_id in tokenizer.get_vocab().items():
        if token_id >= vocab_size:
            raise CTranslate2ExportError(
                f"The tokenizer has token {token!r} with id {token_id}, but the model's vocabulary has "
                f"{vocab_size} ids: export the model with the tokenizer it was trained with."
            )
        tokens[token_id] = token
    taken = set(tokens)
    for token_id, token in enumerate(tokens):
        if token is None:
            placeholder = f"<unused_{token_id}>"
            while placeholder in taken:
                placeholder += "_"
            tokens[token_id] = placeholder
            taken.add(placeholder)
    return tokens


def _linear(spec: "common_spec.LinearSpec", module: torch.nn.Linear) -> None:
    spec.weight = module.weight.detach()
    if module.bias is not None:
        spec.bias = module.bias.detach()


def _layer_norm(spec: "common_spec.LayerNormSpec", module: torch.nn.LayerNorm) -> None:
    spec.gamma = module.weight.detach()
    spec.beta = module.bias.detach()


def _attention(spec: "object", attention: torch.nn.Module, self_attention: bool) -> None:
    """q, k, v, out projections -> CTranslate2's fused (q k v), out (self) or q, (k v), out (cross)."""
    split = [common_spec.LinearSpec() for _ in range(3)]
    for part, module in zip(split, (attention.q_proj, attention.k_proj, attention.v_proj), strict=True):
        _linear(part, module)
    if self_attention:
        fuse_linear(spec.linear[0], split)
    else:
        fuse_linear(spec.linear[0], split[:1])
        fuse_linear(spec.linear[1], split[1:])
    _linear(spec.linear[-1], attention.out_proj)


def _stack(spec: "object", stack: torch.nn.Module, embeddings: "object") -> None:
    spec.scale_embeddings = float(stack.embed_scale)
    spec.position_encodings.encodings = stack.embed_positions.pe.detach().float()  # (max_positions, E)
    embeddings.weight = stack.embed_tokens.weight.detach()
    if stack.layer_norm is not None:  # pre-norm: the final LayerNorm of the stack
        _layer_norm(spec.layer_norm, stack.layer_norm)
    for layer_spec, layer in zip(spec.layer, stack.layers, strict=True):
        _attention(layer_spec.self_attention, layer.self_attn, self_attention=True)
        _layer_norm(layer_spec.self_attention.layer_norm, layer.self_attn_layer_norm)
        if hasattr(layer, "encoder_attn"):
            _attention(layer_spec.attention, layer.encoder_attn, self_attention=False)
            _layer_norm(layer_spec.attention.layer_norm, layer.encoder_attn_layer_norm)
        _linear(layer_spec.ffn.linear_0, layer.ffn.fc1)
        _linear(layer_spec.ffn.linear_1, layer.ffn.fc2)
        _layer_norm(layer_spec.ffn.layer_norm, layer.final_layer_norm)


def build_spec(
    model: VanillaTransformerForConditionalGeneration, tokenizer: PreTrainedTokenizerBase
) -> "transformer_spec.TransformerSpec":
    """The CTranslate2 `TransformerSpec` of `model` (float32 weights) with `tokenizer`'s vocabulary.

    Raises:
        CTranslate2ExportError: a setting CTranslate2 cannot represent (named in the message).
        TypeError: `model` is not this package's model.
    """
    _require_ctranslate2()
    if not isinstance(model, VanillaTransformerForConditionalGeneration):
        raise TypeError(
            f"build_spec exports VanillaTransformerForConditionalGeneration models, got {type(model).__name__} "
            "(for Marian, BART and other transformers models use CTranslate2's own ct2-transformers-converter)."
        )
    config = model.config
    activation = _activations().get(config.activation_function)
    if activation is None:
        raise CTranslate2ExportError(
            f"CTranslate2 has no activation {config.activation_function!r} (`activation_function`); it has "
            f"{sorted(_activations())}."
        )
    eos = config.eos_token_id
    if isinstance(eos, list):
        if len(eos) != 1:
            raise CTranslate2ExportError(
                f"CTranslate2 models have one end-of-sequence token, but `eos_token_id` is {eos}."
            )
        eos = eos[0]
    for name in ("eos_token_id", "decoder_start_token_id"):
        if getattr(config, name) is None:
            raise CTranslate2ExportError(f"`{name}` is not set: CTranslate2 needs it to decode.")
    norm_eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.LayerNorm)}
    if len(norm_eps) > 1:
        raise CTranslate2ExportError(f"CTranslate2 has one LayerNorm epsilon; the model's layers use {norm_eps}.")

    if model_precision(model) == "int8":
        raise CTranslate2ExportError(
            "The model has int8 (dynamically quantised) linear layers: export the float model and choose the "
            "weight type with `quantization` (--quantization int8)."
        )
    if model_precision(model) != "fp32":  # CTranslate2 quantizes from float32 weights (`optimize`); keep the caller's
        model = copy.deepcopy(model).float()
    encoder, decoder = model.get_encoder(), model.get_decoder()
    encoder_spec = transformer_spec.TransformerEncoderSpec(
        config.encoder_layers, config.encoder_attention_heads, pre_norm=config.normalize_before, activation=activation
    )
    decoder_spec = transformer_spec.TransformerDecoderSpec(
        config.decoder_layers, config.decoder_attention_heads, pre_norm=config.normalize_before, activation=activation
    )
    _stack(encoder_spec, encoder, encoder_spec.embeddings[0])
    _stack(decoder_spec, decoder, decoder_spec.embeddings)
    decoder_spec.projection.weight = model.lm_head.weight.detach()  # the same tensor as the embeddings when tied
    if config.add_final_logits_bias and bool(model.final_logits_bias.any()):
        decoder_spec.projection.bias = model.final_logits_bias.detach().reshape(-1).float()
    spec = transformer_spec.TransformerSpec(encoder_spec, decoder_spec)

    tokens = vocabulary(tokenizer, config.vocab_size)
    spec.register_source_vocabulary(tokens)
    spec.register_target_vocabulary(tokens)
    unk = tokenizer.unk_token if tokenizer.unk_token in tokens else tokens[config.pad_token_id or 0]
    spec.config.unk_token = unk
    spec.config.eos_token = tokens[eos]
    spec.config.bos_token = tokens[config.bos_token_id] if config.bos_token_id is not None else tokens[eos]
    spec.config.decoder_start_token = tokens[config.decoder_start_token_id]
    spec.config.layer_norm_epsilon = norm_eps.pop() if norm_eps else 1e-5
    return spec


def export(
    model: VanillaTransformerForConditionalGeneration,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: str | os.PathLike,
    quantization: str | None = None,
    force: bool = False,
) -> str:
    """Write the CTranslate2 export of `model` + `tokenizer` to `output_dir` (what `CTranslate2Converter.convert`
    does with a spec: validate, alias shared weights, quantize, save), plus the tokenizer, the generation config
    and the model config.

    Args:
        model, tokenizer: the model (any dtype; exported from float32) and its tokenizer.
        output_dir: the folder to create.
        quantization: a CTranslate2 weight type (`QUANTIZATIONS`), or None for float32.
        force: replace an existing `output_dir`.

    Returns:
        `output_dir` as a string.

    Raises:
        FileExistsError: `output_dir` exists and `force` is not set.
        CTranslate2ExportError: see `build_spec`.
        ValueError: an unknown `quantization`.
    """
    _require_ctranslate2()
    output_dir = str(output_dir)
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}; choose one of {list(QUANTIZATIONS)}.")
    if os.path.exists(output_dir) and not force:
        raise FileExistsError(f"{output_dir} already exists: choose another folder or pass --force to replace it.")
    spec = build_spec(model, tokenizer)
    spec.validate()
    spec.optimize(quantization=quantization)
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".ctranslate2-", dir=parent)  # complete or absent, never half-written
    try:
        spec.save(staging)
        tokenizer.save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        model.config.to_json_file(os.path.join(staging, CONFIG_FILE))
        if os.path.exists(output_dir):
            shutil.rmtree(output_dir)
        os.replace(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def is_export(path: str | os.PathLike) -> bool:
    """True if `path` is a folder written by `export` (a CTranslate2 model with our config beside it)."""
    return os.path.isfile(os.path.join(path, "model.bin")) and os.path.isfile(os.path.join(path, CONFIG_FILE))


def cached_export(model_path: str, cache_dir: str | os.PathLike | None = None) -> str:
    """The float32 export of a saved model folder, written once into a cache and reused while the model is unchanged.

    The cache key is a hash of the folder's config, weights and tokenizer files, so a retrained model in the same
    folder gets a new export. Default cache: `$VANILLA_TRANSFORMER_CACHE`, else `$XDG_CACHE_HOME` or `~/.cache`,
    under `vanilla_transformer/ctranslate2`.

    Returns:
        the export folder (`model_path` itself if it already is one).
    """
    if is_export(model_path):
        return str(model_path)
    if not os.path.isdir(model_path):
        raise FileNotFoundError(
            f"{model_path!r} is not a model folder: the CTranslate2 backend exports a local folder "
            "(download a Hub model first, e.g. with `hf download`)."
        )
    digest = hashlib.sha256()
    for name in sorted(os.listdir(model_path)):
        path = os.path.join(model_path, name)
        if os.path.isfile(path) and name.endswith((".json", ".safetensors", ".bin", ".model", ".txt")):
            digest.update(name.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 24), b""):
                    digest.update(block)
    if cache_dir is None:
        root = os.environ.get("VANILLA_TRANSFORMER_CACHE") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "vanilla_transformer"
        )
        cache_dir = os.path.join(root, "ctranslate2")
    target = os.path.join(cache_dir, digest.hexdigest()[:20])
    if not is_export(target):
        model = AutoModelForSeq2SeqLM.from_pretrained(model_path)
        export(model, AutoTokenizer.from_pretrained(model_path), target, force=True)
    return target


class CTranslate2Model:
    """A loaded export: the `ctranslate2.Translator` and the config and generation config of the model it came
    from (what translation code reads from a model: `config.max_position_embeddings`, `generation_config`)."""

    def __init__(
        self, folder: str | os.PathLike, device: str = "cpu", compute_type: str = "default", **kwargs: object
    ):
        _require_ctranslate2()
        self.folder = str(folder)
        self.config = VanillaTransformerConfig.from_json_file(os.path.join(folder, CONFIG_FILE))
        self.generation_config = GenerationConfig.from_pretrained(folder)
        device_type, _, index = device.partition(":")
        self.translator = ctranslate2.Translator(
            self.folder, device=device_type, device_index=int(index or 0), compute_type=compute_type, **kwargs
        )
        self.vocabulary = _read_vocabulary(self.folder)
        self.token_ids = {token: i for i, token in enumerate(self.vocabulary)}


def _read_vocabulary(folder: str) -> list[str]:
    for name in ("shared_vocabulary.json", "target_vocabulary.json"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
    raise FileNotFoundError(f"{folder} has no CTranslate2 vocabulary file (shared_vocabulary.json).")


class CTranslate2TranslationPipeline:
    """Translate with an export, called like `VanillaTranslationPipeline` and giving the same results.

    `pipe(texts, batch_size=32, num_beams=4, max_new_tokens=64)` -> one `{"translation_text": str}` per text (a
    list of them per text with `num_return_sequences` > 1). Unset decoding options come from the exported
    generation config. Sources are truncated to the model's `max_position_embeddings` like the pipeline does.

    Args:
        folder: an export (see `export`).
        device: "cpu", "cuda" or "cuda:N".
        precision: None (as stored), "fp32", "bf16", "fp16" or "int8": CTranslate2 converts the weights on load.
        **translator_kwargs: passed to `ctranslate2.Translator` (e.g. `intra_threads`, `inter_threads`).
    """

    _GENERATE_KEYS = (
        "num_beams",
        "early_stopping",  # CTranslate2 stops a beam search as `early_stopping=True` does (what train.py saves)
        "length_penalty",
        "max_new_tokens",
        "max_length",
        "min_new_tokens",
        "num_return_sequences",
        "repetition_penalty",
        "no_repeat_ngram_size",
    )

    def __init__(
        self,
        folder: str | os.PathLike,
        device: str = "cpu",
        precision: str | None = None,
        **translator_kwargs: object,
    ) -> None:
        if precision not in COMPUTE_TYPES:
            raise ValueError(f"Unknown precision {precision!r}; choose one of {[p for p in COMPUTE_TYPES if p]}.")
        self.model = CTranslate2Model(folder, device, COMPUTE_TYPES[precision], **translator_kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)

    def decoding_options(self, **generate_kwargs: object) -> dict:
        """`generate()` keywords (unset ones from the generation config) -> `translate_batch` options."""
        unknown = sorted(set(generate_kwargs) - set(self._GENERATE_KEYS))
        if unknown:
            raise TypeError(f"The CTranslate2 backend does not support {unknown}; it takes {self._GENERATE_KEYS}.")
        gen = self.model.generation_config

        def option(name: str) -> object:
            value = generate_kwargs.get(name)
            return getattr(gen, name, None) if value is None else value

        max_new = option("max_new_tokens")
        if max_new is None:
            max_length = option("max_length")
            if max_length is not None:
                max_new = max_length - 1  # generate()'s max_length counts the decoder start token
            else:  # generate()'s default: 20 new tokens, within the position table
                max_new = min(20, self.model.config.max_position_embeddings - 1)
        if option("do_sample"):
            raise ValueError("The CTranslate2 backend decodes with search only; the generation config samples.")
        return {
            "beam_size": int(option("num_beams") or 1),
            "length_penalty": float(option("length_penalty") if option("length_penalty") is not None else 1.0),
            "max_decoding_length": int(max_new),
            "min_decoding_length": int(option("min_new_tokens") or 0),
            "num_hypotheses": int(option("num_return_sequences") or 1),
            "repetition_penalty": float(option("repetition_penalty") or 1.0),
            "no_repeat_ngram_size": int(option("no_repeat_ngram_size") or 0),
            "max_input_length": 0,  # truncation is done here, as the transformers pipeline does it
        }

    def translate_ids(self, source_ids: list[list[int]], batch_size: int = 32, **generate_kwargs: object) -> list:
        """Token ids in, token ids out (no special tokens): per source, a list of `num_return_sequences` id lists."""
        options = self.decoding_options(**generate_kwargs)
        vocab = self.model.vocabulary
        source = [[vocab[i] for i in ids] for ids in source_ids]
        results = self.model.translator.translate_batch(
            source, max_batch_size=batch_size, return_end_token=True, **options
        )
        eos = self.model.token_ids[self.model.vocabulary[self.model.config.eos_token_id]]
        outputs = []
        for result in results:
            hypotheses = [[self.model.token_ids[t] for t in hyp] for hyp in result.hypotheses]
            outputs.append([ids[:-1] if ids and ids[-1] == eos else ids for ids in hypotheses])
        return outputs

    def __call__(
        self, inputs: str | list[str], batch_size: int = 32, truncation: bool = True, **generate_kwargs: object
    ) -> list:
        """Translate one string or a list of strings (the return format of `VanillaTranslationPipeline`)."""
        single = isinstance(inputs, str)
        texts = [inputs] if single else inputs
        if not isinstance(texts, (list, tuple)) or not all(isinstance(text, str) for text in texts):
            raise TypeError(f"The CTranslate2 pipeline takes a string or a list of strings, got {type(inputs)}.")
        limits = [self.model.config.max_position_embeddings, self.tokenizer.model_max_length]
        max_length = min(limit for limit in limits if isinstance(limit, int) and limit > 0)
        encoded = self.tokenizer(list(texts), truncation=truncation, max_length=max_length if truncation else None)
        outputs = self.translate_ids(encoded["input_ids"], batch_size=batch_size, **generate_kwargs)
        results = [
            [{"translation_text": self.tokenizer.decode(ids, skip_special_tokens=True)} for ids in hypotheses]
            for hypotheses in outputs
        ]
        if single:
            return results[0]
        if all(len(result) == 1 for result in results):
            return [result[0] for result in results]
        return results


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m vanilla_transformer.export_ctranslate2",
        description="Export a saved model (and its tokenizer) to a CTranslate2 model folder.",
    )
    parser.add_argument("model_dir", help="saved model folder (model + tokenizer), e.g. a train.py output_dir")
    parser.add_argument("output_dir", help="the CTranslate2 model folder to write")
    parser.add_argument(
        "--quantization", choices=QUANTIZATIONS, default=None, help="weight type of the export (default: float32)"
    )
    parser.add_argument("--force", action="store_true", help="replace output_dir if it exists")
    args = parser.parse_args(argv)
    if ctranslate2 is None:
        parser.error("CTranslate2 is not installed: pip install ctranslate2")
    if not os.path.isdir(args.model_dir):
        parser.error(f"{args.model_dir!r} is not a folder")
    if os.path.exists(args.output_dir) and not args.force:
        parser.error(f"{args.output_dir} already exists: choose another folder or pass --force to replace it")
    try:
        model = AutoModelForSeq2SeqLM.from_pretrained(args.model_dir)
        tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
        export(model, tokenizer, args.output_dir, quantization=args.quantization, force=args.force)
    except (CTranslate2ExportError, TypeError, OSError) as error:
        parser.error(str(error))
    size = sum(f.stat().st_size for f in Path(args.output_dir).iterdir() if f.is_file())
    print(
        f"wrote {args.output_dir} ({size / 2**20:.1f} MiB, {args.quantization or 'float32'} weights)", file=sys.stderr
    )


if __name__ == "__main__":
    main()
