"""verl 0.9.1 in one launch: the curriculum inside verl's own v1 trainer, with no model and no GPU.

The config is composed by verl's hydra files from docs/verl.md's one-launch command, with this test's files and
sizes in place of the page's. verl's `PPOTrainerSync` builds the replay buffer from
`trainer.v1.sampler.custom_sampler` and the dataset from `data.custom_cls` with its own loaders, and its
`StatefulDataLoader` runs over them. Its fit loop runs minus the model (`Launch.train`, in `fit`'s order):
`prepare_step` fetches prompts and submits them through TransferQueue (real, on a local Ray), a stand-in rollout
engine writes each group's trajectories as verl's `AgentLoopWorkerTQ` does (`AgentLoopOutput.as_dict()`, a
reward per trajectory), the replay buffer samples them, and verl's own `_save_checkpoint` / `_load_checkpoint`
write and read `global_step_N/data.pt` (the actor's part is a stand-in that writes the Hugging Face layout).
"""

import copy
import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from verl_helpers import SUBSET, one_launch_overrides, schedule, verl_version

from gaincurate.errors import ConfigError

pytestmark = pytest.mark.skipif(verl_version() < (0, 9), reason="the one-launch hooks are verl >= 0.9")
BATCH, N = 16, 2  # prompts per step (data.train_batch_size), rollouts per prompt (actor_rollout_ref.rollout.n)
STEPS = SUBSET // BATCH  # steps per epoch
SAMPLER_KWARGS = "trainer.v1.sampler.sampler_kwargs"


@pytest.fixture(scope="module")
def tq():
    """verl's TransferQueue on a local Ray: the store its trainer, rollout workers and replay buffer share."""
    import ray
    import transfer_queue
    from omegaconf import OmegaConf

    # Two CPUs: TransferQueue's controller and its one storage unit each reserve one.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    transfer_queue.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield transfer_queue
    transfer_queue.close()
    ray.shutdown()


def reward(gc_id: int, session: int) -> float | None:
    return float((gc_id + session) % 3 == 0)


class Rollouts:
    """Stands in for verl's rollout engine (AgentLoopManagerTQ): each prompt's N trajectories go to TransferQueue
    as `AgentLoopWorkerTQ._agent_loop_postprocess` puts them, with the reward `reward(gc_id, session)`."""

    def __init__(self, tq, reward):
        self.tq, self.reward = tq, reward
        self.submitted: list[int] = []  # the gc_ids of the prompts verl submitted, in its order

    def generate_sequences(self, batch) -> None:
        from tensordict import NonTensorData, NonTensorStack
        from verl.experimental.agent_loop import AgentLoopOutput
        from verl.experimental.agent_loop.agent_loop import AgentLoopMetrics
        from verl.utils.tensordict_utils import list_of_dict_to_tensordict

        keys, fields, tags = [], [], []
        for i in range(len(batch)):
            prompt = {}
            for key, value in batch.items():  # AgentLoopWorkerTQ.generate_sequences' unpacking
                if isinstance(value, torch.Tensor):
                    prompt[key] = value[i]
                elif isinstance(value, NonTensorStack):
                    prompt[key] = value[i].data
                elif isinstance(value, NonTensorData):
                    prompt[key] = value.data
            self.submitted.append(int(prompt["index"]))
            for session in range(N):
                length = 2 + session  # responses of different lengths: TransferQueue returns jagged tensors
                output = AgentLoopOutput(
                    prompt_ids=[1, 2, 3], response_ids=[4] * length, response_mask=[1] * length,
                    reward_score=self.reward(int(prompt["index"]), session), metrics=AgentLoopMetrics(),
                )  # fmt: skip
                keys.append(f"{prompt['uid']}_{session}_0")
                fields.append(output.as_dict() | prompt | {"session_id": session})
                tags.append({"status": "success", "global_steps": prompt["global_steps"]})
        self.tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
        uids = [str(uid) for uid in batch["uid"]]
        self.tq.kv_batch_put(keys=uids, partition_id="train", tags=[{"status": "finished"} for _ in uids])


