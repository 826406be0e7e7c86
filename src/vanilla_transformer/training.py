"""The steps of `train.py`: arguments, output directory, data, tokenizer, model, trainer, evaluation, saving.

Not shipped to the Hub (the shipped files never import this module). Each step checks its input and raises a
clear error before any training starts. The recipe is the paper's (Section 5): Adam with beta = (0.9, 0.98) and
eps = 1e-9, linear warm-up then inverse-square-root decay with peak lr = d_model^-0.5 * warmup^-0.5, label
smoothing 0.1, dropout from the model config, beam search with 4 beams and length penalty 0.6.
"""

import copy
import dataclasses
import logging
import math
import os
import sys
import time

import datasets
import sacrebleu
import torch
import yaml
from accelerate import PartialState
from torch.utils.data import DataLoader
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    DataCollatorForSeq2Seq,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.trainer_utils import EvalPrediction, get_last_checkpoint

from .config_file import (
    ADJUSTABLE_WHEN_CONTINUING,
    ConfigError,
    DataSection,
    GenerationSection,
    RunConfig,
    evaluates_during_training,
)
from .data import (
    DataError,
    TokenBudgetBatchSampler,
    hub_split_to_dataset,
    load_local_split,
    number_words_splits,
)
from .losses import LabelSmoothedLoss
from .precision import to_inference
from .progress import ProgressReport
from .safety import (
    NonFiniteLossGuard,
    atomic_write_text,
    last_complete_checkpoint,
    set_aside_incomplete_checkpoints,
    set_aside_previous_run,
)
from .tokenizer import train_joint_bpe

logger = logging.getLogger(__name__)

RUN_CONFIG_FILE = "run_config.yaml"
# Sections of the run config that define "the same run": resuming with different ones is refused.
RUN_IDENTITY = ("model", "data", "tokenizer")


# ---------------------------------------------------------------------------------------------------------
# 1. The processes: one group or a clear error
# ---------------------------------------------------------------------------------------------------------
def start_processes(config: RunConfig) -> PartialState:
    """Join the process group of the launch (one process when not launched), set the CPU threads, check the group.

    Trainer's arguments, built later, join the same group (`TrainingArguments` sets up accelerate the same way).

    Raises:
        ConfigError: WORLD_SIZE > 1 but the processes did not join one group (each would train alone).
    """
    if config.training.num_threads:
        torch.set_num_threads(config.training.num_threads)
    state = PartialState(cpu=not torch.cuda.is_available())
    check_process_group(state.num_processes)
    return state


