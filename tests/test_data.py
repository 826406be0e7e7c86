"""Data loading, checking and token-budget batching (vanilla_transformer.data)."""

import json
import random

import datasets
import pytest
from accelerate.data_loader import BatchSamplerShard

from vanilla_transformer.data import (
    DataError,
    TokenBudgetBatchSampler,
    hub_split_to_dataset,
    load_local_split,
    number_words_splits,
)

PAIRS = [("ein Hund", "a dog"), ("zwei Katzen", "two cats"), ("drei Vögel", "three birds")]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------------------------------
def test_jsonl_translation_rows_and_flat_rows(tmp_path):
    nested = write(
        tmp_path / "a.jsonl", "".join(json.dumps({"translation": {"de": s, "en": t}}) + "\n" for s, t in PAIRS)
    )
    flat = write(
        tmp_path / "b.jsonl", "".join(json.dumps({"de": s, "en": t, "id": i}) + "\n" for i, (s, t) in enumerate(PAIRS))
    )
    for path in (nested, flat):
        data = load_local_split(path, "de", "en", "error")
        assert list(zip(data["source"], data["target"], strict=True)) == PAIRS


def test_reverse_direction_swaps_columns(tmp_path):
    path = write(tmp_path / "a.jsonl", "".join(json.dumps({"de": s, "en": t}) + "\n" for s, t in PAIRS))
    data = load_local_split(path, "en", "de", "error")
    assert list(data["source"]) == [t for _, t in PAIRS] and list(data["target"]) == [s for s, _ in PAIRS]


def test_tsv_with_header(tmp_path):
    path = write(tmp_path / "a.tsv", "en\tde\n" + "".join(f"{t}\t{s}\n" for s, t in PAIRS))
    data = load_local_split(path, "de", "en", "error")
    assert list(zip(data["source"], data["target"], strict=True)) == PAIRS


def test_parallel_plain_text_by_prefix(tmp_path):
    write(tmp_path / "train.de", "\n".join(s for s, _ in PAIRS) + "\n")
    write(tmp_path / "train.en", "\n".join(t for _, t in PAIRS) + "\n")
    data = load_local_split(str(tmp_path / "train"), "de", "en", "error")
    assert list(zip(data["source"], data["target"], strict=True)) == PAIRS


def test_only_newlines_end_lines(tmp_path):
    """Characters that str.splitlines treats as line breaks (U+2028, NEL, form feed) occur inside real sentences;
    splitting at them would shift every later pair of a parallel corpus by one without any error."""
    write(tmp_path / "train.de", "eins\nzwei\u2028zwo\r\ndrei\nvier\n")
    write(tmp_path / "train.en", "one\ntwo\nthree\x0cTHREE\nfour\x85FOUR\n")
    data = load_local_split(str(tmp_path / "train"), "de", "en", "error")
    assert list(zip(data["source"], data["target"], strict=True)) == [
        ("eins", "one"),
        ("zwei\u2028zwo", "two"),
        ("drei", "three\x0cTHREE"),
        ("vier", "four\x85FOUR"),
    ]


def test_hub_style_split_with_translation_column():
    split = datasets.Dataset.from_dict({"translation": [{"de": s, "en": t} for s, t in PAIRS]})
    data = hub_split_to_dataset(split, "train split of x", "de", "en", "error")
    assert list(zip(data["source"], data["target"], strict=True)) == PAIRS


# ---------------------------------------------------------------------------------------------------------
# Bad files: each error names the file and the problem
# ---------------------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"not found: .*nope\.jsonl"):
        load_local_split(str(tmp_path / "nope.jsonl"), "de", "en", "error")
    with pytest.raises(DataError, match=r"not found.*train\.de"):
        load_local_split(str(tmp_path / "train"), "de", "en", "error")