class Actor:
    """verl's actor worker group as the trainer's checkpoint calls use it. A save writes what FSDP writes with
    hf_model in save_contents: `actor/huggingface/` with a config and weights (here a stand-in's)."""

    def save_checkpoint(self, local_path, remote_path=None, global_step=0, max_ckpt_to_keep=None):
        from safetensors.torch import save_file

        model = Path(local_path) / "huggingface"
        model.mkdir(parents=True, exist_ok=True)
        (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
        save_file({"weight": torch.zeros(2, 2)}, str(model / "model.safetensors"))

    def load_checkpoint(self, local_path, del_local_after_load=False):
        self.loaded = local_path


class Launch:
    """One `main_ppo` launch: verl's trainer as `TaskRunnerV1.run` builds it, minus the model."""

    def __init__(self, config, tq, reward=reward):
        from verl.trainer.ppo.v1 import get_trainer_cls
        from verl.utils.skip import SkipManager

        from gaincurate.integrations.verl import one_launch

        self.tq, self.config = tq, config
        # A launch is a fresh process: an empty TransferQueue (a test stopped mid-step leaves groups there), and
        # no replay buffer waiting for its dataset (a launch refused in between leaves one).
        for partition, items in (tq.kv_list() or {}).items():
            if items:
                tq.kv_clear(keys=list(items), partition_id=partition)
        one_launch._BUFFERS.clear()
        self.trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config=config)  # builds the replay buffer
        # _init_tokenizer loads the model's config; verl 0.9.1's dataset tokenizes nothing without length filtering
        self.trainer.tokenizer, self.trainer.processor = None, None
        self.trainer._init_dataloader()
        self.trainer.actor_rollout_wg = Actor()
        self.trainer._load_checkpoint()  # trainer.resume_mode=auto: the newest global_step_N and its data.pt
        self.rollouts = self.trainer.agent_loop_manager = Rollouts(tq, reward)
        self.metrics: list[dict] = []  # what each step's `replay_buffer.sample` returned: verl's trainer logs it
        SkipManager.init(config)

    @property
    def dataset(self):
        return self.trainer.train_dataset

    @property
    def run(self) -> Path:
        return Path(self.config.trainer.v1.sampler.sampler_kwargs.run_dir)

    def train(self, steps: int) -> None:
        """`PPOTrainer.fit`'s loop minus the model: fetch and submit, sample, save when due, clear."""
        from verl.utils.skip import SkipManager

        trainer, save_freq = self.trainer, self.config.trainer.save_freq
        for _ in range(steps):
            trainer.global_steps += 1
            SkipManager.set_step(trainer.global_steps)
            trainer.prepare_step()
            batch, metrics = trainer.replay_buffer.sample(
                global_steps=trainer.global_steps, partition_id="train", batch_size=BATCH
            )
            self.metrics.append(metrics)
            if save_freq > 0 and trainer.global_steps % save_freq == 0:
                trainer._save_checkpoint()
            self.tq.kv_clear(keys=batch.keys, partition_id=batch.partition_id)


@pytest.fixture(scope="module")
def recipe(verl_config, exported, epoch_file):
    """docs/verl.md's one-launch overrides with this test's files and sizes, composed by verl's hydra files."""
    ours = {
        "data.train_files": exported,
        "data.val_files": epoch_file,
        "data.train_batch_size": BATCH,
        "actor_rollout_ref.rollout.n": N,
        "algorithm.adv_estimator": "grpo",
        "trainer.total_epochs": 4,
    }
    documented = [item.split("=", 1) for item in one_launch_overrides()]
    assert set(ours) <= {key for key, _ in documented}  # the page's command, with these values in place
    return verl_config([f"{key}={ours.get(key, value)}" for key, value in documented])


@pytest.fixture(scope="module")
def launch(recipe, tq):
    """`launch(run, *settings, save_freq=-1, reward=...)`: a fresh launch over `run`, checkpoints in RUN/../ckpt.

    `settings` change the composed recipe as hydra overrides would: `key=value`, `+key=value`, `~key` (hydra
    composed the recipe once; these test the integration's answers to them, not hydra).
    """
    from omegaconf import OmegaConf, open_dict

    def start(run: Path, *settings: str, save_freq: int = -1, reward=reward) -> Launch:
        config = copy.deepcopy(recipe)  # verl's trainer writes into its config
        checkpoints = str(run.parent / "ckpt")
        with open_dict(config):
            config.trainer.v1.sampler.sampler_kwargs.run_dir = str(run)
            config.trainer.v1.sampler.sampler_kwargs.checkpoint_dir = checkpoints
            config.trainer.default_local_dir = checkpoints
            config.trainer.save_freq = save_freq
            config.merge_with(OmegaConf.from_dotlist([item.lstrip("+") for item in settings if item[0] != "~"]))
            for item in settings:
                if item[0] == "~":
                    parent, key = item[1:].rsplit(".", 1)
                    OmegaConf.select(config, parent).pop(key)
        return Launch(config, tq, reward)

    return start


