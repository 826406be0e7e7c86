"""Side-by-side inference benchmark: MarianMTModel, ours in each precision, and CTranslate2 from the same weights.

One random model per size (bench.py's small and base shapes: post-norm, ReLU, tied embeddings, Marian's sinusoid
layout, fp32), its weights copied into a `MarianMTModel` (`bench.build_models`), then every variant built from
those same weights:

  marian                       MarianMTModel.generate(), fp32: the reference of every ratio
  ours-fp32 / -bf16 / -int8    our generate() after `precision.to_inference` (-fp16 with --precisions)
  ours-fp32-static             our generate() with a static cache (`cache_implementation="static"`), not compiled
  ours-<precision>-compiled    static cache + torch.compile of the decoding step (inductor), with --compile; not
                               for int8 (dynamo cannot trace the packed weights of torch.ao's int8 linear layer)
  ct2-ours-fp32 / -int8        CTranslate2 from our export (`vanilla_transformer.export_ctranslate2`)
  ct2-marian-fp32 / -int8      CTranslate2 from the Marian copy (CTranslate2's own `TransformersConverter`)

All models start decoding from the padding token, the last id of the vocabulary, whose embedding row is zero: the
OPUS-MT convention, which CTranslate2's Marian converter assumes (it drops that last id and starts from a zero
vector), so that all of them compute one function.
Cases: greedy batch 1, greedy batch 16, beam 4 batch 16 (`--cases`), source length 32, exactly 64 new tokens
(end-of-sequence forbidden; beam search renormalises the log-probabilities after forbidding it, as CTranslate2 does,
so beams compare one to one).

Before any timing, each variant decodes the case's batch once and its tokens are compared with ours-fp32 (with
marian when ours-fp32 does not run): the share of identical sequences and of tokens equal up to the first
difference is printed and saved. The fp32 variants compute the same function and should be identical; bf16 and
int8 ones agree less on a random model, whose logits are closer to ties than a trained model's. Then the variants
run interleaved (A B C ..., then ... C B A, alternating), `--reps` timed calls each after `--warmup` untimed ones,
and each variant's new tokens/s is reported with its ratio to marian per repetition: median [min-max].

`--quality MODEL_DIR SOURCE REFERENCE` instead translates a test set with a trained model in each precision and
with CTranslate2 (the `translate` code path: its saved generation config, beam search) and reports BLEU, chrF and
the agreement with fp32.

    python bench/fast_inference.py --quick                 # < 1 min: tiny sizes, checks every code path
    python bench/fast_inference.py --sizes small base --threads 2 --reps 5 --json bench/results-fast.json
    python bench/fast_inference.py --quality runs/small test.en test.de --json bench/results-fast-quality.json
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import CompileConfig, GenerationConfig, PreTrainedTokenizerFast  # noqa: E402

import bench  # noqa: E402  (bench.py: models, generation settings, interleaving, ratios)
from vanilla_transformer.precision import to_inference  # noqa: E402

BOS, EOS = bench.BOS, bench.EOS
CASES = {"greedy-b1": (1, 1), "greedy-b16": (1, 16), "beam4-b16": (4, 16), "beam4-b1": (4, 1)}


# ---------------------------------------------------------------------------------------------------------
# The same function in every variant
# ---------------------------------------------------------------------------------------------------------
def word_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with one token per id (w0 <s> </s> <unk> w4 ... <pad>, the padding token last, as in
    OPUS-MT): the vocabulary of the CTranslate2 exports, which take token strings."""
    tokens = ["w0", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(4, vocab_size - 1)] + ["<pad>"]
    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def build_pair(size: dict, seed: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """bench.build_models (ours, Marian with our weights), both switched to start decoding from a zero <pad>, the
    last id."""
    ours, marian = bench.build_models(size, "sdpa", seed)
    pad = size["vocab_size"] - 1
    for model in (ours, marian):
        with torch.no_grad():
            model.get_input_embeddings().weight[pad] = 0.0  # tied: the output projection's row too
        model.config.pad_token_id = model.config.decoder_start_token_id = pad
        model.generation_config.pad_token_id = model.generation_config.decoder_start_token_id = pad
        model.eval()
    return ours, marian


def generation_config(num_beams: int, new_tokens: int, cache: str | None = None, compiled: bool = False, pad: int = 0):
    """Exactly `new_tokens` new tokens from <pad>; beams renormalised after </s> is forbidden (as CTranslate2)."""
    config = GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        num_beams=num_beams,
        do_sample=False,
        early_stopping=True if num_beams > 1 else None,
        renormalize_logits=num_beams > 1,
        pad_token_id=pad,
        eos_token_id=EOS,
        bos_token_id=BOS,
        decoder_start_token_id=pad,
        cache_implementation=cache,
        disable_compile=not compiled,
    )
    if compiled:
        config.compile_config = CompileConfig(fullgraph=True, backend="inductor", mode="default")
        config.compile_config._compile_all_devices = True  # generate() compiles on CPU only when asked to
    return config