def test_unreadable_files(tmp_path):
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(DataError, match="not a file"):
        load_local_split(str(tmp_path / "dir.jsonl"), "de", "en", "error")
    (tmp_path / "bad.tsv").write_bytes(b"de\ten\n\xff\xfe\tx\n")
    with pytest.raises(DataError, match=r"bad\.tsv is not valid UTF-8|not valid UTF-8: .*bad\.tsv"):
        load_local_split(str(tmp_path / "bad.tsv"), "de", "en", "error")
    write(tmp_path / "bad.jsonl", '{"de": "a", "en": "b"}\n{"de": "a", \n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid JSON"):
        load_local_split(str(tmp_path / "bad.jsonl"), "de", "en", "error")


def test_unequal_line_counts(tmp_path):
    write(tmp_path / "t.de", "a\nb\nc\n")
    write(tmp_path / "t.en", "a\nb\n")
    with pytest.raises(DataError, match=r"different line counts: .*t\.de has 3 lines, .*t\.en has 2"):
        load_local_split(str(tmp_path / "t"), "de", "en", "error")


def test_empty_lines_policy(tmp_path):
    write(tmp_path / "t.de", "a\n\nc\n")
    write(tmp_path / "t.en", "x\ny\nz\n")
    with pytest.raises(DataError, match=r"t\.en:2: empty source sentence.*empty_lines: skip"):
        load_local_split(str(tmp_path / "t"), "de", "en", "error")
    data = load_local_split(str(tmp_path / "t"), "de", "en", "skip")
    assert list(zip(data["source"], data["target"], strict=True)) == [("a", "x"), ("c", "z")]
    with pytest.raises(DataError, match="must be one of"):
        load_local_split(str(tmp_path / "t"), "de", "en", "drop")


def test_empty_files(tmp_path):
    write(tmp_path / "e.de", "")
    write(tmp_path / "e.en", "")
    with pytest.raises(DataError, match="has no examples"):
        load_local_split(str(tmp_path / "e"), "de", "en", "error")
    write(tmp_path / "e.tsv", "")
    with pytest.raises(DataError, match=r"empty: .*e\.tsv"):
        load_local_split(str(tmp_path / "e.tsv"), "de", "en", "error")


def test_missing_language_keys_and_columns(tmp_path):
    path = write(tmp_path / "a.jsonl", json.dumps({"translation": {"de": "a", "fr": "b"}}) + "\n")
    with pytest.raises(DataError, match=r"a\.jsonl:1: missing language key\(s\) \['en'\]"):
        load_local_split(path, "de", "en", "error")
    path = write(tmp_path / "a.tsv", "de\tfr\na\tb\n")
    with pytest.raises(DataError, match=r"no column\(s\) \['en'\]"):
        load_local_split(path, "de", "en", "error")
    split = datasets.Dataset.from_dict({"text": ["a"], "label": [1]})
    with pytest.raises(DataError, match=r"no `translation` column and no columns 'de'/'en'; columns are"):
        hub_split_to_dataset(split, "train split of x", "de", "en", "error")
    path = write(tmp_path / "n.jsonl", json.dumps({"de": "a", "en": 3}) + "\n")
    with pytest.raises(DataError, match="target is a int, not a string"):
        load_local_split(path, "de", "en", "error")
    path = write(tmp_path / "m.jsonl", json.dumps({"de": ["a"], "en": "b"}) + "\n")
    with pytest.raises(DataError, match=r"m\.jsonl:1: the source is a list, not a string\.$"):
        load_local_split(path, "de", "en", "error")


# ---------------------------------------------------------------------------------------------------------
# The quick-start task
# ---------------------------------------------------------------------------------------------------------
def test_quickstart_splits_hold_out_numbers():
    splits = number_words_splits(max_number=999, train_size=300, validation_size=50, test_size=50, seed=3)
    assert {k: len(v) for k, v in splits.items()} == {"train": 300, "validation": 50, "test": 50}
    sources = {k: set(v["source"]) for k, v in splits.items()}
    assert not sources["train"] & sources["test"] and not sources["train"] & sources["validation"]
    row = dict(zip(splits["train"]["source"], splits["train"]["target"], strict=True))
    from num2words import num2words

    expected = {num2words(n, lang="de"): num2words(n, lang="en") for n in range(1000)}
    assert all(expected[source] == target for source, target in row.items())
    assert expected["dreihundertvierundzwanzig"] == "three hundred and twenty-four"


def test_quickstart_covers_small_and_round_numbers_and_tests_unseen_larger_ones():
    """Every number below 1000 and every round number is trained on (the small and round ones 5 times); validation
    and test numbers have 4 to 6 digits, are not round and never occur in training."""
    from collections import Counter

    from num2words import num2words

    splits = number_words_splits(
        max_number=999999, train_size=3000, validation_size=50, test_size=60, seed=0, cover_below=1000, repeat_small=5
    )
    assert {k: len(v) for k, v in splits.items()} == {"train": 3000, "validation": 50, "test": 60}
    german = {num2words(n, lang="de"): n for n in range(1000)}
    german.update({num2words(d * 10**k, lang="de"): d * 10**k for k in range(3, 6) for d in range(1, 10)})
    counts = Counter(splits["train"]["source"])
    for words, number in german.items():
        small_or_round = number < 100 or len(str(number).rstrip("0")) == 1
        assert counts[words] == (5 if small_or_round else 1), (number, counts[words])
    assert counts["eins"] == counts["zwanzig"] == counts["dreihunderttausend"] == 5
    held_out = list(splits["validation"]["source"]) + list(splits["test"]["source"])
    assert len(set(held_out)) == 110 and not set(held_out) & set(counts) and not set(held_out) & set(german)
    assert all(len(words) > 12 for words in held_out)  # at least four digits: "eintausendeins" and longer
    assert dict(zip(splits["train"]["source"], splits["train"]["target"], strict=True))["zwei"] == "two"


def test_quickstart_sizes_that_cannot_work_are_refused():
    with pytest.raises(DataError, match=r"`data\.quickstart\.train_size` \(500\) is smaller than the 1009 training"):
        number_words_splits(max_number=9999, train_size=500, validation_size=5, test_size=5, seed=0, cover_below=1000)
    with pytest.raises(DataError, match=r"`data\.quickstart\.cover_below` must be a power of ten"):
        number_words_splits(max_number=9999, train_size=2000, validation_size=5, test_size=5, seed=0, cover_below=500)
    with pytest.raises(DataError, match=r"asks for 9191 distinct numbers to draw but there are only 8991"):
        number_words_splits(max_number=9999, train_size=10000, validation_size=100, test_size=100, seed=0,
                            cover_below=1000)  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Token-budget batching
# ---------------------------------------------------------------------------------------------------------
def random_lengths(n, seed):
    rng = random.Random(seed)
    return [rng.randint(1, 40) for _ in range(n)], [rng.randint(1, 50) for _ in range(n)]


@pytest.mark.parametrize("max_tokens", [50, 200, 1000])
def test_token_budget_respected_and_every_example_once_per_epoch(max_tokens):
    src, tgt = random_lengths(500, seed=max_tokens)
    sampler = TokenBudgetBatchSampler(src, tgt, max_tokens=max_tokens, seed=0)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            assert batch and len(batch) * max(src[i] for i in batch) <= max_tokens
            assert len(batch) * max(tgt[i] for i in batch) <= max_tokens
        assert sorted(i for b in batches for i in b) == list(range(500))
    # sorting by length keeps padding low: most batches are well filled
    fill = [len(b) * max(max(src[i], tgt[i]) for i in b) / max_tokens for b in batches]
    assert sum(fill) / len(fill) > 0.7


def test_token_budget_order_shuffled_per_epoch_and_reproducible():
    src, tgt = random_lengths(300, seed=1)
    a = TokenBudgetBatchSampler(src, tgt, max_tokens=200, seed=5)
    b = TokenBudgetBatchSampler(src, tgt, max_tokens=200, seed=5)
    a.set_epoch(0)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first  # a new order each epoch ...
    b.set_epoch(0)
    assert list(b) == first  # ... the same order for the same seed and epoch (resume)


@pytest.mark.parametrize("processes", [2, 3])
def test_token_budget_under_several_processes(processes):
    """accelerate deals whole batches round-robin: each process gets as many, each example appears once."""
    src, tgt = random_lengths(301, seed=processes)
    sampler = TokenBudgetBatchSampler(src, tgt, max_tokens=150, multiple_of=processes, seed=0)
    assert len(sampler) % processes == 0
    shards = [list(BatchSamplerShard(sampler, processes, rank, even_batches=True)) for rank in range(processes)]
    assert len({len(s) for s in shards}) == 1
    seen = [i for shard in shards for batch in shard for i in batch]
    assert sorted(seen) == list(range(301))
    for shard in shards:
        for batch in shard:
            assert len(batch) * max(max(src[i], tgt[i]) for i in batch) <= 150


@pytest.mark.parametrize(("multiple_of", "splits"), [(2, 1), (3, 2), (4, 3), (8, 3)])
def test_token_budget_splits_the_largest_batches_until_every_step_is_full(multiple_of, splits):
    """These lengths pack into 85 batches, a multiple of none of 2, 3, 4, 8: the largest batches are halved until
    the count is one (86, 87, 88, 88), and the processes then each get as many batches, every example once."""
    src, tgt = random_lengths(301, seed=1)
    packed = TokenBudgetBatchSampler(src, tgt, max_tokens=150, seed=0).batches
    assert len(packed) == 85
    sampler = TokenBudgetBatchSampler(src, tgt, max_tokens=150, multiple_of=multiple_of, seed=0)
    assert len(sampler) == 85 + splits and len(sampler) % multiple_of == 0
    kept = [batch for batch in packed if batch in sampler.batches]
    halved = [batch for batch in packed if batch not in sampler.batches]
    assert len(halved) == splits and len(kept) == 85 - splits
    for batch in halved:  # split in two halves, and only batches at least as large as every kept one
        half = len(batch) // 2
        assert batch[:half] in sampler.batches and batch[half:] in sampler.batches
        assert len(batch) >= max(len(b) for b in kept)
    processes = multiple_of if multiple_of < 4 else 2  # e.g. 4 = 2 processes x 2 accumulation steps
    shards = [list(BatchSamplerShard(sampler, processes, rank, even_batches=True)) for rank in range(processes)]
    assert {len(shard) for shard in shards} == {len(sampler) // processes}
    assert sorted(i for shard in shards for batch in shard for i in batch) == list(range(301))


def test_token_budget_rejects_examples_longer_than_budget():
    with pytest.raises(ValueError, match=r"`max_tokens` \(10\) is smaller than the longest example \(12 tokens\)"):
        TokenBudgetBatchSampler([3, 12], [4, 5], max_tokens=10)


def test_token_budget_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"^source_lengths and target_lengths must have the same length\.$"):
        TokenBudgetBatchSampler([3, 4], [4], max_tokens=10)
    with pytest.raises(ValueError, match=r"\(12 tokens\); raise it or lower `data.max_source_length` / `data.max_"):
        TokenBudgetBatchSampler([3, 4], [4, 12], max_tokens=10)  # the target side counts too
    with pytest.raises(ValueError, match=r"^0 examples can't fill 1 batches per step\.$"):
        TokenBudgetBatchSampler([], [], max_tokens=10)
    with pytest.raises(ValueError, match=r"^3 examples can't fill 4 batches per step\.$"):
        TokenBudgetBatchSampler([3, 4, 5], [3, 4, 5], max_tokens=10, multiple_of=4)
    with pytest.raises(ValueError, match=r"^`max_tokens` \(5\) leaves one example per batch; 3 batches can.t"):
        TokenBudgetBatchSampler([5, 5, 5], [5, 5, 5], max_tokens=5, multiple_of=2)


def test_token_budget_splits_down_to_one_example_per_batch():
    """As many examples as batches per step is enough: 3 examples that pack 2 + 1 become 3 batches of one."""
    sampler = TokenBudgetBatchSampler([5, 5, 5], [5, 5, 5], max_tokens=10, multiple_of=3, shuffle=False)
    assert sorted(sampler.batches) == [[0], [1], [2]]
    assert len(TokenBudgetBatchSampler([4, 4], [4, 4], max_tokens=10, multiple_of=2)) == 2


def test_token_budget_order_is_the_documented_shuffle_of_seed_plus_epoch():
    """Resuming relies on it: the batch order of an epoch is `random.Random(seed + epoch)`'s shuffle, and epoch 0
    is the order before any `set_epoch` call."""
    src, tgt = random_lengths(200, seed=4)
    sampler = TokenBudgetBatchSampler(src, tgt, max_tokens=200, seed=5)
    before_any_epoch = list(sampler)
    for epoch in (0, 3):
        sampler.set_epoch(epoch)
        order = list(range(len(sampler.batches)))
        random.Random(5 + epoch).shuffle(order)
        assert list(sampler) == [sampler.batches[b] for b in order]
    sampler.set_epoch(0)
    assert list(sampler) == before_any_epoch
    unshuffled = TokenBudgetBatchSampler(src, tgt, max_tokens=200, seed=5, shuffle=False)
    assert list(unshuffled) == unshuffled.batches  # evaluation: length order


def test_dataset_loaded_by_name_like_wmt(tmp_path):
    """`data.dataset` goes through `datasets.load_dataset` (offline here: a local dataset folder, wmt-style rows)."""
    from vanilla_transformer.config_file import DataSection
    from vanilla_transformer.training import load_splits

    for split, rows in (("train", PAIRS), ("validation", PAIRS[:2]), ("test", PAIRS[2:])):
        lines = [json.dumps({"translation": {"de": s, "en": t}}) for s, t in rows]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    splits = load_splits(DataSection(dataset=str(tmp_path), source_lang="en", target_lang="de"), seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"train": 3, "validation": 2, "test": 1}
    assert list(splits["test"]["source"]) == ["three birds"] and list(splits["test"]["target"]) == ["drei Vögel"]
    with pytest.raises(DataError, match=r"missing language key\(s\) \['fr'\]"):
        load_splits(DataSection(dataset=str(tmp_path), source_lang="en", target_lang="fr"), seed=0)


# ---------------------------------------------------------------------------------------------------------
# Readers, line by line (each behaviour below was once changeable without a failing test)
# ---------------------------------------------------------------------------------------------------------
def test_line_ends_crlf_and_a_lone_carriage_return(tmp_path):
    """Windows line ends are one line end (a TSV header's last column is `en`, not `en\\r`); a lone \\r inside a
    line is text, not a line break (it would shift every later pair)."""
    from vanilla_transformer.data import read_lines

    path = tmp_path / "a.tsv"
    path.write_bytes(b"de\ten\r\nein Hund\ta dog\r\nzwei\rdrei\ttwo\n")
    assert read_lines(str(path)) == ["de\ten", "ein Hund\ta dog", "zwei\rdrei\ttwo"]
    data = load_local_split(str(path), "de", "en", "error")
    assert list(zip(data["source"], data["target"], strict=True)) == [("ein Hund", "a dog"), ("zwei\rdrei", "two")]


def test_files_are_utf8_whatever_the_locale(tmp_path):
    """Read and written as UTF-8 even where the locale's encoding is ASCII (a C locale without UTF-8 mode)."""
    import os
    import subprocess
    import sys

    write(tmp_path / "t.de", "drei Vögel\n")
    write(tmp_path / "t.en", "three birds\n")
    script = (
        "import sys; from vanilla_transformer.data import read_lines; from vanilla_transformer.safety import "
        "atomic_write_text; assert read_lines(sys.argv[1] + '.de') == ['drei V\\u00f6gel']; "
        "atomic_write_text(sys.argv[1] + '.out', 'Gr\\u00fc\\u00dfe')"  # the command line itself in ASCII
    )
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0",
               PYTHONPATH=os.pathsep.join(sys.path))  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "t")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t.out").read_bytes() == "Grüße".encode()


