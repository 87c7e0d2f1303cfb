"""The run configuration's schema: one dataclass per section, and the checks that span sections.

Sections flow up into this schema: each is the dataclass of the code that reads it (``plan`` and ``rate`` from
the pure method, ``task`` and ``eval`` from ``tasks/``, ``engine`` and ``tiny`` from ``engines/``, ``train``
from the DPO job, ``cluster`` from ``cluster/resources.py``), and none of them imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sparta_hpc.cluster.resources import ClusterConfig
from sparta_hpc.engines.base import EngineConfig, ModelConfig, TinyConfig
from sparta_hpc.errors import ConfigError, require_positive
from sparta_hpc.method.judging import RUBRICS
from sparta_hpc.method.settings import PROFILES, PlanConfig, RateConfig
from sparta_hpc.tasks.evaluation import EvalConfig
from sparta_hpc.tasks.pool import TaskConfig
from sparta_hpc.training.dpo import TrainConfig

MODES = ("sparta", "self_rewarding")
"""The values of ``run.mode``."""
STAGE_LAYOUTS = ("auto", "separate", "combat")
"""The values of ``run.stage_layout``."""


@dataclass
class RunConfig:
    """Identity and length of the run."""

    name: str = "sparta"
    """Prefix of the default run directory ``runs/<name>-<config hash>``."""
    seed: int = 42
    """Seed of every random choice (prompts, matches, sampling, training)."""
    iterations: int = 8
    """T, the number of SPARTA iterations."""
    profile: str = "paper"
    """Preset of defaults: ``paper`` or ``released`` (spec section 9)."""
    mode: str = "sparta"
    """``sparta``: the SPARTA loop; ``self_rewarding``: the baseline where each player judges its own answers
    and trains on its own best vs worst one (section ``selfreward``; no matches, ratings stay initial)."""

    stage_layout: str = "auto"
    """How generation and judging run: ``separate``: a generate array job, then a judge array job (each
    loads its models); ``combat``: one task per generate shard generates both answers of its matches and has
    the other players judge them with the engine it already loaded (every player must share one base);
    ``auto``: ``combat`` when every player has the same base, else ``separate``. The records are identical;
    under ``combat`` judging is split into ``generate.num_shards`` shards (``judge.num_shards`` is unused)."""

    tensorboard: bool = False
    """Write ratings, judge parse rates, DPO losses and eval metrics to ``RUN_DIR/tensorboard`` (needs the
    ``tensorboard`` package; never uses the network)."""

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError(f"run.iterations={self.iterations} must be >= 1")
        if self.mode not in MODES:
            raise ConfigError(f"run.mode={self.mode!r} is not valid; allowed values: {', '.join(MODES)}")
        if self.profile not in PROFILES:
            raise ConfigError(
                f"run.profile={self.profile!r} is not valid; allowed values: {', '.join(PROFILES)}"
            )
        if self.stage_layout not in STAGE_LAYOUTS:
            raise ConfigError(
                f"run.stage_layout={self.stage_layout!r} is not valid; "
                f"allowed values: {', '.join(STAGE_LAYOUTS)}"
            )


@dataclass
class GenerateConfig:
    """Combat decoding (spec section 2.3)."""

    temperature: float = 0.7
    """Sampling temperature of the players' answers."""
    top_k: int = 50
    """Sample only among the k most likely next tokens."""
    top_p: float = 0.95
    """Sample only among the most likely tokens whose probabilities sum to top_p (nucleus sampling)."""
    max_new_tokens: int = 512
    """Longest answer in tokens."""
    num_shards: int = 1
    """Generation array tasks per iteration."""
    chunk_size: int = 64
    """Requests per saved chunk: a preempted shard resumes after its last saved chunk."""

    def __post_init__(self) -> None:
        require_positive("generate", self, ("max_new_tokens", "num_shards", "chunk_size", "top_k"))


@dataclass
class JudgeConfig:
    """Pointwise judging (spec section 4)."""

    method: str = "generate"
    """``generate``: decode and parse a JSON score; ``logprob``: expected score from one prefill."""
    temperature: float = 0.7
    """Sampling temperature of a decoded judgment (``method=generate``)."""
    top_k: int = 50
    """Sample only among the k most likely next tokens (``method=generate``)."""
    top_p: float = 0.95
    """Nucleus sampling threshold (``method=generate``)."""
    max_new_tokens: int = 256
    """Longest decoded judgment in tokens (``method=generate``)."""
    max_prompt_tokens: int | None = None
    """Right-truncate the judge prompt to this many tokens (released: 512); null never truncates."""
    rubric: str = "default"
    """How the judge prompt shows the reply format: ``default``: ``in this form: {"score": N}, where N is your
    grade`` (no number that could anchor a weak judge); ``released``: ``like this: {"score": 7}`` (a concrete
    example score). Replies are parsed alike; ``method=logprob`` appends ``{"score": `` to either prompt and
    reads the next token. The Alpaca evaluation judge always uses ``default``."""
    rubric_file: str | None = None
    """A judge prompt of your own (a UTF-8 text file) instead of the built-in one and ``rubric``:
    ``{question}`` and ``{response}`` are filled, other text is kept; it must ask for ``{"score": N}``, N
    1-10 (the parser and the logprob judge read that). Read by every judge job: keep it unchanged during a
    run. Null: the built-in prompt."""
    num_shards: int = 1
    """Judging array tasks per iteration."""
    chunk_size: int = 64
    """Requests per saved chunk."""

    def __post_init__(self) -> None:
        if self.method not in ("generate", "logprob"):
            raise ConfigError(f"judge.method={self.method!r} is not valid; allowed values: generate, logprob")
        if self.rubric not in RUBRICS:
            raise ConfigError(
                f"judge.rubric={self.rubric!r} is not valid; allowed values: {', '.join(RUBRICS)}"
            )
        require_positive("judge", self, ("max_new_tokens", "num_shards", "chunk_size", "top_k"))


