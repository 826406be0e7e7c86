"""The YAML run configuration of `train.py`: sections, defaults, command-line overrides and strict checking.

Not shipped to the Hub. The whole configuration is checked when it is parsed, before any data is read: unknown
keys are errors with a "did you mean" hint (the fields of `model.config` too, against the model's config class),
values must have the right type and range, and combinations must work (lengths within the model's position
table, checkpoints saved where the evaluation picks the best one). A typo never silently falls back to a default.

Command-line overrides are `section.key=value` (the value is read as YAML), e.g.
`training.max_steps=200 model.config.d_model=256`, plus the flags `--push_to_hub` and `--resume`. A data source
given on the command line (`data.train_file`, `data.dataset` or `data.quickstart`) replaces the config file's
source with its split files. A config file may start from another one: `inherit: base.yaml` (a path relative to
the file) takes every value of that file that this one does not set.
"""

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml
from huggingface_hub.errors import StrictDataclassError
from transformers import CONFIG_MAPPING, AutoConfig, PreTrainedConfig

from .precision import PRECISIONS


class ConfigError(ValueError):
    """A run configuration that can't be used: bad YAML, an unknown key, a value of the wrong type or range."""


def debug_tracebacks() -> bool:
    """Whether the command-line tools show the traceback of a user error too (`VT_DEBUG` set, and not to 0)."""
    return os.environ.get("VT_DEBUG", "0") not in ("", "0")


# The keys of the `data` section that say where the data comes from: a source set on the command line (or in an
# inheriting file) replaces all of them.
DATA_SOURCE_KEYS = ("quickstart", "dataset", "train_file")
DATA_LOCATION_KEYS = (*DATA_SOURCE_KEYS, "dataset_config", "validation_file", "test_file")
# What `model.config` may change when continuing from `model.name_or_path` (regularisation, not architecture).
ADJUSTABLE_WHEN_CONTINUING = frozenset({"dropout", "attention_dropout", "activation_dropout"})
# Model config fields taken from the tokenizer, never from `model.config`.
FROM_TOKENIZER = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")


@dataclass
class ModelSection:
    """What to train.

    Attributes:
        model_type: a registered config type (`vanilla_transformer`, or e.g. `marian` for a comparison).
        config: fields of that config class (`d_model`, `encoder_layers`, ...); vocabulary size and special token ids
            come from the tokenizer.
        name_or_path: continue from a pretrained seq2seq model instead of building one from `config`.
        trust_remote_code: allow `name_or_path` to run its own modeling code.
    """

    model_type: str = "vanilla_transformer"
    config: dict = field(default_factory=dict)
    name_or_path: str | None = None
    trust_remote_code: bool = False


@dataclass
class QuickstartSection:
    """The offline numbers task (`vanilla_transformer.data.number_words_splits`).

    Attributes:
        max_number: largest number drawn.
        train_size, validation_size, test_size: examples per split (validation and test numbers are unseen).
        cover_below: every number below it (a power of ten) and every round number is in training (0: none).
        repeat_small: copies in training of each number below `cover_below / 10` and of each round number.
    """

    max_number: int = 999999
    train_size: int = 20000
    validation_size: int = 200
    test_size: int = 500
    cover_below: int = 0
    repeat_small: int = 1


@dataclass
class DataSection:
    """Where the parallel data comes from (see `vanilla_transformer.data` for the formats).

    Attributes:
        source_lang, target_lang: language keys (JSON keys, TSV columns, file suffixes, Hub translation keys).
        quickstart: generate the offline numbers task (`QuickstartSection`).
        dataset, dataset_config: a Hub dataset name and configuration (e.g. `wmt/wmt14`, `de-en`).
        train_file, validation_file, test_file: local files (JSON lines, TSV, or a parallel-text prefix).
        empty_lines: "error" or "skip" pairs with an empty side.
        max_source_length, max_target_length: truncate longer examples to this many tokens (incl. `</s>`).
        max_train_samples: use only the first N training examples.
        max_eval_samples: evaluate during training on the first N validation examples (the test split is
            always scored whole).
    """

    source_lang: str = "de"
    target_lang: str = "en"
    quickstart: QuickstartSection | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    empty_lines: str = "error"
    max_source_length: int = 128
    max_target_length: int = 128
    max_train_samples: int | None = None
    max_eval_samples: int | None = None


