"""VideoDataModule: setup checks, reports, loaders and unpadded evaluation sharding."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from i3d_lightning.data.clip_dataset import ClipSampling
from i3d_lightning.data.datamodule import VideoDataModule
from i3d_lightning.data.dataset_configs import Custom, Synthetic
from i3d_lightning.errors import UserInputError
from i3d_lightning.runtime.distributed import EpochSampler, UnpaddedDistributedSampler
from i3d_lightning.runtime.skip_report import SkipReport
from tests.videos import write_video

SMALL = {"short_side": 64, "crop_size": 48}


def _custom_dataset(root: Path, per_class: int = 3, frames: int = 30) -> Custom:
    for name in ("a", "b"):
        for index in range(per_class):
            write_video(root / name / f"{name}{index}.mp4", frames, width=96, height=64)
    return Custom(train=str(root), val=str(root))


def _datamodule(source, **overrides) -> VideoDataModule:
    options = {"train_sampling": ClipSampling(train=True, clip_len=8, **SMALL),
               "eval_sampling": ClipSampling(train=False, clip_len=8, num_clips=2, **SMALL),
               "batch_size": 4, "num_workers": 0} | overrides
    return VideoDataModule(source, **options)


def test_loaders_give_batches_of_the_configured_shape(tmp_path):
    datamodule = _datamodule(_custom_dataset(tmp_path / "videos"))
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.classes == ["a", "b"] and datamodule.num_classes == 2
    train = list(datamodule.train_dataloader())
    assert [batch["size"] for batch in train] == [4, 2]
    assert train[0]["rgb"].shape == (4, 3, 8, 48, 48)
    val = next(iter(datamodule.val_dataloader()))
    assert val["rgb"].shape == (4, 2, 3, 8, 48, 48)
    assert val["index"].tolist() == [0, 1, 2, 3]  # evaluation order is the dataset's


def test_whole_video_evaluation_uses_batches_of_one(tmp_path):
    datamodule = _datamodule(_custom_dataset(tmp_path / "videos"),
                             eval_sampling=ClipSampling(train=False, whole_video=True, **SMALL))
    assert datamodule.eval_batch_size == 1


def test_clip_longer_than_every_video_is_refused_before_training(tmp_path):
    datamodule = _datamodule(_custom_dataset(tmp_path / "videos", frames=20),
                             train_sampling=ClipSampling(train=True, clip_len=16, stride=2, **SMALL))
    with pytest.raises(UserInputError, match="a training clip spans 31 frames .* longest of 6 videos checked has 20"):
        datamodule.setup("fit")


def test_unreadable_dataset_is_refused_before_training(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "videos" / name).mkdir(parents=True)
        (tmp_path / "videos" / name / "x.mp4").write_bytes(b"not a video")
    datamodule = _datamodule(Custom(train=str(tmp_path / "videos"), val=str(tmp_path / "videos")))
    with pytest.raises(UserInputError, match="none of the 2 training videos checked could be read"):
        datamodule.setup("fit")


def test_missing_annotated_videos_are_listed_in_the_run_folder(tmp_path):
    root = tmp_path / "videos"
    _custom_dataset(root)
    (root / "list.csv").write_text("a/a0.mp4,a\nb/b0.mp4,b\nb/gone.mp4,b\n")
    datamodule = _datamodule(Custom(train=str(root / "list.csv"), val=str(root / "list.csv")),
                             report_dir=str(tmp_path / "run"))
    datamodule.setup("fit")
    assert len(datamodule.datasets["train"]) == 2
    with (tmp_path / "run" / "missing_videos_train.csv").open() as stream:
        assert list(csv.reader(stream)) == [["video_id", "path", "reason"],
                                            ["b/gone", str(root / "b" / "gone.mp4"), "no such file"]]


def test_skip_report_collects_and_writes(tmp_path):
    report = SkipReport()
    report.add([("v2", "/d/v2.mp4", "corrupt"), ("v1", "/d/v1.mp4", "no such file")])
    report.add([("v2", "/d/v2.mp4", "corrupt")])
    assert len(report) == 2
    with report.write(tmp_path / "skipped.csv").open() as stream:
        assert list(csv.reader(stream)) == [["video_id", "path", "reason"], ["v1", "/d/v1.mp4", "no such file"],
                                            ["v2", "/d/v2.mp4", "corrupt"]]


def test_epoch_sampler_order_depends_on_seed_and_epoch(tmp_path):
    datamodule = _datamodule(_custom_dataset(tmp_path / "videos"), seed=5)
    datamodule.setup("fit")
    sampler = datamodule.train_dataloader().sampler
    assert isinstance(sampler, EpochSampler)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        assert datamodule.datasets["train"].epoch == epoch
        orders.append(list(sampler))
    assert orders[0] == orders[2] != orders[1] and sorted(orders[0]) == list(range(6))


@pytest.mark.parametrize("size", [7, 8, 1])
def test_unpadded_sampler_counts_each_item_once(size):
    dataset = list(range(size))
    shards = [list(UnpaddedDistributedSampler(dataset, num_replicas=2, rank=rank)) for rank in range(2)]
    assert sorted(shards[0] + shards[1]) == dataset
    assert [len(UnpaddedDistributedSampler(dataset, num_replicas=2, rank=rank)) for rank in range(2)] == \
        [len(shard) for shard in shards]


def test_synthetic_dataset_is_generated_once_and_needs_motion(tmp_path):
    source = Synthetic(root=str(tmp_path / "synthetic"), train_per_class=2, val_per_class=1, num_frames=16, size=64)
    datamodule = _datamodule(source)
    datamodule.prepare_data()
    marker = tmp_path / "synthetic" / "COMPLETE"
    written = marker.stat().st_mtime_ns
    datamodule.prepare_data()
    assert marker.stat().st_mtime_ns == written  # not regenerated
    datamodule.setup("fit")
    assert datamodule.classes == ["left", "right", "up", "down"]
    assert len(datamodule.datasets["train"]) == 8 and len(datamodule.datasets["val"]) == 4
    frame = datamodule.datasets["val"][0]["rgb"]  # [V, C, T, S, S]
    # Consecutive frames differ (something moves) but each frame is mostly the static background.
    difference = (frame[0, :, 1:] - frame[0, :, :-1]).abs().mean(dim=(0, 2, 3))
    assert (difference > 0.01).all() and (difference < 0.5).all()


def test_unpadded_sampler_keeps_a_videos_tiles_together_and_in_order():
    # Items 0-2 are one video's tiles, 3 another video, 4-5 a third: a process takes whole videos.
    groups = [[0, 1, 2], [3], [4, 5]]
    shards = [list(UnpaddedDistributedSampler(list(range(6)), num_replicas=2, rank=rank, groups=groups))
              for rank in range(2)]
    assert shards == [[0, 1, 2, 4, 5], [3]]
    assert len(UnpaddedDistributedSampler(list(range(6)), num_replicas=2, rank=0, groups=groups)) == 5
