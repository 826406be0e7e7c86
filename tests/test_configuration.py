"""VanillaTransformerConfig: the paper's defaults, validation at construction, serialisation."""

import json

import pytest
import torch
from conftest import SRC, TGT, copy_with_config, tiny_config
from huggingface_hub.errors import StrictDataclassError
from transformers import AutoConfig

from vanilla_transformer import VanillaTransformerConfig, VanillaTransformerForConditionalGeneration


def test_defaults_are_the_paper_base_model() -> None:
    config = VanillaTransformerConfig()
    assert (config.encoder_layers, config.decoder_layers) == (6, 6)  # N
    assert config.d_model == 512
    assert (config.encoder_ffn_dim, config.decoder_ffn_dim) == (2048, 2048)  # d_ff
    assert (config.encoder_attention_heads, config.decoder_attention_heads) == (8, 8)  # h
    assert config.d_model // config.encoder_attention_heads == 64  # d_k = d_v
    assert config.dropout == 0.1  # P_drop
    assert not hasattr(config, "label_smoothing")  # epsilon_ls is the training recipe's, not the model's
    assert config.init_std == 0.02  # not in the paper: N(0, 0.02), measured to learn faster (bench/quality.md)
    assert config.activation_function == "relu"
    assert config.attention_dropout == 0.0
    assert config.normalize_before is False  # post-norm
    assert config.scale_embedding is True
    assert config.positional_encoding_layout == "interleaved"
    assert config.tie_word_embeddings is True
    assert config.is_encoder_decoder is True
    assert config.model_type == "vanilla_transformer"
    # The generic names that library code reads map to the paper's fields.
    assert (config.hidden_size, config.num_attention_heads, config.num_hidden_layers) == (512, 8, 6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(d_model=30), r"`d_model` \(30\) must be divisible by `encoder_attention_heads` \(4\)"),
        (dict(decoder_attention_heads=5), r"divisible by `decoder_attention_heads` \(5\)"),
        (dict(vocab_size=0), "`vocab_size` must be a positive integer"),
        (dict(d_model=-8), "`d_model` must be a positive integer"),
        (dict(encoder_layers=0), "`encoder_layers` must be a positive integer"),
        (dict(decoder_layers=-1), "`decoder_layers` must be a positive integer"),
        (dict(encoder_attention_heads=0), "`encoder_attention_heads` must be a positive integer"),
        (dict(encoder_ffn_dim=0), "`encoder_ffn_dim` must be a positive integer"),
        (dict(decoder_ffn_dim=0), "`decoder_ffn_dim` must be a positive integer"),
        (dict(max_position_embeddings=0), "`max_position_embeddings` must be a positive integer"),
        (dict(activation_function="relux"), "Unknown `activation_function` 'relux'"),
        (dict(positional_encoding_layout="rotary"), "Unknown `positional_encoding_layout` 'rotary'"),
        (dict(dropout=1.0), r"`dropout` must be in \[0, 1\)"),
        (dict(init_std=0.0), "`init_std` must be a positive number or None"),
        (dict(attention_dropout=-0.1), r"`attention_dropout` must be in \[0, 1\)"),
        (dict(d_model="512"), "d_model"),
        (dict(normalize_before="yes"), "normalize_before"),
    ],
)
def test_invalid_configs_raise_a_clear_error_at_construction(overrides: dict, message: str) -> None:
    with pytest.raises(StrictDataclassError, match=message):
        tiny_config(**overrides)


def sinusoids(length: int, width: int, layout: str) -> torch.Tensor:
    """(length, width) PE(pos, 2i) = sin(pos / 10000^(2i/width)), PE(pos, 2i+1) = cos(...), "interleaved" as in
    the paper, or all sines then all cosines ("concatenated")."""
    angles = torch.arange(length)[:, None] / 10000 ** (torch.arange(0, width, 2) / width)
    if layout == "concatenated":
        return torch.cat([angles.sin(), angles.cos()], dim=-1)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)


@pytest.mark.parametrize(
    ("activation", "layout", "normalize_before"), [("relu", "interleaved", False), ("gelu", "concatenated", True)]
)
def test_valid_alternatives_are_accepted(activation: str, layout: str, normalize_before: bool) -> None:
    """The default and the alternative of each choice build a model that computes with it."""
    config = tiny_config(
        activation_function=activation, positional_encoding_layout=layout, normalize_before=normalize_before
    )
    assert (config.activation_function, config.positional_encoding_layout, config.normalize_before) == (
        activation,
        layout,
        normalize_before,
    )
    torch.manual_seed(0)
    model = VanillaTransformerForConditionalGeneration(config).eval()
    encoder = model.model.encoder
    seen = {}

    def keep(name: str, value: torch.Tensor) -> None:  # a hook returning None leaves the module's output as it is
        seen.setdefault(name, value)

    hooks = [
        encoder.layers[0].ffn.fc1.register_forward_hook(lambda m, args, out: keep("fc1 out", out)),
        encoder.layers[0].ffn.fc2.register_forward_hook(lambda m, args, out: keep("fc2 in", args[0])),
        encoder.embed_positions.register_forward_hook(lambda m, args, out: keep("positions", out)),
    ]
    with torch.no_grad():
        model(input_ids=SRC, decoder_input_ids=TGT)
    for hook in hooks:
        hook.remove()
    function = {"relu": torch.relu, "gelu": torch.nn.functional.gelu}[activation]
    torch.testing.assert_close(seen["fc2 in"], function(seen["fc1 out"]))  # the feed-forward's non-linearity
    positions = seen["positions"].reshape(-1, config.d_model)
    torch.testing.assert_close(positions, sinusoids(SRC.shape[1], config.d_model, layout), rtol=0, atol=1e-6)
    for stack in (model.model.encoder, model.model.decoder):  # pre-norm's final LayerNorm of each stack
        assert isinstance(stack.layer_norm, torch.nn.LayerNorm) if normalize_before else stack.layer_norm is None


