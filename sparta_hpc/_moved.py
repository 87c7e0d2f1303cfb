"""Old module paths that pickled jobs may still name.

submitit pickles a job's callable by module path. A Slurm job submitted before the grouped layout (still
pending or requeued when the run is resumed) unpickles ``sparta_hpc.executor.Resumable`` wrapping
``sparta_hpc.jobs.<entry point>`` (re-exported by ``sparta_hpc.jobs``), and a detached launcher job
``sparta_hpc.control.run_detached``. This finder answers those old module paths with modules holding just
the names such pickles use, taken from their new homes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence

MOVED: dict[str, dict[str, str]] = {
    "sparta_hpc.executor": {"Resumable": "sparta_hpc.cluster.executor"},
    "sparta_hpc.control": {"run_detached": "sparta_hpc.run.launcher"},
}
"""``{old module: {name: new module}}``."""


class _MovedLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name, f"Moved: {', '.join(MOVED[spec.name])} (see sparta_hpc._moved).")
        for name, home in MOVED[spec.name].items():
            setattr(module, name, getattr(importlib.import_module(home), name))
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader())


def install() -> None:
    """Add the finder once (importing ``sparta_hpc`` does this)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