def new_run(scores, path: Path, *options: str, subset: int = SUBSET) -> Path:
    schedule("init", "--scores", str(scores), "--run", str(path), "--format", "verl", "--subset-size", str(subset),
             *options)  # fmt: skip
    return path


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def epoch_ids(run: Path, epoch: int) -> list[int]:
    return pq.read_table(run / f"epoch-{epoch:04d}.parquet").column("gc_id").to_pylist()


def test_verl_loads_both_hooks_and_trains_each_epoch_in_rank_order(scores, launch, tmp_path):
    from gaincurate.integrations.verl.one_launch import GainCurriculumDataset, GainReplayBuffer

    launched = launch(new_run(scores, tmp_path / "run"))
    assert isinstance(launched.trainer.replay_buffer, GainReplayBuffer)
    assert isinstance(launched.dataset, GainCurriculumDataset)
    assert type(launched.trainer.val_dataset).__name__ == "GainCurriculumDataset"
    assert launched.trainer.val_dataset.run is None  # validation files read as plain RLHFDataset
    assert launched.trainer.steps_per_epoch == STEPS  # verl's own arithmetic: len(dataset) // train_batch_size
    launched.train(STEPS)
    assert launched.rollouts.submitted == epoch_ids(launched.run, 0)  # through verl's sampler and collate


def test_rewards_are_recorded_and_the_schedule_steps_at_the_epoch_boundary(scores, launch, tmp_path):
    launched = launch(new_run(scores, tmp_path / "run"))
    launched.train(STEPS)
    run = launched.dataset.run
    want = sorted((gc_id, reward(gc_id, session)) for gc_id in epoch_ids(launched.run, 0) for session in range(N))
    assert sorted((r["gc_id"], r["reward"]) for r in run.records) == want  # every trajectory, once
    assert history(launched.run) == []  # not stepped while the epoch trains
    launched.train(1)  # the next epoch's first fetch steps the schedule
    [line] = history(launched.run)
    assert line["epoch"] == 0 and line["rollouts"] == SUBSET * N
    assert line["accuracy"] == pytest.approx(sum(value for _, value in want) / len(want))
    assert launched.rollouts.submitted[SUBSET:] == epoch_ids(launched.run, 1)[:BATCH]
    archived = [json.loads(text) for text in (launched.run / "feedback-0000.jsonl").read_text().splitlines()]
    assert sorted((r["gc_id"], r["reward"]) for r in archived) == want
    # The epoch's savings readout, in its history line and handed once to verl's logger with the step's metrics.
    groups = [[reward(gc_id, session) for session in range(N)] for gc_id in epoch_ids(launched.run, 0)]
    assert line["readout"]["zero_variance"] == pytest.approx(sum(len(set(g)) == 1 for g in groups) / len(groups))
    assert launched.metrics[-1]["curriculum/zero_variance"] == pytest.approx(line["readout"]["zero_variance"])
    assert not any("curriculum/zero_variance" in metrics for metrics in launched.metrics[:-1])


def comparable(run: Path) -> list[dict]:
    """history.jsonl without its timings."""
    return [{key: value for key, value in line.items() if key != "timings"} for line in history(run)]


@pytest.fixture(scope="module")
def unbroken(scores, launch, tmp_path_factory) -> Launch:
    """One launch of 2 epochs and a step, never killed."""
    launched = launch(new_run(scores, tmp_path_factory.mktemp("unbroken") / "run"))
    launched.train(2 * STEPS + 1)
    return launched