# A variant: (batch of source ids (B, S), beams) -> new token ids (B, new_tokens)
Runner = Callable[[torch.Tensor, int], torch.Tensor]


def hf_runner(model: torch.nn.Module, new_tokens: int, cache: str | None = None, compiled: bool = False) -> Runner:
    configs = {}

    def run(source: torch.Tensor, beams: int) -> torch.Tensor:
        if beams not in configs:
            configs[beams] = generation_config(beams, new_tokens, cache, compiled, model.config.pad_token_id)
        with torch.inference_mode():
            out = model.generate(
                input_ids=source, attention_mask=torch.ones_like(source), generation_config=configs[beams]
            )
        if out.shape[1] != new_tokens + 1:
            raise RuntimeError(f"expected {new_tokens} new tokens, got {out.shape[1] - 1}")
        return out[:, 1:]

    return run


def ct2_runner(folder: str, tokens: list[str], threads: int, new_tokens: int, compute_type: str) -> Runner:
    import ctranslate2

    translator = ctranslate2.Translator(folder, device="cpu", compute_type=compute_type, intra_threads=threads)
    ids = {token: i for i, token in enumerate(tokens)}

    def run(source: torch.Tensor, beams: int) -> torch.Tensor:
        batch = [[tokens[i] for i in row] for row in source.tolist()]
        results = translator.translate_batch(
            batch,
            beam_size=beams,
            max_decoding_length=new_tokens,
            min_decoding_length=new_tokens,
            max_input_length=0,
        )
        out = torch.tensor([[ids[t] for t in result.hypotheses[0]] for result in results])
        if out.shape[1] != new_tokens:
            raise RuntimeError(f"expected {new_tokens} new tokens, got {out.shape[1]}")
        return out

    return run


def build_variants(
    ours: torch.nn.Module, marian: torch.nn.Module, args: argparse.Namespace, workdir: str
) -> dict[str, Runner]:
    """Every variant of `args.variants`, from the same weights (conversions timed and printed)."""
    import copy

    tokenizer = word_tokenizer(ours.config.vocab_size)
    tokens = tokenizer.convert_ids_to_tokens(list(range(ours.config.vocab_size)))
    new = args.new_tokens
    wanted = set(args.variants)
    variants: dict[str, Runner] = {"marian": hf_runner(marian, new)}
    for precision in args.precisions:
        if f"ours-{precision}" in wanted:
            model = ours if precision == "fp32" else to_inference(copy.deepcopy(ours), precision)
            variants[f"ours-{precision}"] = hf_runner(model, new)
    if "ours-fp32-static" in wanted:
        variants["ours-fp32-static"] = hf_runner(ours, new, cache="static")
    if args.compile:  # torch.compile needs the static cache; it cannot trace torch.ao's int8 linear layers
        for precision in [p for p in args.precisions if p != "int8"]:
            model = ours if precision == "fp32" else to_inference(copy.deepcopy(ours), precision)
            variants[f"ours-{precision}-compiled"] = hf_runner(model, new, cache="static", compiled=True)
    need_ct2 = {name for name in wanted if name.startswith("ct2-")}
    if need_ct2:
        from ctranslate2.converters import TransformersConverter

        from vanilla_transformer.export_ctranslate2 import export

        started = time.perf_counter()
        ours_dir = export(ours, tokenizer, os.path.join(workdir, "ct2-ours"), force=True)
        marian_src = os.path.join(workdir, "marian")
        marian.save_pretrained(marian_src)
        tokenizer.save_pretrained(marian_src)
        marian_dir = TransformersConverter(marian_src).convert(os.path.join(workdir, "ct2-marian"), force=True)
        print(f"   CTranslate2 conversions (float32, both models): {time.perf_counter() - started:.1f} s")
        for source, folder in (("ours", ours_dir), ("marian", marian_dir)):
            for precision, compute_type in (("fp32", "float32"), ("int8", "int8")):
                name = f"ct2-{source}-{precision}"
                if name in wanted:
                    variants[name] = ct2_runner(folder, tokens, args.threads, new, compute_type)
    return variants


