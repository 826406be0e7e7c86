"""Marian -> VanillaTransformer conversion computes the same function (randomly initialised Marian, no download)."""

import copy
import io
import json
import os
import re

import pytest
import sentencepiece as spm
import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    BartConfig,
    FSMTConfig,
    FSMTForConditionalGeneration,
    MarianConfig,
    MarianMTModel,
    MarianTokenizer,
)

from vanilla_transformer import VanillaTransformerForConditionalGeneration
from vanilla_transformer.convert import convert_marian, vanilla_name
from vanilla_transformer.convert import main as convert_main
from vanilla_transformer.translate import main as translate_main

pytestmark = [
    pytest.mark.filterwarnings("ignore:Recommended. pip install sacremoses"),  # MarianTokenizer's hint
    pytest.mark.numerics,  # outcome rests on the CPU's kernels (tests/README.md)
]

VOCAB, PAD, EOS = 40, 39, 0  # Marian convention: eos 0, pad (= decoder start) last


def marian(seed: int = 0, bias: bool = True, **overrides: object) -> MarianMTModel:
    fields = dict(
        vocab_size=VOCAB,
        d_model=16,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=32,
        pad_token_id=PAD,
        decoder_start_token_id=PAD,
        eos_token_id=EOS,
        forced_eos_token_id=EOS,
        scale_embedding=True,
        activation_function="swish",
        dropout=0.0,
    )
    fields.update(overrides)
    torch.manual_seed(seed)
    model = MarianMTModel(MarianConfig(**fields)).eval()
    if bias:
        model.final_logits_bias.normal_(0.0, 1.0)
    return model


def random_batch(seed: int, pad: int = PAD, batch: int = 3, src: int = 7, tgt: int = 6) -> dict[str, torch.Tensor]:
    """Ids in [1, pad) (pad is the last id), one padded source row, and labels."""
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, pad, (batch, src), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, src - 3 :] = 0  # a padded source row
    input_ids[1, src - 3 :] = pad
    labels = torch.randint(1, pad, (batch, tgt), generator=gen)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def assert_same_function(
    reference: MarianMTModel, converted: VanillaTransformerForConditionalGeneration, atol: float = 1e-5
) -> None:
    pad = reference.config.pad_token_id
    for seed in range(2):
        batch = random_batch(seed, pad)
        with torch.no_grad():
            expected = reference(**batch)
            actual = converted(**batch)
        torch.testing.assert_close(actual.logits, expected.logits, atol=atol, rtol=0)
        torch.testing.assert_close(actual.loss, expected.loss, atol=atol, rtol=0)
    source = {k: v for k, v in random_batch(7, pad).items() if k != "labels"}
    for kwargs in ({"num_beams": 1}, {"num_beams": 3, "length_penalty": 0.6}):
        expected = reference.generate(**source, max_new_tokens=10, **kwargs)
        actual = converted.generate(**source, max_new_tokens=10, **kwargs)
        assert torch.equal(actual, expected), kwargs


SHAPES = [
    dict(),
    dict(d_model=24, encoder_layers=1, decoder_layers=3, encoder_attention_heads=4, decoder_attention_heads=6,
         encoder_ffn_dim=20, decoder_ffn_dim=48, activation_function="relu", scale_embedding=False),
    dict(d_model=32, encoder_layers=3, decoder_layers=1, encoder_attention_heads=8, decoder_attention_heads=1,
         activation_function="gelu"),
]  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES, ids=["opus-like", "deep-decoder", "deep-encoder"])
def test_converted_marian_has_same_logits_loss_and_generations(shape: dict) -> None:
    reference = marian(**shape)
    converted = convert_marian(reference)
    assert converted.config.positional_encoding_layout == "concatenated"
    assert converted.config.add_final_logits_bias
    assert converted.config.tie_word_embeddings
    assert converted.lm_head.weight is converted.model.shared.weight  # tied as in the paper
    assert converted.generation_config.forced_eos_token_id == EOS
    assert converted.generation_config.decoder_start_token_id == PAD
    assert_same_function(reference, converted)


def attention_peaks(model: MarianMTModel | VanillaTransformerForConditionalGeneration) -> dict[str, float]:
    """The mean over query rows of the largest attention weight, per kind of attention (1/S would be uniform)."""
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    batch = random_batch(0, model.config.pad_token_id)
    with torch.no_grad():
        out = eager(**batch, output_attentions=True)
    return {
        kind: torch.stack(getattr(out, kind)).amax(dim=-1).mean().item()
        for kind in ("encoder_attentions", "decoder_attentions", "cross_attentions")
    }


