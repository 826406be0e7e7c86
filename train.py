"""Train a translation model with the recipe of "Attention Is All You Need", evaluate it, save (and publish) it.

    accelerate launch train.py                                   # the offline quick-start (configs/quickstart.yaml)
    accelerate launch train.py configs/small.yaml training.max_steps=2000 --push_to_hub
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train.py ...   # 2 processes on CPU

Works with any registered seq2seq config (`model.model_type: marian` trains a MarianMTModel with the same recipe).
The steps live in `vanilla_transformer.training`; see the README sections "Training" and "Data formats".
"""

import os
import sys
import time

import datasets
from transformers import set_seed

import vanilla_transformer  # noqa: F401  (registers the model with the Auto classes)
from vanilla_transformer.config_file import ConfigError, debug_tracebacks, parse_config
from vanilla_transformer.data import DataError
from vanilla_transformer.hub import card_values, fill_model_card, push_to_hub
from vanilla_transformer.progress import plot_loss_curve
from vanilla_transformer.saving import save_with_pipeline
from vanilla_transformer.training import (
    build_model,
    build_tokenizer,
    build_trainer,
    build_training_args,
    final_evaluation,
    load_splits,
    prepare_output_dir,
    report,
    start_processes,
    tokenize_splits,
)

HERE = os.path.dirname(os.path.abspath(__file__))
USER_ERRORS = (ConfigError, DataError)  # what the user can fix: the message says how


def main(argv: list[str] | None = None) -> dict:
    """Train, evaluate and save (and push) one run; returns the final scores (`training.final_evaluation`)."""
    config = parse_config(sys.argv[1:] if argv is None else argv, os.path.join(HERE, "configs", "quickstart.yaml"))
    # ^ every value checked, the model's config fields too, before any data is read
    state = start_processes(config)  # one process group, or a clear error
    checkpoint = prepare_output_dir(config, state)  # refuses another run's checkpoints unless resuming
    if not sys.stderr.isatty():
        datasets.disable_progress_bars()  # a log file gets our progress lines, not carriage-return bars
    raw = load_splits(config.data, seed=config.training.seed)  # bad files fail here, before any training
    tokenizer = build_tokenizer(config, state, raw["train"])  # given, or joint BPE trained on the training text
    with state.main_process_first():
        data = tokenize_splits(raw, tokenizer, config.data)
    set_seed(config.training.seed)
    model = build_model(config, tokenizer)  # new or continued; the run's beam search as its generation config
    args = build_training_args(config, model.config, has_validation="validation" in data)
    trainer = build_trainer(config, args, model, tokenizer, data)
    if trainer.is_world_process_zero():
        n_params = sum(p.numel() for p in model.parameters())
        print(f"Training {model.config.model_type} ({n_params / 1e6:.2f}M parameters), peak lr ", end="")
        print(
            f"{args.learning_rate:.2e}, {len(data['train'])} training pairs, {args.world_size} process(es).",
            flush=True,
        )

    start = time.time()
    trainer.train(resume_from_checkpoint=checkpoint)
    minutes = (time.time() - start) / 60
    results = final_evaluation(trainer, raw, data, config.generation.num_samples, config.generation.precision)

    trainer.save_model(config.output_dir)  # model + code + generation config + tokenizer (main process only)
    if trainer.is_world_process_zero():
        save_with_pipeline(trainer.model, tokenizer, config.output_dir)  # + the "vanilla-translation" pipeline
        print(report(results), flush=True)
        trainer.save_metrics("all", {k: v for k, v in results.items() if k != "samples"} | {"train_minutes": minutes})
        trainer.save_state()  # trainer_state.json: the whole log history
        plot_loss_curve(trainer.state.log_history, os.path.join(config.output_dir, "loss_curve.png"))
        training = {"steps": trainer.state.global_step, "minutes": minutes, "processes": args.world_size}
        training["device"] = str(args.device)
        with open(os.path.join(HERE, "model_card.md"), encoding="utf-8") as handle:
            card = fill_model_card(handle.read(), card_values(config.to_dict(), model, results, training))
        with open(os.path.join(config.output_dir, "README.md"), "w", encoding="utf-8") as handle:
            handle.write(card)
        print(f"Saved model and tokenizer to {config.output_dir}", flush=True)
        if config.push_to_hub:
            repo_id = config.hub_model_id or os.path.basename(os.path.normpath(config.output_dir))
            url = push_to_hub(repo_id, trainer.model, tokenizer, card, private=config.hub_private)
            print(f"Pushed to {url}", flush=True)
    return results


def cli(argv: list[str] | None = None) -> int:
    """`main` for the command line: a configuration or data error is one message on stderr and exit status 2.

    Tracebacks are kept for bugs, and shown for user errors too with `VT_DEBUG=1`. Under several processes only
    the first one prints the message (every process fails the same check).
    """
    try:
        main(argv)
    except USER_ERRORS as error:
        if debug_tracebacks():
            raise
        if os.environ.get("RANK", "0") == "0":
            print(f"train.py: error: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