def test_tsv_rows_are_read_verbatim_and_errors_give_the_file_line(tmp_path):
    path = write(tmp_path / "a.tsv", 'de\ten\tsource note\n"Hallo", sagte er\t"Hello," he said\tn 1\n\nx\ty\tz\n')
    data = load_local_split(path, "de", "en", "skip")  # quotes are text; columns split at tabs only
    assert list(zip(data["source"], data["target"], strict=True)) == [('"Hallo", sagte er', '"Hello," he said'),
                                                                       ("x", "y")]  # fmt: skip
    with pytest.raises(DataError, match=r"a\.tsv:3: empty source sentence"):
        load_local_split(path, "de", "en", "error")
    path = write(tmp_path / "b.tsv", "de\ten\na\tb\nc\n")
    with pytest.raises(DataError, match=r"^.*b\.tsv:3: 1 tab-separated fields, but the header has 2\.$"):
        load_local_split(path, "de", "en", "error")
    path = write(tmp_path / "c.tsv", "de en\na b\n")
    with pytest.raises(DataError) as error:
        load_local_split(path, "de", "en", "error")
    assert str(error.value) == (
        f"{path}: the header line ['de en'] has no column(s) ['de', 'en']. A TSV file starts with a header naming "
        "its columns, e.g. 'de<TAB>en'."
    )


