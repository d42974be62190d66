"""Every bad value is refused before any work: one ``error:`` line naming the key, the value and what
is allowed, exit status 2, no run folder. The commands run in this process (``runpy`` executes
``train.py`` / ``eval.py`` as ``__main__``, Hydra and all), which is what the CLI is, without a
subprocess start per case."""

from __future__ import annotations

import argparse
import copy
import importlib
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from i3d_lightning.config_checks import check_config, rules
from i3d_lightning.errors import UserInputError
from i3d_lightning.settings import Allowed
from tests.conftest import REPO_ROOT, compose_config, run_command

# Values that would not be reached before a dataset is looked at, with a tiny synthetic set for the rest.
SYNTHETIC = ["dataset=synthetic", "dataset.train_per_class=1", "dataset.val_per_class=1", "dataset.num_frames=20"]

BAD_TRAIN = [
    ("data.batch_size=-1", "data.batch_size=-1: must be at least 1"),
    ("data.batch_size=0", "data.batch_size=0: must be at least 1"),
    ("trainer.max_epochs=abc", "trainer.max_epochs=abc: must be a whole number at least 1"),
    ("model.head_lr_scale=0", "model.head_lr_scale=0: must be above 0"),
    ("data.clip.clip_len=abc", "data.clip.clip_len=abc: must be a whole number at least 9"),
    ("data.clip.clip_len=4", "data.clip.clip_len=4: must be at least 9"),
    ("data.num_workers=-3", "data.num_workers=-3: must be at least 0"),
    ("data.eval_batch_size=0", "data.eval_batch_size=0: must be at least 1"),
    ("data.on_error=ignore", "data.on_error=ignore: choose one of skip, raise"),
    ("data.flow_source=disk", "data.flow_source=disk: choose one of stored, online"),
    ("data.clip.stride=0", "data.clip.stride=0: must be at least 1"),
    ("data.clip.fps=-25", "data.clip.fps=-25: must be above 0"),
    ("data.clip.crop_size=100", "data.clip.crop_size=100: must be at least 193"),
    ("data.eval_sampling.num_crops=2", "data.eval_sampling.num_crops=2: choose one of 1, 3"),
    ("data.online_flow.where=gpu", "data.online_flow.where=gpu: choose one of auto, workers, device"),
    ("data.online_flow.tvl1.warps=0.5", "data.online_flow.tvl1.warps=0.5: must be a whole number at least 1"),
    ("model.dropout=-0.1", "model.dropout=-0.1: must be at least 0"),
    ("model.aggregate=max", "model.aggregate=max: choose one of mean_logits, mean_softmax"),
    ("model.trainable_blocks=-1", "model.trainable_blocks=-1: must be at least 0 and at most 12"),
    ("model.trainable_blocks=100", "model.trainable_blocks=100: must be at least 0 and at most 12"),
    ("data.decoder=pyav", "data.decoder=pyav: choose one of exact, decord"),
    ("model.optimizer.lr=0", "model.optimizer.lr=0: must be above 0"),
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0: must be at least 1"),
    ("trainer.precision=16-bits", "trainer.precision=16-bits: choose one of auto, 32, 32-true"),
    ("seed=abc", "seed=abc: must be a whole number"),
    ("test_after_fit=maybe", "test_after_fit=maybe: must be true or false"),
    ("tf32=2", "tf32=2: must be true or false"),
    ("dataset.size=100", "dataset.size=100: must be at least 193"),
    ("+trainer.strategy=ddp_nothing", "trainer: You selected an invalid strategy name"),
    ("trainer.devices=0", "trainer.devices=0: give a count (1, 2, ...), -1 (all), auto, or a list of device"),
    ("trainer.devices=abc", "trainer.devices=abc: give a count (1, 2, ...), -1 (all), auto, or a list of device"),
]
BAD_EVAL = [
    ("precision=16", "precision=16: choose one of 32, tf32, bf16"),
    ("fast=sometimes", "fast=sometimes: must be true or false"),
    ("data.eval_sampling.num_clips=0", "data.eval_sampling.num_clips=0: must be at least 1"),
    ("model.eval_chunk=0", "model.eval_chunk=0: must be at least 1"),
    ("data.batch_size=abc", "data.batch_size=abc: must be a whole number at least 1"),
    ("dataset=ucf101 dataset.layout=kinetics", "dataset.layout=kinetics: choose one of ucf101, hmdb51"),
    ("dataset=kinetics400 dataset.num_classes=700", "dataset.num_classes=700: choose one of 400, 600"),
    ("dataset=custom sample.rgb=clip.mp4", "sample.rgb is an input of the sample evaluation, which has no dataset"),
    # The sample evaluation's device, before any weights or clip is read.
    ("device=gpu0", "device='gpu0' is not a device (auto, cpu, cuda, cuda:N)"),
    ("device=cuda:99", "device=cuda:99: this machine has"),
]


