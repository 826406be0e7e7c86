"""Translate from the command line with a saved model (ours, or any seq2seq model with a tokenizer).

    python -m vanilla_transformer.translate --model PATH "first sentence" "second sentence"
    python -m vanilla_transformer.translate --model PATH --file input.txt --output output.txt
    echo "a sentence" | python -m vanilla_transformer.translate --model PATH --num-beams 4

Sentences come from the arguments, else from `--file` (one per line, with a progress bar), else from standard
input (one per line; line by line when typed at a terminal). They are translated in batches with
`VanillaTranslationPipeline`, and the translations are printed one per line, in input order; an empty input line
gives an empty output line.

Decoding follows the model's saved generation config (`generation_config.json`: beam size, length penalty,
maximum length, ...); `--num-beams`, `--length-penalty` and `--max-new-tokens` override it. A sentence longer
than the model accepts (`max_position_embeddings`, or the tokenizer's `model_max_length` if smaller) is refused
with an error naming its line (exit status 2), or, with `--truncate`, cut to that length with a warning naming
the line. Sentences are numbered like lines from 1 (an argument counts as a line).

`--alignments` appends to each translation ` ||| ` and its word alignment from cross-attention in the Pharaoh
`i-j` format (output token j attends most to source token i; tokens without the special ones, counted from 0; the
head average of the last decoder layer, or of `--alignment-layer`).

`--precision bf16|fp16|int8` translates with the model converted to that precision (`precision.to_inference`);
`--backend ctranslate2` translates with CTranslate2 instead of PyTorch, from a CTranslate2 export
(`export_ctranslate2`) given as `--model`, or from a saved model exported on the fly into a cache; the output is
the same format.
"""

import argparse
import logging
import sys
from collections.abc import Iterable, Iterator, Sequence

from tqdm.auto import tqdm
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel

from .data import read_lines
from .pipeline_vanilla_transformer import VanillaTranslationPipeline
from .precision import PRECISIONS

logger = logging.getLogger(__name__)


def load(
    model_path: str, device: str = "cpu", precision: str | None = None, backend: str = "transformers"
) -> VanillaTranslationPipeline:
    """Load model + tokenizer from a folder or Hub id into a translation pipeline (in eval mode).

    Args:
        model_path: a saved model folder or Hub id; for the "ctranslate2" backend also a CTranslate2 export.
        device: "cpu", "cuda", "cuda:N".
        precision: None (as saved), "fp32", "bf16", "fp16" or "int8" (see `precision.to_inference`).
        backend: "transformers" (`VanillaTranslationPipeline`) or "ctranslate2"
            (`export_ctranslate2.CTranslate2TranslationPipeline`, called the same way).
    """
    if backend == "ctranslate2":
        from .export_ctranslate2 import CTranslate2TranslationPipeline, cached_export

        return CTranslate2TranslationPipeline(cached_export(model_path), device=device, precision=precision)
    if backend != "transformers":
        raise ValueError(f"Unknown backend {backend!r}; choose 'transformers' or 'ctranslate2'.")
    model = AutoModelForSeq2SeqLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return VanillaTranslationPipeline(model=model.eval(), tokenizer=tokenizer, device=device, precision=precision)


class SourceTooLongError(ValueError):
    """A sentence has more tokens than the model accepts, and truncation was not asked for.

    Attributes:
        line: the sentence's position in the input, from 1.
        length: its number of tokens (with the special tokens the tokenizer adds, e.g. `</s>`).
        limit: the most tokens the model accepts.
        reason: where the limit comes from (`max_position_embeddings` or the tokenizer's `model_max_length`).
    """

    def __init__(self, line: int, length: int, limit: int, reason: str) -> None:
        self.line, self.length, self.limit, self.reason = line, length, limit, reason
        super().__init__(self.describe("`truncate=True`"))

    def describe(self, truncate_option: str) -> str:
        """The message, naming `truncate_option` as the way to cut such sentences."""
        return (
            f"line {self.line} has {self.length} tokens, more than the model's limit of {self.limit} ({self.reason}): "
            f"shorten or split it, or pass {truncate_option} to keep only its first {self.limit} tokens."
        )