def test_jsonl_rows_after_an_empty_line_are_read_and_non_objects_named(tmp_path):
    path = write(tmp_path / "a.jsonl", '{"de": "a", "en": "b"}\n\n{"de": "c", "en": "d"}\n')
    data = load_local_split(path, "de", "en", "skip")
    assert list(zip(data["source"], data["target"], strict=True)) == [("a", "b"), ("c", "d")]
    with pytest.raises(DataError, match=r"a\.jsonl:2: empty source sentence"):
        load_local_split(path, "de", "en", "error")
    path = write(tmp_path / "b.jsonl", '["a", "b"]\n')
    with pytest.raises(DataError, match=r"^.*b\.jsonl:1: expected a JSON object per line, got list\.$"):
        load_local_split(path, "de", "en", "error")
    path = write(tmp_path / "c.jsonl", '{"de": "a", "fr": "b"}\n')
    with pytest.raises(DataError, match=r"`data\.target_lang` to keys present in the data\.$"):
        load_local_split(path, "de", "en", "error")


def test_skipped_pairs_are_counted_in_the_log_and_the_empty_side_named(tmp_path, caplog):
    path = write(tmp_path / "a.tsv", "de\ten\na\t \n \tb\nc\td\n \t \n\t\t\n")  # the last: 3 empty fields
    with caplog.at_level("WARNING", logger="vanilla_transformer.data"):
        data = load_local_split(path, "de", "en", "skip")
    assert list(data["source"]) == ["c"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: skipped 4 pair(s) with an empty side (data.empty_lines=skip)."
    ]
    with pytest.raises(DataError, match=r"a\.tsv:2: empty target sentence"):
        load_local_split(path, "de", "en", "error")