@pytest.mark.parametrize(
    ("saved_at", "killed_at"),
    [(STEPS + 1, STEPS + 3), (STEPS + 1, 2 * STEPS + 1), (STEPS, STEPS + 1)],
    ids=["mid-epoch", "mid-epoch-then-stepped-on", "epoch-end-then-stepped"],
)
def test_a_killed_launch_resumes_the_same_curriculum(saved_at, killed_at, unbroken, scores, launch, tmp_path):
    """verl saves at `saved_at`, trains on to `killed_at` and is killed (those steps are lost with it); a new
    launch resumes from the checkpoint (trainer.resume_mode=auto) and ends where the unbroken launch ends."""
    first = launch(new_run(scores, tmp_path / "run"), save_freq=saved_at)
    first.train(killed_at)
    finished = saved_at // STEPS  # epochs complete at the checkpoint: their history lines are never rewritten
    kept = (first.run / "history.jsonl").read_text().splitlines(keepends=True)[:finished]

    second = launch(first.run, save_freq=saved_at)
    assert second.trainer.global_steps == saved_at
    assert (
        Path(second.trainer.actor_rollout_wg.loaded) == first.run.parent / "ckpt" / f"global_step_{saved_at}" / "actor"
    )
    second.train(2 * STEPS + 1 - saved_at)

    assert first.rollouts.submitted[: saved_at * BATCH] + second.rollouts.submitted == unbroken.rollouts.submitted
    assert comparable(first.run) == comparable(unbroken.run)
    assert (first.run / "history.jsonl").read_text().splitlines(keepends=True)[:finished] == kept
    assert epoch_ids(first.run, 2) == epoch_ids(unbroken.run, 2)


def test_a_checkpoint_of_another_curriculum_is_refused_in_one_line(scores, launch, tmp_path):
    first = launch(new_run(scores, tmp_path / "run", "--seed", "1"), save_freq=STEPS)
    first.train(STEPS)
    other = launch(new_run(scores, tmp_path / "other"))  # the same checkpoint folder (RUN/../ckpt), another seed
    # verl's StatefulDataLoader hands data.pt to the dataset when it starts iterating: at the first fetch.
    with pytest.raises(ConfigError, match=r"seed=1.*seed=0.*trainer.resume_mode=disable") as caught:
        other.train(1)
    assert "\n" not in str(caught.value)


def files(run: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(run.iterdir())}


@pytest.mark.parametrize(
    ("options", "settings", "message"),
    [
        ((), ["data.dataloader_num_workers=2"], "set data.dataloader_num_workers=0"),
        ((), ["trainer.v1.trainer_mode=colocate_async"], "set trainer.v1.trainer_mode=sync"),
        ((), [f"+{SAMPLER_KWARGS}.bogus=1"], "bogus"),
        ((), ["trainer.v1.sampler.custom_sampler.path=null"], "takes its rewards from GainReplayBuffer"),
        ((), ["data.val_files=TRAIN_FILES"], "data.val_files names data.train_files"),
        (("--strategy", "screen"), [f"~{SAMPLER_KWARGS}.checkpoint_dir"], rf"set \+{SAMPLER_KWARGS}.checkpoint_dir"),
    ],
    ids=["dataloader-workers", "async-mode", "unknown-key", "no-replay-buffer", "validating-on-training-files",
         "screen-without-checkpoints"],
)  # fmt: skip
def test_settings_the_curriculum_cannot_keep_are_refused_before_it_starts(
    options, settings, message, scores, exported, launch, tmp_path
):
    run = new_run(scores, tmp_path / "run", *options)
    before = files(run)
    with pytest.raises(ConfigError, match=message) as caught:
        launch(run, *[item.replace("TRAIN_FILES", str(exported)) for item in settings])
    assert "\n" not in str(caught.value)
    assert files(run) == before  # refused before the curriculum drew or wrote anything


def test_a_subset_verl_would_cut_short_is_refused_in_one_line(scores, launch, tmp_path):
    """verl drops the last partial batch of each pass (drop_last): 64 prompts in batches of 24 would train 48."""
    with pytest.raises(ConfigError, match="subset_size 64 is not a multiple of data.train_batch_size 24") as caught:
        launch(new_run(scores, tmp_path / "run"), "data.train_batch_size=24")
    assert "\n" not in str(caught.value)


def no_reward(gc_id: int, session: int) -> None:
    return None


