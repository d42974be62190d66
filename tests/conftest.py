"""Shared fixtures. The reference data in ``shared/`` is required: a missing folder fails the tests."""

from __future__ import annotations

import builtins
import contextlib
import functools
import io
import logging
import os
import runpy
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from i3d_lightning.hardware import available_cpus, float32_settings, set_float32_settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
               cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """``python *args`` (a tool, train.py or eval.py; relative to the repository root) run in ``cwd``,
    output captured; ``env`` is added to the current environment."""
    first = REPO_ROOT / args[0] if args and args[0].endswith(".py") else None
    args = (str(first), *args[1:]) if first is not None and first.is_file() else args
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, **(env or {})})


def run_main(main: Callable[[list[str]], int], args: list[str],
             capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """A console command's ``main(args)`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main(args)
    return status, *capsys.readouterr()


def run_command(script: str, args: list[str], capsys: pytest.CaptureFixture,
                monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """``python <script> <args>`` (train.py, eval.py or a benchmark; relative to the repository root) in
    this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [str(REPO_ROOT / script), *args])
    # Hydra's logging.config.dictConfig closes every handler the process has. absl's (TensorFlow's, once
    # a test converted weights in this process) closes its stream too, and that stream is pytest's
    # capture file of the test that imported it: Hydra gets a list of its own to clear.
    monkeypatch.setattr(logging, "_handlerList", [])
    capsys.readouterr()
    handlers = list(logging.root.handlers)
    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after it handled a Ctrl-C
    try:
        runpy.run_path(str(REPO_ROOT / script), run_name="__main__")
        status = 0
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 1
    finally:
        signal.signal(signal.SIGINT, sigint)
        # Hydra pointed the root logger at this test's captured stderr: put back what was there.
        for handler in list(logging.root.handlers):
            if handler not in handlers:
                logging.root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in logging.root.handlers:
                logging.root.addHandler(handler)
    return status, *capsys.readouterr()


