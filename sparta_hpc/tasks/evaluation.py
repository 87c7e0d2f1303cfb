"""The evaluate stage: held-out task scores of every player after chosen iterations (spec section 8).

Light at import (no torch): the launcher plans evaluation units and summarises their records here;
``jobs.evaluate_shard`` runs them. A unit is one model (a player as it was at one point of the run) on one
shard of one split; its records are one file. Labels name those points: ``initial`` (the models the run
started from, evaluated in iteration 0's stage) and ``iter_<t>`` (the models after iteration t).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sparta_hpc.engines.base import Completion, ModelConfig, Request, Sampling
from sparta_hpc.errors import TaskDataError
from sparta_hpc.method import judging
from sparta_hpc.tasks import metrics
from sparta_hpc.tasks.convert import synthetic_task
from sparta_hpc.tasks.pool import TaskConfig, prompt_pool, task_template
from sparta_hpc.tasks.prompts import build_prompt, render_judge
from sparta_hpc.tasks.schema import SYNTHETIC, TASK_NAMES, TaskExample, read_split

INITIAL = "initial"
"""Label of the models the run started from."""
ALPACA = "alpaca"
"""The task scored by an LLM judge (1-10) instead of ``tasks.metrics.score``."""
JUDGE = "eval-judge"
"""Engine name of ``eval.judge_model`` in an evaluation job (players are ``label/player`` there)."""

Scores = dict[str, dict[str, dict[str, float | None]]]
"""``scores[label][player][split]``: the mean metric (``None`` when no example could be scored); splits of an
``eval.tasks`` task are keyed ``<task>/<split>`` (``split_key``)."""


@dataclass
class EvalConfig:
    """When, on what and how the players are evaluated (greedy decoding)."""

    every: int = 1
    """Evaluate after every ``every``-th iteration (and the last one); 0 turns evaluation off. The initial
    models are evaluated in iteration 0's stage whenever evaluation is on."""
    splits: list[str] = field(default_factory=lambda: ["val", "test"])
    """Splits of the task to evaluate on; ``val`` is required (the reported model is chosen on it)."""
    num_shards: int = 1
    """Shards of each split: a unit is one model on one shard of one split."""
    units_per_task: int = 1
    """Units run by one array task, which loads its models once (1: one task per model and split shard;
    the CPU demo packs all units into one task to pay the model loading once). Never changes results."""
    max_examples: int | None = None
    """Evaluate only the first ``max_examples`` examples of each split (file order); null: all of them."""
    max_new_tokens: int = 512
    """Greedy tokens per answer."""
    chunk_size: int = 64
    """Examples per saved chunk: a preempted task resumes after its last saved chunk."""
    judge_model: ModelConfig | None = None
    """The judge of ``task.name=alpaca`` and of ``task.metric=judge`` (required there, unused otherwise)."""
    judge_method: str = "generate"
    """Alpaca judge: ``generate`` (greedy decode, parse ``{"score": N}``) or ``logprob`` (expected score)."""
    judge_max_new_tokens: int = 32
    """Greedy tokens of a decoded Alpaca judgment."""
    judge_rubric_file: str | None = None
    """A judge prompt of your own for ``eval.judge_model`` (as ``judge.rubric_file``: ``{question}`` and
    ``{response}``, asking for ``{"score": N}``); null: the built-in prompt with its ``default`` rubric."""
    tasks: list[str] = field(default_factory=list)
    """Extra tasks to evaluate on besides the training task (unseen-task generalisation), each read from
    ``task.data_dir/<name>/{val,test}.jsonl`` (or ``synthetic``), on the same ``eval.splits``. Empty: only the
    training task. Models are always chosen on the training task's val score."""

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError(f"eval.every={self.every} must be >= 0 (0 turns evaluation off)")
        bad = [s for s in self.splits if s not in ("val", "test")]
        if bad:
            raise ValueError(f"eval.splits has {bad}; allowed values: val, test")
        if "val" not in self.splits or len(set(self.splits)) != len(self.splits):
            raise ValueError(f"eval.splits={list(self.splits)} must list val (once), optionally test")
        for key in ("num_shards", "units_per_task", "max_new_tokens", "chunk_size", "judge_max_new_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"eval.{key}={getattr(self, key)} must be >= 1")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"eval.max_examples={self.max_examples} must be >= 1 or null (all examples)")
        bad = [t for t in self.tasks if t not in (SYNTHETIC, *TASK_NAMES)]
        if bad or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(
                f"eval.tasks={list(self.tasks)} must list distinct task names; allowed values: "
                + ", ".join((SYNTHETIC, *TASK_NAMES))
            )
        if self.judge_method not in ("generate", "logprob"):
            raise ValueError(
                f"eval.judge_method={self.judge_method!r} is not valid; allowed values: generate, logprob"
            )


def due(every: int, t: int, iterations: int) -> bool:
    """Whether iteration t is followed by an evaluation."""
    return every > 0 and ((t + 1) % every == 0 or t == iterations - 1)


def label_after(t: int) -> str:
    """Label of the models after iteration t."""
    return f"iter_{t}"


def label_order(label: str) -> int:
    """Chronological sort key of a label: ``initial`` first, then by iteration."""
    return -1 if label == INITIAL else int(label.removeprefix("iter_"))


def labels(t: int, every: int, iterations: int) -> list[str]:
    """The model labels iteration t's evaluate stage evaluates (empty: the stage does nothing)."""
    out = [INITIAL] if t == 0 and every > 0 else []
    return out + ([label_after(t)] if due(every, t, iterations) else [])


@dataclass(frozen=True, kw_only=True)
class EvalUnit:
    """One model (``label``, ``player``) on one shard of one split: one record file."""

    label: str
    player: str
    split: str
    shard: int
    task: str | None = None
    """An ``eval.tasks`` task; ``None``: the training task."""


def split_key(task: str | None, split: str) -> str:
    """The key of a task's split in ``Scores``: ``split`` for the training task, else ``<task>/<split>``."""
    return split if task is None else f"{task}/{split}"


def plan_units(t: int, players: Sequence[str], cfg: EvalConfig, iterations: int) -> list[EvalUnit]:
    """Every unit of iteration t's stage, ordered by label, player, task (the training task first, then
    ``eval.tasks``), split, shard."""
    return [
        EvalUnit(label=label, player=p, split=split, shard=s, task=task)
        for label in labels(t, cfg.every, iterations)
        for p in players
        for task in [None, *cfg.tasks]
        for split in cfg.splits
        for s in range(cfg.num_shards)
    ]


def unit_task(task: TaskConfig, unit_task_name: str | None) -> TaskConfig:
    """The task a unit evaluates on: the training task, or an ``eval.tasks`` task (same data folder, its own
    built-in template and metric)."""
    if unit_task_name is None:
        return task
    return replace(task, name=unit_task_name, template=None, metric=None, answer_pattern=None)


def needs_judge(task: TaskConfig, ev: EvalConfig) -> bool:
    """Whether evaluation scores some task with ``eval.judge_model`` (Alpaca, or ``task.metric=judge``)."""
    return ev.every > 0 and (ALPACA in (task.name, *ev.tasks) or task.metric == "judge")


def task_units(units: Sequence[EvalUnit], units_per_task: int) -> list[list[EvalUnit]]:
    """Consecutive groups of ``units_per_task`` units: the units of each array task."""
    return [list(units[i : i + units_per_task]) for i in range(0, len(units), units_per_task)]


def split_examples(task: TaskConfig, ev: EvalConfig, seed: int, split: str) -> list[TaskExample]:
    """The examples of one evaluation split, capped at ``eval.max_examples`` (file order)."""
    if task.name == SYNTHETIC:
        n = task.synthetic_eval_size
        examples = synthetic_task(task.synthetic_size, n, n, seed=seed)[split]
    else:
        assert task.data_dir is not None  # checked by config.check_paths
        examples = read_split(Path(task.data_dir) / task.name / f"{split}.jsonl")
    return examples[: ev.max_examples]


def check_task_data(task: TaskConfig, ev: EvalConfig, seed: int) -> None:
    """Read the train split and every split evaluation will use exactly as the plan and evaluate stages do, so
    a bad file is refused before the run starts: TaskDataError naming ``path:line``, or the file of a split
    that has no example; for a task of your own, an example its template or metric cannot use."""
    if task.custom:
        train = _split_file(task, "train")
        _check_custom_examples(task, train, read_split(train), scored=False)
    if not prompt_pool(task, seed):
        raise TaskDataError(f"{_split_file(task, 'train')}: no examples; the prompt pool needs at least one")
    for name in [None, *ev.tasks] if ev.every else []:
        each = unit_task(task, name)
        for split in ev.splits:
            if not split_examples(each, ev, seed, split):
                fix = "eval.splits=[val] or eval.every=0" if split == "test" else "eval.every=0"
                if name is not None:
                    fix += f", or drop {name} from eval.tasks"
                raise TaskDataError(
                    f"{_split_file(each, split)}: no examples; evaluation needs them (or set {fix})"
                )
            if each.custom:
                _check_custom_examples(each, _split_file(each, split), split_examples(each, ev, seed, split))


def _check_custom_examples(
    task: TaskConfig, where: str, examples: Sequence[TaskExample], scored: bool = True
) -> None:
    """Every example of a task of your own fits its template and, when ``scored``, its metric."""
    for e in examples:
        try:
            build_prompt(task.name, e, task_template(task))
        except ValueError as err:
            raise TaskDataError(f"{where}: task.template: {err}") from None
        if scored and task.metric != "judge" and e.answer is None:
            raise TaskDataError(f"{where}: {e.id}: no answer; task.metric={task.metric} scores against it")
        if scored and task.metric == "choice" and not e.choices:
            raise TaskDataError(f"{where}: {e.id}: no choices; task.metric=choice needs the options")


def _split_file(task: TaskConfig, split: str) -> str:
    return str(Path(task.data_dir or ".") / task.name / f"{split}.jsonl") if task.name != SYNTHETIC else split


def metric_name(task: str, metric: str | None = None) -> str:
    """What a task's scores mean; ``metric``: ``task.metric`` of a task of your own."""
    if task == ALPACA or metric == "judge":
        return "judge score (1-10)"
    return "token F1" if metric == "f1" else "accuracy"


# ---------------------------------------------------------------- scoring (called by jobs/evaluate.py)

Scored = tuple[str | None, float | None, str | None]
"""(extracted answer, score, judge output) of one evaluation answer."""


def score_answers(
    task: TaskConfig,
    ev: EvalConfig,
    engine: Any,
    requests: Sequence[Request],
    completions: Sequence[Completion],
    examples: dict[str, TaskExample],
    judge_template: str | None = None,
) -> list[Scored]:
    """The task metric of every answer, or for Alpaca and ``task.metric=judge`` the judge's 1-10 score
    (``None``: failed judgment).

    ``engine`` is a loaded Engine holding ``JUDGE`` for a judged task; request ids are example ids;
    ``judge_template``: the text of ``eval.judge_rubric_file``."""
    pairs = list(zip(requests, completions, strict=True))
    if task.custom and task.metric != "judge":
        assert task.metric is not None
        m, pattern = task.metric, task.answer_pattern
        return [
            (
                metrics.extract_custom(m, pattern, c.text, examples[r.request_id]),
                metrics.score_custom(m, pattern, c.text, examples[r.request_id]),
                None,
            )
            for r, c in pairs
        ]
    if task.name != ALPACA and not task.custom:
        return [
            (
                metrics.extract(task.name, c.text, examples[r.request_id]),
                metrics.score(task.name, c.text, examples[r.request_id]),
                None,
            )
            for r, c in pairs
        ]
    logprob = ev.judge_method == "logprob"
    judge_requests = [
        Request(
            request_id=r.request_id,
            model=JUDGE,
            prompt=judging.judge_prompt(r.prompt, c.text)
            if judge_template is None
            else render_judge(judge_template, r.prompt, c.text),
            seed=r.seed,
            assistant_prefix=judging.SCORE_PREFIX if logprob else "",
        )
        for r, c in pairs
    ]
    if logprob:
        return [(None, min(10.0, max(1.0, e.score)), "") for e in engine.expected_scores(judge_requests)]
    sampling = Sampling(max_new_tokens=ev.judge_max_new_tokens, greedy=True)
    return [
        (None, judge_value(judging.parse_score(c.text)), c.text)
        for c in engine.generate(judge_requests, sampling)
    ]


def judge_value(score: int | None) -> float | None:
    """A parsed judge score as the Alpaca metric: 1-10; anything else (0, a failed parse) is ``None``."""
    return metrics.judge_score(score) if score is not None and 1 <= score <= 10 else None


# ---------------------------------------------------------------- records and their summary


@dataclass(frozen=True, kw_only=True)
class EvalRecord:
    """One model's greedy answer to one example and its score (docs/formats.md, "Evaluation records")."""

    id: str
    player: str
    iteration: str
    split: str
    output: str
    num_tokens: int
    extracted: str | None
    score: float | None
    judge_output: str | None
    task: str | None = None
    """An ``eval.tasks`` task (the key is written only then); ``None``: the training task."""

    KEYS = (
        "id",
        "player",
        "iteration",
        "split",
        "output",
        "num_tokens",
        "extracted",
        "score",
        "judge_output",
    )

    def to_dict(self) -> dict[str, Any]:
        extra = {} if self.task is None else {"task": self.task}
        return {k: getattr(self, k) for k in self.KEYS} | extra

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalRecord:
        if set(d) - {"task"} != set(cls.KEYS):
            raise ValueError(f"evaluation record: keys {sorted(d)}; expected {sorted(cls.KEYS)} (and task)")
        score = d["score"]
        if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
            raise ValueError(f"evaluation record {d['id']!r}: score must be a number or null, got {score!r}")
        return cls(**{**d, "score": None if score is None else float(score)})


def summarize(records: Iterable[EvalRecord]) -> tuple[Scores, int]:
    """Mean score per label, player and split (unscored examples left out), and how many were unscored."""
    sums: dict[tuple[str, str, str], list[float]] = {}
    failed = 0
    for r in records:
        values = sums.setdefault((r.iteration, r.player, split_key(r.task, r.split)), [])
        if r.score is None:
            failed += 1
        else:
            values.append(r.score)
    scores: Scores = {}
    for (label, player, split), values in sums.items():
        mean = sum(values) / len(values) if values else None
        scores.setdefault(label, {}).setdefault(player, {})[split] = mean
    return scores, failed


def best_on_val(scores: Scores, candidates: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The ``(label, player)`` with the highest val score; ties go to the earliest candidate. Candidates
    without a val score are skipped; ``None`` when none has one."""
    best: tuple[str, str] | None = None
    best_val = float("-inf")
    for label, player in candidates:
        val = scores.get(label, {}).get(player, {}).get("val")
        if val is not None and val > best_val:
            best, best_val = (label, player), val
    return best


def stage_info(scores: Scores, players: Sequence[str], failed: int) -> dict[str, Any]:
    """The evaluate stage's summary for the state: scores and each label's best player on val."""
    best = {}
    for label in sorted(scores, key=label_order):
        chosen = best_on_val(scores, [(label, p) for p in players])
        best[label] = chosen[1] if chosen else None
    return {"unscored": failed, "best_on_val": best, "scores": scores}