def _checkpoint_cases(tmp_path: Path) -> list[tuple[str, str, str]]:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.ckpt")
    (tmp_path / "truncated.ckpt").write_bytes((tmp_path / "other.ckpt").read_bytes()[:300])
    torch.save({"state_dict": {}, "args": argparse.Namespace(lr=1)}, tmp_path / "objects.ckpt")
    return [
        ("train.py", f"ckpt_path={tmp_path / 'missing.ckpt'}", "missing.ckpt: no such file"),
        ("eval.py", f"ckpt_path={tmp_path / 'missing.ckpt'}", "missing.ckpt: no such file"),
        ("train.py", f"ckpt_path={text}", "notes.ckpt is not a PyTorch file (a torch.save checkpoint or state dict)"),
        ("train.py", f"ckpt_path={tmp_path / 'truncated.ckpt'}", "truncated.ckpt cannot be read: it is truncated, "
                                                                 "corrupt or not a PyTorch file"),
        ("eval.py", f"ckpt_path={tmp_path / 'objects.ckpt'}", "objects.ckpt holds Python objects other than tensors"),
        ("train.py", f"ckpt_path={tmp_path / 'other.ckpt'}", "other.ckpt is not a checkpoint of train.py"),
        ("train.py", f"weights.rgb={text}", "notes.ckpt is not a PyTorch file"),
        ("eval.py", f"ckpt_path={tmp_path}", f"ckpt_path {tmp_path} is a folder: give a file"),
        ("eval.py", f"weights.rgb={text}", "notes.ckpt is not a PyTorch file"),
    ]


@pytest.mark.parametrize(("script", "override", "expected"),
                         [("train.py", *case) for case in BAD_TRAIN] + [("eval.py", *case) for case in BAD_EVAL])
def test_a_bad_value_is_one_line_exit_2_and_no_run_folder(tmp_path, capsys, monkeypatch, script, override, expected):
    run_dir = tmp_path / "run"
    extra = [*SYNTHETIC, f"dataset.root={tmp_path / 'synthetic'}"] if script == "train.py" else []
    status, _, stderr = run_command(script, [*override.split(" "), *extra, f"run_dir={run_dir}"], capsys, monkeypatch)
    assert status == 2, stderr
    assert stderr.strip().splitlines() == [stderr.strip()] and stderr.startswith(f"error: {expected}")
    assert not run_dir.exists() and not (tmp_path / "synthetic").exists()  # refused before any work


def test_checkpoint_and_weights_files_that_are_not_are_one_line(tmp_path, capsys, monkeypatch):
    cases = _checkpoint_cases(tmp_path)
    for script, override, expected in cases:
        run_dir = tmp_path / f"run_{script}"
        status, _, stderr = run_command(script, [override, "stream=rgb", f"run_dir={run_dir}"], capsys, monkeypatch)
        assert status == 2, (override, stderr)
        assert len(stderr.strip().splitlines()) == 1 and expected in stderr, (override, stderr)
        assert not run_dir.exists()


def _every_config() -> list[tuple[str, list[str]]]:
    """(config, overrides) for train and eval with each option of each group and each experiment."""
    configs: list[tuple[str, list[str]]] = [("eval", []), ("train", ["dataset=synthetic"])]
    for group in sorted(path for path in (REPO_ROOT / "configs").iterdir() if path.is_dir()):
        for option in sorted(path.stem for path in group.glob("*.yaml")):
            choice = f"{group.name}=[{option}]" if group.name == "logger" else f"{group.name}={option}"
            configs.append(("train", [choice] if group.name == "dataset" else [choice, "dataset=synthetic"]))
            if group.name in ("data", "model", "weights", "stream", "dataset", "trainer"):
                configs.append(("eval", [choice]))
    return configs


