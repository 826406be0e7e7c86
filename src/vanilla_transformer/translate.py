"""Translate from the command line with a saved model (ours, or any seq2seq model with a tokenizer).

    python -m vanilla_transformer.translate --model PATH "first sentence" "second sentence"
    python -m vanilla_transformer.translate --model PATH --file input.txt --output output.txt
    echo "a sentence" | python -m vanilla_transformer.translate --model PATH --num-beams 4

Sentences come from the arguments, else from `--file` (one per line, with a progress bar), else from standard
input (one per line; line by line when typed at a terminal). They are translated in batches with
`VanillaTranslationPipeline` (beam search, length penalty and maximum length as options), and the translations
are printed one per line, in input order; an empty input line gives an empty output line.
"""

import argparse
import sys
from collections.abc import Iterable, Iterator

from tqdm.auto import tqdm
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, PreTrainedModel

from .data import read_lines
from .pipeline_vanilla_transformer import VanillaTranslationPipeline


def load(model_path: str, device: str = "cpu") -> VanillaTranslationPipeline:
    """Load model + tokenizer from a folder or Hub id into a translation pipeline (in eval mode)."""

    model = AutoModelForSeq2SeqLM.from_pretrained(model_path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return VanillaTranslationPipeline(model=model.eval(), tokenizer=tokenizer, device=device)


def _default_max_new_tokens(model: PreTrainedModel) -> int:
    """256, or fewer when the model's positional table is shorter."""
    return min(256, getattr(model.config, "max_position_embeddings", 256))


def translate(
    pipe: VanillaTranslationPipeline,
    sentences: Iterable[str],
    batch_size: int = 32,
    num_beams: int = 4,
    length_penalty: float = 1.0,
    max_new_tokens: int | None = None,
    progress: bool = False,
    total: int | None = None,
) -> Iterator[str]:
    """Translate `sentences` in batches of `batch_size`, yielding one translation per sentence in order.

    Args:
        pipe: the pipeline from `load` (or built from any seq2seq model and tokenizer).
        sentences: source sentences; empty or blank ones translate to "" without running the model.
        batch_size: sentences per `generate()` call (padded to the longest in the batch).
        num_beams: beam size (1 = greedy).
        length_penalty: beam-score exponent on the length (>1 favours longer outputs).
        max_new_tokens: longest translation in tokens; default min(256, `max_position_embeddings`).
        progress: show a tqdm progress bar (on stderr).
        total: number of sentences, for the progress bar.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    if num_beams < 1:
        raise ValueError(f"`num_beams` must be >= 1, got {num_beams}.")
    if max_new_tokens is None:
        max_new_tokens = _default_max_new_tokens(pipe.model)
    if max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be >= 1, got {max_new_tokens}.")
    generate_kwargs = {"num_beams": num_beams, "length_penalty": length_penalty, "max_new_tokens": max_new_tokens}
    bar = tqdm(total=total, unit="sent", disable=not progress, file=sys.stderr)
    batch: list[str] = []

    def flush() -> list[str]:
        texts = [text for text in batch if text.strip()]
        results = iter(pipe(texts, batch_size=batch_size, **generate_kwargs) if texts else [])
        out = [next(results)["translation_text"] if text.strip() else "" for text in batch]
        bar.update(len(batch))
        batch.clear()
        return out

    for sentence in sentences:
        batch.append(sentence.rstrip("\r\n"))
        if len(batch) == batch_size:
            yield from flush()
    if batch:
        yield from flush()
    bar.close()


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
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-beams", type=int, default=4, help="beam size (1 = greedy)")
    parser.add_argument("--length-penalty", type=float, default=1.0)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: min(256, model positions)")
    parser.add_argument("--device", default="cpu", help='e.g. "cpu", "cuda", "cuda:1"')
    args = parser.parse_args(argv)
    if args.sentences and args.file:
        parser.error("give sentences as arguments or --file, not both")

    pipe = load(args.model, device=args.device)
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
    )
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for translation in translate(pipe, sentences, **options):
            print(translation, file=out, flush=out is sys.stdout)
    finally:
        if out is not sys.stdout:
            out.close()


if __name__ == "__main__":
    main()