def source_limit(pipe: VanillaTranslationPipeline) -> tuple[int, str] | None:
    """The most source tokens the model accepts and where that limit comes from, or None if it has none.

    The smaller of the model's `max_position_embeddings` and the tokenizer's `model_max_length`: the length the
    pipeline truncates to.
    """
    limits = [
        (getattr(pipe.model.config, "max_position_embeddings", None), "max_position_embeddings"),
        (getattr(pipe.tokenizer, "model_max_length", None), "the tokenizer's model_max_length"),
    ]
    limits = [(value, name) for value, name in limits if isinstance(value, int) and value > 0]
    return min(limits, key=lambda limit: limit[0]) if limits else None


def check_lengths(
    pipe: VanillaTranslationPipeline, sentences: Sequence[str], first_line: int = 1, truncate: bool = False
) -> None:
    """Refuse (or, with `truncate`, warn about) the sentences longer than the model accepts.

    Args:
        pipe: the translation pipeline (its tokenizer counts the tokens).
        sentences: the sentences; the first is line `first_line` of the input.
        first_line: line number of `sentences[0]`, for the messages.
        truncate: warn (logger `vanilla_transformer.translate`) instead of raising.

    Raises:
        SourceTooLongError: the first sentence that is too long, unless `truncate`.
    """
    if (found := source_limit(pipe)) is None:
        return
    limit, reason = found
    for start in range(0, len(sentences), 4096):  # token lists of a chunk at a time, not of a whole corpus
        chunk = [(i, text) for i, text in enumerate(sentences[start : start + 4096], start) if text.strip()]
        lengths = pipe.tokenizer([text for _, text in chunk], verbose=False)["input_ids"] if chunk else []
        for (i, _), ids in zip(chunk, lengths, strict=True):
            if len(ids) <= limit:
                continue
            if not truncate:
                raise SourceTooLongError(first_line + i, len(ids), limit, reason)
            logger.warning(
                "line %d has %d tokens: cut to the model's limit of %d (%s); its translation covers only those.",
                first_line + i,
                len(ids),
                limit,
                reason,
            )


def generation_overrides(
    model: PreTrainedModel,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    max_new_tokens: int | None = None,
) -> dict[str, int | float]:
    """The `generate()` keywords for the settings given; everything else comes from `model.generation_config`.

    A maximum length is passed in the form the saved config uses, so that `generate()` never sees both
    `max_new_tokens` and `max_length`: a config that saves `max_length` (as train.py does: the decoder start
    token + the new tokens) gets `max_length = max_new_tokens + 1`. A config that sets no length at all gets
    min(256, `max_position_embeddings`) new tokens instead of transformers' default of 20. Asking for greedy
    search (`num_beams=1`) from a beam-search config also resets its beam-only settings (length penalty, early
    stopping), which would otherwise draw a warning from `generate()`.
    """
    gen = model.generation_config
    kwargs: dict[str, int | float] = {}
    if num_beams is not None:
        kwargs["num_beams"] = num_beams
        if num_beams == 1:
            kwargs.update(length_penalty=1.0, early_stopping=False)
    if length_penalty is not None:
        kwargs["length_penalty"] = length_penalty
    if max_new_tokens is None and gen.max_new_tokens is None and gen.max_length is None:
        max_new_tokens = min(256, getattr(model.config, "max_position_embeddings", 256))
    if max_new_tokens is not None:
        if gen.max_new_tokens is None and gen.max_length is not None and model.config.is_encoder_decoder:
            kwargs["max_length"] = max_new_tokens + 1  # the decoder input starts as one token
        else:
            kwargs["max_new_tokens"] = max_new_tokens
    return kwargs


