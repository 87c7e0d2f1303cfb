"""sparta-hpc: SPARTA alignment on Slurm GPU clusters."""

from sparta_hpc import _moved

__version__ = "0.2.0"

_moved.install()
