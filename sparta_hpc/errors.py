"""Every error a user can cause derives from ``SpartaError``; the CLI prints it as one message, no traceback.

This module imports nothing from sparta_hpc, so any module may raise these.
"""

from __future__ import annotations


class SpartaError(Exception):
    """Base of the errors that a user's input or a run's situation causes (not bugs of sparta-hpc)."""


class ConfigError(SpartaError, ValueError):
    """A configuration file, key or value is invalid; ``key``: the dotted key to blame, where one is."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class RecordError(SpartaError, ValueError):
    """A record file is malformed; the message names the file and line."""


class TaskDataError(SpartaError, ValueError):
    """A task data file cannot be read; the message names the file (and line where known)."""


class StateError(SpartaError, RuntimeError):
    """The state file is missing, from another schema version, or inconsistent."""


class LockHeld(SpartaError, RuntimeError):
    """Another launcher drives this run."""


class RunDirUnwritable(SpartaError, RuntimeError):
    """The run directory's file system refuses writes (full, read-only, or not permitted); the message names
    the path and the cause. Nothing recorded is lost: free space or remount read-write, then run again."""


class ConfigChanged(SpartaError, RuntimeError):
    """The run directory was started with a config that computes something else."""


class RunCancelled(SpartaError, RuntimeError):
    """``sparta-hpc cancel`` stopped the run; running the launcher again resumes it."""


class SlurmError(SpartaError, RuntimeError):
    """A Slurm command failed where its answer is needed (cancel)."""


class SubmissionRejected(SpartaError, RuntimeError):
    """Slurm refused to queue a stage's jobs; ``reason``: sbatch's words (partition, account, QOS limit)."""

    def __init__(self, stage: str, num_tasks: int, reason: str) -> None:
        super().__init__(f"{stage}: Slurm refused to queue {num_tasks} job(s): {reason}")
        self.stage = stage
        self.num_tasks = num_tasks
        self.reason = reason


class LockLost(SpartaError, RuntimeError):
    """This launcher's lock on the run directory was taken over (or it stalled too long to be sure it
    was not); it stops before writing anything more."""


class StageFailed(SpartaError, RuntimeError):
    """A job of a stage failed for good; carries the stage, the job id, the error and the path of its log."""

    def __init__(self, stage: str, job_id: str, log: str, error: str) -> None:
        super().__init__(f"{stage} job {job_id} failed: {error}\n  log: {log}")
        self.stage = stage
        self.job_id = job_id
        self.log = log
        self.error = error


def require_positive(section: str, obj: object, keys: tuple[str, ...], *, or_none: bool = False) -> None:
    """Raise ``ConfigError`` naming ``section.key`` for the first of ``keys`` below 1 (or not null, with
    ``or_none``)."""
    for key in keys:
        value = getattr(obj, key)
        if or_none and value is None:
            continue
        if value < 1:
            raise ConfigError(f"{section}.{key}={value!r} must be >= 1{' or null' if or_none else ''}")
