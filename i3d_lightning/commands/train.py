"""i3d-train: train I3D, ``i3d-train [dataset=...] [stream=...] [key=value ...]`` (configs/train.yaml).

The Hydra application that ``python train.py`` runs in a checkout: the configs come from the installed
package (``pkg://i3d_lightning.configs``), so it runs the same from any folder; ``--config-dir DIR`` adds
a folder of the user's own configs (groups and experiments) to the search path.
"""

import sys

import hydra
from omegaconf import DictConfig

from i3d_lightning.cli import hydra_config_path, run_reporting_errors
from i3d_lightning.training.run import train


@hydra.main(config_path=hydra_config_path(), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    status = run_reporting_errors(train, cfg)
    if status:
        sys.exit(status)