def test_format_from_the_name_in_any_case_and_a_prefix_with_one_file(tmp_path):
    for name in ("a.json", "b.JSONL", "c.Json"):
        write(tmp_path / name, '{"de": "a", "en": "b"}\n')
        assert list(load_local_split(str(tmp_path / name), "de", "en", "error")["target"]) == ["b"]
    write(tmp_path / "d.TSV", "de\ten\na\tb\n")
    assert list(load_local_split(str(tmp_path / "d.TSV"), "de", "en", "error")["target"]) == ["b"]
    write(tmp_path / "only.en", "b\n")  # the target file alone: a parallel-text prefix missing its source file
    with pytest.raises(DataError, match=r"^Data file not found: .*only\.de$"):
        load_local_split(str(tmp_path / "only"), "de", "en", "error")
    write(tmp_path / "e.csv", "de,en\n")
    with pytest.raises(DataError) as error:
        load_local_split(str(tmp_path / "e.csv"), "de", "en", "error")
    assert str(error.value) == (
        f"Can't tell the format of {tmp_path / 'e.csv'}: name JSON lines files *.jsonl, TSV files *.tsv, or give the "
        "prefix of parallel text files (PREFIX.de and PREFIX.en)."
    )


def test_hub_split_with_one_column_per_language_and_row_names(caplog):
    split = datasets.Dataset.from_dict({"de": ["a", " ", "c"], "en": ["b", "x", "d"], "id": [1, 2, 3]})
    with caplog.at_level("WARNING", logger="vanilla_transformer.data"):
        data = hub_split_to_dataset(split, "train split of x", "de", "en", "skip")
    assert list(zip(data["source"], data["target"], strict=True)) == [("a", "b"), ("c", "d")]
    assert caplog.records[0].getMessage().startswith("train split of x: skipped 1 pair(s)")
    data = hub_split_to_dataset(split, "train split of x", "en", "de", "skip")
    assert list(data["source"]) == ["b", "d"]
    with pytest.raises(DataError, match=r"train split of x row 1: empty source"):
        hub_split_to_dataset(split, "train split of x", "de", "en", "error")
    for columns in ({"de": ["a"], "fr": ["b"]}, {"fr": ["a"], "en": ["b"]}):
        with pytest.raises(DataError, match="no `translation` column and no columns 'de'/'en'"):
            hub_split_to_dataset(datasets.Dataset.from_dict(columns), "x", "de", "en", "error")
    nested = datasets.Dataset.from_dict({"translation": [{"de": "a", "en": "b"}, {"de": "a", "fr": "b"}]})
    with pytest.raises(
        DataError, match=r"^train split of x row 1: missing language key\(s\) \['en'\]; found keys \['de', 'fr'\]\."
    ):
        hub_split_to_dataset(nested, "train split of x", "de", "en", "error")


