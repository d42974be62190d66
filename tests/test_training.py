"""Training and evaluation through the real Hydra configs: every stream x dataset runs, training
learns, resume is exact, evaluation reports are right and the same over 2 processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from i3d_lightning.training import train
from tests.conftest import REPO_ROOT
from tests.tiny_datasets import FAST, make_tiny_datasets


def compose_config(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO_ROOT / "configs"), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, list[str]]:
    return make_tiny_datasets(tmp_path_factory.mktemp("datasets"))


@pytest.mark.parametrize("stream", ["rgb", "flow", "joint"])
@pytest.mark.parametrize("dataset", ["synthetic", "ucf101", "hmdb51", "kinetics400", "kinetics600", "custom"])
def test_every_stream_and_dataset_runs_fast_dev_run(tiny, tmp_path, dataset, stream, checkpoints_dir):
    if stream != "rgb" and dataset == "synthetic":
        tiny_overrides = [*tiny[dataset], f"dataset.flow_root={tmp_path / 'none'}"]
    else:
        tiny_overrides = tiny[dataset]
    cfg = compose_config("train", [f"dataset={dataset}", f"stream={stream}", "debug=fast", f"run_dir={tmp_path}",
                                   f"weights.mirror={checkpoints_dir}", *FAST, *tiny_overrides])
    if stream != "rgb" and dataset == "synthetic":
        # The synthetic videos come without flow: a clear error before training, not a crash inside it.
        with pytest.raises(Exception, match="flow folder not found|no flow"):
            train(cfg)
        return
    results = train(cfg)
    assert results["run_dir"] == str(tmp_path)
    model_file = list(tmp_path.rglob("*.ckpt"))
    assert model_file == []  # fast_dev_run writes no checkpoint


def _learning_config(tmp_path: Path, checkpoints_dir: Path, extra: list[str]):
    return compose_config("train", [
        f"run_dir={tmp_path / 'run'}", f"dataset.root={tmp_path / 'synthetic'}", f"weights.mirror={checkpoints_dir}",
        "weights.rgb=rgb_scratch", "dataset.train_per_class=12", "dataset.val_per_class=6", "data.num_workers=2",
        "trainer.enable_progress_bar=false", "~logger", *extra])