def test_peaked_attention_converts_tensor_by_tensor_with_the_dropout_rates() -> None:
    """With weights N(0, 1) instead of N(0, 0.02) attention is peaked, so a swapped or mis-copied projection, or a
    beam cache that is not reordered, moves logits and beams far beyond float rounding."""
    reference = marian(init_std=1.0, dropout=0.15, attention_dropout=0.2, activation_dropout=0.3)
    peaks = attention_peaks(reference)
    assert min(peaks.values()) > 0.6, peaks  # uniform attention over the 7 source tokens would be 1/7
    converted = convert_marian(reference)
    config = converted.config
    assert (config.dropout, config.attention_dropout, config.activation_dropout) == (0.15, 0.2, 0.3)
    ours, theirs = converted.state_dict(), reference.state_dict()
    rebuilt = {name for name in theirs if name.endswith("embed_positions.weight")}  # sinusoids, from the layout
    assert set(ours) == {vanilla_name(name) for name in set(theirs) - rebuilt}
    assert vanilla_name("model.decoder.layers.1.fc2.weight") == "model.decoder.layers.1.ffn.fc2.weight"
    query_bias = "model.encoder.layers.0.self_attn.q_proj.bias"
    assert vanilla_name(query_bias) == query_bias
    for name in set(theirs) - rebuilt:
        assert torch.equal(ours[vanilla_name(name)], theirs[name]), name
    assert attention_peaks(converted) == pytest.approx(peaks, abs=1e-5)
    assert_same_function(reference, converted, atol=1e-4)
    source = {k: v for k, v in random_batch(7, PAD).items() if k != "labels"}
    every_beam = dict(num_beams=4, num_return_sequences=4, length_penalty=0.6, max_new_tokens=10)
    assert torch.equal(converted.generate(**source, **every_beam), reference.generate(**source, **every_beam))


def test_zero_final_logits_bias_leaves_the_option_off() -> None:
    reference = marian(bias=False)
    converted = convert_marian(reference)
    assert not converted.config.add_final_logits_bias
    assert_same_function(reference, converted)


@pytest.mark.parametrize(
    "share, tie", [(True, False), (False, True), (False, False)], ids=["untied-head", "separate-embeds", "all-untied"]
)
def test_untied_marian_variants_convert_and_survive_save_load(share: bool, tie: bool, tmp_path) -> None:
    reference = marian(seed=3, share_encoder_decoder_embeddings=share, tie_word_embeddings=tie)
    converted = convert_marian(reference)
    assert not converted.config.tie_word_embeddings
    assert_same_function(reference, converted)
    converted.save_pretrained(tmp_path)
    reloaded = VanillaTransformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert_same_function(reference, reloaded)


def test_separate_vocabularies_of_different_sizes_are_rejected() -> None:
    reference = marian(share_encoder_decoder_embeddings=False, decoder_vocab_size=VOCAB + 5)
    with pytest.raises(ValueError, match="separate source and target vocabularies"):
        convert_marian(reference)


