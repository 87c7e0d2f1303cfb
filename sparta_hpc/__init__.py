"""sparta-hpc: SPARTA alignment on Slurm GPU clusters."""