# ---------------------------------------------------------------------------------------------------------
# The quick-start numbers, exactly
# ---------------------------------------------------------------------------------------------------------
def test_round_numbers_are_those_with_one_significant_digit():
    from vanilla_transformer.data import _round_numbers, is_round

    assert _round_numbers(999) == [*range(10), *range(10, 100, 10), *range(100, 1000, 100)]
    assert _round_numbers(5000)[-6:] == [700, 800, 900, 1000, 2000, 3000, 4000, 5000][-6:]
    assert [n for n in range(100001) if is_round(n)] == _round_numbers(100000)


def test_quickstart_draw_is_seeded_and_spans_every_length():
    def draw(seed, **fields):
        sizes = dict(max_number=99, train_size=80, validation_size=10, test_size=10)
        splits = number_words_splits(**{**sizes, **fields}, seed=seed)
        return [list(splits[s]["source"]) for s in ("train", "validation", "test")]

    assert draw(1) == draw(1) and draw(1) != draw(2)
    from num2words import num2words

    drawn = [w for split in draw(3) for w in split]  # 100 of 100 numbers: each length, 0 and 99 included
    assert sorted(drawn) == sorted(num2words(n, lang="de") for n in range(100))
    # With cover_below every drawn number has 4 to 6 digits, each length about a third of the draws.
    splits = number_words_splits(max_number=999999, train_size=4000, validation_size=0, test_size=0, seed=0,
                                 cover_below=1000, repeat_small=1)  # fmt: skip
    covered = {num2words(n, lang="en") for n in range(1000)} | {num2words(d * 10**k, lang="en") for k in (3, 4, 5)
                                                               for d in range(1, 10)}  # fmt: skip
    drawn = [t for t in splits["train"]["target"] if t not in covered]
    assert len(drawn) == 4000 - 1000 - 27  # the covered numbers: 0-999 and the round ones from 1,000 to 900,000
    ones = {num2words(n, lang="en") for n in range(1, 10)}

    def digits(english):  # from the thousands part: "seven" 4 digits, "seventy-two" 5, "... hundred ..." 6
        thousands = english.split(" thousand")[0]
        return 6 if "hundred" in thousands else 4 if thousands in ones else 5

    from collections import Counter

    lengths = Counter(digits(t) for t in drawn)
    assert set(lengths) == {4, 5, 6} and min(lengths.values()) > 0.3 * len(drawn), lengths