def test_fsmt_is_rejected_with_the_reason(tmp_path, capsys) -> None:
    config = FSMTConfig(
        langs=["en", "de"], src_vocab_size=30, tgt_vocab_size=30, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=16, decoder_ffn_dim=16,
        max_position_embeddings=32,
    )  # fmt: skip
    with pytest.raises(ValueError, match="FSMT.*positions.*vocabularies"):
        convert_marian(FSMTForConditionalGeneration(config))
    config.save_pretrained(tmp_path / "fsmt")
    with pytest.raises(SystemExit) as done:  # the command line: one message, exit status 2
        convert_main([str(tmp_path / "fsmt"), str(tmp_path / "out")])
    assert done.value.code == 2 and re.search("error: .*FSMT.*positions.*vocabularies", capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_other_models_are_rejected(tmp_path, capsys) -> None:
    with pytest.raises(TypeError, match="MarianMTModel"):
        convert_marian(torch.nn.Linear(2, 2))
    BartConfig(vocab_size=VOCAB, d_model=16).save_pretrained(tmp_path / "bart")
    with pytest.raises(SystemExit) as done:
        convert_main([str(tmp_path / "bart"), str(tmp_path / "out")])
    assert done.value.code == 2 and "'bart' model; only Marian" in capsys.readouterr().err


def marian_tokenizer(folder) -> MarianTokenizer:
    """A real (sentencepiece) MarianTokenizer trained offline on a few words: </s>=0, <unk>=1, <pad> last."""
    words = "the house is small big red green a cat dog sees runs fast slow and or not".split()
    lines = [" ".join(words[(7 * i + 3 * j) % len(words)] for j in range(6)) for i in range(200)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=model, vocab_size=30, character_coverage=1.0,
        bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0, minloglevel=2,
    )  # fmt: skip
    pieces = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(pieces.get_piece_size()):
        vocab.setdefault(pieces.id_to_piece(i), len(vocab))
    vocab["<pad>"] = len(vocab)
    os.makedirs(folder, exist_ok=True)
    for name in ("source.spm", "target.spm"):
        (folder / name).write_bytes(model.getvalue())
    (folder / "vocab.json").write_text(json.dumps(vocab))
    return MarianTokenizer(*(str(folder / name) for name in ("source.spm", "target.spm", "vocab.json")))


def test_commands_convert_a_local_checkpoint_then_translate_like_marian(tmp_path, capsys) -> None:
    source, target = tmp_path / "marian", tmp_path / "converted"
    tokenizer = marian_tokenizer(tmp_path / "spm")
    reference = marian(seed=0, bias=False, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                       decoder_start_token_id=tokenizer.pad_token_id)  # fmt: skip
    reference.generation_config.num_beams = 3  # a generation setting that must travel with the model
    reference.save_pretrained(source)
    tokenizer.save_pretrained(source)
    convert_main([str(source), str(target)])
    assert "Converted" in capsys.readouterr().out
    files = set(os.listdir(target))
    assert {"modeling_vanilla_transformer.py", "pipeline_vanilla_transformer.py", "source.spm", "vocab.json"} <= files
    config = json.loads((target / "config.json").read_text())
    assert config["model_type"] == "vanilla_transformer"
    assert "vanilla-translation" in config["custom_pipelines"]
    loaded = AutoModelForSeq2SeqLM.from_pretrained(target).eval()
    assert isinstance(loaded, VanillaTransformerForConditionalGeneration)
    assert loaded.generation_config.num_beams == 3
    assert_same_function(reference, loaded)

    sentences = ["the house is small", "a red cat runs fast and not slow"]
    expected = [
        tokenizer.decode(reference.generate(**tokenizer(s, return_tensors="pt"), max_new_tokens=12)[0],
                         skip_special_tokens=True)
        for s in sentences
    ]  # fmt: skip
    assert all(expected)  # real text, not just special tokens
    translate_main(["--model", str(target), "--num-beams", "3", "--max-new-tokens", "12", *sentences])
    assert capsys.readouterr().out.splitlines() == expected


def saved_marian_with_tokenizer(tmp_path):
    tokenizer = marian_tokenizer(tmp_path / "spm")
    reference = marian(seed=0, bias=False, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                       decoder_start_token_id=tokenizer.pad_token_id)  # fmt: skip
    reference.save_pretrained(tmp_path / "marian")
    tokenizer.save_pretrained(tmp_path / "marian")
    return tmp_path / "marian"


def test_the_pipeline_is_saved_unless_no_pipeline_is_asked_for(tmp_path, capsys) -> None:
    from vanilla_transformer.convert import convert_checkpoint

    source = saved_marian_with_tokenizer(tmp_path)
    convert_checkpoint(str(source), str(tmp_path / "api"))  # the function's default: with the pipeline
    assert (tmp_path / "api" / "pipeline_vanilla_transformer.py").is_file()
    convert_main([str(source), str(tmp_path / "bare"), "--no-pipeline"])
    assert f"Converted {source} -> {tmp_path / 'bare'}" in capsys.readouterr().out
    assert (tmp_path / "bare" / "modeling_vanilla_transformer.py").is_file()
    assert not (tmp_path / "bare" / "pipeline_vanilla_transformer.py").exists()
    assert "custom_pipelines" not in json.loads((tmp_path / "bare" / "config.json").read_text())


def test_convert_help_names_the_command_and_its_arguments(capsys) -> None:
    with pytest.raises(SystemExit) as done:
        convert_main(["--help"])
    assert done.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert shown.startswith("usage: python -m vanilla_transformer.convert [-h] [--no-pipeline] source output_dir")
    for text in (
        "Convert a Marian (OPUS-MT) checkpoint to VanillaTransformer.",
        "source Hub model id (e.g. Helsinki-NLP/opus-mt-en-de) or local Marian folder",
        "output_dir folder to write the converted model and tokenizer to",
        "--no-pipeline do not save the custom translation pipeline",
    ):
        assert text in shown, text


def test_convert_user_error_keeps_its_traceback_with_vt_debug(tmp_path, monkeypatch) -> None:
    BartConfig(vocab_size=VOCAB, d_model=16).save_pretrained(tmp_path / "bart")
    monkeypatch.setenv("VT_DEBUG", "1")
    with pytest.raises(ValueError, match="'bart' model; only Marian checkpoints convert"):
        convert_main([str(tmp_path / "bart"), str(tmp_path / "out")])
    for off in ("", "0"):  # set but empty, or 0: off
        monkeypatch.setenv("VT_DEBUG", off)
        with pytest.raises(SystemExit) as done:
            convert_main([str(tmp_path / "bart"), str(tmp_path / "out")])
        assert done.value.code == 2


def test_fsmt_message_says_why_and_what_to_use() -> None:
    from vanilla_transformer.convert import _fsmt_error

    message = str(_fsmt_error(FSMTConfig(langs=["en", "de"], src_vocab_size=30, tgt_vocab_size=31)))
    assert message == (
        "FSMT (fairseq) checkpoints cannot be converted to VanillaTransformer: (1) fairseq's sinusoidal positions "
        "use frequencies 10000^(-i/(d_model/2-1)) instead of the paper's 10000^(-2i/d_model), start at "
        "padding_idx+1 and give padding tokens a zero vector, so positions depend on the padding; (2) FSMT has "
        "separate source/target vocabularies (src_vocab_size=30, tgt_vocab_size=31) with separate embeddings, while "
        "VanillaTransformer has one. Use FSMTForConditionalGeneration directly."
    )


def test_every_config_field_that_shapes_behaviour_is_carried_over(caplog) -> None:
    from vanilla_transformer.convert import marian_config_to_vanilla

    reference = marian(seed=0, max_position_embeddings=48, use_cache=False, bos_token_id=5, eos_token_id=EOS,
                       encoder_layerdrop=0.1, decoder_layerdrop=0.0)  # fmt: skip
    with caplog.at_level("WARNING", logger="vanilla_transformer.convert"):
        config = marian_config_to_vanilla(reference.config, reference.final_logits_bias)
    assert caplog.messages == [
        "Marian's layerdrop (0.1 / 0.0) is a training-time option VanillaTransformer does not have; the converted "
        "model computes the same function at inference but fine-tunes without layerdrop."
    ]
    expected = dict(max_position_embeddings=48, use_cache=False, bos_token_id=5, eos_token_id=EOS, pad_token_id=PAD,
                    decoder_start_token_id=PAD, normalize_before=False, positional_encoding_layout="concatenated",
                    add_final_logits_bias=True, activation_function="swish", scale_embedding=True)  # fmt: skip
    assert {key: getattr(config, key) for key in expected} == expected
    caplog.clear()
    with caplog.at_level("WARNING", logger="vanilla_transformer.convert"):
        marian_config_to_vanilla(marian(seed=0, decoder_layerdrop=0.2).config, torch.zeros(1, VOCAB))
    assert caplog.messages and "(0.0 / 0.2)" in caplog.messages[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="vanilla_transformer.convert"):
        marian_config_to_vanilla(marian(seed=0, encoder_layerdrop=0.0, decoder_layerdrop=0.0).config,
                                 torch.zeros(1, VOCAB))  # fmt: skip
    assert not caplog.messages


def test_converted_model_has_the_checkpoints_dtype_and_its_own_generation_config() -> None:
    reference = marian(seed=0).to(torch.bfloat16)
    reference.generation_config.bad_words_ids = [[5]]
    converted = convert_marian(reference)
    assert {p.dtype for p in converted.parameters()} == {torch.bfloat16}
    assert converted.generation_config.to_dict() == reference.generation_config.to_dict()
    converted.generation_config.bad_words_ids[0].append(6)  # a nested setting: changing it must not reach the original
    assert reference.generation_config.bad_words_ids == [[5]]
    with pytest.raises(TypeError, match=r"^Expected a transformers\.MarianMTModel, got Linear\.$"):
        convert_marian(torch.nn.Linear(2, 2))