def compose_config(name: str, overrides: list[str] = ()):
    """The real config ``configs/<name>.yaml`` with ``overrides``, as Hydra composes it for the CLI (from
    the package ``i3d_lightning.configs``, which is the checkout's configs/ folder)."""
    from hydra import compose

    from i3d_lightning.cli import hydra_configs

    with hydra_configs():
        return compose(config_name=name, overrides=list(overrides))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (an ephemeral port) while the block runs; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def shared_dir() -> Path:
    return Path(os.environ.get("I3D_SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def release_dir() -> Path:
    """``shared/deepmind-i3d``: DeepMind's release files (rgb_scratch checkpoint, indexes, sample)."""
    path = shared_dir() / "deepmind-i3d"
    if not (path / "checkpoints" / "rgb_scratch" / "model.ckpt.index").is_file():
        pytest.fail(f"reference data not found at {path}: set I3D_SHARED_DIR to the shared/ folder")
    return path


@pytest.fixture(scope="session")
def checkpoints_dir(release_dir: Path) -> Path:
    return release_dir / "checkpoints"


@pytest.fixture(scope="session")
def rgb_scratch_state(checkpoints_dir: Path) -> dict[str, torch.Tensor]:
    """The rgb_scratch checkpoint converted once for the whole session."""
    from i3d_lightning.weights.conversion import read_tf_checkpoint

    state, _ = read_tf_checkpoint(checkpoints_dir / "rgb_scratch" / "model.ckpt")
    return state


@pytest.fixture(scope="session")
def weights_home(tmp_path_factory: pytest.TempPathFactory, rgb_scratch_state) -> Path:
    """An ``I3D_HOME`` whose cache holds the converted rgb_scratch weights."""
    from i3d_lightning.weights import I3DWeights, WeightsSource
    from i3d_lightning.weights.loading import converted_path, save_state_dict

    home = tmp_path_factory.mktemp("i3d_home")
    cached = converted_path(I3DWeights.rgb_scratch, WeightsSource(cache=home))
    save_state_dict(rgb_scratch_state, cached, {"name": "rgb_scratch"})
    return home


@pytest.fixture
def weights_cache(weights_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's ``I3D_HOME`` is :func:`weights_home`, whose cache holds the converted rgb_scratch weights."""
    monkeypatch.setenv("I3D_HOME", str(weights_home))
    return weights_home


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests marked ``long`` first, longest (``minutes``, 1 if not given) first, the rest in collection
    order. With ``--maxschedchunk=1`` (pyproject's addopts) pytest-xdist hands each worker a test or two
    at a time in this order, so the long ones start early on different workers, instead of one worker
    finishing the last of them while the others wait."""
    def order(item: pytest.Item) -> tuple[bool, float]:
        long = item.get_closest_marker("long")
        return long is None, -(long.kwargs.get("minutes", 1) if long is not None else 0)

    items.sort(key=order)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, share the CPU cores between the workers: each worker's torch, and the Python
    processes its tests start (through ``OMP_NUM_THREADS``), use cores / workers threads, instead of every
    worker spinning as many threads as there are cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, available_cpus() // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the user's cache, mirror or download address, or reaches the internet."""
    monkeypatch.setenv("I3D_HOME", str(tmp_path / "i3d_home"))
    monkeypatch.delenv("I3D_WEIGHTS_MIRROR", raising=False)
    monkeypatch.setenv("I3D_RELEASE_URL", "http://127.0.0.1:9/unreachable")
    torch.manual_seed(0)


#: IEEE fp32 inference's settings: every switch ``ieee``, torch's matmul precision ``highest``.
IEEE = {"cudnn.conv": "ieee", "cudnn.rnn": "ieee", "mkldnn.conv": "ieee", "mkldnn.rnn": "ieee",
        "cuda.matmul": "ieee", "mkldnn.matmul": "ieee", "matmul_precision": "highest"}


@pytest.fixture
def user_float32_flags() -> Iterator[dict[str, str | None]]:
    """The process's float32 settings as a user who wants speed leaves them for the test (cuDNN's TF32
    default and ``torch.set_float32_matmul_precision("medium")``), then restored; yields them."""
    saved = float32_settings()
    torch.set_float32_matmul_precision("medium")
    yield float32_settings()
    set_float32_settings(saved)


@contextlib.contextmanager
def float32_settings_at_each_convolution() -> Iterator[list[dict[str, str]]]:
    """Inside: the float32 switches (:func:`~i3d_lightning.hardware.float32_settings`) as they stand at
    every convolution module's call, in this process, appended to the list yielded."""
    seen: list[dict[str, str]] = []

    def record(module: torch.nn.Module, args: object) -> None:
        if isinstance(module, torch.nn.Conv3d) or type(module).__name__ == "SpaceToDepthStem":
            seen.append(float32_settings())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        yield seen
    finally:
        handle.remove()


def record_segments(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """A list that fills, as long videos are read (data/segments.py), with each item's (segment number,
    segment count, rgb frames)."""
    from i3d_lightning.data import segments

    read: list[tuple[int, int, int]] = []
    original = segments.VideoSegments.__getitem__

    def recorded(self, index: int) -> dict:
        item = original(self, index)
        read.append((item["segment"], item["segments"], item["rgb"].shape[2]))
        return item

    monkeypatch.setattr(segments.VideoSegments, "__getitem__", recorded)
    return read


@contextlib.contextmanager
def files_written_under(folder: Path) -> Iterator[list[Path]]:
    """Inside: the list of the files under ``folder`` that this process opens for writing (Python's
    ``open``, ``Path.open``, ``csv``, ``json``, numpy and matplotlib go through it), in order."""
    opened: list[Path] = []
    real_open = io.open

    def recording_open(file, mode="r", *args, **kwargs):
        # (tempfile's NamedTemporaryFile opens its folder with an opener that makes the file: a write check)
        if isinstance(file, str | os.PathLike) and set(str(mode)) & set("wax+") and "opener" not in kwargs:
            path = Path(file).absolute()
            if path.is_relative_to(folder.absolute()):
                opened.append(path)
        return real_open(file, mode, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", recording_open)
        patch.setattr(io, "open", recording_open)
        yield opened


def written_atomically(paths: list[Path]) -> bool:
    """Whether every one of ``paths`` is a temporary name of :func:`~i3d_lightning.atomic_files.atomic_output`
    (``.<name>.<pid>.partial``), renamed into place once complete."""
    return all(path.name.startswith(".") and path.name.endswith(".partial") for path in paths)
