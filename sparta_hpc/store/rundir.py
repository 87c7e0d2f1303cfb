"""Every path of a run directory (drawn in docs/run-directory.md).

No other module builds a path inside a run directory by hand: it asks ``RunDir``.
"""

from __future__ import annotations

from pathlib import Path

STAGES = ("plan", "generate", "judge", "rate", "train", "evaluate")
"""The stages of one iteration, in order (also the names of an iteration's folders)."""


class RunDir:
    """The run directory tree."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    # run level
    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "launcher.lock"

    @property
    def events_file(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def heartbeat_file(self) -> Path:
        """``{time, host, pid}``, rewritten by the waiting launcher every ``store.progress.HEARTBEAT_S``."""
        return self.root / "launcher_heartbeat.json"

    @property
    def tensorboard_dir(self) -> Path:
        """TensorBoard event files (only with ``run.tensorboard=true``)."""
        return self.root / "tensorboard"

    @property
    def report_dir(self) -> Path:
        """Default output folder of ``sparta-hpc report`` (leaderboard, plots, report.html)."""
        return self.root / "report"

    @property
    def tiny_base(self) -> Path:
        return self.root / "models" / "tiny-base"

    def initial_adapter(self, player: str) -> Path:
        return self.root / "models" / "initial" / player

    # iteration level
    def iteration(self, t: int) -> Path:
        return self.root / f"iter_{t:03d}"

    def stage(self, t: int, stage: str) -> Path:
        return self.iteration(t) / stage

    def matches(self, t: int) -> Path:
        return self.stage(t, "plan") / "matches.jsonl"

    def players(self, t: int) -> Path:
        """Each player's base and adapter at the start of iteration t (written by the plan stage)."""
        return self.stage(t, "plan") / "players.json"

    def shard(self, t: int, stage: str, shard: int) -> Path:
        return self.stage(t, stage) / f"shard_{shard:05d}.jsonl"

    def shard_parts(self, t: int, stage: str, shard: int) -> Path:
        """Chunks a running shard has finished; merged into ``shard()`` when the shard ends."""
        return self.stage(t, stage) / f"shard_{shard:05d}.parts"

    def judged(self, t: int) -> Path:
        return self.stage(t, "rate") / "judged.jsonl"

    def ratings(self, t: int) -> Path:
        return self.stage(t, "rate") / "ratings.json"

    def preferences(self, t: int) -> Path:
        return self.stage(t, "rate") / "preferences.jsonl"

    def player_preferences(self, t: int, player: str) -> Path:
        """``run.mode=self_rewarding``: the pairs of one player's own best vs worst answers (its DPO data)."""
        return self.stage(t, "rate") / "preferences" / f"{player}.jsonl"

    def self_judged(self, t: int) -> Path:
        """``run.mode=self_rewarding``: every self match with its answers and its player's own scores."""
        return self.stage(t, "rate") / "self_judged.jsonl"

    def rate_report(self, t: int) -> Path:
        return self.stage(t, "rate") / "report.json"

    def adapter(self, t: int, player: str) -> Path:
        return self.stage(t, "train") / player / "adapter"

    def train_work(self, t: int, player: str) -> Path:
        """Trainer checkpoints of one player's DPO jobs, one folder per attempt (``train_attempt``)."""
        return self.stage(t, "train") / player / "work"

    def train_attempt(self, t: int, player: str, attempt: str) -> Path:
        """Checkpoints of one attempt at a player's DPO (a job id: a requeued job keeps it and resumes here;
        a resubmitted unit is a new attempt, which starts from the newest checkpoint of the earlier ones)."""
        return self.train_work(t, player) / attempt

    def train_stats(self, t: int, player: str) -> Path:
        return self.stage(t, "train") / player / "stats.json"

    def eval_models(self, t: int) -> Path:
        """``{label: {player: {base, adapter}}}``: the models iteration t's evaluate stage evaluates."""
        return self.stage(t, "evaluate") / "models.json"

    def eval_records(
        self, t: int, label: str, player: str, split: str, shard: int, task: str | None = None
    ) -> Path:
        """Records of one evaluation unit: one model (label, player) on one shard of one split of the training
        task, or of an ``eval.tasks`` task (in a ``<task>`` subfolder)."""
        return self._eval_unit(t, label, player, task) / f"{split}_{shard:05d}.jsonl"

    def eval_parts(
        self, t: int, label: str, player: str, split: str, shard: int, task: str | None = None
    ) -> Path:
        """Chunks a running evaluation unit has finished; merged into ``eval_records()`` when it ends."""
        return self._eval_unit(t, label, player, task) / f"{split}_{shard:05d}.parts"

    def _eval_unit(self, t: int, label: str, player: str, task: str | None) -> Path:
        folder = self.stage(t, "evaluate") / label / player
        return folder if task is None else folder / task

    def eval_judge_adapter(self, name: str) -> Path:
        """The random tiny adapter of an ``eval.judge_model`` whose adapter is ``tiny``."""
        return self.root / "models" / "eval-judge" / name

    def jobs(self, t: int, stage: str) -> Path:
        """submitit's folder (pickles and logs) of one stage's jobs."""
        return self.root / "jobs" / f"iter_{t:03d}" / stage

    def progress_dir(self, t: int, stage: str) -> Path:
        """What one stage's running units have done, one file per unit, written by the jobs themselves."""
        return self.root / "progress" / f"iter_{t:03d}" / stage

    def unit_progress(self, t: int, stage: str, unit: str) -> Path:
        """``{attempt, chunks, items, finished, updated, ...}`` of one unit (``store/progress.py``)."""
        return self.progress_dir(t, stage) / f"{unit}.json"

    @property
    def launcher_jobs(self) -> Path:
        """submitit's folder of the launcher's own job (``--detach``): its log is the run's log."""
        return self.root / "jobs" / "launcher"

    @property
    def cancel_file(self) -> Path:
        """Written by ``sparta-hpc cancel``: a launcher that sees it stops; a new launcher removes it."""
        return self.root / "cancelled.json"

    @property
    def launcher_job_file(self) -> Path:
        """``{job_id, submitted, argv}`` of the detached launcher, written when it is submitted."""
        return self.root / "launcher_job.json"

    def relative(self, path: Path) -> str:
        return str(path.resolve().relative_to(self.root))