def _leaves(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _plain_interpolation(value: object) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}") and value.count("${") == 1


def test_every_leaf_key_of_every_config_has_a_rule():
    # Hydra's own keys aside, a key has a rule, or it is a plain interpolation of another key (checked
    # there), or it lies under a key whose owner checks it (a rule of kind "any": a list, a dict).
    for name, overrides in _every_config():
        cfg = compose_config(name, overrides)
        table = rules(cfg)
        for key, value in _leaves(OmegaConf.to_container(cfg, resolve=False)):
            parents = [key.rsplit(".", depth)[0] for depth in range(1, key.count(".") + 1)]
            covered = (key in table or key.rsplit(".", 1)[-1] in ("_target_", "_partial_")
                       or any(table.get(parent, Allowed("")).kind == "any" for parent in parents)
                       or _plain_interpolation(value))
            assert covered, f"{name} {overrides}: no rule for {key}"


def _bad_value(rule: Allowed) -> object:
    """A value ``rule`` refuses, as a command line would give it (``None``: none to generate)."""
    if rule.choices:
        return "none-of-these"
    if rule.kind in ("int", "number"):
        if rule.minimum is not None:
            return rule.minimum - (0 if rule.above else 1)
        return rule.maximum + (0 if rule.below else 1) if rule.maximum is not None else "abc"
    if rule.kind == "path":
        return None if rule.optional else "null"
    return {"bool": "maybe", "str": 12}.get(rule.kind)


def test_a_bad_value_for_every_rule_is_refused_in_one_line():
    # A value each rule refuses, generated from the rule, in a config that has the key: refused by the
    # start-up check in one line that names the key and the value.
    tried = set()
    for name, overrides in _every_config():
        cfg = compose_config(name, overrides)
        for key, rule in rules(cfg).items():
            bad = _bad_value(rule)
            if key in tried or bad is None or OmegaConf.select(cfg, key, default="absent") == "absent":
                continue
            tried.add(key)
            changed = copy.deepcopy(cfg)  # as Hydra parses `key=bad`: "null" is None, "abc" a string, -1 an int
            OmegaConf.update(changed, key, None if bad == "null" else bad, merge=False)
            with pytest.raises(UserInputError) as refused:
                check_config(changed)
            assert str(refused.value).startswith(f"{key}={bad}: ") and "\n" not in str(refused.value), key
    assert len(tried) > 100 and {"data.online_flow.tvl1.scale_step", "dataset.split", "dataset.num_classes",
                                 "model.scheduler.gamma", "trainer.sync_batchnorm"} <= tried


def test_a_rule_is_the_librarys_own():
    # The config check and the dataclass refuse the same values with the same words (the two disagreed
    # on tvl1.scale_step before: the config's table took 1.5, TV-L1 refused it).
    from i3d_lightning.data.clip_dataset import ClipSampling
    from i3d_lightning.flow.tvl1 import TVL1Parameters

    with pytest.raises(UserInputError) as library:
        TVL1Parameters(scale_step=1.5)
    with pytest.raises(UserInputError) as config:
        check_config(compose_config("train", ["dataset=synthetic", "data.online_flow.tvl1.scale_step=1.5"]))
    assert str(config.value) == f"data.online_flow.tvl1.{library.value}" == (
        "data.online_flow.tvl1.scale_step=1.5: must be above 0 and below 1")
    # Where the config feeds the network, the network's minimum: the library takes 8-frame clips, the config not.
    assert ClipSampling(train=True, clip_len=8, short_side=64, crop_size=48).clip_len == 8
    with pytest.raises(UserInputError, match="data.clip.clip_len=8: must be at least 9"):
        check_config(compose_config("train", ["dataset=synthetic", "data.clip.clip_len=8"]))


def test_synthetic_data_trains_without_flips_unless_told():
    # Its classes are directions of motion: a mirrored clip moves the other way.
    flip = {dataset: compose_config("train", [f"dataset={dataset}"]).data.train_sampling.flip
            for dataset in ("synthetic", "ucf101", "custom")}
    assert flip == {"synthetic": False, "ucf101": True, "custom": True}
    assert compose_config("train", ["experiment=quickstart"]).data.train_sampling.flip is False
    told = compose_config("train", ["dataset=synthetic", "data.train_sampling.flip=true"])
    assert told.data.train_sampling.flip is True


def test_rule_messages():
    assert Allowed("int", minimum=1).problem(True) == "must be a whole number at least 1"  # a bool is no number
    assert Allowed("number", minimum=0, above=True).problem(0.0) == "must be above 0"
    assert Allowed("number", minimum=0, maximum=1, below=True).problem(1) == "must be at least 0 and below 1"
    assert Allowed("number").problem(float("nan")) == "must be a number"
    assert Allowed("int", optional=True).problem(None) is None
    assert Allowed("int").problem(None) == "a value is required"
    assert Allowed("str", choices=("32", "bf16")).problem(32) is None  # YAML's 32 is the text 32
    assert Allowed("int", choices=(1, 3)).problem(True) == "choose one of 1, 3"  # True == 1 in Python


def test_a_train_checkpoint_serves_as_initial_weights(tmp_path):
    # eval.py weights.rgb=<run>/checkpoints/last.ckpt: the checkpoint's rgb tower, as it was trained.
    from i3d_lightning.errors import UserInputError
    from i3d_lightning.models import InceptionI3d
    from i3d_lightning.weights import i3d

    torch.manual_seed(3)
    tower = InceptionI3d(5, 3).eval()
    state = {f"towers.rgb.{key}": value for key, value in tower.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 2, "hyper_parameters": {"num_classes": 5}}, tmp_path / "last.ckpt")
    model = i3d(weights=tmp_path / "last.ckpt", in_channels=3)
    assert model.num_classes == 5
    for key, value in tower.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)
    with pytest.raises(UserInputError, match="train.py checkpoint of the rgb model: it has no tower for 2 input"):
        i3d(weights=tmp_path / "last.ckpt", in_channels=2)


