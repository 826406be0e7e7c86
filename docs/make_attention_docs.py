"""Write docs/attention.md, the attention tutorial, from a trained quick-start model; and its pictures.

    accelerate launch train.py                           # the quick-start model, in runs/quickstart
    python docs/make_attention_docs.py runs/quickstart   # everything below, from that model
    python docs/make_attention_docs.py --render          # only re-render from docs/attention_facts.json

From the model it computes `docs/attention_facts.json`: an example sentence, every attention matrix, the cached
decoding step by step (`vanilla_transformer.attention.explorer_data`), the alignment of its translation, and how
often cross-attention alignments point at the right source piece on the quick-start test numbers. From those facts
it renders `docs/attention.md` (the tutorial), `docs/attention_explorer.html` (the interactive page of the same
example), `docs/attention_example.png` (the head-averaged summary PNG) and, with headless Chromium,
`docs/attention_page.png` (a screenshot of the page). `tests/test_attention_docs.py` checks that the committed
tutorial and page are what the facts render to, and computes the facts from a freshly trained model.

The example is the first of a fixed list of numbers whose source has 4 tokens and whose correct translation has 4,
so that the matrices have the shapes the tutorial explains ([5 x 4] cross-attention, [5 x 5] masked
self-attention); another tokenizer may have none, and the text then states the shapes it has.
"""

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

DOCS = os.path.dirname(os.path.abspath(__file__))
FACTS = os.path.join(DOCS, "attention_facts.json")
OUTPUTS = {
    "markdown": os.path.join(DOCS, "attention.md"),
    "page": os.path.join(DOCS, "attention_explorer.html"),
    "summary": os.path.join(DOCS, "attention_example.png"),
    "screenshot": os.path.join(DOCS, "attention_page.png"),
}
WANTED_SHAPE = (4, 5)  # source tokens S (with </s>), decoder input tokens T (with <s>)
STEP = 2  # the step shown in detail: the decoder has produced two tokens ("D E") and predicts the third

# The quick-start's number words: each English word and the German morphemes that say it.
EN_DE = {
    "zero": ["null"],
    "one": ["eins", "ein", "eine"],
    "two": ["zwei"],
    "three": ["drei"],
    "four": ["vier"],
    "five": ["fünf"],
    "six": ["sechs"],
    "seven": ["sieben"],
    "eight": ["acht"],
    "nine": ["neun"],
    "ten": ["zehn"],
    "eleven": ["elf"],
    "twelve": ["zwölf"],
    "thirteen": ["dreizehn"],
    "fourteen": ["vierzehn"],
    "fifteen": ["fünfzehn"],
    "sixteen": ["sechzehn"],
    "seventeen": ["siebzehn"],
    "eighteen": ["achtzehn"],
    "nineteen": ["neunzehn"],
    "twenty": ["zwanzig"],
    "thirty": ["dreißig"],
    "forty": ["vierzig"],
    "fifty": ["fünfzig"],
    "sixty": ["sechzig"],
    "seventy": ["siebzig"],
    "eighty": ["achtzig"],
    "ninety": ["neunzig"],
    "hundred": ["hundert"],
    "thousand": ["tausend"],
}
MORPHEMES = sorted({g for words in EN_DE.values() for g in words} | {"und"}, key=len, reverse=True)


# Facts from a model
# ------------------
def segment(word: str) -> list[tuple[str, int, int]] | None:
    """A German number word as (morpheme, start, end) spans, longest match first; None if it does not split."""
    spans, position = [], 0
    while position < len(word):
        morpheme = next((m for m in MORPHEMES if word.startswith(m, position)), None)
        if morpheme is None:
            return None
        spans.append((morpheme, position, position + len(morpheme)))
        position += len(morpheme)
    return spans


