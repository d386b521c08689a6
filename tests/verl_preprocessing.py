"""Parquet files laid out the way verl's own `examples/data_preprocess` scripts write them.

verl's gsm8k.py and math_dataset.py map a Hugging Face dataset split with `Dataset.map(fn, with_indices=True)`
to rows of `data_source`, `prompt` (one user message: the question plus an instruction), `ability`,
`reward_model` {"style": "rule", "ground_truth"} and `extra_info` {"split", "index", ...}, then save with
`to_parquet`. The row-building below is written here from that format (not copied from verl), over the
bundled sample's problems, so the files need no download. `index` counts rows within the split, from 0, so
two files repeat each other's values, as verl's do.
"""

from __future__ import annotations

import re
from pathlib import Path

import datasets

from gaincurate.data import load_sample

GSM8K_SOURCE = "openai/gsm8k"
MATH_SOURCE = "DigitalLearningGmbH/MATH-lighteval"
GSM8K_INSTRUCTION = 'Let\'s think step by step and output the final answer after "####".'
MATH_INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}."


def _whole_numbers(count: int, skip: int) -> list[dict]:
    rows = [row for row in load_sample() if re.fullmatch(r"-?\d+", str(row["answer"]))]
    return rows[skip : skip + count]


def gsm8k_split(count: int, split: str = "train", skip: int = 0) -> datasets.Dataset:
    """GSM8K's layout: the raw question and its worked answer ("... #### N") kept in extra_info."""
    raw = datasets.Dataset.from_dict(
        {
            "question": [row["problem"] for row in _whole_numbers(count, skip)],
            "answer": [f"Work it out.\n#### {row['answer']}" for row in _whole_numbers(count, skip)],
        }
    )

    def process(example: dict, index: int) -> dict:
        question = example.pop("question")
        worked = example.pop("answer")
        return {
            "data_source": GSM8K_SOURCE,
            "prompt": [{"role": "user", "content": f"{question} {GSM8K_INSTRUCTION}"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": worked.split("#### ")[1].replace(",", "")},
            "extra_info": {"split": split, "index": index, "answer": worked, "question": question},
        }

    return raw.map(process, with_indices=True)


def math_split(count: int, split: str = "train", skip: int = 0) -> datasets.Dataset:
    """MATH (lighteval)'s layout: the solution's last boxed answer is the ground truth."""
    rows = load_sample()[skip : skip + count]
    raw = datasets.Dataset.from_dict(
        {
            "problem": [row["problem"] for row in rows],
            "solution": [f"So the result is $\\boxed{{{row['answer']}}}$." for row in rows],
        }
    )

    def process(example: dict, index: int) -> dict:
        question = example.pop("problem")
        solution = example.pop("solution")
        boxed = solution[solution.rindex("\\boxed{") + len("\\boxed{") : solution.rindex("}")]
        return {
            "data_source": MATH_SOURCE,
            "prompt": [{"role": "user", "content": f"{question} {MATH_INSTRUCTION}"}],
            "ability": "math",
            "reward_model": {"style": "rule", "ground_truth": boxed},
            "extra_info": {"split": split, "index": index},
        }

    return raw.map(process, with_indices=True)


def write_parquet(rows: datasets.Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(str(path))
    return path


def concatenated_gsm8k(directory: Path, count: int = 6) -> Path:
    """Two gsm8k-layout files of different problems whose `extra_info.index` values are the same (0..count-1),
    concatenated into one training file, as a user mixing verl files does."""
    first, second = gsm8k_split(count), gsm8k_split(count, skip=count)
    return write_parquet(datasets.concatenate_datasets([first, second]), directory / "train.parquet")


def completions(data_source: str, truth: str) -> tuple[str, str]:
    """A correct and a wrong completion in the answer format each data source's instruction asks for."""
    wrong = "-12345" if truth.strip() != "-12345" else "7"
    if data_source == GSM8K_SOURCE:
        return f"Adding up.\n#### {truth}", f"Adding up.\n#### {wrong}"
    return f"So the answer is \\boxed{{{truth}}}.", f"I think it is \\boxed{{{wrong}}}."
