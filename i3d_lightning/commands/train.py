"""i3d-train: train I3D, ``i3d-train [dataset=...] [stream=...] [key=value ...]`` (configs/train.yaml).

The Hydra application that ``python train.py`` runs in a checkout: the configs come from the installed
package (``pkg://i3d_lightning.configs``), so it runs the same from any folder; ``--config-dir DIR`` adds
a folder of the user's own configs (groups and experiments) to the search path.
"""

import sys

import hydra
from omegaconf import DictConfig

from i3d_lightning.cli import finished, hydra_config_path, run_reporting_errors


def train_and_report(cfg: DictConfig) -> int:
    """Train; the exit status: 0, or 3 when videos were skipped (listed in the run folder)."""
    # Imported here: it imports Lightning (~7 s), which --help and --cfg job never need.
    from i3d_lightning.training.run import train

    results = train(cfg)
    return finished(results["videos_skipped"], f"in {results['skipped_list']}")


@hydra.main(config_path=hydra_config_path(), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    status = run_reporting_errors(train_and_report, cfg)
    if status:
        sys.exit(status)
