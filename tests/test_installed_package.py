"""The package as users install it: a wheel, installed non-editable, its commands run outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.videos import write_frames


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the checkout's tracked files (a copy: a build/ folder left in the checkout could add
    stale modules), built with this environment's setuptools."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            str(source), "-w", str(out)], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    return next(out.glob("i3d_lightning-*.whl"))


def test_the_wheel_holds_every_module_and_config_and_nothing_else(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / "i3d_lightning").rglob("*.py")}
    configs = {"i3d_lightning/" + str(path.relative_to(REPO_ROOT))
               for path in (REPO_ROOT / "configs").rglob("*") if path.suffix in (".yaml", ".py")}
    assert len(configs) > 20 and configs <= names and modules <= names
    files = {name for name in names if ".dist-info/" not in name}
    assert files == modules | configs  # no tests, benchmarks or tools
    licenses = {name.rsplit("/", 1)[-1] for name in names if ".dist-info/licenses/" in name}
    assert licenses == {"LICENSE", "NOTICE"}


def _installed(wheel: Path, folder: Path) -> Path:
    """A virtual environment with the wheel installed (not editable), whose dependencies are this one's
    (a .pth line: no second torch); returns its bin/ folder."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    site = next((folder / "lib").glob("python*/site-packages"))
    (site / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps",
                                "--no-index", str(wheel)], capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return folder / "bin"


@pytest.mark.long(minutes=2)
def test_the_installed_commands_run_outside_the_checkout(wheel, tmp_path, weights_cache, release_dir,
                                                         checkpoints_dir):
    bin_dir = _installed(wheel, tmp_path / "venv")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "I3D_HOME": str(weights_cache), "I3D_WEIGHTS_MIRROR": str(checkpoints_dir),
           "PYTHONPATH": ""}

    def run(command: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bin_dir / command), *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=900, check=False)

    where, version = subprocess.run(
        [str(bin_dir / "python"), "-c", "import i3d_lightning as p; print(p.__file__); print(p.__version__)"],
        cwd=work, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert where.startswith(str(tmp_path / "venv"))  # the wheel's copy, not the checkout's
    assert wheel.name.startswith(f"i3d_lightning-{version}-")  # the version, from the package's metadata

    gif = release_dir / "v_CricketShot_g04_c01_rgb.gif"
    result = run("i3d-eval", "stream=rgb", "weights.rgb=rgb_scratch", f"sample.rgb={gif}", "run_dir=sample")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "playing cricket" in result.stdout.splitlines()[3] and (work / "sample" / "eval.log").is_file()

    result = run("i3d-train", "experiment=quickstart", "debug=fast", "run_dir=quick", "dataset.root=synthetic",
                 "dataset.train_per_class=1", "dataset.val_per_class=1", "weights.rgb=rgb_scratch",
                 "trainer.precision=32")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "quick" / ".hydra" / "config.yaml").is_file() and (work / "synthetic").is_dir()

    # A user's own configs, added to the search path as Hydra does (--config-dir).
    (work / "my_configs" / "experiment").mkdir(parents=True)
    (work / "my_configs" / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /dataset: synthetic\nseed: 1234\n")
    result = run("i3d-train", "--config-dir", "my_configs", "experiment=mine", "--cfg", "job")
    assert result.returncode == 0 and "seed: 1234" in result.stdout and "dataset_configs.Synthetic" in result.stdout

    rng = np.random.default_rng(0)
    for name in ("a/x", "b/y"):
        write_frames(work / "videos" / f"{name}.mp4", rng.integers(0, 256, (12, 25, 25, 3), dtype=np.uint8)
                     .repeat(8, 1).repeat(8, 2))
    result = run("i3d-extract-features", "--dataset", "custom", "--set", f"dataset.val={work / 'videos'}",
                 str(work / "features"), "--weights-rgb", "rgb_scratch", "--short-side", "193", "--crop", "193",
                 "--window", "9", "--workers", "0")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (work / "features" / "rgb").rglob("*.npy")) == ["x.npy", "y.npy"]

    np.save(work / "real.npy", rng.integers(0, 256, (3, 10, 24, 32, 3), dtype=np.uint8))
    np.save(work / "fake.npy", rng.integers(0, 256, (3, 10, 24, 32, 3), dtype=np.uint8))
    result = run("i3d-fvd", "real.npy", "fake.npy", "--frames", "9", "--devices", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.strip().splitlines()[-1].removeprefix("FVD: ")) > 0


def test_torch_hub_builds_the_converted_model_from_the_checkout(weights_cache, rgb_scratch_state):
    import torch

    model = torch.hub.load(str(REPO_ROOT), "i3d", source="local", weights="rgb_scratch", trust_repo=True)
    assert all(torch.equal(model.state_dict()[key], value) for key, value in rgb_scratch_state.items())
    assert model.num_classes == 400 and model.in_channels == 3