def check_process_group(world_size: int) -> None:
    """Raise when launched as several processes (WORLD_SIZE > 1) that do not form one group of that size."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and world_size != launched:
        raise ConfigError(
            f"Launched as {launched} processes (WORLD_SIZE={launched}) but this process sees a group of "
            f"{world_size}: every process would train alone on the same data. On CPU launch with "
            "`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N ...` or "
            "`torchrun --standalone --nproc_per_node N train.py ...`."
        )


# ---------------------------------------------------------------------------------------------------------
# 2. The output directory: never mix two runs
# ---------------------------------------------------------------------------------------------------------
def prepare_output_dir(config: RunConfig, state: PartialState) -> str | None:
    """Check the output directory and return the checkpoint to resume from (None: start fresh).

    Args:
        state: the processes (`start_processes`); only the first one writes.

    Raises:
        ConfigError: it holds checkpoints and `resume` is not set (nor `overwrite_output_dir`), or `resume` is set
            but the checkpoints belong to a run with another model/data/tokenizer configuration.
    """
    out = config.output_dir
    last = get_last_checkpoint(out) if os.path.isdir(out) else None
    identity = {key: config.to_dict()[key] for key in RUN_IDENTITY}
    saved_path = os.path.join(out, RUN_CONFIG_FILE)
    if last is not None and not config.resume and not config.overwrite_output_dir:
        raise ConfigError(
            f"The output directory {out} already holds checkpoints of another run ({os.path.basename(last)}). "
            "Set `resume=true` (or --resume) to continue it, `overwrite_output_dir=true` to start over in it, or "
            "choose another `output_dir`."
        )
    if config.resume and os.path.isfile(saved_path):  # also before the first checkpoint: the saved tokenizer is reused
        with open(saved_path, encoding="utf-8") as handle:
            saved = yaml.safe_load(handle) or {}
        differing = [key for key in RUN_IDENTITY if saved.get(key) != identity[key]]
        if differing:
            raise ConfigError(
                f"Can't resume in {out}: its checkpoints come from a run with a different "
                f"{' / '.join(differing)} section. Use the same config, or another `output_dir`."
            )
    if state.process_index == 0:
        os.makedirs(out, exist_ok=True)
        set_aside_incomplete_checkpoints(out)  # a kill during a save leaves a half-written checkpoint-N behind
        if config.overwrite_output_dir and not config.resume:
            set_aside_previous_run(out)  # else a later --resume or `average --last N` would pick up the old run's
        atomic_write_text(saved_path, yaml.safe_dump(config.to_dict(), sort_keys=False))
    if last is not None and config.resume:
        last = last_complete_checkpoint(out)  # get_last_checkpoint would return a half-written one
        logger.info("Resuming from %s", last or "scratch (no complete checkpoint)")
        return last
    return None


# ---------------------------------------------------------------------------------------------------------
# 3. Data (the config checks already made sure there is exactly one source)
# ---------------------------------------------------------------------------------------------------------
def load_splits(data: DataSection, seed: int) -> dict[str, datasets.Dataset]:
    """Load the train/validation/test splits as Datasets with `source` and `target` strings.

    Raises:
        DataError: missing/unreadable/empty files, unequal parallel files, missing columns or language keys.
    """
    if data.quickstart is not None:
        splits = number_words_splits(seed=seed, **dataclasses.asdict(data.quickstart))
    elif data.dataset is not None:
        loaded = datasets.load_dataset(data.dataset, data.dataset_config)
        if "train" not in loaded:
            raise DataError(f"Dataset {data.dataset} has no 'train' split; splits are {list(loaded)}.")
        splits = {
            split: hub_split_to_dataset(
                loaded[split], f"{split} split of {data.dataset}", data.source_lang, data.target_lang, data.empty_lines
            )
            for split in ("train", "validation", "test")
            if split in loaded
        }
    else:
        files = {"train": data.train_file, "validation": data.validation_file, "test": data.test_file}
        splits = {
            split: load_local_split(path, data.source_lang, data.target_lang, data.empty_lines)
            for split, path in files.items()
            if path
        }
    if data.max_train_samples:
        splits["train"] = splits["train"].select(range(min(data.max_train_samples, len(splits["train"]))))
    if data.max_eval_samples and "validation" in splits:
        splits["validation"] = splits["validation"].select(
            range(min(data.max_eval_samples, len(splits["validation"])))
        )
    return splits


def tokenize_splits(
    raw: dict[str, datasets.Dataset], tokenizer: PreTrainedTokenizerBase, data: DataSection
) -> dict[str, datasets.Dataset]:
    """Tokenize every split into `input_ids`, `attention_mask` and `labels` (each ending in `</s>`)."""

    def encode(batch: dict) -> dict:
        encoded = tokenizer(batch["source"], max_length=data.max_source_length, truncation=True)
        targets = tokenizer(text_target=batch["target"], max_length=data.max_target_length, truncation=True)
        encoded["labels"] = targets["input_ids"]
        return encoded

    return {
        split: dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc=f"Tokenizing {split}")
        for split, dataset in raw.items()
    }


# ---------------------------------------------------------------------------------------------------------
# 4. Tokenizer and model
# ---------------------------------------------------------------------------------------------------------
def build_tokenizer(config: RunConfig, state: PartialState, train: datasets.Dataset) -> PreTrainedTokenizerBase:
    """Load the given tokenizer (`tokenizer.name_or_path`, else that of `model.name_or_path`), or the one this run
    saved, or train a joint BPE on the training text.

    The main process trains and saves it into the output directory first; the others then load that copy.
    """
    if config.tokenizer.name_or_path:
        return AutoTokenizer.from_pretrained(config.tokenizer.name_or_path)
    if config.model.name_or_path:  # a pretrained model's embeddings only mean something with its own tokenizer
        try:
            return AutoTokenizer.from_pretrained(config.model.name_or_path)
        except Exception as error:
            raise ConfigError(
                f"Continuing from {config.model.name_or_path} needs its tokenizer, and none could be loaded from "
                f"there ({type(error).__name__}: {error}). Set `tokenizer.name_or_path` to the tokenizer the model "
                "was trained with."
            ) from error
    with state.main_process_first():
        saved = os.path.join(config.output_dir, "tokenizer.json")
        if os.path.isfile(saved) and (config.resume or state.process_index > 0):
            return AutoTokenizer.from_pretrained(config.output_dir)
        tokenizer = train_joint_bpe(
            list(train["source"]) + list(train["target"]),
            vocab_size=config.tokenizer.vocab_size,
            min_frequency=config.tokenizer.min_frequency,
        )
        if state.process_index == 0:
            tokenizer.save_pretrained(config.output_dir)
    return tokenizer


def special_token_ids(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """The model config's special ids taken from the tokenizer; the decoder starts with bos (else pad)."""
    if tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ConfigError("The tokenizer needs a pad and an eos token for translation training.")
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id
    return {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": start,
        "eos_token_id": tokenizer.eos_token_id,
        "decoder_start_token_id": start,
    }


