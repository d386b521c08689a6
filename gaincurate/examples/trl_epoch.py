"""Train one GAIN-RL epoch with TRL's GRPOTrainer: the trainer command for `gaincurate schedule run`.

    gaincurate schedule init --scores scores/ --run run/ --subset-size 16
    gaincurate schedule run --run run/ --epochs 3 --trainer-cmd \\
        'gaincurate example trl-epoch --data {epoch_data} --checkpoint {checkpoint} \\
         --output-dir {output_dir} --feedback-file {feedback_file} --epoch {epoch} --total-epochs 3'

Each call reads the epoch file (rows in rank order), resumes the trainer from the checkpoint that ended the
previous epoch, trains exactly one epoch with `shuffle_dataset=False`, saves a checkpoint at its end, and
appends one `{"gc_id", "reward"}` line per rollout to the feedback file. Epoch files all have the same row
count, so resuming skips no rows (the Trainer counts epochs by steps).

`--total-epochs` keeps the learning-rate schedule of one long run: the trainer is told the whole length and
stops after the epoch. Without it the trainer's length is epoch + 1, so a decaying schedule restarts its
horizon every epoch.

Its defaults show the mechanics only (epoch files, resume, feedback) in minutes on a CPU: 2 rollouts of at
most 8 tokens clip every completion, every reward is 0 and nothing is learned; the first line it prints says
so. Learning needs room and variety, TRL's own defaults at least (`--num-generations 8
--max-completion-length 512`), which is GPU work: on two shared CPU cores, 4 rollouts of 64 tokens took 2 to
4 minutes per step, and 14 of 16 groups still had equal rewards (docs/quickstart.md).

The model is `--model` (a folder, a Hub id or a .gguf file), by default the embedded SmolLM2-135M-Instruct
GGUF that `gaincurate score` uses, so the example runs offline on a CPU. Epoch 0 converts the GGUF (half a
minute); later epochs load the model and tokenizer from the checkpoint they resume. It uses a GPU when there
is one. The reward is 1 when the completion's last `\\boxed{}` matches the answer column's value under math-verify
(the check of `gaincurate rollout` and the verl reward); `--reward parity` gives a random model varied rewards (for
smoke tests).
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gaincurate example trl-epoch", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="Base model: folder, Hub id or .gguf (default: the embedded SmolLM2 GGUF)."
    )
    parser.add_argument("--data", required=True, help="{epoch_data}: this epoch's parquet file.")
    parser.add_argument("--checkpoint", default="", help="{checkpoint}: newest complete checkpoint, or ''.")
    parser.add_argument("--output-dir", required=True, help="{output_dir}: where checkpoints go.")
    parser.add_argument("--feedback-file", required=True, help="{feedback_file}: rollout feedback (JSON lines).")
    parser.add_argument("--epoch", type=int, required=True, help="{epoch}: the epoch number, from 0.")
    parser.add_argument("--total-epochs", type=int, default=None, help="Length of the whole run, for the LR schedule.")
    parser.add_argument(
        "--num-generations", type=int, default=2, help="Rollouts per prompt, at least 2 (default: %(default)s)."
    )
    parser.add_argument(
        "--prompts-per-step", type=int, default=2, help="Prompts per optimizer step (default: %(default)s)."
    )
    parser.add_argument(
        "--max-completion-length", type=int, default=8, help="Tokens per completion at most (default: %(default)s)."
    )
    parser.add_argument("--learning-rate", type=float, default=1e-5, help="(default: %(default)s)")
    parser.add_argument(
        "--reward", choices=("answer", "parity"), default="answer",
        help="answer: 1 when the completion's last \\boxed{} matches the answer column's value; parity: varied "
        "rewards for smoke tests (default: %(default)s).",
    )  # fmt: skip
    parser.add_argument(
        "--answer-column", default="answer", help="Column of the reference answer (default: %(default)s)."
    )
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default: %(default)s).")
    parser.add_argument(
        "--save-total-limit", type=int, default=2,
        help="Checkpoints kept in --output-dir, newest first; at least 2, as a retried epoch resumes from the "
        "one before the newest (default: %(default)s).",
    )  # fmt: skip
    parser.add_argument(
        "--save-only-model", action="store_true",
        help="Checkpoints without the optimizer, scheduler and RNG state (a third of the size): each epoch then "
        "resumes with fresh Adam moments, so the run is not the one an unbroken run trains (docs/trl.md, Disk).",
    )  # fmt: skip
    args = parser.parse_args(argv)
    # Checked before the heavy imports, so a wrong command fails in a second.
    if args.num_generations < 2:
        parser.error(f"--num-generations must be at least 2 (GRPO compares rollouts); got {args.num_generations}")
    if args.save_total_limit < 2:
        limit = args.save_total_limit
        parser.error(
            f"--save-total-limit must be at least 2 (a retried epoch resumes from the second newest); got {limit}"
        )
    if args.epoch < 0 or (args.total_epochs is not None and args.total_epochs <= args.epoch):
        parser.error(f"--epoch {args.epoch} must lie in [0, --total-epochs {args.total_epochs})")
    return args


def answer_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion's last `\\boxed{}` matches the reference answer under math-verify, else 0.0: the
    check `gaincurate rollout` and the verl reward make, so a completion earns the same reward everywhere."""
    from gaincurate.rollout.answers import check_answer

    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [float(check_answer(text, a)) for text, a in zip(texts, answer, strict=True)]


