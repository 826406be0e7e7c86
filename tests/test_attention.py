"""The numbers behind the attention pictures, and the pictures themselves."""

import os
import sys

import pytest
import torch
from reversal_task import reversal_model

from vanilla_transformer.attention import KINDS, attention_maps, main, save_attention_plots


@pytest.fixture(scope="module")
def maps():
    model, tokenizer = reversal_model()
    return attention_maps(model, tokenizer, "a b c d e")  # on the model's own greedy translation


def test_shapes_rows_and_causal_mask(maps) -> None:
    model, _ = reversal_model()
    config = model.config
    source, target = len(maps.source_tokens), len(maps.target_tokens)
    assert maps.source_tokens == ["a", "b", "c", "d", "e", "</s>"]
    assert maps.target_tokens[0] == "<s>" and len(maps.predicted_tokens) == target
    assert maps.encoder_self.shape == (config.encoder_layers, config.encoder_attention_heads, source, source)
    assert maps.decoder_self.shape == (config.decoder_layers, config.decoder_attention_heads, target, target)
    assert maps.cross.shape == (config.decoder_layers, config.decoder_attention_heads, target, source)
    for name in KINDS:
        weights = maps.kind(name)
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-5, rtol=0)
    upper = torch.triu(torch.ones(target, target, dtype=torch.bool), diagonal=1)
    assert (maps.decoder_self[..., upper] == 0).all()  # step t never sees steps > t
    assert (maps.decoder_self[..., ~upper] > 0).all()  # ... and sees every step <= t
    assert (maps.decoder_self[..., 0, 0] == 1).all()  # the start token sees only itself


def test_own_translation_equals_teacher_forcing_on_it(maps) -> None:
    model, tokenizer = reversal_model()
    translation = tokenizer.convert_tokens_to_string(maps.predicted_tokens[:-1])  # without </s>
    forced = attention_maps(model, tokenizer, "a b c d e", target=translation)
    assert forced.target_tokens == maps.target_tokens
    for name in KINDS:
        torch.testing.assert_close(forced.kind(name), maps.kind(name))


def test_seeds_five_by_four_cross_attention_and_no_peeking() -> None:
    model, tokenizer = reversal_model()
    # 3 words + </s> = 4 source tokens; <s> + 4 target words = 5 decoding steps: the seeds' [5 x 4] matrix.
    first = attention_maps(model, tokenizer, "a b c", target="c b a d")
    assert first.cross.shape[-2:] == (5, 4)
    assert first.target_tokens == ["<s>", "c", "b", "a", "d"]
    changed = attention_maps(model, tokenizer, "a b c", target="c b a l")  # only the last target word differs
    torch.testing.assert_close(changed.encoder_self, first.encoder_self)
    torch.testing.assert_close(changed.cross[:, :, :4], first.cross[:, :, :4])  # earlier steps are unaffected
    torch.testing.assert_close(changed.decoder_self[:, :, :4], first.decoder_self[:, :, :4])
    assert not torch.allclose(changed.cross[:, :, 4], first.cross[:, :, 4])


def test_model_attention_implementation_is_restored() -> None:
    model, tokenizer = reversal_model()
    original = model.config._attn_implementation
    model.set_attn_implementation("sdpa")
    try:
        attention_maps(model, tokenizer, "a b", target="b a")
        assert model.config._attn_implementation == "sdpa"
    finally:
        model.set_attn_implementation(original)
    with pytest.raises(ValueError, match="source"):
        attention_maps(model, tokenizer, "  ")


def test_plots_are_written(maps, tmp_path) -> None:
    paths = save_attention_plots(maps, str(tmp_path))
    layers = maps.encoder_self.shape[0] + 2 * maps.decoder_self.shape[0]
    assert len(paths) == layers + 1 and paths[-1].endswith("summary.png")
    for path in paths:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 5000


def test_a_summary_layer_that_does_not_exist_is_refused_before_writing(maps, tmp_path) -> None:
    layers = maps.encoder_self.shape[0]
    with pytest.raises(ValueError, match=rf"summary layer {layers} does not exist: .* has {layers} layer"):
        save_attention_plots(maps, str(tmp_path / "out"), summary_layer=layers)
    assert not (tmp_path / "out").exists()


def test_command_writes_pictures_for_a_saved_model(tmp_path, capsys) -> None:
    model, tokenizer = reversal_model()
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "pictures"
    main(["--model", str(tmp_path / "model"), "--source", "a b c", "--target", "c b a", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "decoder: <s> c b a" in printed
    assert sorted(os.listdir(out)) == sorted(
        [f"{kind}_layer{layer}.png" for kind in KINDS for layer in (1, 2)] + ["summary.png"]
    )
    assert all(os.path.getsize(out / name) > 0 for name in os.listdir(out))


def test_missing_matplotlib_gives_a_clear_message(maps, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"vanilla-transformer\[viz\]"):
        save_attention_plots(maps, str(tmp_path))
    with pytest.raises(SystemExit, match=r"\[viz\]"):
        main(["--model", "unused", "--source", "a", "--out", str(tmp_path)])
