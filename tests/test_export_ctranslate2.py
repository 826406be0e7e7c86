"""CTranslate2 export: the exported model decodes the same tokens as `generate()`, in every supported layout."""

import json
import os

import pytest
import torch
from conftest import tiny_config
from reversal_task import WORDS, greedy_margin, reversal_model, tiny_tokenizer

from vanilla_transformer import VanillaTransformerForConditionalGeneration
from vanilla_transformer.pipeline_vanilla_transformer import VanillaTranslationPipeline
from vanilla_transformer.precision import to_inference

ctranslate2 = pytest.importorskip("ctranslate2")
pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)

from vanilla_transformer.export_ctranslate2 import (  # noqa: E402
    CONFIG_FILE,
    CTranslate2ExportError,
    CTranslate2TranslationPipeline,
    build_spec,
    cached_export,
    export,
    main,
    vocabulary,
)

TOKENIZER = tiny_tokenizer([f"w{i}" for i in range(60)])  # 64 ids, as tiny_config()
EOS = TOKENIZER.eos_token_id

# Random models whose logits are far from ties (N(0, 0.3) weights), so both engines must pick the same tokens.
LAYOUTS = {
    "paper": {},
    "pre-norm": dict(normalize_before=True),
    "marian-like": dict(
        positional_encoding_layout="concatenated",
        tie_word_embeddings=False,
        add_final_logits_bias=True,
        activation_function="gelu",
    ),
    "unscaled-swish-uneven": dict(
        scale_embedding=False,
        activation_function="swish",
        encoder_layers=1,
        decoder_layers=3,
        decoder_attention_heads=2,
        decoder_ffn_dim=48,
    ),
    "pre-norm-gelu-tanh-wide": dict(
        normalize_before=True, activation_function="gelu_new", d_model=48, encoder_ffn_dim=96
    ),
}


def random_model(**overrides: object) -> VanillaTransformerForConditionalGeneration:
    torch.manual_seed(0)
    model = VanillaTransformerForConditionalGeneration(tiny_config(init_std=0.3, **overrides)).eval()
    if model.config.add_final_logits_bias:
        torch.nn.init.normal_(model.final_logits_bias)  # Marian's is zero; a non-zero one checks it is exported
    return model


def sources(count: int = 12) -> list[list[int]]:
    """Source id lists of different lengths (so batches are padded), each ending in </s>."""
    generator = torch.Generator().manual_seed(1)
    out = []
    for _ in range(count):
        length = int(torch.randint(2, 11, (1,), generator=generator))
        out.append(torch.randint(4, 64, (length,), generator=generator).tolist() + [EOS])
    return out


def generate_ids(model: torch.nn.Module, source: list[list[int]], **kwargs: object) -> list[list[int]]:
    """Batched `generate()`, each output cut after the start token and before </s> and padding."""
    width = max(len(ids) for ids in source)
    input_ids = torch.tensor([ids + [0] * (width - len(ids)) for ids in source])
    output = model.generate(input_ids=input_ids, attention_mask=(input_ids != 0).long(), **kwargs)
    result = []
    for row in output[:, 1:].tolist():
        result.append(row[: row.index(EOS)] if EOS in row else [t for t in row if t != 0])
    return result


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_float32_export_decodes_the_same_tokens_as_generate(layout: str, tmp_path) -> None:
    model = random_model(**LAYOUTS[layout])
    pipe = CTranslate2TranslationPipeline(export(model, TOKENIZER, tmp_path / "ct2"))
    source = sources()
    for num_beams in (1, 4):
        # until </s> (the saved generation configs of train.py stop beams early: `early_stopping=True`)
        options = dict(num_beams=num_beams, max_new_tokens=12)
        expected = generate_ids(model, source, early_stopping=num_beams > 1, **options)
        got = [hypotheses[0] for hypotheses in pipe.translate_ids(source, batch_size=5, **options)]
        assert got == expected, (layout, num_beams)
        # exactly 12 tokens, </s> forbidden (the benchmark's setting); transformers renormalises like CTranslate2
        options = dict(num_beams=num_beams, max_new_tokens=12, min_new_tokens=12)
        expected = generate_ids(model, source, renormalize_logits=True, **options)
        got = [hypotheses[0] for hypotheses in pipe.translate_ids(source, **options)]
        assert got == expected and all(len(ids) == 12 for ids in got), (layout, num_beams)


