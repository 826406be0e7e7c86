"""The numbers behind the attention pictures, the alignments read off them, and the pictures themselves."""

import os
import sys

import pytest
import torch
from reversal_task import reversal_model

from vanilla_transformer.attention import (
    KINDS,
    alignment,
    attention_maps,
    display_token,
    main,
    pharaoh,
    save_attention_plots,
    word_starts,
)

pytestmark = pytest.mark.numerics  # outcome rests on the CPU's kernels (tests/README.md)


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


def test_five_by_four_cross_attention_and_no_peeking() -> None:
    model, tokenizer = reversal_model()
    # 3 words + </s> = 4 source tokens; <s> + 4 target words = 5 decoding steps: a [5 x 4] matrix.
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


def test_missing_matplotlib_gives_a_clear_message(maps, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(ImportError, match=r"vanilla-transformer\[viz\]"):
        save_attention_plots(maps, str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "unused", "--source", "a", "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and "[viz]" in capsys.readouterr().err


def eager_outputs(model, tokenizer, source: str, target: str):
    """The model's own `output_attentions=True` outputs for `source` teacher-forced on `target`."""
    encoded = tokenizer(source, return_tensors="pt")
    labels = tokenizer(text_target=target, return_tensors="pt")["input_ids"]
    decoder_input_ids = torch.cat([torch.tensor([[model.config.decoder_start_token_id]]), labels[:, :-1]], 1)
    original = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            return model(**encoded, decoder_input_ids=decoder_input_ids, output_attentions=True)
    finally:
        model.set_attn_implementation(original)


def test_maps_are_the_models_output_attentions_layer_by_layer_in_order() -> None:
    model, tokenizer = reversal_model()
    maps = attention_maps(model, tokenizer, "a b c d", target="d c b a")
    outputs = eager_outputs(model, tokenizer, "a b c d", "d c b a")
    fields = {"encoder_self": "encoder_attentions", "decoder_self": "decoder_attentions", "cross": "cross_attentions"}
    for name, field in fields.items():
        expected = getattr(outputs, field)
        assert maps.kind(name).shape[0] == len(expected) == 2
        for layer, weights in enumerate(expected):
            torch.testing.assert_close(maps.kind(name)[layer], weights[0])  # (H, rows, cols) of batch item 0
        # the layers of the trained model differ, so a reversed or repeated layer order could not pass
        assert (maps.kind(name)[0] - maps.kind(name)[1]).abs().max() > 0.1


@pytest.mark.parametrize("source", ["a b c d e", "f g h i", "j k l"])
def test_reversal_cross_attention_is_the_anti_diagonal(source) -> None:
    # Reversing "a b c d e" into "e d c b a", the step that writes the j-th output word reads source word n-1-j:
    # the last layer's head-averaged cross-attention peaks on the anti-diagonal (the pattern the task is for).
    model, tokenizer = reversal_model()
    words = source.split()
    n = len(words)
    maps = attention_maps(model, tokenizer, source)
    assert maps.predicted_tokens == words[::-1] + ["</s>"]
    weights = maps.cross[-1].mean(0)[:n, :n]  # rows predicting the n words, columns the n source words
    assert weights.argmax(-1).tolist() == list(range(n - 1, -1, -1))
    anti_diagonal = weights.flip(1).diagonal()
    elsewhere = (weights.sum() - anti_diagonal.sum()) / (n * n - n)
    assert anti_diagonal.mean() > 0.4 and anti_diagonal.mean() > 4 * elsewhere
    assert alignment(maps) == [(n - 1 - j, j) for j in range(n)]
    assert pharaoh(alignment(maps)) == " ".join(f"{n - 1 - j}-{j}" for j in range(n))


def test_alignment_layer_is_checked_and_used(maps) -> None:
    layers = maps.cross.shape[0]
    with pytest.raises(ValueError, match=rf"alignment layer {layers} does not exist"):
        alignment(maps, layer=layers)
    first = alignment(maps, layer=0)
    expected = maps.cross[0].mean(0)[:5, :5].argmax(-1).tolist()  # "a b c d e" -> 5 words + </s>
    assert first == [(i, j) for j, i in enumerate(expected)]


def test_labels_show_word_boundaries_instead_of_the_marker() -> None:
    tokens = ["\u2581sieben", "hundert", "\u2581und", "</s>"]
    assert word_starts(tokens, ("</s>",)) == [True, False, True, True]
    assert [display_token(t) for t in tokens] == ["sieben", "hundert", "und", "</s>"]
    assert display_token("\u2581") == "\u2423" and display_token("\u0120two") == "two"
    assert word_starts(["a", "b", "</s>"], ("</s>",)) == [True, True, True]  # a word-level vocabulary


def test_pictures_grow_with_the_tokens_and_have_one_colour_bar_each(tmp_path, monkeypatch) -> None:
    from matplotlib.figure import Figure
    from PIL import Image

    colour_bars = []
    original = Figure.colorbar
    monkeypatch.setattr(Figure, "colorbar", lambda self, *a, **k: colour_bars.append(self) or original(self, *a, **k))
    model, tokenizer = reversal_model()
    short = attention_maps(model, tokenizer, "a b", target="b a")
    long = attention_maps(model, tokenizer, "a b c d e f g h i j", target="j i h g f e d c b a")
    sizes = {}
    for name, maps in (("short", short), ("long", long)):
        paths = save_attention_plots(maps, str(tmp_path / name))
        sizes[name] = {os.path.basename(p): Image.open(p).size for p in paths}
    for picture, (width, height) in sizes["long"].items():
        short_width, short_height = sizes["short"][picture]
        assert width > short_width and height > short_height  # a fixed cell size, not a squeezed panel
    figures = 2 * len(sizes["short"])
    assert len(colour_bars) == len({id(figure) for figure in colour_bars}) == figures  # one per figure (kept alive)
