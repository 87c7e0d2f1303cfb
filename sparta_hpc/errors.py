"""The exceptions a user can cause; the CLI prints them as one clear message instead of a traceback."""

from __future__ import annotations

from sparta_hpc.executor import StageFailed
from sparta_hpc.iteration import ConfigChanged
from sparta_hpc.rundir import RecordError
from sparta_hpc.scheduling import RunCancelled
from sparta_hpc.slurm_poll import SlurmError
from sparta_hpc.state import LockHeld, StateError

USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigChanged,
    LockHeld,
    RecordError,
    RunCancelled,
    SlurmError,
    StageFailed,
    StateError,
)