def piece_spans(source: str, tokens: list[str]) -> list[tuple[int, int]] | None:
    """Character spans of the source pieces in the source word (None if the pieces do not spell it)."""
    from vanilla_transformer.attention import WORD_START_MARKERS

    spans, position = [], 0
    for token in tokens:
        text = token[1:] if token.startswith(WORD_START_MARKERS) else token
        spans.append((position, position + len(text)))
        position += len(text)
    return spans if "".join(t.lstrip("".join(WORD_START_MARKERS)) for t in tokens) == source else None


def check_alignment(source: str, result: dict) -> tuple[int, int, float]:
    """(checkable output tokens, correctly aligned ones, expected correct ones if aligned at random).

    An output token is checkable when it is made of dictionary number words (`seven`, `forty-four`); its alignment
    is correct when the source piece it points at overlaps a German morpheme that says one of those words
    (`forty-four` -> `vier` or `vierzig`). Any occurrence counts, so numbers repeating a word are judged leniently.
    """
    morphemes, pieces = segment(source), piece_spans(source, result["source_tokens"])
    if morphemes is None or pieces is None:
        return 0, 0, 0.0
    aligned = {j: i for i, j in result["alignment"]}
    checked = correct = 0
    chance = 0.0
    for j, token in enumerate(result["translation_tokens"]):
        words = [w for w in re.split(r"[-\s]", token.lstrip("\u2581\u0120").strip(",")) if w]
        if not words or not all(w in EN_DE for w in words):
            continue
        german = {g for w in words for g in EN_DE[w]}
        good = {k for k, (a, b) in enumerate(pieces) if any(m in german and a < e and s < b for m, s, e in morphemes)}
        checked += 1
        correct += aligned.get(j) in good
        chance += len(good) / len(pieces)
    return checked, correct, chance


def alignment_quality(pipe: object, sources: list[str], layers: int) -> list[dict]:
    """Per decoder layer: how often the head-averaged cross-attention alignment points at the right piece."""
    quality = []
    for layer in range(layers):
        results = pipe(sources, return_alignments=True, alignment_layer=layer, batch_size=50)
        checked = correct = 0
        chance = 0.0
        for source, result in zip(sources, results, strict=True):
            c, k, p = check_alignment(source, result)
            checked, correct, chance = checked + c, correct + k, chance + p
        quality.append(
            {
                "layer": layer,
                "checked": checked,
                "correct": correct,
                "accuracy": round(correct / max(checked, 1), 4),
                "chance": round(chance / max(checked, 1), 4),
            }
        )
    return quality


def choose_example(model: object, tokenizer: object) -> int:
    """The first number (of a fixed shuffled list) with a correct greedy translation of the wanted shapes.

    Without one among the first 20,000 numbers, the first correctly translated number of the list.
    """
    from num2words import num2words

    from vanilla_transformer.attention import decoded_sequence

    numbers = list(range(1, 1_000_000))
    random.Random(0).shuffle(numbers)

    def translated(source: str, reference: str) -> bool:
        encoded = tokenizer(source, return_tensors="pt")
        sequence = decoded_sequence(model, tokenizer, encoded, None, num_beams=1)
        return tokenizer.decode(sequence, skip_special_tokens=True) == reference

    for number in numbers[:20_000]:
        source, reference = num2words(number, lang="de"), num2words(number, lang="en")
        shape = (len(tokenizer(source)["input_ids"]), len(tokenizer(text_target=reference)["input_ids"]))
        if shape == WANTED_SHAPE and translated(source, reference):  # T counts <s> + the tokens before </s>
            return number
    for number in numbers[:100]:
        if translated(num2words(number, lang="de"), num2words(number, lang="en")):
            return number
    raise SystemExit("The model translates none of the first 100 example numbers correctly: train it first.")