def test_export_folder_and_spec(tmp_path) -> None:
    model = random_model(**LAYOUTS["marian-like"])
    spec = build_spec(model, TOKENIZER)
    assert spec.config.decoder_start_token == "<s>" and spec.config.eos_token == "</s>"
    table = spec.encoder.position_encodings.encodings
    assert torch.equal(table, model.model.encoder.embed_positions.pe)  # our concatenated table, not CT2's own
    assert torch.equal(spec.decoder.projection.bias, model.final_logits_bias.reshape(-1))
    folder = tmp_path / "ct2"
    export(model, TOKENIZER, folder)
    names = set(os.listdir(folder))
    assert {"model.bin", "config.json", "shared_vocabulary.json", CONFIG_FILE, "tokenizer.json"} <= names
    assert {"generation_config.json"} <= names
    assert json.loads((folder / "shared_vocabulary.json").read_text()) == vocabulary(TOKENIZER, 64)
    with pytest.raises(FileExistsError, match="--force"):
        export(model, TOKENIZER, folder)
    export(model, TOKENIZER, folder, force=True)
    with pytest.raises(ValueError, match="quantization"):
        export(model, TOKENIZER, tmp_path / "other", quantization="int4")


def test_what_ctranslate2_cannot_represent_is_a_named_error() -> None:
    with pytest.raises(CTranslate2ExportError, match="relu6"):
        build_spec(random_model(activation_function="relu6"), TOKENIZER)
    with pytest.raises(CTranslate2ExportError, match="eos_token_id"):
        build_spec(random_model(eos_token_id=[2, 3]), TOKENIZER)
    with pytest.raises(CTranslate2ExportError, match="tokenizer"):
        build_spec(random_model(vocab_size=32), TOKENIZER)  # another model's (larger) tokenizer
    with pytest.raises(TypeError, match="ct2-transformers-converter"):
        build_spec(torch.nn.Linear(2, 2), TOKENIZER)
    with pytest.raises(CTranslate2ExportError, match="--quantization int8"):
        build_spec(to_inference(random_model(), "int8"), TOKENIZER)


def test_a_bf16_model_is_exported_from_float32_without_changing_it(tmp_path) -> None:
    model = to_inference(random_model(), "bf16")
    spec = build_spec(model, TOKENIZER)
    assert spec.decoder.projection.weight.dtype == torch.float32
    assert model.lm_head.weight.dtype == torch.bfloat16  # the caller's model is left as it was


def test_vocabulary_fills_ids_without_a_token() -> None:
    tokens = vocabulary(TOKENIZER, 70)  # a model vocabulary padded beyond the tokenizer's 64 ids
    assert tokens[:64] == TOKENIZER.convert_ids_to_tokens(list(range(64)))
    assert tokens[64:] == [f"<unused_{i}>" for i in range(64, 70)] and len(set(tokens)) == 70


@pytest.fixture(scope="module")
def reversal_dir(tmp_path_factory) -> str:
    model, tokenizer = reversal_model()
    folder = tmp_path_factory.mktemp("reversal")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


SENTENCES = ["a b c", "d e f g", "h i", "j k l a b", "b a", "c c d", "e f g h", "l k j"]


def test_pipeline_gives_the_transformers_pipelines_results(reversal_dir: str, tmp_path) -> None:
    model, tokenizer = reversal_model()
    reference = VanillaTranslationPipeline(model=model, tokenizer=tokenizer)
    out = tmp_path / "ct2"
    main([reversal_dir, str(out)])
    pipe = CTranslate2TranslationPipeline(out)
    for options in (dict(num_beams=1), dict(num_beams=4, max_new_tokens=8), dict(num_beams=3, length_penalty=0.5)):
        stop = {"early_stopping": True} if options["num_beams"] > 1 else {}  # what train.py saves for beams
        assert pipe(SENTENCES, batch_size=3, **options) == reference(SENTENCES, batch_size=3, **stop, **options)
    assert pipe("a b c") == [{"translation_text": "c b a"}]
    several = pipe(SENTENCES[:2], num_beams=3, num_return_sequences=2)
    assert [len(result) for result in several] == [2, 2] and several[0][0] == {"translation_text": "c b a"}
    with pytest.raises(TypeError, match="do_sample"):
        pipe(SENTENCES, do_sample=True)


