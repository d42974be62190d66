"""Train I3D: ``python train.py [dataset=...] [stream=...] [key=value ...]`` (see configs/train.yaml)."""

import sys

import hydra
from omegaconf import DictConfig

from i3d_lightning.cli import run_reporting_errors
from i3d_lightning.training.run import train


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    status = run_reporting_errors(train, cfg)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