def test_checkpoints_of_both_torch_save_formats_are_read(tmp_path):
    # The zip format (every torch.save since 1.6) is memory-mapped; the legacy one is read as it is.
    from i3d_lightning.weights.loading import read_checkpoint

    content = {"state_dict": {"w": torch.arange(4.0)}, "hyper_parameters": {"num_classes": 4}}
    torch.save(content, tmp_path / "zip.ckpt")
    torch.save(content, tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
    for name in ("zip.ckpt", "legacy.ckpt"):
        read = read_checkpoint(tmp_path / name)
        assert torch.equal(read["state_dict"]["w"], torch.arange(4.0)) and read["hyper_parameters"]["num_classes"] == 4


BAD_TOOL_OPTIONS = [
    ("fvd", ["R", "F", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    ("fvd", ["R", "F", "--resolution", "0", "0"], "argument --resolution: must be at least 1, got 0"),
    ("fvd", ["R", "F", "--stride", "-1"], "argument --stride: must be at least 1, got -1"),
    ("fvd", ["R", "F", "--max-videos", "0"], "argument --max-videos: must be at least 1, got 0"),
    ("fvd", ["R", "F", "--workers", "x"], "argument --workers: 'x' is not a whole number"),
    ("extract_features", ["S", "O", "--stride", "0"], "argument --stride: must be at least 1, got 0"),
    ("extract_features", ["S", "O", "--crop", "100"], "argument --crop: must be at least 193, got 100"),
    ("extract_flow", ["S", "O", "--batch", "0"], "argument --batch: must be at least 1, got 0"),
    ("extract_flow", ["S", "O", "--fps", "-1"], "argument --fps: must be at least 0, got -1"),
    ("extract_flow", ["S", "O", "--workers", "0"], "argument --workers: must be at least 1, got 0"),
    ("check_videos", ["S", "--timeout", "0"], "argument --timeout: must be above 0, got 0"),
    ("export", ["O", "--tolerance", "nan"], "argument --tolerance: must be at least 0, got nan"),
]


@pytest.mark.parametrize(("tool", "arguments", "expected"), BAD_TOOL_OPTIONS)
def test_a_tool_refuses_a_bad_number_before_any_work(tool, arguments, expected, capsys):
    main = importlib.import_module(f"i3d_lightning.commands.{tool}").main
    with pytest.raises(SystemExit) as stop:
        main(arguments)
    assert stop.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1].endswith(expected)


@pytest.mark.parametrize("overrides", [["trainer=gpu"], ["trainer=ddp", "trainer.devices=4"]])
def test_a_gpu_trainer_without_a_gpu_is_refused_before_any_work(tmp_path, capsys, monkeypatch, overrides):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run_dir = tmp_path / "run"
    status, _, stderr = run_command("train.py", [*overrides, *SYNTHETIC, f"dataset.root={tmp_path / 'synthetic'}",
                                              f"run_dir={run_dir}"], capsys, monkeypatch)
    assert status == 2 and stderr.strip() == ("error: trainer.accelerator=gpu: this machine has no usable CUDA GPU "
                                              "(use trainer=cpu)")
    assert not run_dir.exists() and not (tmp_path / "synthetic").exists()


def test_the_data_config_shows_the_librarys_defaults():
    # The defaults are written once in Python (the release's conventions in preprocessing.py, OpenCV's
    # TV-L1 parameters); data/video.yaml shows them so that Hydra can override them, and must not drift.
    from dataclasses import fields

    from omegaconf import OmegaConf

    from i3d_lightning.data.clip_dataset import ClipSampling
    from i3d_lightning.flow.online import OnlineFlow

    cfg = compose_config("train", ["dataset=custom"]).data
    data = {key: OmegaConf.to_container(cfg[key], resolve=True)
            for key in ("clip", "train_sampling", "eval_sampling", "online_flow")}
    shown = {**data["clip"], **data["train_sampling"], **data["eval_sampling"]}
    library = ClipSampling(train=True)
    assert {key: shown[key] for key in shown} == {key: getattr(library, key) for key in shown}
    assert set(shown) == {field.name for field in fields(ClipSampling)} - {"train"}
    assert OnlineFlow.from_config(data["online_flow"]) == OnlineFlow()
    assert set(data["online_flow"]["tvl1"]) == {field.name for field in fields(OnlineFlow().tvl1)}


@pytest.mark.parametrize("script", ["train.py", "eval.py"])
def test_a_run_folder_that_cannot_be_made_is_one_line(script, capsys, monkeypatch):
    # Hydra makes the folder before the command runs: without the check, a FileNotFoundError traceback.
    status, _, stderr = run_command(script, ["run_dir=/proc/i3d-run"], capsys, monkeypatch)
    assert status == 2 and stderr.strip().splitlines() == [
        "error: run_dir=/proc/i3d-run: cannot create that folder (/proc takes no new files or folders)"]


def test_run_folders_follow_one_rule_and_a_local_file_overrides_last(tmp_path):
    # configs/paths: one rule for both commands; configs/hydra: Hydra's run folder is run_dir for both.
    # A configs/local/default.yaml (not in git; here in a folder on Hydra's search path, as --config-dir
    # adds one) overrides the groups, and the command line overrides it.
    for name, overrides, folder in (("train", ["dataset=ucf101"], "outputs/train/ucf101-rgb/"),
                                    ("eval", [], "outputs/eval/sample-joint/")):
        assert str(compose_config(name, overrides).run_dir).startswith(folder)
        hydra = OmegaConf.load(REPO_ROOT / "configs" / "hydra" / "default.yaml")
        assert OmegaConf.to_container(hydra)["run"]["dir"] == "${run_dir}"
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "default.yaml").write_text("# @package _global_\nrun_dir: runs/mine\n"
                                                     "data:\n  num_workers: 1\n")
    search = f"hydra.searchpath=[file://{tmp_path}]"
    local = compose_config("train", ["dataset=ucf101", search])
    assert (local.run_dir, local.data.num_workers) == ("runs/mine", 1)
    assert compose_config("train", ["dataset=ucf101", search, "data.num_workers=3"]).data.num_workers == 3
