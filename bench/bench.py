"""Side-by-side benchmark: VanillaTransformerForConditionalGeneration against transformers' MarianMTModel.

Both models are built from the same sizes and the same architecture (post-norm, sinusoidal positions, tied
embeddings, ReLU, scaled embeddings, dropout 0.1 when training), fp32, `attn_implementation` "sdpa" (and
"eager" for reference), fixed seed and thread count. Marian gets our weights copied in, so the run also checks
that the two compute the same function (logits, greedy tokens). Every measurement alternates the two models
(A B A B ...) and reports the ratio ours / Marian of each adjacent pair: min / median / max.

Measured per size:
  1. training throughput: target tokens/s of forward + backward + AdamW step (teacher forcing,
     label smoothing 0.1 for both through the same recipe loss, `vanilla_transformer.losses`, as train.py
     trains every model);
  2. generation throughput: new tokens/s, greedy and beam 4, batch 1 and 16, exactly 64 new tokens,
     with cache (greedy without cache as a reference);
  3. peak memory of a training step: bytes of live tensors above the state before the step, from the
     torch profiler's allocator events;
  4. MFU: analytic training FLOPs/s over the fp32 GEMM rate measured in the same run.
Each case also states the analytic FLOPs per step, bytes per step (weights + caches) and the hardware limit
(the larger of FLOPs / GEMM rate and bytes / DRAM read bandwidth, both measured in the same run).

Usage (see bench/README.md):
    python bench/bench.py                       # full run, both sizes
    python bench/bench.py --quick               # a few seconds: tiny sizes, 1 repetition
    python bench/bench.py --sizes small --json bench/results.json
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from torch import nn  # noqa: E402
from transformers import GenerationConfig, MarianConfig, MarianMTModel  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from vanilla_transformer import VanillaTransformerConfig, VanillaTransformerForConditionalGeneration  # noqa: E402
from vanilla_transformer.convert import vanilla_name  # noqa: E402
from vanilla_transformer.losses import label_smoothed_cross_entropy  # noqa: E402

SIZES = {
    "small": dict(vocab_size=8000, d_model=256, ffn=1024, layers=3, heads=4),
    "base": dict(vocab_size=32000, d_model=512, ffn=2048, layers=6, heads=8),
    # --quick only: exercises every code path in seconds; its numbers mean nothing.
    "tiny": dict(vocab_size=128, d_model=32, ffn=64, layers=2, heads=4),
}
PAD, BOS, EOS = 0, 1, 2
CLOCK = time.perf_counter  # --clock cpu: time.process_time, robust to a shared machine with --threads 1
LABEL_SMOOTHING = 0.1
DROPOUT = 0.1


# ---------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------
def _common_fields(size: dict, max_positions: int) -> dict:
    return dict(
        vocab_size=size["vocab_size"],
        d_model=size["d_model"],
        encoder_layers=size["layers"],
        decoder_layers=size["layers"],
        encoder_attention_heads=size["heads"],
        decoder_attention_heads=size["heads"],
        encoder_ffn_dim=size["ffn"],
        decoder_ffn_dim=size["ffn"],
        activation_function="relu",
        dropout=DROPOUT,
        attention_dropout=0.0,
        activation_dropout=0.0,
        max_position_embeddings=max_positions,
        scale_embedding=True,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=BOS,
        tie_word_embeddings=True,
    )


def build_models(size: dict, attn: str, seed: int, max_positions: int = 256) -> tuple[nn.Module, nn.Module]:
    """Ours (paper settings; Marian's sinusoid layout so weights can be compared) and Marian with our weights."""
    fields = _common_fields(size, max_positions)
    torch.manual_seed(seed)
    ours = VanillaTransformerForConditionalGeneration(
        VanillaTransformerConfig(
            **fields,
            bos_token_id=BOS,
            normalize_before=False,
            positional_encoding_layout="concatenated",
            add_final_logits_bias=False,
            attn_implementation=attn,
        )
    )
    marian = MarianMTModel(
        MarianConfig(
            **fields, share_encoder_decoder_embeddings=True, forced_eos_token_id=None, attn_implementation=attn
        )
    )
    ours_state = ours.state_dict()
    marian_state = marian.state_dict()
    mapped = {}
    for name in marian_state:
        if name.endswith("embed_positions.weight") or name == "final_logits_bias":
            continue  # Marian's frozen sinusoid tables (same values as ours) and its zero logits bias
        mapped[name] = ours_state[vanilla_name(name)]
    missing = marian.load_state_dict(mapped, strict=False)
    unexpected_missing = [k for k in missing.missing_keys if not k.endswith("embed_positions.weight")]
    unexpected_missing = [k for k in unexpected_missing if k != "final_logits_bias"]
    if unexpected_missing or missing.unexpected_keys:
        raise RuntimeError(f"weight copy failed: {unexpected_missing} {missing.unexpected_keys}")
    pe_ours = ours.model.decoder.embed_positions.pe
    pe_marian = marian.model.decoder.embed_positions.weight
    if not torch.allclose(pe_ours, pe_marian, atol=1e-6):
        raise RuntimeError("the two sinusoid tables differ")
    return ours, marian


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, frozen parameters); shared tensors counted once."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen


def check_same_function(ours: nn.Module, marian: nn.Module, vocab: int, gen: torch.Generator) -> dict:
    """Same weights in both: eval logits must agree, and greedy decoding should give the same tokens."""
    ours.eval()
    marian.eval()
    src = torch.randint(3, vocab, (2, 12), generator=gen)
    dec = torch.randint(3, vocab, (2, 9), generator=gen)
    with torch.no_grad():
        a = ours(input_ids=src, attention_mask=torch.ones_like(src), decoder_input_ids=dec).logits
        b = marian(input_ids=src, attention_mask=torch.ones_like(src), decoder_input_ids=dec).logits
        config = generation_config(num_beams=1, new_tokens=8, use_cache=True)
        ga = ours.generate(input_ids=src, attention_mask=torch.ones_like(src), generation_config=config)
        gb = marian.generate(input_ids=src, attention_mask=torch.ones_like(src), generation_config=config)
    diff = float((a - b).abs().max())
    if diff > 1e-3 * max(1.0, float(a.abs().max())):
        raise RuntimeError(f"ours and Marian compute different logits (max |diff| {diff:.3g})")
    return {"max_abs_logit_diff": diff, "same_greedy_tokens": bool(torch.equal(ga, gb))}


def generation_config(num_beams: int, new_tokens: int, use_cache: bool) -> GenerationConfig:
    """Identical for both models: exactly `new_tokens` new tokens, no forced EOS, no sampling."""
    return GenerationConfig(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        num_beams=num_beams,
        do_sample=False,
        use_cache=use_cache,
        early_stopping=False,
        pad_token_id=PAD,
        eos_token_id=EOS,
        bos_token_id=BOS,
        decoder_start_token_id=BOS,
    )


