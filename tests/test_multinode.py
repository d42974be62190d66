"""Several nodes for real, on one machine: ``torchrun --nnodes 2`` (1 process per "node", rendezvous
on 127.0.0.1, gloo) through ``train.py trainer=ddp trainer.num_nodes=2`` and ``eval.py``, whose
results must equal those of one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from i3d_lightning.evaluation.run import evaluate
from i3d_lightning.training.run import train
from tests.conftest import REPO_ROOT, compose_config
from tests.tiny_datasets import FAST, _video

TWO_NODES = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2",
             "trainer.benchmark=false", "trainer.precision=32"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun_two_nodes(script: str, overrides: list[str], run_dir: Path, timeout: float = 600) -> None:
    """Start ``script`` as 2 nodes x 1 process with torchrun's static rendezvous on 127.0.0.1, in ``run_dir``."""
    port = str(_free_port())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node",
                               "1", "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", port,
                               script, *overrides, f"run_dir={run_dir}"], cwd=REPO_ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    try:
        outputs = [node.communicate(timeout=timeout)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for rank, (node, output) in enumerate(zip(nodes, outputs, strict=True)):
        assert node.returncode == 0, f"node {rank}:\n{output[-4000:]}"
    # Both joined: Lightning's lines are on train's terminal, and in the run's log (eval's terminal shows warnings).
    said = "".join(outputs) + "".join(path.read_text() for path in run_dir.glob("*.log"))
    assert "MEMBER: 1/2" in said and "MEMBER: 2/2" in said


@pytest.fixture(scope="module")
def two_class_videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("two_nodes")
    for name in ("walk", "run"):
        for index in range(3):  # 6 videos: 3 per node for evaluation
            _video(root / name / f"{name}{index}.mp4", 7 * index + len(name))
    return root


@pytest.mark.long
def test_training_on_two_nodes_equals_one_process(tmp_path, two_class_videos):
    # Per process 3 clips, 2 processes = the 6 videos in one step per epoch; one process takes them in
    # one batch of 6. Batch norm statistics fixed, no dropout: the same gradient either way.
    common = [*FAST, "dataset=custom", f"dataset.train={two_class_videos}", f"dataset.val={two_class_videos}",
              "trainer.max_epochs=2", "model.trainable_blocks=1", "model.freeze_bn_stats=true", "model.dropout=0",
              "logger=[csv]", "test_after_fit=false"]
    _torchrun_two_nodes("train.py", [*common, *TWO_NODES, "data.batch_size=3"], tmp_path / "nodes")
    train(compose_config("train", [*common, "trainer.precision=32", "data.batch_size=6",
                                   f"run_dir={tmp_path / 'single'}"]))  # one process: this one
    runs = {name: torch.load(tmp_path / name / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
            for name in ("nodes", "single")}
    assert runs["nodes"]["global_step"] == runs["single"]["global_step"] == 2
    assert runs["nodes"]["optimizer_states"][0]["state"]  # the optimizer did step (momentum buffers)
    assert runs["nodes"]["state_dict"].keys() == runs["single"]["state_dict"].keys()
    for key, value in runs["single"]["state_dict"].items():
        torch.testing.assert_close(runs["nodes"]["state_dict"][key], value, rtol=1e-5, atol=1e-6)
    metrics = {name: (tmp_path / name).rglob("metrics.csv").__next__().read_text() for name in ("nodes", "single")}
    assert "val/rgb/top1" in metrics["single"]
    for name in metrics:  # the validation accuracies, epoch by epoch
        metrics[name] = [line.split(",") for line in metrics[name].splitlines()]
    header = {name: rows[0] for name, rows in metrics.items()}
    column = {name: header[name].index("val/rgb/top1") for name in metrics}
    values = {name: [row[column[name]] for row in rows[1:] if row[column[name]]] for name, rows in metrics.items()}
    assert len(values["single"]) == 2 and values["nodes"] == values["single"]


@pytest.mark.long
def test_evaluation_on_two_nodes_equals_one_process(tmp_path, two_class_videos):
    from safetensors.torch import save_file

    from i3d_lightning.models import InceptionI3d

    torch.manual_seed(4)
    weights = tmp_path / "w.safetensors"
    save_file(InceptionI3d(2, 3).state_dict(), str(weights))
    common = [*FAST, "dataset=custom", f"dataset.val={two_class_videos}", "stream=rgb", f"weights.rgb={weights}",
              "data.eval_sampling.num_clips=2", "data.eval_batch_size=2", "precision=32"]
    _torchrun_two_nodes("eval.py", [*common, *TWO_NODES], tmp_path / "nodes")
    evaluate(compose_config("eval", [*common, f"run_dir={tmp_path / 'single'}"]))  # one process: this one
    for report in ("metrics.json", "predictions.csv"):
        assert (tmp_path / "nodes" / report).read_text() == (tmp_path / "single" / report).read_text()
    assert json.loads((tmp_path / "single" / "metrics.json").read_text())["videos_evaluated"] == 6


@pytest.fixture
def process_group():
    """A gloo process group of one process (this one), as Lightning starts for several."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield dist
    if dist.is_initialized():
        dist.destroy_process_group()


def test_a_command_that_succeeds_closes_its_process_group_and_one_that_fails_leaves_it(process_group):
    # A gloo group alive at interpreter exit made some exits abort (SIGABRT) after a finished
    # run, which torchrun then reported as failed; on a failure, another process may still be in a collective.
    from i3d_lightning.cli import run_reporting_errors
    from i3d_lightning.errors import TrainingDivergedError

    def diverge():
        raise TrainingDivergedError("loss is nan")

    assert run_reporting_errors(diverge) == 1 and process_group.is_initialized()
    assert run_reporting_errors(lambda: 3) == 3 and not process_group.is_initialized()