def compute_facts(model_dir: str, source: str | None = None, test_size: int | None = None) -> dict:
    """Everything the tutorial shows, computed from the model in `model_dir` (a quick-start run folder)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from vanilla_transformer.attention import explorer_data
    from vanilla_transformer.config_file import parse_config
    from vanilla_transformer.pipeline_vanilla_transformer import VanillaTranslationPipeline
    from vanilla_transformer.training import load_splits

    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    number = None if source else choose_example(model, tokenizer)
    if number is not None:
        from num2words import num2words

        source = num2words(number, lang="de")
    page = explorer_data(model, tokenizer, source, model_name="the quick-start model")
    run = parse_config([os.path.join(model_dir, "run_config.yaml")], "")
    if run.data.quickstart is None:
        raise SystemExit(f"{model_dir} is not a quick-start run: the alignment check needs its number words.")
    test = load_splits(run.data, run.training.seed)["test"]["source"]
    test = list(test[:test_size] if test_size else test)
    pipe = VanillaTranslationPipeline(model=model, tokenizer=tokenizer)
    return {
        "number": number,
        "page": page,
        "alignment_quality": alignment_quality(pipe, test, model.config.decoder_layers),
        "test_numbers": len(test),
        "label_smoothing": run.training.label_smoothing,
        "decoding": {"num_beams": model.generation_config.num_beams},
    }


# Rendering
# ---------
def shown(token: str) -> str:
    from vanilla_transformer.attention import display_token

    return display_token(token).replace("|", "\\|")


def code(tokens: list[str]) -> str:
    return ", ".join(f"`{t}`" for t in tokens)


def mean_heads(per_head: list) -> list:
    """[H][rows][cols] (or [H][cols]) -> the mean over the heads, rounded to 2 decimals."""
    count = len(per_head)
    if isinstance(per_head[0][0], list):
        return [[round(sum(h[r][c] for h in per_head) / count, 2) for c in range(len(per_head[0][0]))]
                for r in range(len(per_head[0]))]  # fmt: skip
    return [round(sum(h[c] for h in per_head) / count, 2) for c in range(len(per_head[0]))]


def matrix_table(weights: list[list[float]], rows: list[str], cols: list[str], masked: bool = False) -> str:
    """A markdown table: queries as rows, keys as columns; masked (future) cells as a dot."""
    lines = ["| query \\ key | " + " | ".join(f"`{shown(c)}`" for c in cols) + " |"]
    lines.append("|---|" + "---:|" * len(cols))
    for r, row in enumerate(weights):
        cells = ["·" if masked and c > r else f"{x:.2f}" for c, x in enumerate(row)]
        lines.append(f"| `{shown(rows[r])}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(facts: dict) -> str:
    """The tutorial for `facts` (pure string formatting: the same facts always give the same text)."""
    from vanilla_transformer.attention import pharaoh

    page = facts["page"]
    src, tgt, predicted = page["source_tokens"], page["target_tokens"], page["predicted_tokens"]
    S, T = len(src), len(tgt)
    dims = page["dims"]
    dk, layers, heads = dims["d_k_decoder"], dims["decoder_layers"], dims["decoder_heads"]
    last = layers - 1
    enc = mean_heads(page["encoder_self"][last])
    dec = mean_heads(page["decoder_self"][last])
    cross = mean_heads(page["cross"][last])
    step_index = min(STEP, T - 1)
    step = page["steps"][step_index]
    produced = tgt[1 : step_index + 1]
    query = tgt[step_index]
    self_row, cross_row = mean_heads(step["self"][last]), mean_heads(step["cross"][last])
    quality = facts["alignment_quality"]
    best = max(quality, key=lambda q: q["accuracy"])
    shapes_note = (
        f"the [{T} × {S}] cross-attention and the [{T} × {T}] masked matrix of the explanations"
        if (S, T) == WANTED_SHAPE
        else f"here [{T} × {S}] cross-attention and a [{T} × {T}] masked matrix"
    )
    looks = []
    for r, row in enumerate(cross):
        c = max(range(S), key=lambda k: row[k])
        looks.append(
            f"`{shown(tgt[r])}` (predicting `{shown(predicted[r])}`) looks most at `{shown(src[c])}` ({row[c]:.2f})"
        )
    enc_row_max = [max(range(S), key=lambda k: row[k]) for row in enc]
    encoder_most = ", ".join(f"`{shown(src[r])}` → `{shown(src[c])}`" for r, c in enumerate(enc_row_max))
    E = dims["d_model"]
    shape_rows = "\n".join(
        f"| {name} | [{rows} × {dk}]{q} | [{cols} × {dk}]{kv} | [{rows} × {cols}]{mask} | [{rows} × {dk}] "
        f"| [{rows} × {E}] |"
        for name, rows, cols, q, kv, mask in (
            ("encoder self", S, S, "", "", ""),
            ("decoder masked self", T, T, "", "", ", upper triangle −∞"),
            ("cross", T, S, " from the decoder", " from the encoder output", ""),
        )
    )
    top = step["top_k"]
    topk_table = "\n".join(
        ["| next token | probability |", "|---|---:|"]
        + [f"| `{shown(token)}`{' (chosen)' if token == step['next'] else ''} | {p:.3f} |" for token, p in top]
    )
    quality_table = "\n".join(
        ["| decoder layer | output tokens checked | aligned to the right piece | by chance |", "|---:|---:|---:|---:|"]
        + [
            f"| {q['layer'] + 1}{' (last, the default)' if q['layer'] == layers - 1 else ''} | {q['checked']} | "
            f"{100 * q['accuracy']:.1f}% | {100 * q['chance']:.1f}% |"
            for q in quality
        ]
    )
    alignment = page["alignment"]
    smoothing = (
        f": training with label smoothing ({facts['label_smoothing']}) teaches the model never to put all of it on "
        "one token"
        if facts["label_smoothing"]
        else ""
    )
    kept_source = [t for t in src if t not in page["special_tokens"]]
    kept_output = [t for t in predicted if t not in page["special_tokens"]]
    links = ", ".join(f"`{shown(kept_output[j])}` → `{shown(kept_source[i])}`" for i, j in alignment)

    return f"""# Attention, step by step

