"""Entry point: ``python launch.py [--cluster local|slurm] [--config FILE] [--run-dir DIR] [key=value ...]``.

The same as ``sparta-hpc run ...``; with no argument it runs the tiny CPU demo.
"""

import sys

from sparta_hpc.cli import main

if __name__ == "__main__":
    main(["run", *sys.argv[1:]])
