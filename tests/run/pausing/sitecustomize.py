"""Test-only, loaded by every Python process started with this folder on PYTHONPATH (``faults.launch``): the
launcher, its local subprocess jobs and its Slurm jobs (which inherit the environment).

With SPARTA_TEST_PAUSE_IN set, an audit hook sleeps SPARTA_TEST_PAUSE_S before each open of a path under that
folder (given with a trailing separator) that starts a write: a temporary file (``.NAME.XXXX.tmp``, how
``sparta_hpc.files`` writes every record, chunk and stats file), a file in a staging folder
(``.NAME.tmp-XXXX``, how an adapter is published) or a trainer checkpoint's ``trainer_state.json`` (its last
file). Every state
between two such writes then lasts at least PAUSE_S, long enough for a test polling the run directory to see
it and kill there; what is written does not change. No hook exists in the package.
"""

import os
import sys
import time

FOLDER = os.environ.get("SPARTA_TEST_PAUSE_IN")

if FOLDER:
    PAUSE_S = float(os.environ.get("SPARTA_TEST_PAUSE_S", "0.25"))

    def _pause_before_writes(event: str, args: tuple) -> None:
        if event != "open" or not args or not isinstance(args[0], (str, os.PathLike)):
            return
        path = os.fspath(args[0])
        if not isinstance(path, str) or not path.startswith(FOLDER):  # type: ignore[arg-type]
            return
        if path.endswith(".tmp") or ".tmp-" in path or path.endswith(os.sep + "trainer_state.json"):
            time.sleep(PAUSE_S)

    sys.addaudithook(_pause_before_writes)
