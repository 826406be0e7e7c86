"""The YAML run configuration of `train.py`: sections, defaults, command-line overrides and strict checking.

Not shipped to the Hub. Unknown keys are errors (with a "did you mean" hint), so a typo never silently falls back
to a default. Command-line overrides are `section.key=value` (the value is read as YAML), e.g.
`training.max_steps=200 model.config.d_model=256`, plus the flags `--push_to_hub` and `--resume`.
"""

import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field

import yaml


class ConfigError(ValueError):
    """A run configuration that can't be used: bad YAML, an unknown key, a value of the wrong type."""


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
class DataSection:
    """Where the parallel data comes from (see `vanilla_transformer.data` for the formats).

    Attributes:
        source_lang, target_lang: language keys (JSON keys, TSV columns, file suffixes, Hub translation keys).
        quickstart: generate the offline numbers task (keys: max_number, train_size, validation_size, test_size).
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
    quickstart: dict | None = None
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
        learning_rate: peak learning rate; None means the paper's d_model^-0.5 * warmup_steps^-0.5.
        warmup_steps: linear warm-up, then decay with the inverse square root of the step.
        label_smoothing: epsilon_ls; set on the model config when it has the field, else applied by Trainer.
        max_grad_norm: gradient clipping (0: none, as in the paper).
        max_train_minutes: stop training cleanly after this long (then evaluate and save).
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
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ConfigError(f"Unknown config key `{path}`.{hint} Valid keys here: {', '.join(names)}.")
        annotation = hints[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _build(annotation, value, path)
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


def _set_dotted(tree: dict, dotted: str, value: object) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"Override `{dotted}`: `{key}` is not a section.")
        node = child
    node[keys[-1]] = value


def load_yaml(path: str) -> dict:
    """Read a YAML config file into a dict, with a clear error for a missing file or invalid YAML."""
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
    return tree


def parse_config(argv: Sequence[str], default_path: str) -> RunConfig:
    """Parse `[CONFIG.yaml] [section.key=value ...] [--push_to_hub] [--resume]` into a checked `RunConfig`.

    Args:
        argv: command-line arguments without the program name. The first argument ending in `.yaml`/`.yml` is the
            config file.
        default_path: the config file used when none is given (train.py: configs/quickstart.yaml).
    """
    path, overrides = None, []
    for arg in argv:
        if arg in ("--push_to_hub", "--resume"):
            overrides.append((arg[2:], True))
        elif arg in ("-h", "--help"):
            raise SystemExit(
                "usage: accelerate launch train.py [CONFIG.yaml] [section.key=value ...] [--push_to_hub] [--resume]"
            )
        elif arg.endswith((".yaml", ".yml")) and "=" not in arg and path is None:
            path = arg
        elif "=" in arg and not arg.startswith("-"):
            key, _, raw = arg.partition("=")
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as error:
                raise ConfigError(f"Override `{arg}`: the value is not valid YAML ({error}).") from error
            overrides.append((key.strip(), value))
        else:
            raise ConfigError(
                f"Don't know what to do with argument {arg!r}: pass a CONFIG.yaml, `section.key=value` overrides, "
                "--push_to_hub or --resume."
            )
    tree = load_yaml(path or default_path)
    for key, value in overrides:
        _set_dotted(tree, key, value)
    return _build(RunConfig, tree, "")