<!-- Generated by docs/make_attention_docs.py from a trained quick-start model: do not edit by hand.
     Regenerate: accelerate launch train.py && python docs/make_attention_docs.py runs/quickstart -->

A Transformer has three kinds of attention. This page shows each of them with the numbers of one real sentence
of a trained model: the offline quick-start (`accelerate launch train.py`: German number words into English, d_model
{dims["d_model"]}, {dims["encoder_layers"]} + {layers} layers, {heads} heads). Every number here comes from that
model; [the interactive page](attention_explorer.html) shows the same sentence for every layer and head (open it
in a browser, it works offline) and `python -m vanilla_transformer.attention MODEL "SENTENCE" --html page.html`
makes one for any sentence.

**The example.** The source `{page["source"]}` is {S} tokens, {code(src)} (BPE pieces: `▁` marks the start of a
word, `</s>` ends the source). The model translates it, greedily, into `{page["translation"]}`. The decoder input is
the translation shifted right behind the start token: {code(tgt)}, {T} tokens, one per decoding step; step t
predicts the token after it ({code(predicted)}). So the example has {shapes_note}.

All matrices below are one layer's weights averaged over its {heads} heads (the last layer, layer {layers}),
rounded to 2 decimals. Rows are queries, columns are keys; every row is a softmax and sums to 1.

## 1. Encoder self-attention: [{S} × {S}]

The queries, keys and values all come from the source tokens (the output of the encoder layer below). Every
token may attend to every token, before or after it: there is no mask.

{matrix_table(enc, src, src)}

Row by row, the token each source token attends to most: {encoder_most}.

## 2. Decoder masked self-attention: [{T} × {T}]

The queries, keys and values come from the decoder input. Position t may attend to positions ≤ t only: the
scores above the diagonal are set to −∞ before the softmax, so their weights are exactly 0 (shown as `·`). In
training, all {T} rows are computed at once from the whole target (teacher forcing); the mask is what keeps step t
from reading the token it has to predict. The first row is always 1.00: the start token can see only itself.