@dataclass
class TokenizerSection:
    """A given tokenizer (`name_or_path`), or a joint BPE trained on the training text."""

    name_or_path: str | None = None
    vocab_size: int = 8000
    min_frequency: int = 2


@dataclass
class TrainingSection:
    """The optimisation recipe (paper Section 5.3/5.4 defaults).

    Attributes:
        batch_size: sentence pairs per process per batch (when `max_tokens` is not set).
        max_tokens: token budget per process per batch, sentences grouped by length (paper Section 5.1).
        learning_rate: peak learning rate (> 0); None means the paper's d_model^-0.5 * warmup_steps^-0.5.
        warmup_steps: linear warm-up, then decay with the inverse square root of the step.
        label_smoothing: epsilon_ls of the training objective (`vanilla_transformer.losses`), for every model type.
        max_grad_norm: gradient clipping (0: none, as in the paper).
        max_train_minutes: stop training cleanly after this many minutes spent in training steps (evaluation and
            checkpointing not counted), then evaluate and save.
        num_threads: torch CPU threads per process (None: torch's default).
        precision: "no", "bf16" or "fp16" mixed precision.
        on_nonfinite_loss: "error" stops the run naming the step (the checkpoints written so far are kept),
            "skip" leaves the weights unchanged for that step (at most 10 steps in a row).
    """

    batch_size: int = 32
    max_tokens: int | None = None
    eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    max_steps: int = -1
    num_epochs: float = 1.0
    learning_rate: float | None = None
    warmup_steps: int = 4000
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-9
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    max_grad_norm: float = 0.0
    logging_steps: int = 50
    eval_steps: int | None = 1000
    save_steps: int = 1000
    save_total_limit: int | None = 5
    seed: int = 42
    max_train_minutes: float | None = None
    num_threads: int | None = None
    precision: str = "no"
    on_nonfinite_loss: str = "error"


@dataclass
class GenerationSection:
    """Decoding for evaluation and for the saved generation config (paper Section 6.1: beam 4, alpha 0.6)."""

    num_beams: int = 4
    length_penalty: float = 0.6
    max_new_tokens: int = 128
    num_samples: int = 5
    precision: str | None = None  # the final evaluation in "bf16", "fp16" or "int8" (precision.to_inference)


@dataclass
class RunConfig:
    """A whole run: output, resume/publish switches and the five sections."""

    output_dir: str = "runs/quickstart"
    resume: bool = False
    overwrite_output_dir: bool = False
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    generation: GenerationSection = field(default_factory=GenerationSection)

    def to_dict(self) -> dict:
        """Plain nested dict (for YAML dumps and the model card)."""
        return dataclasses.asdict(self)