def test_save_load_round_trip(tmp_path) -> None:
    config = tiny_config(normalize_before=True, activation_function="gelu", dropout=0.25)
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "vanilla_transformer"
    assert saved["normalize_before"] is True and saved["dropout"] == 0.25
    expected = {k: v for k, v in config.to_dict().items() if k != "_name_or_path"}
    loaded = VanillaTransformerConfig.from_pretrained(tmp_path)
    through_auto = AutoConfig.from_pretrained(tmp_path)
    assert type(through_auto) is VanillaTransformerConfig
    for again in (loaded, through_auto):
        assert {k: v for k, v in again.to_dict().items() if k != "_name_or_path"} == expected


def test_dict_round_trip_and_auto_config_for_model() -> None:
    config = tiny_config(d_model=48, encoder_attention_heads=6, decoder_attention_heads=3)
    again = VanillaTransformerConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()
    built = AutoConfig.for_model("vanilla_transformer", d_model=64)
    assert isinstance(built, VanillaTransformerConfig) and built.d_model == 64


# ---------------------------------------------------------------------------------------------------------
# Configs that do not fit.
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (dict(d_model="32"), r"Field 'd_model' expected int, got str"),
        (dict(d_model=32.0), r"Field 'd_model' expected int, got float"),
        (dict(normalize_before="yes"), r"Field 'normalize_before' expected bool, got str"),
        (dict(dropout="0.1"), r"Field 'dropout'"),
        (dict(vocab_size=0), r"`vocab_size` must be a positive integer, got 0"),
        (dict(encoder_attention_heads=5), r"`d_model` \(32\) must be divisible by `encoder_attention_heads` \(5\)"),
        (dict(activation_function="relu6x"), r"Unknown `activation_function` 'relu6x'"),
        (dict(dropout=1.0), r"`dropout` must be in \[0, 1\), got 1.0"),
        (dict(positional_encoding_layout="rotary"), r"Unknown `positional_encoding_layout` 'rotary'"),
        (dict(pad_token_id=64), r"`pad_token_id` \(64\) is outside the vocabulary \[0, 64\)"),
        (dict(decoder_start_token_id=-1), r"`decoder_start_token_id` \(-1\) is outside the vocabulary"),
        (dict(eos_token_id=[2, 99]), r"`eos_token_id` \(99\) is outside the vocabulary"),
        (dict(model_type="bart"), r"`model_type` 'bart', but VanillaTransformerConfig is 'vanilla_transformer'"),
    ],
)
def test_bad_config_is_named(overrides: dict, pattern: str) -> None:
    with pytest.raises(StrictDataclassError, match=pattern):
        tiny_config(**overrides)


def test_model_built_from_another_config_class_is_named() -> None:
    from transformers import BartConfig

    with pytest.raises(TypeError, match=r"needs a VanillaTransformerConfig, got BartConfig \(model_type 'bart'\)"):
        VanillaTransformerForConditionalGeneration(BartConfig(d_model=32, encoder_layers=1, decoder_layers=1))


def test_config_json_with_wrong_field_type_is_named(checkpoint, tmp_path) -> None:
    path = copy_with_config(checkpoint, tmp_path, d_model="32")
    with pytest.raises(StrictDataclassError, match=r"Field 'd_model' expected int, got str"):
        VanillaTransformerForConditionalGeneration.from_pretrained(path)
    with pytest.raises(StrictDataclassError, match=r"Field 'd_model' expected int, got str"):
        AutoConfig.from_pretrained(path)


def test_checkpoint_of_another_model_type_is_named(checkpoint, tmp_path) -> None:
    path = copy_with_config(checkpoint, tmp_path, model_type="bart")
    with pytest.raises(StrictDataclassError, match=r"`model_type` 'bart'.*load it with the config class of 'bart'"):
        VanillaTransformerForConditionalGeneration.from_pretrained(path)
    with pytest.raises(StrictDataclassError, match=r"`model_type` 'bart'"):
        VanillaTransformerConfig.from_pretrained(path)