def translate(
    pipe: VanillaTranslationPipeline,
    sentences: Iterable[str],
    batch_size: int = 32,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    max_new_tokens: int | None = None,
    progress: bool = False,
    total: int | None = None,
    truncate: bool = False,
    alignments: bool = False,
    alignment_layer: int = -1,
) -> Iterator[str]:
    """Translate `sentences` in batches of `batch_size`, yielding one translation per sentence in order.

    The options are checked, and a list of sentences is checked for lengths, before this returns; sentences from
    an iterator are checked a batch at a time, before the batch is translated.

    Args:
        pipe: the pipeline from `load` (or built from any seq2seq model and tokenizer).
        sentences: source sentences; empty or blank ones translate to "" without running the model.
        batch_size: sentences per `generate()` call (padded to the longest in the batch).
        num_beams: beam size (1 = greedy); default: the model's generation config.
        length_penalty: beam-score exponent on the length (>1 favours longer outputs); default: the model's
            generation config.
        max_new_tokens: longest translation in tokens; default: the model's generation config, or min(256,
            `max_position_embeddings`) if it sets no length.
        progress: show a tqdm progress bar (on stderr).
        total: number of sentences, for the progress bar.
        truncate: cut sentences longer than the model accepts, with a warning naming each, instead of refusing.
        alignments: append `" ||| "` and the cross-attention alignment in the Pharaoh format (`"0-0 2-1"`, see
            `VanillaTranslationPipeline`) to each translation; an empty sentence gives `" ||| "`.
        alignment_layer: the decoder layer whose head-averaged cross-attention aligns (negative: from the last).

    Raises:
        ValueError: an option out of range.
        SourceTooLongError: a sentence longer than the model accepts, unless `truncate`.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    for name, value in (("num_beams", num_beams), ("max_new_tokens", max_new_tokens)):
        if value is not None and value < 1:
            raise ValueError(f"`{name}` must be >= 1, got {value}.")
    generate_kwargs = generation_overrides(pipe.model, num_beams, length_penalty, max_new_tokens)
    if alignments:
        _check_alignment_layer(pipe.model, alignment_layer)
        generate_kwargs.update(return_alignments=True, alignment_layer=alignment_layer)
    checked = isinstance(sentences, Sequence) and not isinstance(sentences, str)
    if checked:
        check_lengths(pipe, sentences, truncate=truncate)
    return _translate_batches(pipe, sentences, batch_size, generate_kwargs, progress, total, truncate, checked)


def _translate_batches(
    pipe: VanillaTranslationPipeline,
    sentences: Iterable[str],
    batch_size: int,
    generate_kwargs: dict[str, int | float],
    progress: bool,
    total: int | None,
    truncate: bool,
    checked: bool,
) -> Iterator[str]:
    """The generator behind `translate` (options already checked; lengths too when `checked`)."""
    bar = tqdm(total=total, unit="sent", disable=not progress, file=sys.stderr)
    batch: list[str] = []
    done = 0

    def flush() -> list[str]:
        nonlocal done
        if not checked:
            check_lengths(pipe, batch, first_line=done + 1, truncate=truncate)
        texts = [text for text in batch if text.strip()]
        options = {"truncation": truncate, **generate_kwargs}
        results = iter(pipe(texts, batch_size=batch_size, **options) if texts else [])
        out = [_output_line(next(results) if text.strip() else None, generate_kwargs) for text in batch]
        bar.update(len(batch))
        done += len(batch)
        batch.clear()
        return out

    for sentence in sentences:
        batch.append(sentence.rstrip("\r\n"))
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()
    bar.close()


def _check_alignment_layer(model: PreTrainedModel, layer: int) -> None:
    """Raise ValueError unless the decoder has layer `layer` (negative counts from the last)."""
    layers = model.config.decoder_layers
    if not -layers <= layer < layers:
        raise ValueError(
            f"alignment layer {layer} does not exist: the decoder has {layers} layer(s) "
            f"(use 0..{layers - 1}, or -1 for the last)"
        )


def _output_line(result: dict | None, generate_kwargs: dict) -> str:
    """The output line of one sentence: its translation (empty for an empty sentence), and its alignment if asked."""
    text = result["translation_text"] if result is not None else ""
    if not generate_kwargs.get("return_alignments"):
        return text
    pairs = result["alignment"] if result is not None else []
    return text + " ||| " + " ".join(f"{i}-{j}" for i, j in pairs)


def _positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m vanilla_transformer.translate",
        description="Translate sentences with a saved encoder-decoder model.",
    )
    parser.add_argument("sentences", nargs="*", help="sentences to translate (default: --file or stdin)")
    parser.add_argument("--model", required=True, help="model folder or Hub id (model + tokenizer)")
    parser.add_argument("--file", help="read sentences from this file, one per line")
    parser.add_argument("--output", help="write translations to this file instead of stdout")
    parser.add_argument("--batch-size", type=_positive_int, default=32, help="sentences per batch (default: 32)")
    saved = "default: the model's generation config"
    parser.add_argument("--num-beams", type=_positive_int, help=f"beam size, 1 = greedy ({saved})")
    parser.add_argument("--length-penalty", type=float, help=f"> 1 favours longer translations ({saved})")
    parser.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        help=f"longest translation in tokens ({saved}; min(256, max_position_embeddings) if it sets no length)",
    )
    parser.add_argument(
        "--truncate",
        action="store_true",
        help="cut sentences longer than the model accepts, with a warning naming each line "
        "(default: refuse them with an error)",
    )
    parser.add_argument(
        "--alignments",
        action="store_true",
        help="append ' ||| ' and the word alignment from cross-attention, Pharaoh 'i-j' pairs: output token j "
        "attends most to source token i (tokens without the special ones, from 0)",
    )
    parser.add_argument(
        "--alignment-layer", type=int, help="decoder layer of --alignments, head average (default: -1, the last)"
    )
    parser.add_argument("--device", default="cpu", help='e.g. "cpu", "cuda", "cuda:1"')
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="convert the model for inference: bf16, fp16 (GPU) or int8 (CPU) (default: as saved)",
    )
    parser.add_argument(
        "--backend",
        choices=("transformers", "ctranslate2"),
        default="transformers",
        help="ctranslate2: translate with CTranslate2, from an export or a saved model exported into a cache",
    )
    args = parser.parse_args(argv)
    if args.backend == "ctranslate2" and args.alignments:
        parser.error("--alignments needs the transformers backend")
    if args.alignment_layer is not None and not args.alignments:
        parser.error("--alignment-layer needs --alignments")
    if args.sentences and args.file:
        parser.error("give sentences as arguments or --file, not both")

    try:
        pipe = load(args.model, device=args.device, precision=args.precision, backend=args.backend)
    except (ImportError, FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    positions = getattr(pipe.model.config, "max_position_embeddings", None)
    if args.max_new_tokens is not None and isinstance(positions, int) and args.max_new_tokens > positions:
        parser.error(f"--max-new-tokens {args.max_new_tokens} is more than the model's {positions} positions")
    if args.alignments:
        try:
            _check_alignment_layer(pipe.model, -1 if args.alignment_layer is None else args.alignment_layer)
        except ValueError as error:
            parser.error(f"--alignment-layer: {error}")
    total = None
    if args.sentences:
        sentences: Iterable[str] = args.sentences
    elif args.file:
        sentences = read_lines(args.file)  # one sentence per "\n"-ended line, as the training data
        total = len(sentences)
    else:
        sentences = sys.stdin
        if sys.stdin.isatty():
            args.batch_size = 1  # typed interactively: answer each line as it comes
    options = dict(
        batch_size=args.batch_size,
        num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        max_new_tokens=args.max_new_tokens,
        progress=args.file is not None,
        total=total,
        truncate=args.truncate,
        alignments=args.alignments,
        alignment_layer=-1 if args.alignment_layer is None else args.alignment_layer,
    )
    out = None
    try:
        translations = translate(pipe, sentences, **options)  # refuses over-long arguments or file lines here
        out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
        for translation in translations:
            print(translation, file=out, flush=out is sys.stdout)
    except SourceTooLongError as error:
        parser.exit(2, f"{parser.prog}: error: {error.describe('--truncate')}\n")
    finally:
        if out is not None and out is not sys.stdout:
            out.close()


if __name__ == "__main__":
    main()
