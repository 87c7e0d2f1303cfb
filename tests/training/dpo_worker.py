"""One rank of a DPO job: ``python -m torch.distributed.run --nproc_per_node N dpo_worker.py SPEC_JSON``.

SPEC_JSON holds ``run_dpo_job``'s keyword arguments, with the ``train`` section as a dict.
"""

import json
import sys

from sparta_hpc.training.dpo import TrainConfig, run_dpo_job

if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    run_dpo_job(TrainConfig(**spec.pop("train")), **spec)