def test_int8_export_translates_like_float32_where_the_model_is_sure(reversal_dir: str, tmp_path, capsys) -> None:
    """Every translation equal, on any CPU: the model's top logit leads by more than int8 can move it.

    (On a model with near-ties, which int8 kernel of which instruction set rounds how would decide the tokens.)
    """
    main([reversal_dir, str(tmp_path / "int8"), "--quantization", "int8"])
    assert "int8 weights" in capsys.readouterr().err
    fp32_export = cached_export(reversal_dir, tmp_path / "cache")
    size = os.path.getsize(os.path.join(fp32_export, "model.bin"))
    assert os.path.getsize(tmp_path / "int8" / "model.bin") < 0.5 * size  # the weights are stored as int8
    sentences = [" ".join(WORDS[(i * 7 + j * 5) % 12] for j in range(2 + i % 4)) for i in range(32)]
    model, tokenizer = reversal_model()
    assert greedy_margin(model, tokenizer, sentences) > 3.0  # measured 5.9; int8 moves a logit by about 0.4
    float32 = CTranslate2TranslationPipeline(fp32_export)
    int8 = CTranslate2TranslationPipeline(tmp_path / "int8")
    expected = float32(sentences, num_beams=1)
    assert [t["translation_text"] for t in expected] == [" ".join(s.split()[::-1]) for s in sentences]
    assert int8(sentences, num_beams=1) == expected
    for folder, precision in ((fp32_export, "int8"), (tmp_path / "int8", "fp32")):  # converted when loaded
        assert CTranslate2TranslationPipeline(folder, precision=precision)(sentences, num_beams=1) == expected


def test_cached_export_is_reused_until_the_model_changes(reversal_dir: str, tmp_path) -> None:
    cache = tmp_path / "cache"
    first = cached_export(reversal_dir, cache)
    stamp = os.path.getmtime(os.path.join(first, "model.bin"))
    assert cached_export(reversal_dir, cache) == first and os.path.getmtime(os.path.join(first, "model.bin")) == stamp
    assert cached_export(first, cache) == first  # an export is used as it is
    model, _ = reversal_model()
    changed = tmp_path / "changed"
    import shutil

    shutil.copytree(reversal_dir, changed)
    edited = VanillaTransformerForConditionalGeneration.from_pretrained(changed)
    with torch.no_grad():
        edited.lm_head.weight.mul_(1.5)
    edited.save_pretrained(changed)
    assert cached_export(str(changed), cache) != first
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        cached_export(str(tmp_path / "missing"), cache)


def test_command_line_errors_exit_with_status_2(reversal_dir: str, tmp_path, capsys) -> None:
    out = tmp_path / "ct2"
    out.mkdir()
    for argv, message in (
        ([reversal_dir, str(out)], "already exists"),
        ([str(tmp_path / "missing"), str(tmp_path / "x")], "is not a folder"),
        ([reversal_dir, str(tmp_path / "y"), "--quantization", "int4"], "invalid choice"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_translate_command_with_the_ctranslate2_backend(reversal_dir: str, tmp_path, capsys, monkeypatch) -> None:
    from vanilla_transformer.translate import main as translate_main

    monkeypatch.setenv("VANILLA_TRANSFORMER_CACHE", str(tmp_path / "cache"))
    translate_main(["--model", reversal_dir, "--num-beams", "4", "--max-new-tokens", "8", *SENTENCES])
    expected = capsys.readouterr().out
    assert expected.splitlines()[:2] == ["c b a", "g f e d"]
    translate_main(
        ["--model", reversal_dir, "--backend", "ctranslate2", "--num-beams", "4", "--max-new-tokens", "8"] + SENTENCES
    )  # exported on the fly into the cache
    assert capsys.readouterr().out == expected
    (export_dir,) = [path for path in (tmp_path / "cache" / "ctranslate2").iterdir()]
    source = tmp_path / "input.txt"
    source.write_text("\n".join([SENTENCES[0], "", SENTENCES[1]]) + "\n")
    output = tmp_path / "output.txt"
    translate_main(
        [
            "--model",
            str(export_dir),
            "--backend",
            "ctranslate2",
            "--precision",
            "int8",
            "--file",
            str(source),
            "--output",
            str(output),
        ]
    )  # an export, converted to int8 when loaded
    assert output.read_text().splitlines() == ["c b a", "", "g f e d"]
    with pytest.raises(SystemExit) as exit_info:
        translate_main(["--model", reversal_dir, "--backend", "ctranslate2", "--alignments", "a b"])
    assert exit_info.value.code == 2 and "transformers backend" in capsys.readouterr().err