def test_quickstart_size_edges_are_accepted_and_messages_exact():
    splits = number_words_splits(max_number=100, train_size=111, validation_size=0, test_size=0, seed=0,
                                 cover_below=10, repeat_small=2)  # fmt: skip
    assert len(splits["train"]) == 111  # 40 covered (0-9 and 10, 20, ..., 100, all round: twice) + 71 of 81 drawn
    splits = number_words_splits(max_number=1000, train_size=1001, validation_size=0, test_size=0, seed=0,
                                 cover_below=1000)  # fmt: skip
    assert len(splits["train"]) == 1001  # cover_below == max_number, train_size == the covered numbers
    number_words_splits(max_number=99, train_size=100, validation_size=0, test_size=0, seed=0)  # all 100 numbers
    with pytest.raises(DataError, match=r"^`data\.quickstart\.repeat_small` must be at least 1, got 0\.$"):
        number_words_splits(max_number=999, train_size=10, validation_size=1, test_size=1, seed=0, repeat_small=0)
    with pytest.raises(DataError, match=r"there are only 8991 \(from 1000 to max_number 9999, not round\)\.$"):
        number_words_splits(max_number=9999, train_size=10000, validation_size=100, test_size=100, seed=0,
                            cover_below=1000)  # fmt: skip
    with pytest.raises(DataError, match=r"there are only 100 \(from 0 to max_number 99\)\.$"):
        number_words_splits(max_number=99, train_size=101, validation_size=0, test_size=0, seed=0)
    for bad in (1, 100000):
        with pytest.raises(DataError, match="must be a power of ten from 10 to max_number"):
            number_words_splits(max_number=9999, train_size=20000, validation_size=1, test_size=1, seed=0,
                                cover_below=bad)  # fmt: skip
