"""The bench's parts: the arithmetic task, the configs, the clock, the counters and the oracle's choice."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from gaincurate.errors import ConfigError
from gaincurate.lab.benchmarks.curriculum import chain, task
from gaincurate.lab.benchmarks.curriculum.assets import chain_reward
from gaincurate.lab.benchmarks.curriculum.bundled import BUNDLED, load_config
from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig
from gaincurate.lab.benchmarks.curriculum.evaluate import zero_variance_groups
from gaincurate.lab.benchmarks.curriculum.harness import Clock, CountingReward
from gaincurate.lab.benchmarks.curriculum.oracle import OracleStrategy, nearest


def test_problems_are_distinct_seeded_and_splits_disjoint():
    pool = task.problems([(1, 50), (3, 20)], seed=0)
    assert len({r["problem"] for r in pool}) == 70
    assert pool == task.problems([(1, 50), (3, 20)], seed=0)
    for row in pool:
        a, b = (int(x) for x in row["problem"].split("+"))
        assert row["answer"] == str(a + b)[::-1]
        assert len(str(a)) == len(str(b)) == row["digits"]
    held_out = task.problems([(1, 40)], seed=1, exclude={r["problem"] for r in pool})
    assert not {r["problem"] for r in held_out} & {r["problem"] for r in pool}
    with pytest.raises(ValueError, match="distinct"):
        task.problems([(1, 101)], seed=0)


def test_products_multiply_a_number_by_one_digit_on_a_vocabulary_that_extends_the_sums():
    pool = task.problems([(1, 100), (3, 30)], seed=0, operator="*")
    assert len({r["problem"] for r in pool}) == 130
    for row in pool:
        a, b = (int(x) for x in row["problem"].split("*"))
        assert row["answer"] == str(a * b)[::-1] and len(str(a)) == row["digits"] and 0 <= b <= 9
    with pytest.raises(ValueError, match="distinct"):
        task.problems([(1, 101)], seed=0, operator="*")
    assert task.distinct_problems(2, "*") == 900 and task.distinct_problems(2, "+") == 8100
    sums, products = task.build_tokenizer(), task.build_tokenizer("*")
    assert all(products.convert_tokens_to_ids(t) == sums.convert_tokens_to_ids(t) for t in task.ALPHABET)
    assert len(products) == len(sums) + 1
    assert products.unk_token_id not in products("12*7=", add_special_tokens=False)["input_ids"]
    rows = task.sample_rows(np.random.default_rng(0), (1, 2), 50, "*")
    assert all(row["answer"] == str(eval(row["problem"]))[::-1] for row in rows)
    with pytest.raises(ConfigError, match="operator"):
        BenchConfig(name="x", operator="-")
    with pytest.raises(ConfigError, match="there are 100"):
        BenchConfig(name="x", operator="*", pool=((1, 96),), eval=((1, 8),))


def test_warm_start_noise_supervises_one_family_with_a_systematic_slip():
    rows = task.problems([(1, 20), (2, 20)], seed=0)
    slipped = task.corrupt(rows, {2: 1.0}, np.random.default_rng(0))
    for row, new in zip(rows, slipped, strict=True):
        a, b = (int(x) for x in row["problem"].split("+"))
        assert new["answer"] == (str(a + b + 1)[::-1] if row["digits"] == 2 else row["answer"])
    assert task.corrupt(rows, {2: 0.0}, np.random.default_rng(0)) == rows


def test_character_tokenizer_and_prompt():
    tokenizer = task.build_tokenizer()
    text = tokenizer.apply_chat_template([{"role": "user", "content": "12+345"}], tokenize=False,
                                         add_generation_prompt=True)  # fmt: skip
    assert text == "12+345="
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert len(encoded["input_ids"]) == 7
    assert encoded["offset_mapping"][3] == (3, 4)
    assert tokenizer.decode(encoded["input_ids"]) == text
    assert tokenizer.unk_token_id not in encoded["input_ids"]


def test_answers_are_checked_exactly():
    assert task.is_correct(" 975 ", "975") and not task.is_correct("9750", "975")
    conversation = [{"role": "assistant", "content": "21"}]
    assert task.arithmetic_reward(completions=[conversation, "3"], answer=["21", "21"]) == [1.0, 0.0]


def test_zero_variance_groups():
    assert zero_variance_groups([1, 1, 0, 1, 0, 0, 1, 1], 2) == (3, 4)


def test_counting_reward_counts_training_rollouts_only():
    training = {"on": True}
    counter = CountingReward(lambda completions, **kw: [1.0, 1.0, 0.0, 1.0], 2, lambda: training["on"])
    counter(completions=["a", "b", "c", "d"], completion_ids=[[1], [2, 3], [4], [5, 6, 7]], answer=None)
    training["on"] = False
    counter(completions=["a", "b", "c", "d"], completion_ids=[[1], [2], [3], [4]], answer=None)
    assert (counter.rollouts, counter.tokens) == (4, 7)
    assert counter.take_zero_variance_fraction() == 0.5
    assert counter.take_zero_variance_fraction() is None


def test_rows_reused_from_the_pilot_are_in_the_groups_but_not_counted_again():
    counter = CountingReward(lambda completions, **kw: [1.0, 0.0, 1.0, 1.0], 4, lambda: True)
    reused = [False, False, True, True]  # the last two rows of the group are the pilot's, charged as pilot rollouts
    counter(completions=["a", "b", "c", "d"], completion_ids=[[1], [2, 3], [4], [5, 6]], gc_reused=reused)
    assert (counter.rollouts, counter.tokens) == (2, 3)
    assert counter.take_zero_variance_fraction() == 0.0  # the group, all four rows, had variance


def test_clock_leaves_out_excluded_time():
    clock = Clock()
    with clock.exclude("eval"):
        time.sleep(0.05)
    assert clock.excluded["eval"] >= 0.05
    assert clock.now() < 0.05


def test_oracle_trains_on_the_rates_nearest_the_target_and_counts_its_rollouts():
    rng = np.random.default_rng(0)
    assert nearest(np.array([0.0, 0.5, 1.0, 0.375, 0.625, 0.875]), 0.5, 3, rng).tolist() == [1, 3, 4]
    # Ties are broken by the seeded draw: the same seed, the same choice.
    ties = np.array([0.0, 1.0, 0.0, 1.0])
    first, again = (nearest(ties, 0.5, 2, np.random.default_rng(3)).tolist() for _ in range(2))
    assert first == again

    class Context:
        gc_ids = np.arange(6)
        subset_size = 2

    class State:
        epoch = 4

    seen = []

    def measure(gc_ids, epoch):
        seen.append((gc_ids.tolist(), epoch))
        return np.array([0.0, 0.25, 0.5, 1.0, 0.5, 0.0]), 99

    oracle = OracleStrategy(measure, target=0.5, rollouts=8)
    assert oracle.choose(State, Context, np.random.default_rng(0)).positions.tolist() == [2, 4]
    assert seen == [([0, 1, 2, 3, 4, 5], 4)]
    assert (oracle.costs.rollouts, oracle.costs.tokens) == (48, 99)
    assert oracle.costs.epochs[0]["pool_informative"] == pytest.approx(3 / 6)


def test_configs_load_by_name_or_file_and_refuse_unknown_keys(tmp_path):
    assert load_config("cpu-arith") is BUNDLED["cpu-arith"]
    smoke = BUNDLED["cpu-arith"].smoke()
    assert smoke.seeds == 1 and smoke.steps < BUNDLED["cpu-arith"].steps and smoke.smoke_overrides == {}
    file = tmp_path / "mine.json"
    file.write_text(json.dumps({"base": "cpu-arith", "name": "mine", "steps": 16}))
    mine = load_config(str(file))
    assert (mine.name, mine.steps, mine.pool) == ("mine", 16, BUNDLED["cpu-arith"].pool)
    assert BenchConfig.from_dict(mine.to_dict()) == mine
    file.write_text(json.dumps({"name": "x", "stepz": 1}))
    with pytest.raises(ConfigError, match="stepz"):
        load_config(str(file))
    with pytest.raises(ConfigError, match="multiple"):
        BenchConfig(name="x", subset_size=10, prompts_per_step=4)
    with pytest.raises(ConfigError, match="neither"):
        load_config("no-such-config")


def test_seeds_are_a_count_a_range_or_a_list():
    from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig, parse_seeds

    assert parse_seeds(3) == (0, 1, 2)  # an int (a config file's `seeds: 3`) is a count
    assert parse_seeds("100-103") == (100, 101, 102, 103) and parse_seeds("90-90") == (90,)
    assert parse_seeds("5,7-9") == (5, 7, 8, 9) and parse_seeds("5,90") == (5, 90)
    with pytest.raises(ConfigError, match="write 90-90 for seed 90 alone, or 0-89 for the 90 seeds from 0"):
        parse_seeds("90")  # text: seed 90 or 90 seeds? refused, both spellings shown (#49)
    for bad in ("9-3", "a-b", "1,1", "", 0, "3", "1"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)
    assert BenchConfig(name="x", seeds="100-111").seed_list == tuple(range(100, 112))


def test_a_config_can_define_an_arm_of_a_strategy_with_options():
    from gaincurate.lab.benchmarks.curriculum.configs import BenchConfig

    config = BenchConfig(name="x", schedule={"*": {"reward_max": 1.0}, "dots-hot": {"strategy": "dots", "tau": 0.2}})
    assert config.defined_arms() == ("dots-hot",)
    assert config.schedule_fields("dots-hot") == {"reward_max": 1.0, "strategy": "dots", "tau": 0.2}
    with pytest.raises(ConfigError, match="odd"):
        BenchConfig(name="x", smooth=2)
    with pytest.raises(ConfigError, match="the baseline"):
        BenchConfig(name="x", primary=("uniform",))


def test_the_demo_is_cpu_arith_with_uniform_against_the_default_strategy_on_unpublished_seeds():
    from gaincurate.lab.benchmarks.curriculum.bundled import BUNDLED
    from gaincurate.lab.benchmarks.curriculum.report import demo_note
    from gaincurate.schedule.config import DEFAULT_STRATEGY

    demo, arith = BUNDLED["demo"], BUNDLED["cpu-arith"]
    assert demo.strategies == ("uniform", DEFAULT_STRATEGY) and demo.primary == (DEFAULT_STRATEGY,)
    published = set(range(90, 148))  # pilots 90-99, published 100-135, the next declared verdict 136-147
    assert not published & set(demo.seed_list) and len(demo.seed_list) >= 2
    same = ("name", "strategies", "primary", "seeds", "schedule")
    assert {k: v for k, v in demo.to_dict().items() if k not in same} == {
        k: v for k, v in arith.to_dict().items() if k not in same
    }  # the task, warm start, GRPO settings, target and analysis as declared
    summary = {
        "baseline": "uniform",
        "strategies": {
            "uniform": {"seeds": [200, 201], "vs_baseline": None, "censored": 0},
            "dots": {"seeds": [200, 201], "vs_baseline": {"rollouts": {"mean": 0.5}}, "censored": 1},
        },
    }
    note = demo_note(summary, "demo")
    assert "on 2 seed(s)" in note and "dots needed 0.50x uniform's rollouts" in note and "1 seed(s) never" in note
    assert "not the published verdict" in note and "docs/benchmarks.md" in note
    assert demo_note(summary, "cpu-arith") == ""  # published tables keep their text


def test_chain_rows_carry_the_running_totals_as_solution_and_the_reversed_sum_as_answer():
    pool = chain.problems([(4, 30), (6, 20)], seed=0)
    assert pool == chain.problems([(4, 30), (6, 20)], seed=0) and len({r["problem"] for r in pool}) == 50
    for row in pool:
        terms = [int(t) for t in row["problem"].split("+")]
        assert len(terms) == row["digits"] and all(0 <= t <= 9 for t in terms)
        totals = [sum(terms[: i + 1]) for i in range(1, len(terms))]
        assert row["solution"] == ",".join(str(t)[::-1] for t in totals)
        assert row["answer"] == str(sum(terms))[::-1]
        assert chain.completion(row) == f"{row['solution']}={row['answer']}"
    held_out = chain.problems([(4, 30)], seed=1, exclude={r["problem"] for r in pool})
    assert not {r["problem"] for r in held_out} & {r["problem"] for r in pool}
    slipped = task.corrupt(pool, {4: 1.0}, np.random.default_rng(0))
    for row, new in zip(pool, slipped, strict=True):
        wrong = str(int(row["answer"][::-1]) + 1)[::-1] if row["digits"] == 4 else row["answer"]
        assert new["answer"] == wrong and new["solution"].split(",")[-1] == wrong  # the last step slips, not a copy
        assert new["solution"].split(",")[:-1] == row["solution"].split(",")[:-1]
    with pytest.raises(ConfigError, match="operator must be one of \\+ for task chain"):
        BenchConfig(name="x", task="chain", operator="*", pool=((4, 8),), eval=((4, 8),))
    with pytest.raises(ConfigError, match="8 distinct 1-term sums; there are 0"):
        BenchConfig(name="x", task="chain", pool=((1, 8),), eval=((4, 8),))


def test_a_chain_completion_is_at_least_four_times_its_answer_in_tokens():
    """The docstring's bound (k times for k terms), on every 4-term problem and on random longer ones, in the tokens
    of the bench's own tokenizer (one per character, the end token not counted)."""
    tokenizer = task.build_tokenizer(chain.SYMBOLS)
    rng = np.random.default_rng(0)
    every = np.array(np.meshgrid(*[np.arange(10)] * 4)).reshape(4, -1).T
    for terms in (4, 5, 6, 7):
        rows = [chain.make_row(t) for t in every] if terms == 4 else chain.sample_rows(rng, [terms], 2000)
        rows += [chain.make_row([0] * (terms - 2) + [9, 9]), chain.make_row([9] * terms)]
        completions = tokenizer([chain.completion(row) for row in rows], add_special_tokens=False)["input_ids"]
        answers = tokenizer([row["answer"] for row in rows], add_special_tokens=False)["input_ids"]
        for row, completion, answer in zip(rows, completions, answers, strict=True):
            assert tokenizer.unk_token_id not in completion
            assert len(completion) >= terms * len(answer) >= 4 * len(answer), row


def test_the_chain_reward_reads_the_final_answer_only():
    row = chain.make_row([7, 5, 9, 8])
    assert (row["solution"], row["answer"]) == ("21,12,92", "92")
    completions = ["21,12,92=92", "99,99,99=92", "=92", "21,12,92=93", "21,12,92", "1=2=92 "]
    assert chain_reward(completions=completions, answer=["92"] * 6) == [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert chain.final_answer("21,12") is None and chain.is_correct(" 21,12,92= 92", "92")


def test_a_policy_that_does_not_fold_every_term_into_its_state_answers_right_at_most_once_in_10():
    """The bound of chain.py's docstring, by brute force: for each held-out problem and each term, the best answer a
    policy can give from every term but that one is right for at most 1 of the term's 10 values, in float64."""
    for row in chain.problems([(4, 40), (5, 40), (7, 40)], seed=1):
        terms = [int(t) for t in row["problem"].split("+")]
        for position in range(len(terms)):
            answers = [chain.make_row([*terms[:position], value, *terms[position + 1 :]])["answer"]
                       for value in range(chain.LOW, chain.HIGH)]  # fmt: skip
            best = max(answers.count(a) for a in set(answers)) / np.float64(len(answers))
            assert best == 1 / np.float64(10)