def _type_ok(value: object, annotation: object) -> bool:
    """Whether `value` (from YAML) fits a simple annotation: int/float/str/bool/dict, `X | None`, a dataclass."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, typing.get_origin(annotation) or annotation)


def _unknown_key(path: str, key: str, names: Sequence[str], valid: str | None = None) -> ConfigError:
    close = difflib.get_close_matches(str(key), names, n=1)
    hint = f" Did you mean `{close[0]}`?" if close else ""
    return ConfigError(f"Unknown config key `{path}`.{hint} Valid keys here: {valid or ', '.join(names)}.")


def _section_type(annotation: object) -> type | None:
    """The dataclass of a section annotated `Section` or `Section | None`, else None."""
    if dataclasses.is_dataclass(annotation):
        return annotation
    for arg in typing.get_args(annotation):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _build(cls: type, values: object, where: str) -> object:
    """Instantiate dataclass `cls` from a YAML mapping, rejecting unknown keys and mistyped values."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"`{where or 'the config'}` must be a mapping of keys to values, got {values!r}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise _unknown_key(path, key, names)
        annotation = hints[key]
        section = _section_type(annotation)
        if section is not None and (value is not None or section is annotation):
            kwargs[key] = _build(section, value, path)
            continue
        if isinstance(annotation, type) and annotation is float and isinstance(value, int) and value is not True:
            value = float(value)
        if isinstance(value, str) and (annotation is float or float in typing.get_args(annotation)):
            try:  # YAML 1.1 reads `1e-3` (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if not _type_ok(value, annotation):
            raise ConfigError(
                f"`{path}` must be of type {getattr(annotation, '__name__', annotation)}, got {value!r}."
            )
        kwargs[key] = value
    return cls(**kwargs)


def _merge(base: dict, update: dict, where: str = "") -> dict:
    """`base` with `update`'s values, mapping by mapping; a data source in `update` replaces `base`'s."""
    merged = dict(base)
    if where == "data" and any(update.get(key) is not None for key in DATA_SOURCE_KEYS):
        for key in DATA_LOCATION_KEYS:
            if key not in update:
                merged.pop(key, None)
    for key, value in update.items():
        path = f"{where}.{key}" if where else str(key)
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value, path)
        else:
            merged[key] = value
    return merged


def _nest(dotted: str, value: object) -> dict:
    """`a.b.c`, v -> {"a": {"b": {"c": v}}}."""
    keys = dotted.split(".")
    if not all(keys):
        raise ConfigError(f"Override `{dotted}=...`: empty key.")
    tree: dict = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        tree = {key: tree}
    return tree