# ---------------------------------------------------------------------------------------------------------
# Agreement, then timing
# ---------------------------------------------------------------------------------------------------------
def agreement(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Share of identical sequences, and of tokens equal to the reference up to the first difference."""
    same_rows = (reference == other).all(dim=1)
    differs = (reference != other).int()
    first = torch.where(differs.any(dim=1), differs.argmax(dim=1), torch.full_like(differs[:, 0], reference.shape[1]))
    return {
        "sequences": float(same_rows.float().mean()),
        "prefix_tokens": float(first.float().mean()) / reference.shape[1],
    }


def run_case(name: str, variants: dict[str, Runner], args: argparse.Namespace, vocab: int, gen: torch.Generator):
    beams, batch = CASES[name]
    source = torch.randint(4, vocab - 1, (batch, args.gen_src), generator=gen)  # no special token, no <pad>
    first_call, outputs, failed = {}, {}, {}
    for variant, run in variants.items():  # also the warm-up of compiled variants: its time is reported
        started = time.perf_counter()
        try:
            outputs[variant] = run(source, beams)
        except Exception as error:  # e.g. torch.compile of a layer it cannot trace: reported, not timed
            if variant == "marian":
                raise
            failed[variant] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            continue
        first_call[variant] = time.perf_counter() - started
    reference_name = "ours-fp32" if "ours-fp32" in outputs else "marian"
    reference = outputs[reference_name]
    agree = {variant: agreement(reference, out) for variant, out in outputs.items()}
    fns = {variant: (lambda run=run: run(source, beams)) for variant, run in variants.items() if variant in outputs}
    times = bench.interleaved(fns, args.warmup, args.reps)
    new_tokens = batch * args.new_tokens
    result = {"case": name, "beams": beams, "batch": batch, "new_tokens": new_tokens, "variants": {}}
    result["failed"], result["agreement_reference"] = failed, reference_name
    for variant, seconds in times.items():
        result["variants"][variant] = {
            "tokens_per_s": new_tokens / statistics.median(seconds),
            "seconds": seconds,
            "first_call_seconds": first_call[variant],
            "agreement": agree[variant],
            "ratio_to_marian": bench.ratio_stats(seconds, times["marian"]),
        }
    return result


def _fmt_ratio(stats: dict) -> str:
    return f"{stats['median']:.2f}x [{stats['min']:.2f}-{stats['max']:.2f}]"


def print_case(size: str, case: dict) -> None:
    print(f"   {case['case']} ({case['new_tokens']} new tokens per call):")
    for variant, error in case.get("failed", {}).items():
        print(f"      {variant:24s} failed, not timed: {error}")
    for variant, entry in case["variants"].items():
        agree = entry["agreement"]
        print(
            f"      {variant:24s} {entry['tokens_per_s']:9,.1f} new tok/s  {_fmt_ratio(entry['ratio_to_marian']):20s}"
            f" vs marian; same sequences as {case['agreement_reference']} {agree['sequences']:.0%}, tokens "
            f"{agree['prefix_tokens']:.0%};"
            f" first call {entry['first_call_seconds']:.2f} s"
        )


def markdown_table(results: dict) -> str:
    """New tokens/s and the ratio to marian (median [min-max]) per size, case and variant."""
    variants = []
    for size in results["sizes"]:
        for case in size["cases"]:
            variants += [v for v in case["variants"] if v not in variants]
    rows = ["| size | case | " + " | ".join(variants) + " |", "|---|---|" + "---|" * len(variants)]
    for size in results["sizes"]:
        for case in size["cases"]:
            cells = []
            for variant in variants:
                entry = case["variants"].get(variant)
                if entry is None:
                    cells.append("")
                    continue
                ratio = entry["ratio_to_marian"]
                agree = entry["agreement"]["sequences"]
                cells.append(f"{entry['tokens_per_s']:,.0f} ({ratio['median']:.2f}x; {agree:.0%} same)")
            rows.append(f"| {size['size']} | {case['case']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------------------
# Quality of a trained model per precision
# ---------------------------------------------------------------------------------------------------------
def quality(model_dir: str, source_file: str, reference_file: str, args: argparse.Namespace) -> dict:
    """BLEU / chrF / exact match of `model_dir` on a test set in each precision and with CTranslate2 (fp32, int8),
    through `translate` (the saved generation config), and the share of translations identical to fp32."""
    from vanilla_transformer.data import read_lines
    from vanilla_transformer.training import score
    from vanilla_transformer.translate import load, translate

    sources, references = read_lines(source_file), read_lines(reference_file)
    if len(sources) != len(references):
        raise SystemExit(f"{source_file} has {len(sources)} lines but {reference_file} has {len(references)}")
    setups = [("transformers", precision) for precision in args.precisions]
    setups += [("ctranslate2", "fp32"), ("ctranslate2", "int8")]
    rows, fp32 = [], None
    for backend, precision in setups:
        pipe = load(model_dir, precision=precision, backend=backend)
        started = time.perf_counter()
        hypotheses = list(translate(pipe, sources, batch_size=args.quality_batch_size, truncate=True))
        seconds = time.perf_counter() - started
        fp32 = hypotheses if fp32 is None else fp32
        row = {"backend": backend, "precision": precision, "seconds": seconds, **score(hypotheses, references)}
        row["same_as_fp32"] = sum(a == b for a, b in zip(hypotheses, fp32, strict=True)) / len(sources)
        rows.append(row)
        print(
            f"{backend:12s} {precision:5s} BLEU {row['bleu']:6.2f}  chrF {row['chrf']:6.2f}  same as fp32 "
            f"{row['same_as_fp32']:.1%}  ({seconds:.1f} s for {len(sources)} sentences)",
            flush=True,
        )
    return {"model": model_dir, "source": source_file, "reference": reference_file, "rows": rows}


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------
ALL_VARIANTS = [
    "marian",
    "ours-fp32",
    "ours-bf16",
    "ours-fp16",
    "ours-int8",
    "ours-fp32-static",
    "ct2-ours-fp32",
    "ct2-ours-int8",
    "ct2-marian-fp32",
    "ct2-marian-int8",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny size, 1 repetition: checks every code path")
    parser.add_argument("--sizes", nargs="+", default=["small", "base"], choices=sorted(bench.SIZES))
    parser.add_argument("--cases", nargs="+", default=["greedy-b1", "greedy-b16", "beam4-b16"], choices=list(CASES))
    parser.add_argument(
        "--variants",
        nargs="+",
        default=[v for v in ALL_VARIANTS if v != "ours-fp16"],
        choices=ALL_VARIANTS,
        help="marian always runs (the reference); default: all but ours-fp16 (few CPU kernels)",
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "bf16", "int8"],
        choices=["fp32", "bf16", "fp16", "int8"],
        help="ours' precisions (for ours-<p>, --compile and --quality)",
    )
    parser.add_argument("--compile", action="store_true", help="add ours-<precision>-compiled (static cache)")
    parser.add_argument("--freezing", action="store_true", help="with --compile: inductor's weight freezing")
    parser.add_argument("--threads", type=int, default=2, help="torch threads and CTranslate2 intra_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=5, help="timed calls per variant and case")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per variant before timing")
    parser.add_argument("--gen-src", type=int, default=32, help="source length")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--quality", nargs=3, metavar=("MODEL_DIR", "SOURCE", "REFERENCE"))
    parser.add_argument("--quality-batch-size", type=int, default=32)
    parser.add_argument("--json", help="write all measurements to this file")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="only print the Markdown table of saved runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.reps, args.warmup, args.gen_src, args.new_tokens = ["tiny"], 1, 0, 5, 4
        args.cases = ["greedy-b1", "beam4-b1"]
    args.variants = ["marian", *[v for v in args.variants if v != "marian"]]
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    bench.hf_logging.set_verbosity_error()
    if args.table:
        runs = []
        for path in args.table:
            with open(path) as handle:
                runs.append(json.load(handle))
        combined = {"sizes": [size for run in runs for size in run.get("sizes", [])]}
        print(markdown_table(combined))
        return combined
    torch.set_num_threads(args.threads)
    if args.freezing:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
    machine = bench.machine_info()
    try:
        import ctranslate2

        machine["ctranslate2"] = ctranslate2.__version__
    except ImportError:
        ctranslate2 = None
    results: dict = {"machine": machine, "args": vars(args)}
    if args.quality:
        results["quality"] = quality(*args.quality, args)
    else:
        if ctranslate2 is None:
            args.variants = [v for v in args.variants if not v.startswith("ct2-")]
            print("CTranslate2 is not installed: its variants are skipped (pip install ctranslate2)")
        print(
            f"torch {machine['torch']}, transformers {machine['transformers']}, CTranslate2 "
            f"{machine.get('ctranslate2', '-')}, {machine['threads']} threads, "
            f"load {machine['load_average_start'][0]:.2f}"
        )
        results["sizes"] = []
        gen = torch.Generator().manual_seed(args.seed)
        for name in args.sizes:
            ours, marian = build_pair(bench.SIZES[name], args.seed)
            print(f"\n== {name}: {bench.SIZES[name]}")
            with tempfile.TemporaryDirectory(prefix="fast-inference-") as workdir:
                variants = build_variants(ours, marian, args, workdir)
                cases = []
                for case in args.cases:
                    cases.append(run_case(case, variants, args, ours.config.vocab_size, gen))
                    print_case(name, cases[-1])
            results["sizes"].append({"size": name, "config": bench.SIZES[name], "cases": cases})
        print("\n" + markdown_table(results))
    machine["load_average_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


if __name__ == "__main__":
    main()
