"""Smoke test of bench/fast_inference.py: its --quick mode builds every variant from the same weights, checks that
they decode the same tokens, and times each case. No timing is asserted here."""

import importlib.util
import sys
from pathlib import Path

import pytest
from conftest import NEEDS_VECTORISING_INDUCTOR

pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"

pytest.importorskip("ctranslate2")


def load_fast_inference():
    sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location("fast_inference_under_test", BENCH_DIR / "fast_inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_mode_runs_every_variant_on_the_same_function(tmp_path, capsys) -> None:
    fast = load_fast_inference()
    out = tmp_path / "fast.json"
    results = fast.main(["--quick", "--threads", "1", "--json", str(out)])
    assert out.exists()
    (size,) = results["sizes"]
    assert [case["case"] for case in size["cases"]] == ["greedy-b1", "beam4-b1"]
    expected = {v for v in fast.ALL_VARIANTS if v != "ours-fp16"}
    for case in size["cases"]:
        assert set(case["variants"]) == expected
        for name, entry in case["variants"].items():
            assert len(entry["seconds"]) == 1 and entry["tokens_per_s"] > 0
            ratio = entry["ratio_to_marian"]
            assert ratio["min"] <= ratio["median"] <= ratio["max"]
            if "int8" not in name and "bf16" not in name:  # the same function in float32: the same tokens
                assert entry["agreement"] == {"sequences": 1.0, "prefix_tokens": 1.0}, name
    table = fast.main(["--table", str(out)])
    assert table["sizes"] == results["sizes"]
    assert "| tiny | beam4-b1 |" in capsys.readouterr().out


def test_agreement_counts_sequences_and_tokens_up_to_the_first_difference() -> None:
    import torch

    fast = load_fast_inference()
    reference = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    other = torch.tensor([[1, 2, 3, 4], [5, 9, 7, 8]])  # second row differs at position 1
    assert fast.agreement(reference, other) == {"sequences": 0.5, "prefix_tokens": (4 + 1) / 2 / 4}


def test_quality_mode_scores_a_trained_model_per_precision(tmp_path, monkeypatch) -> None:
    from reversal_task import greedy_margin, reversal_model

    monkeypatch.setenv("VANILLA_TRANSFORMER_CACHE", str(tmp_path / "cache"))  # the on-the-fly CTranslate2 export
    fast = load_fast_inference()
    model, tokenizer = reversal_model()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    sentences = ["a b c", "d e f g", "h i", "j k l a b", "b a", "c c d"]
    assert greedy_margin(model, tokenizer, sentences) > 3.0  # so every precision must translate them alike
    (tmp_path / "src.txt").write_text("\n".join(sentences) + "\n")
    (tmp_path / "ref.txt").write_text("\n".join(" ".join(s.split()[::-1]) for s in sentences) + "\n")
    results = fast.main(["--quality", str(tmp_path / "model"), str(tmp_path / "src.txt"), str(tmp_path / "ref.txt")])
    rows = results["quality"]["rows"]
    assert [(row["backend"], row["precision"]) for row in rows] == [
        ("transformers", "fp32"),
        ("transformers", "bf16"),
        ("transformers", "int8"),
        ("ctranslate2", "fp32"),
        ("ctranslate2", "int8"),
    ]
    assert rows[0]["bleu"] == pytest.approx(100.0)
    assert all(row["same_as_fp32"] == 1.0 and row["bleu"] == pytest.approx(100.0) for row in rows), rows


@pytest.mark.slow
@NEEDS_VECTORISING_INDUCTOR
def test_compiled_variant_runs_and_compiled_decoding_matches_eager(tmp_path) -> None:
    """The bench's compiled variant runs; what it runs (Inductor, fullgraph, static cache) decodes as eager does.

    The bench's random models have near-ties, where Inductor's other order of float operations may pick another
    token on one CPU and not on another (seen with the kernels capped at AVX2), so the tokens are compared on the
    reversal model, which is sure of every step, and the scores within float32 rounding.
    """
    import copy

    import torch
    from reversal_task import WORDS, greedy_margin, reversal_model
    from transformers import CompileConfig

    fast = load_fast_inference()
    results = fast.main(["--quick", "--threads", "1", "--compile", "--precisions", "fp32", "--variants", "marian"])
    for case in results["sizes"][0]["cases"]:
        assert set(case["variants"]) == {"marian", "ours-fp32-compiled"} and not case["failed"]
        assert case["variants"]["ours-fp32-compiled"]["tokens_per_s"] > 0

    model, tokenizer = reversal_model()
    sentences = [" ".join(WORDS[(5 * i + 3 * j) % 12] for j in range(2 + i % 4)) for i in range(8)]
    assert greedy_margin(model, tokenizer, sentences) > 3.0
    inputs = tokenizer(sentences, return_tensors="pt", padding=True)
    kwargs = dict(**inputs, max_new_tokens=8, do_sample=False, output_scores=True, return_dict_in_generate=True)
    compile_config = CompileConfig(fullgraph=True, backend="inductor", mode="default")  # as the bench's variant
    compile_config._compile_all_devices = True  # generate() compiles on CPU only when asked to
    compiled_model = copy.deepcopy(model)
    with torch.inference_mode():
        eager = model.generate(**kwargs)
        compiled = compiled_model.generate(**kwargs, cache_implementation="static", compile_config=compile_config)
    assert hasattr(compiled_model, "_compiled_call")
    assert torch.equal(compiled.sequences, eager.sequences)
    for a, b in zip(compiled.scores, eager.scores, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