def load_yaml(path: str, _seen: tuple[str, ...] = ()) -> dict:
    """Read a YAML config file into a dict, with a clear error for a missing file or invalid YAML.

    A file with `inherit: OTHER.yaml` (relative to its own folder) is that file's values updated by its own.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"Config file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            tree = yaml.safe_load(handle)
    except yaml.YAMLError as error:
        raise ConfigError(f"Invalid YAML in {path}: {error}") from error
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections, got {type(tree).__name__}.")
    parent = tree.pop("inherit", None)
    if parent is None:
        return tree
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: `inherit` must be the path of another config file, got {parent!r}.")
    parent_path = os.path.normpath(os.path.join(os.path.dirname(path), parent))
    if os.path.abspath(parent_path) in _seen + (os.path.abspath(path),):
        raise ConfigError(f"{path}: `inherit: {parent}` makes a cycle of config files.")
    return _merge(load_yaml(parent_path, _seen + (os.path.abspath(path),)), tree)


USAGE = "usage: accelerate launch train.py [CONFIG.yaml] [section.key=value ...] [--push_to_hub] [--resume]"


def parse_config(argv: Sequence[str], default_path: str) -> RunConfig:
    """Parse `[CONFIG.yaml] [section.key=value ...] [--push_to_hub] [--resume]` into a checked `RunConfig`.

    Args:
        argv: command-line arguments without the program name. The first argument ending in `.yaml`/`.yml` is the
            config file.
        default_path: the config file used when none is given (train.py: configs/quickstart.yaml).

    Raises:
        ConfigError: anything `check_config` refuses, or arguments it can't read.
    """
    path, overrides = None, {}
    for arg in argv:
        if arg in ("--push_to_hub", "--resume"):
            overrides = _merge(overrides, {arg[2:]: True})
        elif arg in ("-h", "--help"):
            raise SystemExit(USAGE)
        elif arg.endswith((".yaml", ".yml")) and "=" not in arg and path is None:
            path = arg
        elif "=" in arg and not arg.startswith("-"):
            key, _, raw = arg.partition("=")
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as error:
                raise ConfigError(f"Override `{arg}`: the value is not valid YAML ({error}).") from error
            overrides = _merge(overrides, _nest(key.strip(), value))
        else:
            raise ConfigError(
                f"Don't know what to do with argument {arg!r}: pass a CONFIG.yaml, `section.key=value` overrides, "
                "--push_to_hub or --resume."
            )
    tree = _merge(load_yaml(path or default_path), overrides)
    config = _build(RunConfig, tree, "")
    check_config(config)
    return config


# ---------------------------------------------------------------------------------------------------------
# Checks of values and combinations, all before any data is read
# ---------------------------------------------------------------------------------------------------------
def _require(condition: bool, path: str, value: object, requirement: str) -> None:
    if not condition:
        raise ConfigError(f"`{path}` must be {requirement}, got {value!r}.")


def check_config(config: RunConfig) -> None:
    """Check every value of a parsed config and the combinations that would fail later (data, model, Trainer).

    Raises:
        ConfigError: naming the key, the value and what it must be.
    """
    _check_training(config.training)
    _check_generation(config.generation)
    _check_data(config.data, config.training)
    _check_trainer_combination(config)
    _check_tokenizer(config)
    model_config = model_config_of(config)
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit is not None:
        for path, value in (
            ("data.max_source_length", config.data.max_source_length),
            ("data.max_target_length", config.data.max_target_length),
            ("generation.max_new_tokens", config.generation.max_new_tokens),  # positions 0..N-1 are fed back
        ):
            if value > limit:
                raise ConfigError(
                    f"`{path}` ({value}) exceeds the model's max_position_embeddings ({limit}): lower it, or raise "
                    "`model.config.max_position_embeddings` for a new model."
                )


def _check_training(train: TrainingSection) -> None:
    positive = ("batch_size", "eval_batch_size", "gradient_accumulation_steps", "logging_steps", "save_steps")
    for name in positive:
        _require(getattr(train, name) >= 1, f"training.{name}", getattr(train, name), "at least 1")
    for name in ("max_tokens", "eval_steps", "save_total_limit", "num_threads"):
        value = getattr(train, name)
        _require(value is None or value >= 1, f"training.{name}", value, "at least 1 (or null)")
    _require(
        train.max_steps == -1 or train.max_steps >= 1,
        "training.max_steps",
        train.max_steps,
        "at least 1, or -1 to train `num_epochs` epochs",
    )
    _require(train.num_epochs > 0, "training.num_epochs", train.num_epochs, "positive")
    _require(
        train.learning_rate is None or train.learning_rate > 0,
        "training.learning_rate",
        train.learning_rate,
        "positive, or null for the paper's peak d_model^-0.5 * warmup_steps^-0.5 (a learning rate of 0 would "
        "train nothing)",
    )
    _require(train.warmup_steps >= 0, "training.warmup_steps", train.warmup_steps, "0 or more")
    for name in ("adam_beta1", "adam_beta2", "label_smoothing"):
        _require(0 <= getattr(train, name) < 1, f"training.{name}", getattr(train, name), "in [0, 1)")
    _require(train.adam_epsilon > 0, "training.adam_epsilon", train.adam_epsilon, "positive")
    for name in ("weight_decay", "max_grad_norm"):
        _require(getattr(train, name) >= 0, f"training.{name}", getattr(train, name), "0 or more")
    minutes = train.max_train_minutes
    _require(minutes is None or minutes > 0, "training.max_train_minutes", minutes, "positive (or null)")
    _require(
        train.precision in ("no", "bf16", "fp16"), "training.precision", train.precision, "'no', 'bf16' or 'fp16'"
    )
    _require(
        train.on_nonfinite_loss in ("error", "skip"),
        "training.on_nonfinite_loss",
        train.on_nonfinite_loss,
        "'error' or 'skip'",
    )


def _check_generation(gen: GenerationSection) -> None:
    _require(gen.num_beams >= 1, "generation.num_beams", gen.num_beams, "at least 1")
    _require(gen.max_new_tokens >= 1, "generation.max_new_tokens", gen.max_new_tokens, "at least 1")
    _require(gen.num_samples >= 0, "generation.num_samples", gen.num_samples, "0 or more")
    choices = f"one of {', '.join(PRECISIONS)}, or unset (as trained)"
    _require(gen.precision is None or gen.precision in PRECISIONS, "generation.precision", gen.precision, choices)


def _check_data(data: DataSection, train: TrainingSection) -> None:
    sources = [name for name in DATA_SOURCE_KEYS if getattr(data, name)]
    if len(sources) != 1:
        raise ConfigError(
            "Give exactly one data source in the `data` section: `quickstart`, `dataset` (Hub) or `train_file` "
            f"(local); got {sources or 'none'}."
        )
    if data.source_lang == data.target_lang:
        raise ConfigError(f"`data.source_lang` and `data.target_lang` are both {data.source_lang!r}.")
    if data.quickstart is not None and (data.source_lang, data.target_lang) != ("de", "en"):
        raise ConfigError("The quickstart task translates German number words into English: use de -> en.")
    if data.quickstart is None and (data.validation_file or data.test_file) and not data.train_file:
        raise ConfigError("`data.validation_file` / `data.test_file` need a `data.train_file` beside them.")
    _require(data.empty_lines in ("error", "skip"), "data.empty_lines", data.empty_lines, "'error' or 'skip'")
    for name in ("max_source_length", "max_target_length"):
        _require(getattr(data, name) >= 1, f"data.{name}", getattr(data, name), "at least 1")
    for name in ("max_train_samples", "max_eval_samples"):
        value = getattr(data, name)
        _require(value is None or value >= 1, f"data.{name}", value, "at least 1 (or null)")
    if train.max_tokens is not None:
        longest = max(data.max_source_length, data.max_target_length)
        _require(
            train.max_tokens >= longest,
            "training.max_tokens",
            train.max_tokens,
            f"at least the longest example allowed ({longest} tokens, `data.max_*_length`)",
        )
    if data.quickstart is not None:
        task = data.quickstart
        for name in ("max_number", "train_size", "repeat_small"):
            _require(getattr(task, name) >= 1, f"data.quickstart.{name}", getattr(task, name), "at least 1")
        for name in ("validation_size", "test_size", "cover_below"):
            _require(getattr(task, name) >= 0, f"data.quickstart.{name}", getattr(task, name), "0 or more")


def evaluates_during_training(config: RunConfig) -> bool:
    """Whether the run scores a validation split every `training.eval_steps` (and keeps the best checkpoint)."""
    data = config.data
    return bool(data.quickstart or data.validation_file or data.dataset) and config.training.eval_steps is not None


def _check_trainer_combination(config: RunConfig) -> None:
    train = config.training
    if evaluates_during_training(config) and train.save_steps % train.eval_steps:
        raise ConfigError(
            f"`training.save_steps` ({train.save_steps}) must be a multiple of `training.eval_steps` "
            f"({train.eval_steps}): the checkpoint with the best validation BLEU is kept, so evaluated steps must "
            "be saved."
        )


def check_local_path(name: str, key: str) -> None:
    """Refuse a `name_or_path` that is meant as a local folder but is not one, before anything tries the Hub.

    A name is meant locally when it starts with `.`, `/` or `~`, has more than one `/`, or its first part is a
    folder here (`runs/quickstrat` when `runs/` exists).
    """
    if os.path.isdir(name):
        return
    parts = name.replace(os.sep, "/").split("/")
    local = name.startswith((".", "/", "~")) or len(parts) > 2 or (len(parts) == 2 and os.path.isdir(parts[0]))
    if not local:
        return  # a Hub id such as `Helsinki-NLP/opus-mt-de-en`
    parent = os.path.dirname(os.path.normpath(os.path.expanduser(name))) or "."
    siblings = sorted(os.listdir(parent)) if os.path.isdir(parent) else []
    close = difflib.get_close_matches(os.path.basename(os.path.normpath(name)), siblings, n=1)
    hint = f" Did you mean {os.path.join(parent, close[0])}?" if close else ""
    raise ConfigError(f"`{key}`: no such folder: {name}.{hint}")


def _check_tokenizer(config: RunConfig) -> None:
    tok = config.tokenizer
    if tok.name_or_path:
        check_local_path(tok.name_or_path, "tokenizer.name_or_path")
    _require(tok.vocab_size >= 5, "tokenizer.vocab_size", tok.vocab_size, "at least 5 (4 special tokens + 1)")
    _require(tok.min_frequency >= 1, "tokenizer.min_frequency", tok.min_frequency, "at least 1")


def _config_fields(model_config: PreTrainedConfig) -> list[str]:
    names = set(model_config.to_dict()) | set(getattr(model_config, "attribute_map", {}))
    return sorted(name for name in names if not name.startswith("_"))


def model_config_of(config: RunConfig) -> PreTrainedConfig:
    """The model's config as the run will build it (vocabulary size and special ids still to come from the
    tokenizer), checking every `model.config` field against the model's config class.

    Raises:
        ConfigError: an unknown model type, an unknown or invalid `model.config` field, a field that comes from the
            tokenizer, a pretrained model that can't be found, or a change to a pretrained model's architecture.
    """
    section, fields = config.model, config.model.config
    if "label_smoothing" in fields:
        raise ConfigError("Set label smoothing once, as `training.label_smoothing` (not `model.config`).")
    if "vocab_size" in fields:
        raise ConfigError(
            "`model.config.vocab_size` comes from the tokenizer: leave it out (a trained BPE has "
            "`tokenizer.vocab_size` tokens)."
        )
    if section.name_or_path:
        name = section.name_or_path
        check_local_path(name, "model.name_or_path")
        try:
            pretrained = AutoConfig.from_pretrained(name, trust_remote_code=section.trust_remote_code)
        except (OSError, ValueError) as error:
            raise ConfigError(f"`model.name_or_path`: can't load a model config from {name} ({error}).") from error
        known = _config_fields(pretrained)
        for key, value in fields.items():
            if key not in known:
                raise _unknown_key(f"model.config.{key}", key, known, f"the fields of {type(pretrained).__name__}")
            if (
                key not in ADJUSTABLE_WHEN_CONTINUING
                and key not in FROM_TOKENIZER
                and value != getattr(pretrained, key)
            ):
                raise ConfigError(
                    f"`model.config.{key}` is {value!r} but {name} has {getattr(pretrained, key)!r}: a pretrained "
                    f"model's architecture is fixed; only {sorted(ADJUSTABLE_WHEN_CONTINUING)} can change when "
                    "continuing from it (leave the rest of `model.config` out)."
                )
        changes = {key: value for key, value in fields.items() if key in ADJUSTABLE_WHEN_CONTINUING}
        try:
            pretrained.update(changes)
            pretrained.validate()
        except (StrictDataclassError, ValueError) as error:
            raise ConfigError(f"`model.config`: {error.__cause__ or error}") from error
        return pretrained
    if section.model_type not in CONFIG_MAPPING:
        close = difflib.get_close_matches(section.model_type, list(CONFIG_MAPPING.keys()), n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise ConfigError(
            f"`model.model_type`: {section.model_type!r} is not a registered config type.{hint} E.g. "
            "vanilla_transformer, marian, bart."
        )
    defaults = AutoConfig.for_model(section.model_type)
    known = _config_fields(defaults)
    for key in fields:
        if key not in known:
            raise _unknown_key(f"model.config.{key}", key, known, f"the fields of {type(defaults).__name__}")
    try:
        return AutoConfig.for_model(section.model_type, **fields)
    except (StrictDataclassError, TypeError, ValueError) as error:
        raise ConfigError(
            f"`model.config` is not a valid {section.model_type} config: {error.__cause__ or error}"
        ) from error
