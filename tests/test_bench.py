"""Smoke test of bench/bench.py: its --quick mode runs every code path and checks what it claims about the two
models (same parameter count, same function, exactly the requested new tokens). No timing is asserted here."""

import importlib.util
import math
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_under_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_runs_every_case_and_compares_like_with_like(tmp_path) -> None:
    bench = load_bench()
    out = tmp_path / "results.json"
    results = bench.main(["--quick", "--threads", "1", "--json", str(out)])
    assert out.exists()
    (size,) = results["sizes"]
    assert set(size["attn"]) == {"sdpa", "eager"}
    for entry in size["attn"].values():
        ours, marian = entry["parameters"]["ours"], entry["parameters"]["marian"]
        assert ours[0] == marian[0] > 0  # trainable parameters match
        assert ours[1] == 0 and marian[1] > 0  # only Marian stores its sinusoid tables as (frozen) weights
        assert entry["same_function"]["max_abs_logit_diff"] < 1e-4
        assert entry["same_function"]["same_greedy_tokens"]
        train = entry["train"]
        for model in ("ours", "marian"):
            assert len(train[model]["seconds"]) == 1 and train[model]["tokens_per_s"] > 0
            assert 0 < train[model]["mfu"] and math.isfinite(train[model]["mfu"])
            assert all(peak > 0 for peak in train["peak_memory_bytes"][model])
        modes = {(case["mode"], case["batch"]) for case in entry["generate"]}
        assert {("greedy", 1), ("greedy", 2), ("beam4", 1), ("beam4", 2)} <= modes
        for case in entry["generate"]:
            assert case["new_tokens"] == case["batch"] * 3
            assert case["flops"] > 0 and case["bytes"] > 0 and case["limit_tokens_per_s"] > 0
            assert case["ratio"]["min"] <= case["ratio"]["median"] <= case["ratio"]["max"]
    assert ("greedy-nocache", 1) in {(c["mode"], c["batch"]) for c in size["attn"]["sdpa"]["generate"]}


def test_analytic_flops_match_a_hand_count() -> None:
    bench = load_bench()
    s = bench.Shape(E=4, F=8, V=10, L=1)
    # one encoder layer over 3 tokens: q,k,v,o (4 * 2*3*4*4) + ffn (2 * 2*3*4*8) + QK^T and AV (2 * 2*3*3*4)
    assert bench.encoder_flops(s, batch=1, src=3) == 384 + 384 + 144
    # one cached decoder step, 1 row, no past, 2 source tokens: self q,k,v,o + cross q,o (6 * 2*16) + ffn (2*2*32)
    # + self attention over 1 position (4*1*4) + cross attention over 2 (4*2*4) + output projection (2*4*10)
    flops, nbytes = bench.decode_step_work(s, rows=1, past=0, src=2)
    assert flops == 192 + 128 + 16 + 32 + 80
    assert nbytes == 4 * (6 * 16 + 2 * 32 + 40) + 4 * 2 * 4 * (1 + 2)