@pytest.mark.parametrize(
    ("settings", "rewards", "message"),
    [
        # A colocated reward model scores after the replay buffer samples, so the groups carry no rm_scores.
        ([], no_reward, "reward.reward_model.enable_resource_pool=True"),
        (["data.custom_cls.path=null"], reward, "GainReplayBuffer records rewards for GainCurriculumDataset"),
    ],
    ids=["no-rewards-at-sampling", "no-curriculum-dataset"],
)
def test_what_shows_only_in_training_stops_the_first_step_in_one_line(
    settings, rewards, message, scores, launch, tmp_path
):
    launched = launch(new_run(scores, tmp_path / "run"), *settings, reward=rewards)
    with pytest.raises(ConfigError, match=message) as caught:
        launched.train(1)
    assert "\n" not in str(caught.value)


def test_every_strategy_and_filter_draws_and_steps_through_it(scores, launch, tmp_path, monkeypatch, caplog):
    """Each strategy, and the two filters over dots, one epoch and its step. screen measures with the newest
    checkpoint, and says it cannot use the live policy; re-scoring (gain's default) gets fixed scores: no model
    runs here."""
    import numpy as np

    from gaincurate import scoring
    from gaincurate.lab.strategies import screening as screeners
    from gaincurate.lab.strategies.screening import Screening
    from gaincurate.schedule.config import STRATEGIES
    from gaincurate.schedule.run.rundir import load_run
    from gaincurate.scoring import likelihood

    screened, rescored = [], []

    def fake_screener(run_dir, scores_dir, *, seed, model_path=None, **options):
        screened.append(model_path)
        return lambda ids, epoch, rollouts: Screening(np.full(len(ids), rollouts / 2), np.full(len(ids), rollouts))

    def fake_rescore(scores_dir, ids, *, checkpoint=None, **options):
        rescored.append((name, checkpoint))
        return np.full(len(ids), 1.5)

    def fake_likelihoods(scores_dir, ids, *, checkpoint=None, **options):
        rescored.append((name, checkpoint))
        return np.full(len(ids), -0.7)

    monkeypatch.setattr(screeners, "checkpoint_screener", fake_screener)
    monkeypatch.setattr(scoring, "rescore", fake_rescore)
    monkeypatch.setattr(likelihood, "likelihoods", fake_likelihoods)
    subset = 2 * BATCH  # two steps an epoch: this test is about the strategies, not the steps
    caplog.set_level(logging.WARNING, logger="gaincurate.integrations.verl.one_launch")
    runs = {strategy: ("--strategy", strategy) for strategy in STRATEGIES}
    runs["skip-zero-variance"] = ("--strategy", "dots", "--skip-zero-variance")
    runs["band"] = ("--strategy", "dots", "--band", "0.2,0.8")
    runs["probe-likelihood"] = ("--strategy", "probe", "--likelihood")  # the answer's likelihood, from a checkpoint
    for name, options in runs.items():
        run = new_run(scores, tmp_path / name / "run", *options, subset=subset)
        launched = launch(run, save_freq=2)
        launched.train(3)
        [line] = history(run)
        assert line["epoch"] == 0 and line["rollouts"] == subset * N, name
        assert line["readout"]["groups"] == subset and line["readout"]["estimate"], name
        assert launched.rollouts.submitted == epoch_ids(run, 0) + epoch_ids(run, 1)[:BATCH], name

    def newest(name: str) -> Path:
        return tmp_path / name / "ckpt" / "global_step_2" / "actor" / "huggingface"

    # screen, then pilot: epoch 0 with the scored model, epoch 1 with the newest checkpoint
    assert screened == [None, newest("screen"), None, newest("pilot")]
    assert "gain" in dict(rescored)  # gain re-scores its subset by default, from the epoch-end checkpoint
    assert "probe-likelihood" in dict(rescored)  # probe measures its answers' likelihood there too
    kept = load_run(tmp_path / "probe-likelihood" / "run").schedule.memory["likelihood"]
    assert kept["values"] and set(kept["values"]) == {-0.7} and set(kept["epochs"]) == {0}
    assert all(Path(checkpoint) == newest(name) for name, checkpoint in rescored)
    assert "--strategy screen cannot measure with verl's live policy" in caplog.text