{matrix_table(dec, tgt, tgt, masked=True)}

## 3. Encoder-decoder cross-attention: [{T} × {S}]

The queries come from the decoder (one row per decoding step), the keys and values from the encoder output. The
encoder runs once per sentence; every decoding step reads the same {S} encoder vectors. Read a row as "while
predicting the next token, look here".

{matrix_table(cross, tgt, src)}

Here {"; ".join(looks)}.

## 4. One step of generation: from {" ".join(f"`{shown(t)}`" for t in produced)} to the next token

Generation produces one token per step. At step {step_index + 1} the decoder has produced
{" ".join(f"`{shown(t)}`" for t in produced)} (after `<s>`) and predicts the next token:

- **Decoder self-attention.** The query comes from the newest token, `{shown(query)}`. The keys and values are those
  of {code([shown(t) for t in tgt[: step_index + 1]])}: {step_index} computed at earlier steps and kept in the cache,
  plus the new one of `{shown(query)}` (the cache then holds {step["cache_length"]} per layer). Nothing later
  exists yet, so at generation time there is nothing to mask: the mask of training reproduces exactly this.
  Per head: Q [1 × {dk}], K [{step_index + 1} × {dk}], V [{step_index + 1} × {dk}], scores Q Kᵀ / √{dk} and
  weights [1 × {step_index + 1}], output [1 × {dk}]. The weights (layer {layers}, head average):
  {", ".join(f"`{shown(t)}` {x:.2f}" for t, x in zip(tgt, self_row, strict=False))}.
- **Cross-attention.** The query comes from `{shown(query)}` again (after self-attention); the keys and values are
  the encoder output of the {S} source tokens, computed once for the whole generation ({page["encoder_runs"]}
  encoder run). Per head: Q [1 × {dk}], K and V [{S} × {dk}], weights [1 × {S}]:
  {", ".join(f"`{shown(t)}` {x:.2f}" for t, x in zip(src, cross_row, strict=True))}.
- **The next token.** The output of the last layer goes through the output projection and a softmax over the
  vocabulary. The {len(top)} most probable tokens:

{topk_table}

The other {1 - sum(p for _, p in top):.3f} of probability is spread thin over the rest of the vocabulary{smoothing}.

These weights are row {step_index + 1} of the matrices in sections 2 and 3: computing one row per step with the
cache gives the same numbers as computing all rows at once with the mask (the tests check this).

## 5. The shapes of this example

d_model = {dims["d_model"]}, h = {heads} heads, d_k = d_v = d_model / h = {dk}. Per head, with all steps at once
as in training:

| attention | Q | K, V | scores and weights | output | {heads} heads concatenated |
|---|---|---|---|---|---|
{shape_rows}

The concatenated heads go through the output projection W^O ([{dims["d_model"]} × {dims["d_model"]}]) back to
[rows × {dims["d_model"]}].

## 6. Word alignments from cross-attention

`python -m vanilla_transformer.translate --model runs/quickstart --alignments "{page["source"]}"` prints, after the
translation, each output token's most-attended source token in the Pharaoh `i-j` format (source token i, output
token j, special tokens left out, counted from 0; the last layer's head average, `--alignment-layer` picks
another). For the example, `{pharaoh(alignment)}`: {links}. In Python, the pipeline returns them with
`return_alignments=True`.

