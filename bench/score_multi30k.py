"""Score trained translation models on Multi30k's test sets, the two ways results on Multi30k are reported.

For each model folder (a run's output_dir, a checkpoint, or an averaged model) and each test set, translate the
source side with the model's saved generation config (beam 4, length penalty 0.6 in train.py's presets) and report

- BLEU and chrF with sacreBLEU on the raw, cased, detokenised text (13a tokenisation; what train.py prints);
- lowercased BLEU, `sacrebleu -lc` with its 13a tokenisation: the closest sacreBLEU setting to the lowercased,
  Moses-tokenised `multi-bleu.perl` scores of Multi30k papers (not identical: different tokeniser).

Usage (from the repository root; one thread, as in the quality runs):

    OMP_NUM_THREADS=1 python bench/score_multi30k.py --data ../shared/data/multi30k --source de --target en \\
        --json bench/results-quality-deen.json runs/ours-deen runs/marian-deen
"""

import argparse
import json
import os
import sys
import time

import sacrebleu
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

import vanilla_transformer  # noqa: F401  (registers the model with the Auto classes)
from vanilla_transformer.data import read_lines

TEST_SETS = ("test_2016_flickr", "test_2017_flickr")


def translate(model: torch.nn.Module, tokenizer: object, sources: list[str], batch_size: int) -> list[str]:
    """Beam search with the model's generation config, batches of similar length, outputs in input order."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    out: list[str] = [""] * len(sources)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        batch = tokenizer([sources[i] for i in index], return_tensors="pt", padding=True)
        with torch.no_grad():
            generated = model.generate(**batch)
        for i, text in zip(index, tokenizer.batch_decode(generated, skip_special_tokens=True), strict=True):
            out[i] = text.strip()
    return out


def scores(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Cased BLEU and chrF on raw text, and lowercased 13a-tokenised BLEU."""
    return {
        "bleu_cased_raw": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "bleu_lowercased_tokenised": sacrebleu.corpus_bleu(hypotheses, [references], lowercase=True).score,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model folders (run output_dir, checkpoint-N, averaged model)")
    parser.add_argument("--data", required=True, help="folder with test_2016_flickr.{de,en} and test_2017_flickr.*")
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--sets", nargs="+", default=list(TEST_SETS), help="test sets to score (default: both)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    results = {"data": os.path.basename(os.path.normpath(args.data)), "direction": f"{args.source}-{args.target}"}
    for folder in args.models:
        if not os.path.isdir(folder):
            sys.exit(f"score_multi30k.py: error: no such model folder: {folder}")
        model = AutoModelForSeq2SeqLM.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        entry = {"model_type": model.config.model_type}
        for name in args.sets:
            prefix = os.path.join(args.data, name)
            sources, references = read_lines(f"{prefix}.{args.source}"), read_lines(f"{prefix}.{args.target}")
            start = time.perf_counter()
            hypotheses = translate(model, tokenizer, sources, args.batch_size)
            entry[name] = {**scores(hypotheses, references), "seconds": time.perf_counter() - start}
            entry[name]["samples"] = [[sources[i], references[i], hypotheses[i]] for i in range(3)]
            print(folder, name, {k: round(v, 2) for k, v in entry[name].items() if k != "samples"}, flush=True)
        results["/".join(os.path.normpath(folder).split(os.sep)[-2:])] = entry  # run/checkpoint, no machine path
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1, ensure_ascii=False)
    return results


if __name__ == "__main__":
    main()
