"""GRPO with a GAIN-RL curriculum inside one TRL process: score, then train three epochs on CPU.

    gaincurate example trl-inprocess                        # a tiny random Llama, built on the spot
    gaincurate example trl-inprocess --model path/to/model  # any local causal LM with a chat template

The lines marked `# gaincurate` are all a GRPOTrainer script needs: a `GainCurriculum`, and the trainer class
`CurriculumGRPOTrainer` that takes it (docs/trl.md). Each epoch trains on the schedule's
subset of the prompts; at each epoch's end the subset is re-scored with the live model, mu moves, and the
next subset is drawn. The run directory can be inspected with `gaincurate schedule status --run RUN`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gaincurate example trl-inprocess", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="Local model folder (default: build a tiny random Llama).")
    parser.add_argument("--workdir", default=None, help="Where scores, run and checkpoints go (default: a temp dir).")
    parser.add_argument(
        "--prompts", type=int, default=32, help="How many bundled sample prompts to use (default: %(default)s)."
    )
    parser.add_argument("--epochs", type=int, default=3, help="Epochs to train (default: %(default)s).")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default: %(default)s).")
    return parser.parse_args(argv)


def build_tiny_model(folder: Path) -> Path:
    """A random 2-layer Llama and a byte-level BPE tokenizer trained on the sample prompts, saved to `folder`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from gaincurate.data import SAMPLE_PATH

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe = trainers.BpeTrainer(vocab_size=500, special_tokens=specials, initial_alphabet=alphabet)
    backend.train_from_iterator(SAMPLE_PATH.read_text().splitlines(), trainer=bpe)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    tokenizer.save_pretrained(folder)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def answer_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion's last `\\boxed{}` matches the reference answer under math-verify (as `gaincurate
    rollout` and the verl reward check), else 0.0."""
    from gaincurate.rollout.answers import check_answer

    return [float(check_answer(c[-1]["content"], a)) for c, a in zip(completions, answer, strict=True)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from gaincurate.integrations.trl import CurriculumGRPOTrainer, GainCurriculum
    from gaincurate.schedule import ScheduleConfig
    from gaincurate.schedule.strategies.contract import update_words
    from gaincurate.scoring import score
    from gaincurate.scoring.config import RunOptions, ScoreConfig

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gaincurate-trl-"))
    built = workdir / "model"  # a rerun in the same --workdir takes the model the first run built: built again, its
    reused = (built / "model.safetensors").is_file()  # files' new times would make it another model to the scores
    model_dir = Path(args.model) if args.model else built if reused else build_tiny_model(built)
    # Score once (the CLI equivalent: gaincurate score --model MODEL --limit 32 --out WORKDIR/scores).
    scores = workdir / "scores"
    score(ScoreConfig(model=str(model_dir), limit=args.prompts, dtype="float32"), RunOptions(out=str(scores)))

    curriculum = GainCurriculum(  # gaincurate
        scores_dir=scores,
        config=ScheduleConfig(strategy="gain", subset_size=8, rescore="window", angle_signal="centered", seed=0),
        run_dir=workdir / "run",
    )
    config = GRPOConfig(
        output_dir=str(workdir / "trainer"),
        num_train_epochs=args.epochs,
        save_strategy="epoch",  # each checkpoint carries the curriculum, so resume_from_checkpoint continues it
        per_device_train_batch_size=8,  # 4 prompts x 2 generations per step: an epoch of 8 prompts is 2 steps
        num_generations=2,
        max_completion_length=16,
        learning_rate=1e-5,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        logging_steps=1,
        report_to="none",
        disable_tqdm=True,
    )
    trainer = CurriculumGRPOTrainer(  # gaincurate: GRPOTrainer's arguments, plus the curriculum
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=config,
        reward_funcs=[answer_reward],  # the first says whether an answer is right: recorded as feedback
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        curriculum=curriculum,  # gaincurate: trains on curriculum.train_dataset(), each epoch on its subset
    )
    # A rerun in the same --workdir goes on from the newest checkpoint, which carries the curriculum's state.
    trainer.train(resume_from_checkpoint=any((workdir / "trainer").glob("checkpoint-*")) or None)

    for line in curriculum.history:
        moved = update_words(curriculum.strategy, line)  # the strategy's own words (gain: how it moved mu)
        readout = line.get("readout") or {}  # the savings readout (docs/readout.md)
        if readout.get("zero_variance") is not None:
            moved += f", zero-variance groups {readout['zero_variance']:.0%}"
        for warning in readout.get("warnings", []):
            moved += f"\n  warning: {warning}"
        print(f"epoch {line['epoch']}: prompts {line['subset_ids']} accuracy {line['accuracy']:.2f}{moved}")
    print(f"run directory: {workdir / 'run'}  (gaincurate schedule status --run {workdir / 'run'})")
    return 0


if __name__ == "__main__":
    main()