def parity_reward(completion_ids, **kwargs) -> list[float]:
    """1.0 when the completion's token ids sum to an odd number: varied rewards from a random model."""
    return [float(sum(ids) % 2) for ids in completion_ids]


# TRL's GRPOConfig defaults: below them a run on this example's reward shows the mechanics, not learning.
LEARNING_GENERATIONS, LEARNING_COMPLETION_TOKENS = 8, 512


def mechanics_only_notice(args: argparse.Namespace) -> str | None:
    """The first line printed when the settings are too small to learn: what the run shows, and what learns."""
    if args.reward != "answer" or (
        args.num_generations >= LEARNING_GENERATIONS and args.max_completion_length >= LEARNING_COMPLETION_TOKENS
    ):
        return None
    return (
        f"note: this run shows the mechanics only: {args.num_generations} rollouts of at most "
        f"{args.max_completion_length} tokens per prompt are too few and too short to reach an answer, so nearly "
        "every reward is 0, nearly every group has zero reward variance (a readout of the run warns so), and the "
        f"model learns nothing. To learn: --num-generations {LEARNING_GENERATIONS} --max-completion-length "
        f"{LEARNING_COMPLETION_TOKENS} (TRL's defaults) or more, on a GPU."
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    notice = mechanics_only_notice(args)
    if notice:
        print(notice, file=sys.stderr, flush=True)  # first, before the libraries' own lines
    from gaincurate.integrations.trl import epoch_dataset, record_rewards, resume_checkpoint

    # A missing epoch file or checkpoint is refused before torch loads (seconds, not ten).
    dataset = epoch_dataset(args.data)
    dropped = len(dataset) % args.prompts_per_step
    if dropped:  # TRL's sampler yields whole steps only: the last prompts of the epoch file get no rollout
        print(
            f"note: {dropped} of this epoch's {len(dataset)} prompts will get no rollout: TRL trains whole steps of "
            f"--prompts-per-step {args.prompts_per_step} only. To train them all, pass a --prompts-per-step that "
            f"divides {len(dataset)}, or start the run with `schedule init --subset-multiple {args.prompts_per_step}`.",
            file=sys.stderr, flush=True,
        )  # fmt: skip
    resume = resume_checkpoint(args.checkpoint, args.epoch)
    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from gaincurate.integrations.trl.noise import quiet_training_noise
    from gaincurate.model import resolve_source

    class StopAfterOneEpoch(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_training_stop = True  # the epoch's checkpoint is still written

    source = resolve_source(args.model)  # None: the embedded GGUF
    # A checkpoint holds the weights and the tokenizer: resuming skips the GGUF conversion.
    folder, gguf_file = (str(resume), None) if resume else (source.folder, source.gguf_file)
    # GGUF weights unpacked to plain floats: the Trainer refuses to fine-tune packed (quantized) blocks.
    unpacked = {"gguf_file": gguf_file, "quantization_config": GgufConfig(dequantize=True)} if gguf_file else {}
    reward = answer_reward if args.reward == "answer" else parity_reward
    if args.reward == "answer" and args.answer_column != "answer":
        reward = _renamed(answer_reward, args.answer_column)
    model = AutoModelForCausalLM.from_pretrained(folder, **unpacked)
    quiet_training_noise(model)  # before GRPOConfig: TRL's use of renamed transformers API, a tied head on resume
    cuda = torch.cuda.is_available()
    config = GRPOConfig(
        output_dir=args.output_dir,
        num_train_epochs=args.total_epochs or args.epoch + 1,
        shuffle_dataset=False,  # keep the epoch file's rank order
        save_strategy="epoch",
        save_total_limit=args.save_total_limit,  # a checkpoint is ~1.6 GB for SmolLM2-135M: weights and Adam state
        save_only_model=args.save_only_model,  # 0.54 GB: the weights, config, tokenizer and trainer_state.json
        per_device_train_batch_size=args.prompts_per_step * args.num_generations,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        learning_rate=args.learning_rate,
        seed=args.seed,
        use_cpu=not cuda,
        bf16=cuda,
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        reward_funcs=[record_rewards(reward, path=args.feedback_file)],
        processing_class=AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file),
        callbacks=[StopAfterOneEpoch()],
    )
    print(f"epoch {args.epoch}: {len(dataset)} prompts, resuming from {resume or source.display}", file=sys.stderr)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    return 0


def _renamed(reward, column: str):
    def answer_in_column(completions, **kwargs):
        return reward(completions, kwargs[column])

    answer_in_column.__name__ = reward.__name__
    return answer_in_column


if __name__ == "__main__":
    sys.exit(main())
