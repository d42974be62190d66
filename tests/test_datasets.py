"""Dataset annotations: labels and splits of UCF101, HMDB51, Kinetics and custom lists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from i3d_lightning.data import annotations
from i3d_lightning.data.dataset_configs import Custom, Kinetics, SplitFileDataset
from i3d_lightning.errors import UserInputError


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.fixture
def ucf_root(tmp_path: Path) -> Path:
    root = tmp_path / "ucf101"
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 HandstandPushups\n3 YoYo\n")
    for name in ("v_ApplyEyeMakeup_g08_c01", "v_ApplyEyeMakeup_g01_c01", "v_YoYo_g01_c02"):
        _touch(root / "UCF-101" / name.split("_")[1] / f"{name}.avi")
    # The real dataset's files say HandstandPushups where its lists say HandStandPushups.
    _touch(root / "UCF-101" / "HandstandPushups" / "v_HandstandPushups_g09_c01.avi")
    (lists / "trainlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
                                           "HandStandPushups/v_HandStandPushups_g09_c01.avi 2\r\n")
    (lists / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nYoYo/v_YoYo_g01_c02.avi\n"
                                          "YoYo/v_YoYo_g05_c01.avi\n")
    return root


def test_ucf101_train_and_test_splits(ucf_root):
    train = SplitFileDataset(layout="ucf101", root=str(ucf_root), split=1).video_list("train")
    assert train.classes == ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    assert [(r.video_id, r.label) for r in train.records] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 0), ("HandStandPushups/v_HandStandPushups_g09_c01", 1)]
    assert train.records[1].path.name == "v_HandstandPushups_g09_c01.avi"
    test = SplitFileDataset(layout="ucf101", root=str(ucf_root), split=1).video_list("val")
    assert [r.label for r in test.records] == [0, 2]
    assert test.missing == [("YoYo/v_YoYo_g05_c01", str(ucf_root / "UCF-101" / "YoYo/v_YoYo_g05_c01.avi"))]


def test_ucf101_bad_split_and_bad_label(ucf_root):
    with pytest.raises(UserInputError, match="split=4: choose one of 1, 2, 3"):
        SplitFileDataset(layout="ucf101", root=str(ucf_root), split=4).video_list("train")
    with pytest.raises(UserInputError, match="UCF101 split file for split 2 not found"):
        SplitFileDataset(layout="ucf101", root=str(ucf_root), split=2).video_list("train")
    (ucf_root / "ucfTrainTestlist" / "testlist01.txt").write_text("Juggling/v_Juggling_g01_c01.avi\n")
    with pytest.raises(UserInputError, match="class 'Juggling', which is not in classInd.txt"):
        SplitFileDataset(layout="ucf101", root=str(ucf_root), split=1).video_list("test")
    with pytest.raises(UserInputError, match="dataset=ucf101 needs dataset.root=PATH"):
        SplitFileDataset(layout="ucf101").video_list("train")


def test_hmdb51_tags(tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    (splits / "wave_test_split1.txt").write_text("d.avi 2\ne.avi 1\n")
    for relative in ("brush_hair/a.avi", "brush_hair/b.avi", "brush_hair/c.avi", "wave/d.avi", "wave/e.avi"):
        _touch(tmp_path / "videos" / relative)
    train = annotations.hmdb51(tmp_path / "videos", splits, 1, "train")
    test = annotations.hmdb51(tmp_path / "videos", splits, 1, "test")
    assert train.classes == ["brush_hair", "wave"]
    assert [(r.video_id, r.label) for r in train.records] == [("brush_hair/a", 0), ("wave/e", 1)]
    assert [(r.video_id, r.label) for r in test.records] == [("brush_hair/b", 0), ("wave/d", 1)]
    (splits / "wave_test_split1.txt").write_text("d.avi 3\n")
    with pytest.raises(UserInputError, match=re.escape("expected '<video> <0|1|2>'")):
        annotations.hmdb51(tmp_path / "videos", splits, 1, "train")


KINETICS_CSV = ("label,youtube_id,time_start,time_end,split\n"
                "abseiling,aaa,10,20,train\n"
                "\"zumba\",bbb,0,10,train\n"
                "air drumming,ccc,5,15,train\n")


@pytest.mark.parametrize("layout", ["flat", "per_split", "per_class"])
def test_kinetics_layouts_and_missing_clips(tmp_path, layout):
    folder = {"flat": "", "per_split": "train", "per_class": "train/abseiling"}[layout]
    _touch(tmp_path / "k400" / folder / "aaa_000010_000020.mp4")
    _touch(tmp_path / "k400" / ("train/zumba" if layout == "per_class" else folder) / "bbb_000000_000010.mkv")
    (tmp_path / "train.csv").write_text(KINETICS_CSV)
    source = Kinetics(root=str(tmp_path / "k400"), annotations={"train": str(tmp_path / "train.csv")})
    videos = source.video_list("train")
    classes = source.classes()
    assert [(r.video_id, classes[r.label]) for r in videos.records] == [
        ("aaa_000010_000020", "abseiling"), ("bbb_000000_000010", "zumba")]
    assert classes.index("zumba") == 399  # the checkpoints' logit order
    assert [video_id for video_id, _ in videos.missing] == ["ccc_000005_000015"]
    with pytest.raises(UserInputError, match="no annotation CSV for val"):
        source.video_list("val")


def test_kinetics_unknown_label(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "train.csv").write_text("label,youtube_id,time_start,time_end,split\nmoonwalking,x,0,10,train\n")
    with pytest.raises(UserInputError, match="label 'moonwalking' of x is not one of the 400 Kinetics classes"):
        annotations.kinetics(tmp_path / "videos", tmp_path / "train.csv", datasets_classes())


def datasets_classes() -> list[str]:
    from i3d_lightning.weights import kinetics_categories

    return kinetics_categories(400)


def test_custom_folder_and_lists(tmp_path):
    for relative in ("cats/a.mp4", "cats/b.avi", "dogs/c.mp4", "dogs/notes.txt"):
        _touch(tmp_path / "data" / relative)
    folder = annotations.custom(tmp_path / "data")
    assert folder.classes == ["cats", "dogs"]
    assert [(r.video_id, r.label) for r in folder.records] == [("cats/a", 0), ("cats/b", 0), ("dogs/c", 1)]
    (tmp_path / "data" / "names.csv").write_text("path,label\ncats/a.mp4,cats\ndogs/c.mp4 , dogs\nnone.mp4,dogs\n")
    by_name = annotations.custom(tmp_path / "data" / "names.csv")
    assert [(r.video_id, r.label) for r in by_name.records] == [("cats/a", 0), ("dogs/c", 1)]
    assert by_name.missing == [("none", str(tmp_path / "data" / "none.mp4"))]
    (tmp_path / "data" / "indices.txt").write_text("cats/a.mp4 2\n" + str(tmp_path / "data/dogs/c.mp4") + " 0\n")
    by_index = annotations.custom(tmp_path / "data" / "indices.txt")
    assert by_index.classes == ["0", "1", "2"] and [r.label for r in by_index.records] == [2, 0]
    with pytest.raises(UserInputError, match="label 'birds' of cats/a.mp4 is not one of 2 classes"):
        (tmp_path / "data" / "bad.csv").write_text("cats/a.mp4,birds\n")
        annotations.custom(tmp_path / "data" / "bad.csv", ["cats", "dogs"])


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="dataset=custom \\(train\\): no videos found"):
        Custom(train=str(tmp_path / "empty")).video_list("train").require_videos("dataset=custom (train)")
    with pytest.raises(UserInputError, match="dataset.val=/nowhere: no such file or folder"):
        Custom(val="/nowhere").video_list("val")
