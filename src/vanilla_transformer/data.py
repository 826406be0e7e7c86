"""Parallel data for `train.py`: loading and checking files, the offline quick-start task, token-budget batches.

Not shipped to the Hub. Every loader returns a `datasets.Dataset` with two string columns, `source` and
`target`, or raises an error naming the file (and line) that is wrong, before any training starts.

Supported inputs (`data:` section of the YAML config):
- a Hub dataset by name (`dataset: wmt/wmt14`, `dataset_config: de-en`) whose rows hold a `translation` dict
  keyed by language (as in the `wmt`/`opus` datasets) or one column per language;
- local files per split (`train_file`, `validation_file`, `test_file`):
  JSON lines (`*.jsonl`/`*.json`, each line `{"translation": {"de": ..., "en": ...}}` or `{"de": ..., "en": ...}`),
  TSV (`*.tsv`, a header line naming the columns, e.g. `de<TAB>en`), or parallel plain text given as a prefix
  (`data/train` reads `data/train.de` and `data/train.en`, aligned line by line);
- `quickstart: {...}`: numbers written out in words, German -> English, generated with `num2words`.

Empty lines: a pair whose source or target is empty (after stripping whitespace) is an error naming the file and
line (`empty_lines: error`, the default), or is dropped with a count in the log (`empty_lines: skip`).
"""

import json
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import datasets

logger = logging.getLogger(__name__)

EMPTY_LINE_POLICIES = ("error", "skip")
SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """Raised for missing, unreadable or malformed data, naming the file and the problem."""