@dataclass
class SelfRewardConfig:
    """The self-rewarding baseline (``run.mode=self_rewarding``): every player answers each planned prompt
    several times with the ``generate`` settings, scores its own answers with the judge prompt (``judge``
    settings), and trains on its own best vs worst answer."""

    num_samples: int = 4
    """Answers per player and prompt (at least 2)."""

    def __post_init__(self) -> None:
        if self.num_samples < 2:
            raise ConfigError(f"selfreward.num_samples={self.num_samples} must be >= 2 (best vs worst)")


@dataclass
class SpartaConfig:
    """A whole SPARTA run."""

    run: RunConfig = field(default_factory=RunConfig)
    models: list[ModelConfig] = field(default_factory=list)
    """The players (at least 3), each ``{name, base, adapter}``; players sharing a base share one engine."""
    tiny: TinyConfig = field(default_factory=TinyConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    selfreward: SelfRewardConfig = field(default_factory=SelfRewardConfig)
    rate: RateConfig = field(default_factory=RateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        if len(names) < 3:
            raise ConfigError(
                f"models: {len(names)} given, SPARTA needs at least 3 (two players and a judge)"
            )
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"models: duplicate model names {duplicates}; every name must be unique")
        for name in names:
            if not name or any(c in name for c in "/\\ \t\n"):
                raise ConfigError(f"models: name {name!r} must be non-empty without slashes or spaces")
        if self.plan.k > len(names) - 1:
            raise ConfigError(f"plan.k={self.plan.k} but only {len(names) - 1} opponents exist; lower plan.k")
        _check_eval(self)
        _check_train_ranks(self)

    @property
    def player_names(self) -> list[str]:
        return [m.name for m in self.models]


def _check_train_ranks(cfg: SpartaConfig) -> None:
    """A multi-rank DPO job needs one Slurm task per rank: nodes x tasks_per_node of ``cluster.train``."""
    if cfg.train.num_ranks == 1:
        return
    res = cfg.cluster.resources("train")
    if cfg.cluster.backend != "slurm" or res.nodes * res.tasks_per_node != cfg.train.num_ranks:
        raise ConfigError(
            f"train.num_ranks={cfg.train.num_ranks} needs cluster.backend=slurm and cluster.train.nodes x "
            f"cluster.train.tasks_per_node = {cfg.train.num_ranks} (now {cfg.cluster.backend}, "
            f"{res.nodes} x {res.tasks_per_node})"
        )


def _check_eval(cfg: SpartaConfig) -> None:
    """Cross-section checks of ``eval``: the Alpaca judge and the synthetic task's evaluation splits."""
    if cfg.eval.every == 0:
        return
    judge = cfg.eval.judge_model
    if cfg.task.name in cfg.eval.tasks:
        raise ConfigError(
            f"eval.tasks={list(cfg.eval.tasks)} lists the training task {cfg.task.name!r}; it is always "
            "evaluated: list only other tasks"
        )
    judged = "alpaca" in (cfg.task.name, *cfg.eval.tasks) or cfg.task.metric == "judge"
    if judged and judge is None:
        where = "task.name=alpaca" if cfg.task.name == "alpaca" else "alpaca (in eval.tasks)"
        where = "task.metric=judge" if cfg.task.metric == "judge" else where
        raise ConfigError(
            f"{where} is scored by an LLM judge: set eval.judge_model={{name, base, adapter}} "
            "(a model that is not a player), or eval.every=0 to turn evaluation off"
        )
    if judge is not None and (judge.name in cfg.player_names or not judge.name or "/" in judge.name):
        raise ConfigError(
            f"eval.judge_model.name={judge.name!r} must be non-empty, without slashes, and no player's name"
        )
    if "synthetic" in (cfg.task.name, *cfg.eval.tasks) and cfg.task.synthetic_eval_size < 1:
        raise ConfigError(
            f"task.synthetic_eval_size={cfg.task.synthetic_eval_size} leaves nothing to evaluate; "
            "raise it or set eval.every=0"
        )