# ---------------------------------------------------------------------------------------------------------
# Machine limits, measured in the same run
# ---------------------------------------------------------------------------------------------------------
def gemm_rate(n: int = 1024, repeats: int = 15) -> float:
    """Best-of-`repeats` fp32 GEMM rate (FLOP/s) of an n x n @ n x n matmul (best: the machine may be shared)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        start = CLOCK()
        torch.mm(a, b, out=out)
        times.append(CLOCK() - start)
    return 2 * n**3 / min(times)


def dram_read_bandwidth(megabytes: int = 256, repeats: int = 7) -> float:
    """Best-of-`repeats` read bandwidth (bytes/s) of summing a buffer much larger than the caches."""
    x = torch.ones(megabytes * 2**20 // 4)
    x.sum()
    times = []
    for _ in range(repeats):
        start = CLOCK()
        x.sum()
        times.append(CLOCK() - start)
    return x.numel() * 4 / min(times)


# ---------------------------------------------------------------------------------------------------------
# Analytic work per step (multiply-add = 2 FLOPs; matmuls and attention only, as is usual for MFU)
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Shape:
    E: int
    F: int
    V: int
    L: int


def _shape(size: dict) -> Shape:
    return Shape(size["d_model"], size["ffn"], size["vocab_size"], size["layers"])


def encoder_flops(s: Shape, batch: int, src: int) -> float:
    per_layer = 2 * src * (4 * s.E * s.E + 2 * s.E * s.F) + 4 * src * src * s.E
    return batch * s.L * per_layer


def decoder_flops(s: Shape, batch: int, tgt: int, src: int, cross_kv: bool = True, logits_rows: int | None = None):
    """Teacher-forced decoder over `tgt` positions (full T x T attention, as computed with a mask)."""
    proj = 2 * tgt * (4 * s.E * s.E + 2 * s.E * s.E + 2 * s.E * s.F)  # self q,k,v,o + cross q,o + ffn
    kv = 2 * src * 2 * s.E * s.E if cross_kv else 0  # cross k,v over the source
    attention = 4 * tgt * tgt * s.E + 4 * tgt * src * s.E
    rows = tgt if logits_rows is None else logits_rows
    return batch * (s.L * (proj + kv + attention) + 2 * rows * s.E * s.V)


def training_flops(s: Shape, batch: int, src: int, tgt: int) -> float:
    """Forward + backward (2x forward) of one teacher-forced step."""
    return 3 * (encoder_flops(s, batch, src) + decoder_flops(s, batch, tgt, src))


def decode_step_work(s: Shape, rows: int, past: int, src: int) -> tuple[float, float]:
    """(FLOPs, bytes) of one cached decoder step for `rows` sequences with `past` cached positions: the
    weights it must read (decoder layers without the cross k/v projections, plus the V x E output matrix)
    and the self- and cross-attention caches."""
    flops = rows * (s.L * (2 * (6 * s.E * s.E + 2 * s.E * s.F) + 4 * (past + 1) * s.E + 4 * src * s.E))
    flops += rows * 2 * s.E * s.V
    weight_bytes = 4 * (s.L * (6 * s.E * s.E + 2 * s.E * s.F) + s.V * s.E)
    cache_bytes = 4 * rows * s.L * 2 * s.E * ((past + 1) + src)
    return flops, weight_bytes + cache_bytes


def generation_work(s: Shape, batch: int, beams: int, src: int, new: int) -> tuple[float, float]:
    """(FLOPs, bytes) of a whole cached generation: encoder + cross k/v once, then `new` decoder steps."""
    rows = batch * beams
    flops = encoder_flops(s, batch, src) + rows * s.L * 2 * src * 2 * s.E * s.E
    nbytes = 4 * (s.L * (4 * s.E * s.E + 2 * s.E * s.F) + s.V * s.E)  # encoder weights, read once
    for past in range(new):
        f, b = decode_step_work(s, rows, past, src)
        flops, nbytes = flops + f, nbytes + b
    return flops, nbytes


# ---------------------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------------------
def make_training_batch(vocab: int, batch: int, src: int, tgt: int, gen: torch.Generator) -> dict:
    input_ids = torch.randint(3, vocab, (batch, src), generator=gen)
    labels = torch.randint(3, vocab, (batch, tgt), generator=gen)
    labels[:, -1] = EOS
    decoder_input_ids = torch.cat([torch.full((batch, 1), BOS), labels[:, :-1]], dim=1)
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        decoder_input_ids=decoder_input_ids,
        labels=labels,
    )


def training_step_fn(model: nn.Module, is_ours: bool, batch: dict) -> Callable[[], float]:
    """One forward + backward + AdamW step; returns the loss."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> float:
        inputs = {k: v for k, v in batch.items() if k != "labels"}  # as Trainer pops them for the recipe loss
        smoothed, _ = label_smoothed_cross_entropy(model(**inputs).logits, batch["labels"], LABEL_SMOOTHING)
        loss = smoothed / int((batch["labels"] != -100).sum())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def peak_step_memory(step: Callable[[], float]) -> int:
    """Peak bytes of tensors allocated during `step` above what was live before it (profiler allocator events)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    peak = 0

    def walk(events: list) -> None:
        nonlocal peak
        for event in events:
            if event.tag == _EventType.Allocation:
                peak = max(peak, event.extra_fields.total_allocated)
            walk(event.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    return peak


def generate_fn(model: nn.Module, inputs: dict, config: GenerationConfig, new: int) -> Callable[[], None]:
    def run() -> None:
        out = model.generate(**inputs, generation_config=config)
        if out.shape[1] != new + 1:
            raise RuntimeError(f"expected {new} new tokens, got {out.shape[1] - 1}")

    return run


def decode_loop_fn(model: nn.Module, inputs: dict, new: int, is_ours: bool) -> Callable[[], None]:
    """Greedy decoding by hand: encoder once, then `new` cached forward calls; no GenerationMixin around it."""
    from transformers.cache_utils import DynamicCache, EncoderDecoderCache

    def run() -> None:
        encoder_outputs = model.get_encoder()(**inputs)
        cache = EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
        token = torch.full((inputs["input_ids"].shape[0], 1), BOS)
        extra = {"logits_to_keep": 1} if is_ours else {}
        for _ in range(new):
            out = model(
                encoder_outputs=encoder_outputs,
                attention_mask=inputs["attention_mask"],
                decoder_input_ids=token,
                cache=cache,
                use_cache=True,
                **extra,
            )
            token = out.logits[:, -1].argmax(-1, keepdim=True)

    return run


def matmul_floor_fn(model: nn.Module, rows: int, new: int, transposed: bool = False) -> Callable[[], None]:
    """Only the matrix products of `new` cached decoder steps, with the model's own weights: the decoder's linear
    maps except the cross-attention key/value projections (computed once per source), plus the output projection.
    `transposed`: the same products from (in, out)-contiguous copies of the weights (x @ W_t instead of nn.Linear's
    x @ W^T): what a pre-packed inference copy of the weights would gain on this BLAS."""
    decoder = model.get_decoder()
    skip = set()
    for layer in decoder.layers:
        skip |= {id(layer.encoder_attn.k_proj), id(layer.encoder_attn.v_proj)}
    linears = [m for m in decoder.modules() if isinstance(m, nn.Linear) and id(m) not in skip]
    weights = [(m.weight, m.bias) for m in linears] + [(model.get_output_embeddings().weight, None)]
    inputs = {w.shape[1]: torch.randn(rows, 1, w.shape[1]) for w, _ in weights}
    if transposed:
        packed = [(w.detach().t().contiguous(), b) for w, b in weights]

        def run_transposed() -> None:
            for _ in range(new):
                for weight_t, bias in packed:
                    out = inputs[weight_t.shape[0]] @ weight_t
                    if bias is not None:
                        out += bias

        return run_transposed

    def run() -> None:
        for _ in range(new):
            for weight, bias in weights:
                nn.functional.linear(inputs[weight.shape[1]], weight, bias)

    return run


def input_check_seconds(rows: int, vocab: int, repeats: int = 2000) -> float:
    """Seconds per call of our token-id check on a (rows, 1) decoder input, the check every decoding step runs."""
    from vanilla_transformer.checks_vanilla_transformer import check_token_ids as _check_token_ids

    ids = torch.randint(3, vocab, (rows, 1))
    for _ in range(50):
        _check_token_ids(ids, vocab, "decoder_input_ids")
    start = CLOCK()
    for _ in range(repeats):
        _check_token_ids(ids, vocab, "decoder_input_ids")
    return (CLOCK() - start) / repeats


def step_breakdown(ours: nn.Module, marian: nn.Module, s: "Shape", batch: int, args: argparse.Namespace, gen) -> dict:
    """Where a greedy decoding step's time goes, per model: generate() vs the bare cached forward vs its matmuls."""
    src_ids = torch.randint(3, s.V, (batch, args.gen_src), generator=gen)
    inputs = {"input_ids": src_ids, "attention_mask": torch.ones_like(src_ids)}
    config = generation_config(1, args.new_tokens, use_cache=True)
    fns = {
        "ours/generate": generate_fn(ours, inputs, config, args.new_tokens),
        "marian/generate": generate_fn(marian, inputs, config, args.new_tokens),
        "ours/forward": decode_loop_fn(ours, inputs, args.new_tokens, True),
        "marian/forward": decode_loop_fn(marian, inputs, args.new_tokens, False),
        "matmuls": matmul_floor_fn(ours, batch, args.new_tokens),
        "matmuls_transposed": matmul_floor_fn(ours, batch, args.new_tokens, transposed=True),
    }
    with torch.inference_mode():
        times = interleaved(fns, args.warmup, args.gen_reps)
    per_step = {name: statistics.median(t) / args.new_tokens for name, t in times.items()}
    per_step["ours/input_checks"] = input_check_seconds(batch, s.V)
    return per_step