# ---------------------------------------------------------------------------------------------------------
# Local files
# ---------------------------------------------------------------------------------------------------------
def read_lines(path: str) -> list[str]:
    """Read a UTF-8 text file into lines without their line endings, with a clear error when it can't be read.

    Lines end at "\n" (or "\r\n") only: `str.splitlines` would also split at characters that occur inside real
    sentences (U+2028, U+0085, form feeds, ...) and shift every later pair of a parallel corpus by one.
    """
    if not os.path.exists(path):
        raise DataError(f"Data file not found: {path}")
    if not os.path.isfile(path):
        raise DataError(f"Data path is not a file: {path}")
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except PermissionError as error:
        raise DataError(f"Data file is not readable (permission denied): {path}") from error
    except UnicodeDecodeError as error:
        raise DataError(f"Data file is not valid UTF-8: {path} ({error.reason} at byte {error.start})") from error
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start an empty one
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _pair_from_row(row: object, source_lang: str, target_lang: str, where: str) -> tuple[object, object]:
    """Pick (source, target) out of a `{"translation": {lang: text}}` or `{lang: text}` row."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object per line, got {type(row).__name__}.")
    pair = row["translation"] if isinstance(row.get("translation"), dict) else row
    # A Hub split stores a translation dict as a struct of every key of the split: a key a row lacks reads as None.
    missing = [lang for lang in (source_lang, target_lang) if pair.get(lang) is None]
    if missing:
        found = sorted(key for key, value in pair.items() if value is not None)
        raise DataError(
            f"{where}: missing language key(s) {missing}; found keys {found}. Set `data.source_lang` / "
            "`data.target_lang` to keys present in the data."
        )
    return pair[source_lang], pair[target_lang]


def read_jsonl(path: str, source_lang: str, target_lang: str) -> list[tuple[object, object, str]]:
    """Read JSON lines into (source, target, location) triples."""
    pairs = []
    for number, line in enumerate(read_lines(path), start=1):
        where = f"{path}:{number}"
        if not line.strip():
            pairs.append(("", "", where))  # judged by the empty-lines policy
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: invalid JSON ({error.msg}).") from error
        source, target = _pair_from_row(row, source_lang, target_lang, where)
        pairs.append((source, target, where))
    return pairs


def read_tsv(path: str, source_lang: str, target_lang: str) -> list[tuple[object, object, str]]:
    """Read a TSV file whose first line names the columns into (source, target, location) triples."""
    lines = read_lines(path)
    if not lines:
        raise DataError(f"Data file is empty: {path}")
    header = lines[0].split("\t")
    missing = [lang for lang in (source_lang, target_lang) if lang not in header]
    if missing:
        raise DataError(
            f"{path}: the header line {header} has no column(s) {missing}. A TSV file starts with a header naming "
            "its columns, e.g. 'de<TAB>en'."
        )
    src_col, tgt_col = header.index(source_lang), header.index(target_lang)
    pairs = []
    for number, line in enumerate(lines[1:], start=2):  # fields are split at tabs, quotes and \r are text
        where, fields = f"{path}:{number}", line.split("\t")
        if len(fields) != len(header):
            if not "".join(fields).strip():
                pairs.append(("", "", where))
                continue
            raise DataError(f"{where}: {len(fields)} tab-separated fields, but the header has {len(header)}.")
        pairs.append((fields[src_col], fields[tgt_col], where))
    return pairs


def read_parallel_text(prefix: str, source_lang: str, target_lang: str) -> list[tuple[object, object, str]]:
    """Read `prefix.source_lang` and `prefix.target_lang`, aligned by line, into (source, target, location)."""
    src_path, tgt_path = f"{prefix}.{source_lang}", f"{prefix}.{target_lang}"
    sources, targets = read_lines(src_path), read_lines(tgt_path)
    if len(sources) != len(targets):
        raise DataError(
            f"Parallel files have different line counts: {src_path} has {len(sources)} lines, {tgt_path} has "
            f"{len(targets)}. Line i of one must be the translation of line i of the other."
        )
    return [
        (s, t, f"{src_path}/{tgt_path}:{i}") for i, (s, t) in enumerate(zip(sources, targets, strict=True), start=1)
    ]


def detect_format(path: str, source_lang: str, target_lang: str) -> str:
    """'jsonl', 'tsv' or 'text' (a prefix of parallel files), from the path; raise if nothing is there."""
    lower = path.lower()
    if lower.endswith((".jsonl", ".json")):
        return "jsonl"
    if lower.endswith(".tsv"):
        return "tsv"
    if os.path.exists(f"{path}.{source_lang}") or os.path.exists(f"{path}.{target_lang}"):
        return "text"
    if os.path.isfile(path):
        raise DataError(
            f"Can't tell the format of {path}: name JSON lines files *.jsonl, TSV files *.tsv, or give the prefix "
            f"of parallel text files (PREFIX.{source_lang} and PREFIX.{target_lang})."
        )
    raise DataError(f"Data file not found: {path} (nor parallel files {path}.{source_lang} / {path}.{target_lang}).")


def pairs_to_dataset(pairs: Sequence[tuple[object, object, str]], name: str, empty_lines: str) -> datasets.Dataset:
    """Check (source, target, location) triples and build a Dataset with `source` and `target` columns.

    Args:
        pairs: the examples with where each came from (for error messages).
        name: what the examples are (a path or "train split of wmt14"), for error messages.
        empty_lines: "error" (an empty side is an error) or "skip" (drop such pairs).
    """
    if empty_lines not in EMPTY_LINE_POLICIES:
        raise DataError(f"`data.empty_lines` must be one of {EMPTY_LINE_POLICIES}, got {empty_lines!r}.")
    sources, targets, skipped = [], [], 0
    for source, target, where in pairs:
        for side, text in (("source", source), ("target", target)):
            if not isinstance(text, str):
                raise DataError(f"{where}: the {side} is a {type(text).__name__}, not a string.")
        if not source.strip() or not target.strip():
            if empty_lines == "skip":
                skipped += 1
                continue
            side = "source" if not source.strip() else "target"
            raise DataError(
                f"{where}: empty {side} sentence. Remove it, or set `data.empty_lines: skip` to drop such pairs."
            )
        sources.append(source.strip())
        targets.append(target.strip())
    if skipped:
        logger.warning("%s: skipped %d pair(s) with an empty side (data.empty_lines=skip).", name, skipped)
    if not sources:
        raise DataError(f"{name} has no examples.")
    return datasets.Dataset.from_dict({"source": sources, "target": targets})


def load_local_split(path: str, source_lang: str, target_lang: str, empty_lines: str) -> datasets.Dataset:
    """Load one split from a local JSON lines, TSV or parallel plain-text source."""
    readers = {"jsonl": read_jsonl, "tsv": read_tsv, "text": read_parallel_text}
    fmt = detect_format(path, source_lang, target_lang)
    return pairs_to_dataset(readers[fmt](path, source_lang, target_lang), path, empty_lines)


def hub_split_to_dataset(
    split: datasets.Dataset, name: str, source_lang: str, target_lang: str, empty_lines: str
) -> datasets.Dataset:
    """Convert a Hub split with a `translation` column (wmt/opus style) or per-language columns."""
    columns = split.column_names
    if "translation" in columns:
        rows = split["translation"]
        pairs = [
            _pair_from_row(row, source_lang, target_lang, f"{name} row {i}") + (f"{name} row {i}",)
            for i, row in enumerate(rows)
        ]
    elif source_lang in columns and target_lang in columns:
        pairs = [
            (s, t, f"{name} row {i}")
            for i, (s, t) in enumerate(zip(split[source_lang], split[target_lang], strict=True))
        ]
    else:
        raise DataError(
            f"{name}: no `translation` column and no columns {source_lang!r}/{target_lang!r}; columns are {columns}."
        )
    return pairs_to_dataset(pairs, name, empty_lines)


# ---------------------------------------------------------------------------------------------------------
# The offline quick-start task: numbers written out in German -> the same number written out in English
# ---------------------------------------------------------------------------------------------------------
def is_round(number: int) -> bool:
    """Whether `number` has one significant digit: 0-9, 10, 20, ..., 100, 200, ..., 5000, 20000, ..."""
    return len(str(number).rstrip("0")) <= 1


def number_words_splits(
    max_number: int,
    train_size: int,
    validation_size: int,
    test_size: int,
    seed: int,
    cover_below: int = 0,
    repeat_small: int = 1,
) -> dict[str, datasets.Dataset]:
    """Numbers 0..max_number written out with `num2words`, German source, English target.

    With `cover_below` (a power of ten, e.g. 1000), the training split holds every number below it and every
    round number up to `max_number` (one significant digit: 7, 40, 300, 5000, 20000, ...), and the numbers below
    `cover_below / 10` and the round numbers `repeat_small` times each: the short numbers a user tries first are
    few among random draws and must not be left to chance. The rest of the training split, and all validation and
    test numbers, are distinct numbers of at least as many digits as `cover_below` that are not round, each draw
    picking a number of digits uniformly, then a number with that many digits. Validation and test numbers never
    occur in training (nor in each other), so the model must compose "vierhundertdreiundzwanzigtausend..." rather
    than recall it. Without `cover_below` (0) every number of every length is drawn that way, each once.

    Args:
        max_number: largest number drawn.
        train_size, validation_size, test_size: examples per split (the numbers of the splits are disjoint).
        seed: seed of the draw.
        cover_below: every number below it is a training example (0: none); a power of ten.
        repeat_small: copies in training of each number below `cover_below / 10` and each round number.

    Raises:
        DataError: the sizes don't fit (`train_size` smaller than the covered numbers, more distinct numbers
            asked for than there are).
    """
    from num2words import num2words

    if cover_below and (cover_below < 10 or str(cover_below).rstrip("0") != "1" or cover_below > max_number):
        raise DataError(
            f"`data.quickstart.cover_below` must be a power of ten from 10 to max_number, got {cover_below}."
        )
    if repeat_small < 1:
        raise DataError(f"`data.quickstart.repeat_small` must be at least 1, got {repeat_small}.")
    covered: list[int] = []
    if cover_below:
        for number in [*range(cover_below), *(n for n in _round_numbers(max_number) if n >= cover_below)]:
            covered += [number] * (repeat_small if number < cover_below // 10 or is_round(number) else 1)
    if len(covered) > train_size:
        raise DataError(
            f"`data.quickstart.train_size` ({train_size}) is smaller than the {len(covered)} training examples that "
            f"cover the numbers below {cover_below} and the round numbers; raise it or lower `cover_below`."
        )
    lowest_width = len(str(cover_below)) if cover_below else 1
    digits = len(str(max_number))
    rounds_drawable = sum(1 for n in _round_numbers(max_number) if n >= cover_below) if cover_below else 0
    drawn_size = train_size - len(covered) + validation_size + test_size
    available = max_number + 1 - cover_below - rounds_drawable
    if drawn_size > available:
        raise DataError(
            f"quickstart asks for {drawn_size} distinct numbers to draw but there are only {available} (from "
            f"{cover_below} to max_number {max_number}{', not round' if cover_below else ''})."
        )
    rng = random.Random(seed)
    drawn: list[int] = []
    seen: set[int] = set()
    while len(drawn) < drawn_size:
        width = rng.randint(lowest_width, digits)
        number = rng.randint(0 if width == 1 else 10 ** (width - 1), min(10**width - 1, max_number))
        if number not in seen and not (cover_below and is_round(number)):
            seen.add(number)
            drawn.append(number)
    rng.shuffle(drawn)  # without cover_below the short numbers, exhausted early, spread over all splits
    numbers = {
        "validation": drawn[:validation_size],
        "test": drawn[validation_size : validation_size + test_size],
        "train": drawn[validation_size + test_size :] + covered,
    }
    rng.shuffle(numbers["train"])
    return {
        split: datasets.Dataset.from_dict(
            {"source": [num2words(n, lang="de") for n in chosen], "target": [num2words(n, lang="en") for n in chosen]}
        )
        for split, chosen in ((s, numbers[s]) for s in SPLITS)
        if chosen
    }


def _round_numbers(max_number: int) -> list[int]:
    """Every number up to `max_number` with one significant digit, in increasing order."""
    return [
        d * 10**k for k in range(len(str(max_number))) for d in range(1 if k else 0, 10) if d * 10**k <= max_number
    ]


# ---------------------------------------------------------------------------------------------------------
# Batching by tokens (Section 5.1: "Sentence pairs were batched together by approximate sequence length. Each
# training batch contained a set of sentence pairs containing approximately 25000 source tokens and 25000
# target tokens.")
# ---------------------------------------------------------------------------------------------------------
@dataclass
class TokenBudgetBatchSampler:
    """Batches of similar-length examples whose padded size stays within a token budget.

    Examples are sorted by (source length, target length) and packed greedily, so that for every batch
    `len(batch) * max(source lengths) <= max_tokens` and `len(batch) * max(target lengths) <= max_tokens` (the
    padded tensors never exceed the budget). The batches are fixed; their order is shuffled every epoch from
    `seed + epoch`, so a resumed run sees the same order. The number of batches is made a multiple of
    `multiple_of` = processes x gradient-accumulation steps (by splitting the largest batches), so that
    `accelerate` deals every batch to exactly one process and every optimizer step gets full batches: every
    example is seen once per epoch, and 1 process accumulating N batches sees the same batches per step as N
    processes.

    Args:
        source_lengths, target_lengths: tokens per example, source side and target side.
        max_tokens: budget of padded tokens per batch, per side.
        multiple_of: processes x gradient-accumulation steps; the number of batches is a multiple of it.
        seed: seed of the per-epoch shuffle.
        shuffle: shuffle the batch order (training) or keep it (evaluation).
    """

    source_lengths: Sequence[int]
    target_lengths: Sequence[int]
    max_tokens: int
    multiple_of: int = 1
    seed: int = 0
    shuffle: bool = True

    def __post_init__(self) -> None:
        if len(self.source_lengths) != len(self.target_lengths):
            raise ValueError("source_lengths and target_lengths must have the same length.")
        longest = max(max(self.source_lengths, default=0), max(self.target_lengths, default=0))
        if longest > self.max_tokens:
            raise ValueError(
                f"`max_tokens` ({self.max_tokens}) is smaller than the longest example ({longest} tokens); raise "
                "it or lower `data.max_source_length` / `data.max_target_length`."
            )
        if len(self.source_lengths) < self.multiple_of:
            raise ValueError(f"{len(self.source_lengths)} examples can't fill {self.multiple_of} batches per step.")
        self.epoch = 0
        self.batches = self._pack()

    def _pack(self) -> list[list[int]]:
        order = sorted(range(len(self.source_lengths)), key=lambda i: (self.source_lengths[i], self.target_lengths[i]))
        batches: list[list[int]] = []
        batch: list[int] = []
        src_max = tgt_max = 0
        for index in order:
            new_src = max(src_max, self.source_lengths[index])
            new_tgt = max(tgt_max, self.target_lengths[index])
            if batch and (len(batch) + 1) * max(new_src, new_tgt) > self.max_tokens:
                batches.append(batch)
                batch, new_src, new_tgt = [], self.source_lengths[index], self.target_lengths[index]
            batch.append(index)
            src_max, tgt_max = new_src, new_tgt
        batches.append(batch)
        while len(batches) % self.multiple_of:  # split the largest batch until every step gets full batches
            largest = max(range(len(batches)), key=lambda b: len(batches[b]))
            if len(batches[largest]) < 2:
                raise ValueError(
                    f"`max_tokens` ({self.max_tokens}) leaves one example per batch; {len(batches)} batches can't be "
                    f"dealt evenly into groups of {self.multiple_of}. Raise `max_tokens`."
                )
            half = len(batches[largest]) // 2
            batches[largest : largest + 1] = [batches[largest][:half], batches[largest][half:]]
        return batches

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle of this epoch (called by Trainer / accelerate and by `EpochCallback`)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        order = list(range(len(self.batches)))
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(order)
        for b in order:
            yield list(self.batches[b])

    def __len__(self) -> int:
        return len(self.batches)