**How good are they?** On the {facts["test_numbers"]} quick-start test numbers (beam search with
{facts["decoding"]["num_beams"]} beams, the model's own translations), an output token made of number words is
counted as correctly aligned when the source piece it attends to most contains a German word for it
(`forty-four` → `vier` or `vierzig`, `hundred` → `hundert`); "by chance" is the rate of a source piece picked at
random. Tokens like `and` or `,` have no counterpart and are not counted.

{quality_table}

The best layer, layer {best["layer"] + 1}, points at the right piece for {100 * best["accuracy"]:.1f}% of the tokens
checked. What these alignments are not: attention shows where a step looked, not what it translated. The model is
trained to predict tokens, never to align them; nothing makes the largest weight sit on the source of the word
(a step may look at `</s>` or at the next word it will need), the layers disagree, and a BPE piece such as
`▁siebenhundertvier` holds several words, so one link cannot say which. Use them to explore a model, not as
a word aligner's output.

## Regenerate this page

```bash
accelerate launch train.py                           # trains runs/quickstart (a few minutes on a CPU)
python docs/make_attention_docs.py runs/quickstart   # this page, the interactive page, the pictures
```
"""


def render_all(facts: dict, screenshot: bool = True) -> list[str]:
    """Write the tutorial, the page, the summary PNG and (with Chromium) the screenshot; return the paths."""
    import torch

    from vanilla_transformer.attention import AttentionMaps, save_attention_plots
    from vanilla_transformer.attention_html import write_html

    page = facts["page"]
    with open(OUTPUTS["markdown"], "w", encoding="utf-8") as handle:
        handle.write(render_markdown(facts))
    write_html(page, OUTPUTS["page"])
    maps = AttentionMaps(
        source_tokens=page["source_tokens"],
        target_tokens=page["target_tokens"],
        predicted_tokens=page["predicted_tokens"],
        encoder_self=torch.tensor(page["encoder_self"]),
        decoder_self=torch.tensor(page["decoder_self"]),
        cross=torch.tensor(page["cross"]),
        special_tokens=tuple(page["special_tokens"]),
    )
    with tempfile.TemporaryDirectory() as folder:
        save_attention_plots(maps, folder)
        shutil.copyfile(os.path.join(folder, "summary.png"), OUTPUTS["summary"])
    written = [OUTPUTS["markdown"], OUTPUTS["page"], OUTPUTS["summary"]]
    if screenshot:
        take_screenshot(
            OUTPUTS["page"], OUTPUTS["screenshot"], f"#step={min(STEP, len(page['target_tokens']) - 1) + 1}"
        )
        written.append(OUTPUTS["screenshot"])
    return written


def take_screenshot(page: str, out: str, fragment: str, size: tuple[int, int] = (1180, 1240)) -> None:
    """A PNG of the page as headless Chromium renders it (the Debian package `chromium`)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("The screenshot needs headless Chromium (apt-get install chromium); or pass --no-screenshot.")
    with tempfile.TemporaryDirectory() as profile:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
        flags += ["--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}"]
        shot = os.path.join(profile, "shot.png")
        url = "file://" + os.path.abspath(page) + fragment
        command = [chromium, *flags, f"--window-size={size[0]},{size[1]}", f"--screenshot={shot}", url]
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        from PIL import Image

        Image.open(shot).convert("RGB").quantize(colors=128).save(out, optimize=True)  # small enough for git


def main(argv: list[str] | None = None) -> None:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Write docs/attention.md and its pictures from a trained model.")
    parser.add_argument("model", nargs="?", help="a trained quick-start run folder (e.g. runs/quickstart)")
    parser.add_argument("--render", action="store_true", help="only re-render from docs/attention_facts.json")
    parser.add_argument("--source", help="the example sentence (default: chosen for the tutorial's shapes)")
    parser.add_argument("--no-screenshot", action="store_true", help="leave docs/attention_page.png as it is")
    args = parser.parse_args(argv)
    if args.render == (args.model is not None):
        parser.error("give a model folder, or --render to re-render the saved facts")
    if args.render:
        with open(FACTS, encoding="utf-8") as handle:
            facts = json.load(handle)
    else:
        facts = compute_facts(args.model, args.source)
        with open(FACTS, "w", encoding="utf-8") as handle:
            json.dump(facts, handle, ensure_ascii=False, indent=1)
            handle.write("\n")
    for path in render_all(facts, screenshot=not args.no_screenshot):
        print(os.path.relpath(path))


if __name__ == "__main__":
    sys.exit(main())