def timed(fn: Callable[[], object]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def interleaved(fns: dict[str, Callable[[], object]], warmup: int, reps: int) -> dict[str, list[float]]:
    """After `warmup` rounds, run the functions in turn, A B, B A, A B, ... (alternating which goes first, so neither
    model always runs in the other's wake); seconds per call, per model."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    items = list(fns.items())
    for rep in range(reps):
        for name, fn in items if rep % 2 == 0 else items[::-1]:
            times[name].append(timed(fn))
    return times


def ratio_stats(ours: list[float], marian: list[float], higher_is_better: bool = True) -> dict:
    """ours / Marian throughput (or memory) ratio of each adjacent pair."""
    ratios = [(m / o) if higher_is_better else (o / m) for o, m in zip(ours, marian, strict=True)]
    return {"min": min(ratios), "median": statistics.median(ratios), "max": max(ratios)}


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------
def run_size(name: str, args: argparse.Namespace, machine: dict) -> dict:
    size = SIZES[name]
    s = _shape(size)
    result: dict = {"size": name, "config": size, "attn": {}}
    gen = torch.Generator().manual_seed(args.seed)
    for attn in args.attn:
        ours, marian = build_models(size, attn, args.seed)
        counts = {"ours": parameter_counts(ours), "marian": parameter_counts(marian)}
        print(
            f"\n== {name} / {attn}: trainable parameters ours {counts['ours'][0]:,} Marian {counts['marian'][0]:,}"
            f" (Marian also holds {counts['marian'][1]:,} frozen sinusoid weights and a final_logits_bias buffer)"
        )
        if counts["ours"][0] != counts["marian"][0]:
            raise RuntimeError("parameter counts differ: the models are not configured identically")
        same = check_same_function(ours, marian, s.V, gen)
        print(
            f"   same function: max |logit diff| {same['max_abs_logit_diff']:.2e}, greedy tokens equal: "
            f"{same['same_greedy_tokens']}"
        )
        entry: dict = {"parameters": counts, "same_function": same}

        # 1 + 3 + 4: training throughput, memory, MFU (GEMM rate re-measured, best so far: the machine may be shared)
        gemm = max(machine["gemm_flops"], gemm_rate(256 if args.quick else 1024))
        b, src, tgt = args.train_batch, args.train_src, args.train_tgt
        batch = make_training_batch(s.V, b, src, tgt, gen)
        ours.train()
        marian.train()
        steps = {"ours": training_step_fn(ours, True, batch), "marian": training_step_fn(marian, False, batch)}
        times = interleaved(steps, args.warmup, args.reps)
        flops = training_flops(s, b, src, tgt)
        train = {"flops_per_step": flops, "target_tokens_per_step": b * tgt, "gemm_flops": gemm}
        for model_name, t in times.items():
            med = statistics.median(t)
            train[model_name] = {
                "tokens_per_s": b * tgt / med,
                "seconds": t,
                "mfu": flops / med / gemm,
            }
        train["ratio"] = ratio_stats(times["ours"], times["marian"])
        train["limit_tokens_per_s"] = b * tgt / (flops / gemm)
        memory = {}
        for model_name, step in steps.items():
            memory[model_name] = [peak_step_memory(step) for _ in range(args.memory_reps)]
        train["peak_memory_bytes"] = memory
        train["memory_ratio"] = ratio_stats(memory["ours"], memory["marian"], higher_is_better=False)
        entry["train"] = train
        print(
            f"   train {b}x{src}x{tgt}: ours {train['ours']['tokens_per_s']:,.0f} tok/s "
            f"(MFU {train['ours']['mfu']:.0%}), Marian {train['marian']['tokens_per_s']:,.0f} tok/s "
            f"(MFU {train['marian']['mfu']:.0%}); ratio {_fmt(train['ratio'])}; "
            f"limit {train['limit_tokens_per_s']:,.0f} tok/s"
        )
        print(
            f"   peak step memory: ours {statistics.median(memory['ours']) / 2**20:,.1f} MiB, Marian "
            f"{statistics.median(memory['marian']) / 2**20:,.1f} MiB; ratio {_fmt(train['memory_ratio'])}"
        )

        # 2: generation
        ours.eval()
        marian.eval()
        entry["generate"] = []
        cases = [(mode, batch_size) for mode in ("greedy", "beam4") for batch_size in args.gen_batches]
        if attn == args.attn[0]:
            cases += [("greedy-nocache", batch_size) for batch_size in args.nocache_batches]
        for mode, batch_size in cases:
            beams = 4 if mode == "beam4" else 1
            config = generation_config(beams, args.new_tokens, use_cache=mode != "greedy-nocache")
            src_ids = torch.randint(3, s.V, (batch_size, args.gen_src), generator=gen)
            inputs = {"input_ids": src_ids, "attention_mask": torch.ones_like(src_ids)}
            fns = {
                "ours": generate_fn(ours, inputs, config, args.new_tokens),
                "marian": generate_fn(marian, inputs, config, args.new_tokens),
            }
            with torch.inference_mode():
                times = interleaved(fns, args.warmup, args.gen_reps)
            new_tokens = batch_size * args.new_tokens
            flops, nbytes = generation_work(s, batch_size, beams, args.gen_src, args.new_tokens)
            limit_s = max(flops / machine["gemm_flops"], nbytes / machine["dram_read_bytes_per_s"])
            case = {
                "mode": mode,
                "batch": batch_size,
                "new_tokens": new_tokens,
                "flops": flops,
                "bytes": nbytes,
                "limit_tokens_per_s": new_tokens / limit_s,
                "limit_bound": "compute"
                if flops / machine["gemm_flops"] > nbytes / machine["dram_read_bytes_per_s"]
                else "memory",
            }
            for model_name, t in times.items():
                case[model_name] = {"tokens_per_s": new_tokens / statistics.median(t), "seconds": t}
            case["ratio"] = ratio_stats(times["ours"], times["marian"])
            entry["generate"].append(case)
            note = " (no-cache reference; limit is for the cached algorithm)" if mode == "greedy-nocache" else ""
            print(
                f"   {mode:14s} batch {batch_size:2d}: ours {case['ours']['tokens_per_s']:8,.1f} new tok/s, Marian "
                f"{case['marian']['tokens_per_s']:8,.1f}; ratio {_fmt(case['ratio'])}; limit "
                f"{case['limit_tokens_per_s']:,.0f} ({case['limit_bound']}-bound){note}"
            )
        if attn == args.attn[0]:
            entry["step_breakdown"] = {}
            for batch_size in args.gen_batches:
                per_step = step_breakdown(ours, marian, s, batch_size, args, gen)
                entry["step_breakdown"][batch_size] = per_step
                ms = {k: v * 1e3 for k, v in per_step.items()}
                print(
                    f"   greedy step, batch {batch_size:2d} (ms): generate ours {ms['ours/generate']:.3f} / Marian "
                    f"{ms['marian/generate']:.3f}; bare cached forward ours {ms['ours/forward']:.3f} / Marian "
                    f"{ms['marian/forward']:.3f}; its matmuls alone {ms['matmuls']:.3f} "
                    f"(from transposed weight copies {ms['matmuls_transposed']:.3f}); "
                    f"our input checks {ms['ours/input_checks']:.4f}"
                )
        result["attn"][attn] = entry
        del ours, marian
    return result


def _fmt(stats: dict) -> str:
    return f"{stats['median']:.2f}x [{stats['min']:.2f}-{stats['max']:.2f}]"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repetition: checks the code path")
    parser.add_argument("--sizes", nargs="+", default=["small", "base"], choices=sorted(SIZES))
    parser.add_argument("--attn", nargs="+", default=["sdpa", "eager"], choices=["sdpa", "eager"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=5, help="timed training steps per model")
    parser.add_argument("--gen-reps", type=int, default=3, help="timed generate() calls per model and case")
    parser.add_argument("--memory-reps", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--train-src", type=int, default=32)
    parser.add_argument("--train-tgt", type=int, default=32)
    parser.add_argument("--gen-src", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--gen-batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--nocache-batches", type=int, nargs="*", default=[1])
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall: elapsed time (the default, what a user waits); cpu: CPU time of this process, which a shared "
        "machine inflates less (use with --threads 1: with more threads it counts their spinning)",
    )
    parser.add_argument("--json", help="write all measurements to this file")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="only print the Markdown table of saved runs")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.reps, args.gen_reps, args.warmup = ["tiny"], 1, 1, 1
        args.train_batch, args.train_src, args.train_tgt = 2, 5, 4
        args.gen_src, args.new_tokens, args.gen_batches = 4, 3, [1, 2]
    return args


def machine_info(**extra: object) -> dict:
    """Versions, CPU, threads and the load average at the start of a run, plus `extra`."""
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "load_average_start": os.getloadavg(),
        **extra,
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    hf_logging.set_verbosity_error()  # here, not at import: the tests import this module
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.table:
        runs = []
        for path in args.table:
            with open(path) as handle:
                runs.append(json.load(handle))
        combined = {"sizes": [size for run in runs for size in run["sizes"]]}
        print(markdown_table(combined))
        for run in runs:
            m = run["machine"]
            names = ", ".join(size["size"] for size in run["sizes"])
            print(
                f"\n{names}: threads={m['threads']}, {m.get('clock', 'wall')} clock, load average "
                f"{m['load_average_start'][0]:.2f} at start, {m['load_average_end'][0]:.2f} at end; fp32 GEMM "
                f"{m['gemm_flops'] / 1e9:.0f} GFLOP/s at start, {m['gemm_flops_end'] / 1e9:.0f} at end; "
                f"DRAM read {m['dram_read_bytes_per_s'] / 1e9:.1f} GB/s"
            )
        return combined
    torch.set_num_threads(args.threads)
    machine = machine_info(
        clock=args.clock,
        gemm_flops=gemm_rate(256 if args.quick else 1024),
        dram_read_bytes_per_s=dram_read_bandwidth(8 if args.quick else 256),
    )
    print(
        f"torch {machine['torch']}, transformers {machine['transformers']}, {machine['threads']} threads, "
        f"load {machine['load_average_start'][0]:.2f}; fp32 GEMM {machine['gemm_flops'] / 1e9:.0f} GFLOP/s, "
        f"DRAM read {machine['dram_read_bytes_per_s'] / 1e9:.1f} GB/s"
    )
    results = {"machine": machine, "args": vars(args), "sizes": []}
    for name in args.sizes:
        results["sizes"].append(run_size(name, args, machine))
    machine["load_average_end"] = os.getloadavg()
    machine["gemm_flops_end"] = gemm_rate(256 if args.quick else 1024)
    print(
        f"\nload at end {machine['load_average_end'][0]:.2f}; GEMM at end "
        f"{machine['gemm_flops_end'] / 1e9:.0f} GFLOP/s"
    )
    print("\n" + markdown_table(results))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


def markdown_table(results: dict) -> str:
    """The README's results table: ours / Marian ratios (median [min-max]) and absolute medians."""
    rows = [
        "| size | attn | measurement | ours | Marian | ours / Marian, median [min-max] | hardware limit |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in results["sizes"]:
        for attn, entry in size["attn"].items():
            train = entry["train"]
            mem = train["peak_memory_bytes"]
            ours, marian = train["ours"], train["marian"]
            rows.append(
                f"| {size['size']} | {attn} | training, target tok/s (MFU) | {ours['tokens_per_s']:,.0f} "
                f"({ours['mfu']:.0%}) | {marian['tokens_per_s']:,.0f} ({marian['mfu']:.0%}) "
                f"| {_fmt(train['ratio'])} | {train['limit_tokens_per_s']:,.0f} (FLOPs / GEMM rate) |"
            )
            rows.append(
                f"| {size['size']} | {attn} | peak training-step memory, MiB | "
                f"{statistics.median(mem['ours']) / 2**20:,.1f} | {statistics.median(mem['marian']) / 2**20:,.1f} "
                f"| {_fmt(train['memory_ratio'])} | |"
            )
            for case in entry["generate"]:
                rows.append(
                    f"| {size['size']} | {attn} | {case['mode']} batch {case['batch']}, new tok/s | "
                    f"{case['ours']['tokens_per_s']:,.1f} | {case['marian']['tokens_per_s']:,.1f} | "
                    f"{_fmt(case['ratio'])} | {case['limit_tokens_per_s']:,.0f} ({case['limit_bound']}-bound) |"
                )
    rows += [
        "",
        "Greedy decoding step, ms (medians): `generate()` per new token; the bare cached `forward` loop; the step's",
        "matrix products alone (nn.Linear layout; from (in, out)-contiguous weight copies); our per-step id check.",
        "",
        "| size | batch | generate ours | generate Marian | forward ours | forward Marian | matmuls | transposed "
        "| id check |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in results["sizes"]:
        for entry in size["attn"].values():
            for batch, ms in entry.get("step_breakdown", {}).items():
                ms = {k: v * 1e3 for k, v in ms.items()}
                rows.append(
                    f"| {size['size']} | {batch} | {ms['ours/generate']:.2f} | {ms['marian/generate']:.2f} | "
                    f"{ms['ours/forward']:.2f} | {ms['marian/forward']:.2f} | {ms['matmuls']:.2f} | "
                    f"{ms.get('matmuls_transposed', float('nan')):.2f} | "
                    f"{ms['ours/input_checks']:.4f} |"
                )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
