"""Evaluate I3D: ``python eval.py [stream=rgb|flow|joint] [key=value ...]`` (see configs/eval.yaml)."""

import hydra
from omegaconf import DictConfig

from i3d_lightning.cli import run_reporting_errors
from i3d_lightning.evaluate import evaluate


@hydra.main(config_path="configs", config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    run_reporting_errors(evaluate, cfg)


if __name__ == "__main__":
    main()
