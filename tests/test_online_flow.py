"""Flow computed on the fly (``data.flow_source=online``): the values of the stored JPEGs, the same in
the workers and on the device, and flow / joint training and evaluation from videos alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d_lightning.data.annotations import VideoRecord
from i3d_lightning.data.clip_dataset import ClipSampling, VideoClipDataset, collate_clips
from i3d_lightning.evaluation.run import evaluate
from i3d_lightning.flow.online import OnlineFlow, add_device_flow
from i3d_lightning.flow.tvl1 import TVL1Parameters
from i3d_lightning.flow.writer import compute_flow, torch_pairs
from i3d_lightning.models import InceptionI3d
from i3d_lightning.models.streams import CHANNELS
from i3d_lightning.training.run import train
from i3d_lightning.weights.loading import save_state_dict
from tests.conftest import compose_config
from tests.tiny_datasets import FAST, _video
from tests.videos import write_frames


def _panning_video(path: Path, height: int, width: int, seed: int) -> Path:
    """12 frames of a block texture panning right 2 px and down 1 px a frame."""
    texture = np.random.default_rng(seed).integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    texture = texture.repeat(4, 0).repeat(4, 1)
    return write_frames(path, np.stack([np.roll(texture, (t, 2 * t), axis=(0, 1)) for t in range(12)]))


def _dataset(paths: list[Path], sampling: ClipSampling, **kwargs) -> VideoClipDataset:
    records = [VideoRecord(path=path, label=0, video_id=path.stem) for path in paths]
    return VideoClipDataset(records, sampling, modalities=("rgb", "flow"), seed=3, **kwargs)


def test_online_flow_is_the_stored_flow_without_the_jpeg_loss(tmp_path):
    video = _panning_video(tmp_path / "videos" / "pan.mp4", 64, 80, seed=0)
    (tmp_path / "flow" / "pan").mkdir(parents=True)
    compute_flow(video, tmp_path / "flow" / "pan", 25.0, 48, torch_pairs(16, torch.device("cpu")))
    sampling = ClipSampling(train=False, clip_len=8, short_side=48, crop_size=40)
    stored = _dataset([video], sampling, flow_root=tmp_path / "flow")[0]
    online = _dataset([video], sampling, flow_source="online", online_flow=OnlineFlow(where="workers"))[0]
    assert online["flow"].shape == stored["flow"].shape == (1, 2, 8, 40, 40)
    torch.testing.assert_close(online["rgb"], stored["rgb"])
    difference = (online["flow"] - stored["flow"]).abs()
    assert float(difference.mean()) < 0.002 and float(difference.max()) < 0.05  # JPEG's loss, a few levels
    # and it is the motion: 2 px right and 1 px down of 20, at the decoded size 48/64 of the video's
    assert float(online["flow"][0, 0].median()) == pytest.approx(2 * 0.75 / 20, abs=0.02)
    assert float(online["flow"][0, 1].median()) == pytest.approx(1 * 0.75 / 20, abs=0.02)


def test_flow_on_the_device_equals_flow_in_the_workers(tmp_path):
    # Two frame sizes in one batch (grouped for TV-L1), random crops and flips (which negate x).
    videos = [_panning_video(tmp_path / f"v{index}.mp4", 64, 64 + 16 * (index % 2), seed=index) for index in range(4)]
    sampling = ClipSampling(train=True, clip_len=6, short_side=40, crop_size=32)
    online = OnlineFlow(where="workers", tvl1=TVL1Parameters(scales=3, warps=2))
    in_workers = _dataset(videos, sampling, flow_source="online", online_flow=online)
    on_device = _dataset(videos, sampling, flow_source="online", online_flow=online, flow_on_device=True)
    items = [on_device[index] for index in range(4)]
    assert all("flow" not in item and "flow_pairs" in item for item in items)
    assert {item["flow_pairs"]["flip"] for item in items} == {True, False}
    batch = add_device_flow(collate_clips(items), online)
    expected = collate_clips([in_workers[index] for index in range(4)])
    assert "flow_pairs" not in batch
    torch.testing.assert_close(batch["flow"], expected["flow"], rtol=0, atol=1e-5)
    torch.testing.assert_close(batch["rgb"], expected["rgb"])


@pytest.fixture(scope="module")
def videos_without_flow(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("no_flow")
    for label, name in enumerate(("left", "right")):
        for index in range(2):
            _video(root / name / f"{name}{index}.mp4", 10 * label + index)
    return root


def _random_weights(path: Path, stream: str) -> Path:
    torch.manual_seed(0)
    return save_state_dict(InceptionI3d(2, CHANNELS[stream]).state_dict(), path, {"stream": stream})


@pytest.mark.parametrize(("stream", "where"), [("flow", "workers"), ("joint", "device")])
def test_training_and_evaluation_from_videos_alone(videos_without_flow, tmp_path, stream, where):
    # No flow folders anywhere: the flow comes from the videos (TV-L1 cut short to keep the test quick),
    # in the loader or in the DataModule's hook after the batch reaches the device (here the CPU).
    common = [*FAST, "dataset=custom", f"stream={stream}", "trainer.precision=32", "data.flow_source=online",
              f"data.online_flow.where={where}",
              "data.online_flow.tvl1.scales=2", "data.online_flow.tvl1.warps=1",
              "data.online_flow.tvl1.outer_iterations=2"]
    results = train(compose_config("train", [*common, "debug=fast", f"dataset.train={videos_without_flow}",
                                             f"dataset.val={videos_without_flow}", f"run_dir={tmp_path / 'train'}",
                                             "model.trainable_blocks=1"]))
    assert results["global_step"] == 1 and np.isfinite(results["metrics"]["train/loss"])
    assert f"val/{stream}/top1" in results["metrics"]
    weights = [f"weights.{tower}={_random_weights(tmp_path / f'{tower}.safetensors', tower)}"
               for tower in ("rgb", "flow")]
    evaluate(compose_config("eval", [*common, *weights, f"dataset.val={videos_without_flow}",
                                     f"run_dir={tmp_path / 'eval'}", "data.eval_batch_size=2"]))
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["videos_evaluated"] == 4 and metrics["videos_skipped"] == 0
    assert 0 <= metrics[stream]["top1"] <= 1


def test_flow_of_a_video_reports_its_total_and_moves_every_few_pairs(tmp_path):
    # What the progress line of i3d-extract-flow shows inside one video: its total first, then every
    # `pairs_per_write` pairs written, not once per decoded chunk of 128 frames.
    video = _panning_video(tmp_path / "pan.mp4", 48, 64, seed=1)  # 12 frames: 11 pairs
    totals, moves, calls = [], [], []

    def flow_of_pairs(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        calls.append(len(first))
        return torch.zeros(len(first), *first.shape[1:], 2)

    (tmp_path / "flow").mkdir()
    written = compute_flow(video, tmp_path / "flow", None, 48, flow_of_pairs, moves.append, pairs_per_write=4,
                           on_total=totals.append)
    assert written == 11 and totals == [11]
    assert calls == moves == [4, 4, 3]
    assert len(list((tmp_path / "flow").glob("flow_x_*.jpg"))) == 11
