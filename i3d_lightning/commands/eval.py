"""i3d-eval: evaluate I3D, ``i3d-eval [stream=rgb|flow|joint] [key=value ...]`` (configs/eval.yaml).

The Hydra application that ``python eval.py`` runs in a checkout, with the installed package's configs
(see :mod:`i3d_lightning.commands.train`). The module is named as the script is because Hydra names the
run's log after it (``eval.log``).
"""

import sys

import hydra
from omegaconf import DictConfig

from i3d_lightning.cli import finished, hydra_config_path, run_reporting_errors


def evaluate_and_report(cfg: DictConfig) -> int:
    """Evaluate; the exit status: 0, or 3 when videos were skipped (listed in the run folder)."""
    # Imported here: it imports Lightning (~7 s), which --help and --cfg job never need.
    from i3d_lightning.evaluation.run import evaluate

    evaluation = evaluate(cfg)
    return finished(evaluation.skipped, f"in {evaluation.skipped_list}")


@hydra.main(config_path=hydra_config_path(), config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    status = run_reporting_errors(evaluate_and_report, cfg)
    if status:
        sys.exit(status)