def build_model(config: RunConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """`AutoModelForSeq2SeqLM`, new from `model.config` or continued from `model.name_or_path`, with the run's
    generation config.

    `model.config` was checked against the model's config class when the config was parsed; vocabulary size and
    special token ids come from the tokenizer. Label smoothing is the recipe's (`build_trainer`), not the model's.

    Raises:
        ConfigError: special ids that contradict the tokenizer, a pretrained model with too few embeddings.
    """
    ids = special_token_ids(tokenizer)
    if config.model.name_or_path:
        model = continue_from_pretrained(config, tokenizer)
    else:
        model = new_model(config, tokenizer, ids)
    for key, value in ids.items():
        if getattr(model.config, key, value) != value:
            raise ConfigError(f"The model's {key} is {getattr(model.config, key)}, the tokenizer's is {value}.")
    set_generation_config(model, config.generation, ids)
    return model


def continue_from_pretrained(config: RunConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The pretrained `model.name_or_path` with the run's dropout rates (the only fields a run may change)."""
    name = config.model.name_or_path
    changes = {key: value for key, value in config.model.config.items() if key in ADJUSTABLE_WHEN_CONTINUING}
    model = AutoModelForSeq2SeqLM.from_pretrained(name, trust_remote_code=config.model.trust_remote_code, **changes)
    if model.config.vocab_size < len(tokenizer):
        raise ConfigError(
            f"The tokenizer has {len(tokenizer)} tokens but {name} only {model.config.vocab_size} embeddings."
        )
    return model


def new_model(config: RunConfig, tokenizer: PreTrainedTokenizerBase, ids: dict[str, int]) -> PreTrainedModel:
    """A randomly initialised model of `model.model_type` with `model.config`, sized to the tokenizer."""
    for key, value in ids.items():
        if config.model.config.get(key, value) != value:
            raise ConfigError(
                f"`model.config.{key}` is {config.model.config[key]} but the tokenizer's id is {value}; leave "
                "the special ids out of the config (they are taken from the tokenizer)."
            )
    fields = {**config.model.config, **ids, "vocab_size": len(tokenizer)}
    return AutoModelForSeq2SeqLM.from_config(AutoConfig.for_model(config.model.model_type, **fields))


def set_generation_config(model: PreTrainedModel, generation: GenerationSection, ids: dict[str, int]) -> None:
    """The decoding of evaluation and of the saved model: the run's beam search, length and the tokenizer's ids."""
    gen = model.generation_config
    gen.num_beams = generation.num_beams
    gen.max_new_tokens = None  # expressed as max_length (decoder start + new tokens): one length setting, no clash
    gen.max_length = generation.max_new_tokens + 1
    if gen.num_beams > 1:
        gen.length_penalty = generation.length_penalty
        gen.early_stopping = True
    else:  # beam-only settings on a greedy config make `GenerationConfig.validate` refuse to save it
        gen.length_penalty, gen.early_stopping = 1.0, False
    gen.pad_token_id, gen.eos_token_id = ids["pad_token_id"], ids["eos_token_id"]
    gen.bos_token_id, gen.decoder_start_token_id = ids["bos_token_id"], ids["decoder_start_token_id"]
    if getattr(gen, "forced_eos_token_id", None) is not None:  # Marian's default forces its own eos id
        gen.forced_eos_token_id = model.config.forced_eos_token_id = ids["eos_token_id"]


# ---------------------------------------------------------------------------------------------------------
# 5. Training arguments: the paper's optimiser and schedule, built once the model exists
# ---------------------------------------------------------------------------------------------------------
def paper_learning_rate(d_model: int, warmup_steps: int) -> float:
    """Peak of the paper's schedule lrate = d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), at step = warmup."""
    return d_model**-0.5 * max(warmup_steps, 1) ** -0.5


def peak_learning_rate(config: RunConfig, model_config: PreTrainedConfig) -> float:
    """`training.learning_rate`, or (when it is null) the paper's d_model^-0.5 * warmup^-0.5."""
    if config.training.learning_rate is not None:
        return config.training.learning_rate
    d_model = getattr(model_config, "d_model", None) or model_config.hidden_size
    return paper_learning_rate(d_model, config.training.warmup_steps)


def build_training_args(
    config: RunConfig, model_config: PreTrainedConfig, has_validation: bool = True
) -> Seq2SeqTrainingArguments:
    """Map the run config onto `Seq2SeqTrainingArguments` (Adam(0.9, 0.98, 1e-9), warm-up then inverse-sqrt decay).

    Args:
        model_config: the model's config (`model.config`), for the paper's peak learning rate.
        has_validation: whether the data has a validation split (a Hub dataset may have none).
    """
    train, gen = config.training, config.generation
    evaluating = evaluates_during_training(config) and has_validation
    if evaluates_during_training(config) and not has_validation:
        logger.warning("No validation split: no evaluation during training, the last checkpoint is final.")
    return Seq2SeqTrainingArguments(
        output_dir=config.output_dir,
        use_cpu=not torch.cuda.is_available(),
        seed=train.seed,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        max_steps=train.max_steps,
        num_train_epochs=train.num_epochs,
        learning_rate=peak_learning_rate(config, model_config),
        lr_scheduler_type="inverse_sqrt",
        warmup_steps=train.warmup_steps,
        optim="adamw_torch",
        adam_beta1=train.adam_beta1,
        adam_beta2=train.adam_beta2,
        adam_epsilon=train.adam_epsilon,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        logging_steps=train.logging_steps,
        eval_strategy="steps" if evaluating else "no",
        eval_steps=train.eval_steps if evaluating else None,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        load_best_model_at_end=evaluating,
        metric_for_best_model="bleu" if evaluating else None,
        greater_is_better=True,
        predict_with_generate=True,
        generation_num_beams=gen.num_beams,
        bf16=train.precision == "bf16",
        fp16=train.precision == "fp16",
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=not sys.stderr.isatty(),  # a progress bar on a terminal; else `ProgressReport` lines
    )


# ---------------------------------------------------------------------------------------------------------
# 6. Trainer: token-budget batches, exact metrics under several processes, callbacks
# ---------------------------------------------------------------------------------------------------------
class TranslationTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` with optional token-budget batches and duplicate-free evaluation under several processes.

    Args:
        train_batch_sampler: a `TokenBudgetBatchSampler` over the training set, or None for fixed-size batches.
    """

    def __init__(
        self, *args: object, train_batch_sampler: TokenBudgetBatchSampler | None = None, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)
        self.train_batch_sampler = train_batch_sampler

    def get_train_dataloader(self) -> DataLoader:
        """Fixed-size batches (Trainer's), or the token-budget batches dealt round-robin to the processes."""
        if self.train_batch_sampler is None:
            return super().get_train_dataloader()
        dataset = self._remove_unused_columns(self.train_dataset, description="training")
        loader = DataLoader(
            dataset,
            batch_sampler=self.train_batch_sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    def _run_epoch(self, *args: object, **kwargs: object) -> None:
        """Trainer's epoch, except when a resumed checkpoint is already at `max_steps`: then no step at all.

        Trainer checks `max_steps` only after an optimizer step, so resuming from the last step's checkpoint (a run
        killed after writing it, during the final evaluation or save) would train a step `max_steps + 1` and end
        with other weights than the uninterrupted run.
        """
        if self.state.global_step >= self.state.max_steps:
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def log(self, logs: dict[str, float], *args: object, **kwargs: object) -> None:
        """Trainer's log, plus `nll_loss` beside the label-smoothed training `loss` (this process's batches)."""
        if "loss" in logs and isinstance(self.compute_loss_func, LabelSmoothedLoss):
            nll = self.compute_loss_func.pop_nll()
            if nll is not None:
                logs = {**logs, "nll_loss": round(nll, 4)}
        super().log(logs, *args, **kwargs)

    def evaluation_loop(self, *args: object, **kwargs: object) -> object:
        """Gather with `gather_for_metrics`, which drops the rows accelerate repeats to even out the processes.

        (`Seq2SeqTrainer.evaluate` switches to plain `gather`, which keeps them and skews BLEU.)
        """
        self.gather_function = self.accelerator.gather_for_metrics
        return super().evaluation_loop(*args, **kwargs)


class EpochCallback(TrainerCallback):
    """Tell the token-budget sampler the epoch, also after a resume (accelerate's skip wrapper hides it)."""

    def __init__(self, sampler: TokenBudgetBatchSampler) -> None:
        self.sampler = sampler

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        self.sampler.set_epoch(math.floor((state.epoch or 0.0) + 1e-9))


class TimeLimitCallback(TrainerCallback):
    """Stop training cleanly (then evaluate and save) after `minutes` spent in training steps.

    Only the steps count (forward, backward, optimizer), not evaluation or checkpointing, so two runs with the same
    limit get the same training budget however often, and on whatever outputs, they are evaluated.
    """

    def __init__(self, minutes: float) -> None:
        self.seconds = minutes * 60.0
        self.spent = 0.0
        self.step_start = time.monotonic()

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> None:
        self.step_start = time.monotonic()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: object
    ) -> TrainerControl:
        self.spent += time.monotonic() - self.step_start
        stop = self.spent > self.seconds
        if torch.distributed.is_available() and torch.distributed.is_initialized():  # all ranks stop at one step
            flag = torch.tensor(float(stop), device=args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            logger.warning("training.max_train_minutes reached at step %d: stopping.", state.global_step)
            control.should_training_stop = True
            control.should_save = True
            control.should_evaluate = args.eval_strategy != "no"  # so the best-by-BLEU choice sees the last state
        return control


class SaveNewBestCallback(TrainerCallback):
    """Save a checkpoint at every evaluation that improves the best validation score, also between `save_steps`.

    Trainer records the step of a new best score even when that step saves no checkpoint, and then only takes a
    saved checkpoint as the best if it is that very step: with `eval_steps` 250 and `save_steps` 500, a best score
    at step 1,250 left `best_model_checkpoint` at an earlier, worse checkpoint, which the run then loaded as final.
    """

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: object,
    ) -> TrainerControl:
        name = args.metric_for_best_model
        if name is None or not metrics:
            return control
        value = metrics.get(name if name.startswith("eval_") else f"eval_{name}")
        better = (lambda a, b: a > b) if args.greater_is_better else (lambda a, b: a < b)
        if value is not None and (state.best_metric is None or better(value, state.best_metric)):
            control.should_save = True  # Trainer saves right after this evaluation (its best score is not set yet)
        return control


def build_callbacks(config: RunConfig, sampler: TokenBudgetBatchSampler | None) -> list[TrainerCallback]:
    """All callbacks of a run, in one place (extend this list to add more)."""
    callbacks: list[TrainerCallback] = [NonFiniteLossGuard(config.training.on_nonfinite_loss), SaveNewBestCallback()]
    if sampler is not None:
        callbacks.append(EpochCallback(sampler))
    if config.training.max_train_minutes:
        callbacks.append(TimeLimitCallback(config.training.max_train_minutes))
    return callbacks


def decode(tokenizer: PreTrainedTokenizerBase, ids: object) -> list[str]:
    """(N, L) generated or label ids, padded with -100 or pad, -> N strings without special tokens."""
    ids = torch.as_tensor(ids)
    ids = ids.masked_fill(ids < 0, tokenizer.pad_token_id)
    return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def score(hypotheses: list[str], references: list[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu defaults: 13a tokenisation, cased) and exact-match %, over N pairs."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} translations for {len(references)} references.")
    return {
        "bleu": sacrebleu.corpus_bleu(hypotheses, [references]).score,
        "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score,
        "exact_match": 100.0
        * sum(h == r for h, r in zip(hypotheses, references, strict=True))
        / max(len(references), 1),
        "n": float(len(references)),
    }


def build_trainer(
    config: RunConfig,
    args: Seq2SeqTrainingArguments,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: dict[str, datasets.Dataset],
) -> TranslationTrainer:
    """The trainer with the collator (decoder inputs from labels), metrics, batching and callbacks."""
    sampler = None
    if config.training.max_tokens:
        train = data["train"]
        sampler = TokenBudgetBatchSampler(
            [len(ids) for ids in train["input_ids"]],
            [len(ids) for ids in train["labels"]],
            max_tokens=config.training.max_tokens,
            multiple_of=args.world_size * args.gradient_accumulation_steps,
            seed=args.seed,
        )

    def compute_metrics(prediction: EvalPrediction) -> dict[str, float]:
        return score(decode(tokenizer, prediction.predictions), decode(tokenizer, prediction.label_ids))

    trainer = TranslationTrainer(
        model=model,
        args=args,
        train_dataset=data["train"],
        eval_dataset=data.get("validation") if args.eval_strategy != "no" else None,
        processing_class=tokenizer,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100),
        compute_metrics=compute_metrics,
        compute_loss_func=LabelSmoothedLoss(config.training.label_smoothing),  # Trainer pops the labels
        callbacks=build_callbacks(config, sampler),
        train_batch_sampler=sampler,
    )
    for default in (PrinterCallback, ProgressCallback):  # Trainer's dict printouts / bar, replaced by ours
        trainer.remove_callback(default)
    trainer.add_callback(ProgressReport(bar=not args.disable_tqdm))
    return trainer


# ---------------------------------------------------------------------------------------------------------
# 7. Final evaluation
# ---------------------------------------------------------------------------------------------------------
def final_evaluation(
    trainer: TranslationTrainer,
    raw: dict[str, datasets.Dataset],
    data: dict[str, datasets.Dataset],
    num_samples: int,
    precision: str | None = None,
) -> dict:
    """Translate the test split (else validation) with beam search and score against the raw references.

    `precision` ("bf16", "fp16", "int8"; `generation.precision`) translates with a converted copy of the model
    (`precision.to_inference`); the trained model itself, which is saved afterwards, stays as it is.

    Returns:
        {"split", "bleu", "chrf", "exact_match", "n", "samples": [(source, reference, translation), ...]}.
    """
    split = "test" if "test" in data else "validation" if "validation" in data else None
    if split is None:
        return {}
    trained = trainer.model
    if precision is not None:
        trainer.model = to_inference(copy.deepcopy(trained), precision)
    try:
        output = trainer.predict(data[split], metric_key_prefix=split)
    finally:
        trainer.model = trained
    hypotheses = decode(trainer.processing_class, output.predictions)
    references = list(raw[split]["target"])
    scores = score(hypotheses, references)
    sources = list(raw[split]["source"])
    samples = [(sources[i], references[i], hypotheses[i]) for i in range(min(num_samples, len(references)))]
    return {"split": split, **scores, "samples": samples}


def report(results: dict) -> str:
    """Human-readable scores and sample translations."""
    if not results:
        return "No validation or test split: nothing to evaluate."
    lines = [
        f"{results['split']} ({int(results['n'])} sentences): BLEU {results['bleu']:.2f}  chrF {results['chrf']:.2f}"
        f"  exact match {results['exact_match']:.1f}%",
        "Sample translations:",
    ]
    for source, reference, hypothesis in results["samples"]:
        lines += [f"  source:      {source}", f"  reference:   {reference}", f"  translation: {hypothesis}", ""]
    return "\n".join(lines)
