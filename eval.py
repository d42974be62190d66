"""Evaluate I3D: ``python eval.py [stream=rgb|flow|joint] [key=value ...]`` (see configs/eval.yaml)."""

import sys

import hydra
from omegaconf import DictConfig

from i3d_lightning.cli import run_reporting_errors
from i3d_lightning.evaluation.run import evaluate


@hydra.main(config_path="configs", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    status = run_reporting_errors(evaluate, cfg)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
