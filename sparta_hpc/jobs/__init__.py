"""Node-side entry points, one module per kind of job (generate, judge, combat, train, evaluate, and the plan
stage's model setup); ``common.py`` holds what they share.

The names below are re-exported because submitit pickles a job's function by module path: a job submitted
before the entry points moved into this package still finds ``sparta_hpc.jobs.generate_shard`` and the others.
"""

from sparta_hpc.jobs.combat import combat_shard
from sparta_hpc.jobs.evaluate import evaluate_shard
from sparta_hpc.jobs.generate import generate_shard
from sparta_hpc.jobs.judge import judge_shard
from sparta_hpc.jobs.models import prepare_models
from sparta_hpc.jobs.train import train_player

__all__ = [
    "combat_shard",
    "evaluate_shard",
    "generate_shard",
    "judge_shard",
    "prepare_models",
    "train_player",
]
