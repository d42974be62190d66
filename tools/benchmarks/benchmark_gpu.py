"""Every GPU figure of the README from one run on one GPU: model speed, fidelity to the CPU, FVD end to
end, and whether training is bound by the network or by decoding.

The reference weights are not on a lent GPU machine, so first, here, with the reference data:

    python tools/benchmarks/benchmark_gpu.py --prepare gpu-inputs

writes ``gpu-inputs/rgb_scratch.safetensors.xz`` (the converted rgb_scratch weights, xz-compressed:
about 47 MB) and the release's sample GIF. Then, on the GPU machine, from the repository root, with
decord, hydra-core and omegaconf importable there and the repository on PYTHONPATH:

    python tools/benchmarks/benchmark_gpu.py --inputs gpu-inputs [--json results.json]

A lent GPU machine has PyTorch, Lightning, torchmetrics and OpenCV but not those three packages, and
carries at most 64 MiB: the weights (47 MB), the GIF (2.5 MB) and the wheels (14 MB) fit. Here:

    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2010_x86_64 -d .whl decord==0.6.0 hydra-core==1.3.2 omegaconf==2.3.0
    pip download --no-deps --no-binary=:all: -d .whl antlr4-python3-runtime==4.9.3

and there (carrying ``.whl`` and ``gpu-inputs``, both git-ignored):

    pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site .whl/* &&
    PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 python3 tools/benchmarks/benchmark_gpu.py --inputs gpu-inputs

It writes its own videos to a temporary folder and prints one table at the end; about 5 minutes on an
NVIDIA H200. ``--device cpu --quick`` runs every section at tiny sizes, as a dry run on a CPU.

* ``model``: plain and fast paths x IEEE fp32 / TF32 / bf16 x batch 1, 8, 32 of 64x224x224 clips:
  clips/s and the fraction of the same-run GEMM peak of each precision (tools/benchmarks/benchmark_model.py).
* ``fidelity``: the release's sample clip (eval.py's fast path) and a seeded FVD case (24 + 24
  videos) on the GPU in each precision, against the same computations on this machine's CPU.
* ``fvd``: ``i3d-fvd`` on 2048 + 2048 mp4 videos of 16 frames 256x256 (wall seconds of the whole
  tool), against the embedding alone (resize + network on clips already on the GPU, same batch).
* ``training``: ``train.py`` (trainer=gpu, precision auto) on 64-frame clips of 256x340 videos:
  clips/s end to end against the training step alone on the same clips, and the share of the
  step time spent waiting for data (fetching from the workers and copying to the GPU).
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from i3d_lightning.data.synthetic import render_video
from i3d_lightning.hardware import describe_device
from i3d_lightning.models import InceptionI3d

REPO = Path(__file__).resolve().parents[2]
WEIGHTS = "rgb_scratch.safetensors"
SAMPLE = "v_CricketShot_g04_c01_rgb.gif"
SECTIONS = ("model", "fidelity", "fvd", "training")


@dataclass(frozen=True)
class Sizes:
    """What each section runs on: the full sizes, or ``--quick``'s for a dry run on a CPU."""

    model_batches: tuple[int, ...] = (1, 8, 32)
    model_precisions: tuple[str, ...] = ("32", "tf32", "bf16")
    fidelity_videos: int = 24
    fidelity_frames: int = 16
    fvd_videos: int = 2048
    fvd_frames: int = 16
    fvd_size: int = 256
    train_classes: int = 8
    train_videos_per_class: int = 32
    train_frames: int = 80
    train_size: tuple[int, int] = (256, 340)  # height, width
    train_steps: int = 60
    train_overrides: tuple[str, ...] = ("trainer=gpu", "data.batch_size=8")


QUICK = Sizes(model_batches=(1,), model_precisions=("32",), fidelity_videos=4, fidelity_frames=9, fvd_videos=4,
              fvd_frames=9, fvd_size=64, train_classes=2, train_videos_per_class=2, train_frames=12,
              train_size=(200, 200), train_steps=3,
              train_overrides=("trainer=cpu", "data.batch_size=2", "data.clip.clip_len=9",
                               "data.clip.short_side=193", "data.clip.crop_size=193"))


class StepTimer(pl.Callback):
    """Training-step timings for the ``training`` section (added to train.py's callbacks): per step,
    the seconds waited for the batch since the previous step ended, and the step's own seconds
    (the GPU synchronised at its end); written as JSON to ``out`` when training ends."""

    def __init__(self, out: str) -> None:
        self.out = out
        self.wait: list[float] = []
        self.step: list[float] = []
        self.clips: list[int] = []
        self._started = self._ended = 0.0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._started = time.perf_counter()
        if self._ended:
            self.wait.append(self._started - self._ended)
            self.clips.append(int(batch["label"].shape[0]))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        if self._ended:
            self.step.append(time.perf_counter() - self._started)
        self._ended = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        Path(self.out).write_text(json.dumps({"wait": self.wait, "step": self.step, "clips": self.clips}))


def prepare(folder: Path, shared: Path) -> None:
    """Write the converted rgb_scratch weights (xz) and the sample GIF to ``folder``."""
    from i3d_lightning.weights.conversion import read_tf_checkpoint
    from i3d_lightning.weights.loading import save_state_dict

    release = shared / "deepmind-i3d"
    folder.mkdir(parents=True, exist_ok=True)
    state, _ = read_tf_checkpoint(release / "checkpoints" / "rgb_scratch" / "model.ckpt")
    with tempfile.TemporaryDirectory() as tmp:
        plain = save_state_dict(state, Path(tmp) / WEIGHTS, {"name": "rgb_scratch"})
        with plain.open("rb") as source, lzma.open(folder / f"{WEIGHTS}.xz", "wb", preset=6) as target:
            shutil.copyfileobj(source, target)
    shutil.copy(release / SAMPLE, folder / SAMPLE)
    print(f"wrote {folder / (WEIGHTS + '.xz')} and {folder / SAMPLE}")


def unpacked_weights(inputs: Path, tmp: Path) -> Path:
    path = tmp / WEIGHTS
    with lzma.open(inputs / f"{WEIGHTS}.xz", "rb") as source, path.open("wb") as target:
        shutil.copyfileobj(source, target)
    return path


def write_video(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    """``[T, H, W, 3]`` uint8 as an MPEG-4 file: with PyAV where it is installed, else OpenCV."""
    try:
        from i3d_lightning.data.synthetic import write_mp4

        write_mp4(path, frames, fps)
    except ImportError:  # the GPU machine's image has OpenCV but not PyAV
        import cv2

        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
        writer.release()


def _write_one(job: tuple[str, int, int, tuple[int, int], bool]) -> None:
    path, seed, frames, size, noisy = job
    rng = np.random.default_rng(seed)
    video = render_video(("left", "right", "up", "down")[seed % 4], rng, num_frames=frames, size=max(size), speed=3)
    video = video[:, :size[0], :size[1]]
    if noisy:
        video = np.clip(video.astype(np.float32) + rng.normal(0, 25, video.shape), 0, 255).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_video(Path(path), np.ascontiguousarray(video))


def write_videos(jobs: list[tuple[str, int, int, tuple[int, int], bool]]) -> float:
    """Write the videos of ``jobs`` (path, seed, frames, (height, width), noisy) in parallel; seconds taken."""
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(_write_one, jobs, chunksize=16))
    return time.perf_counter() - start


def model_section(device: torch.device, sizes: Sizes, repeats: int) -> list[tuple[str, str, str]]:
    from benchmark_model import gemm_peaks, model_rows

    precisions = list(sizes.model_precisions)
    before = gemm_peaks(device, repeats, precisions)
    rows = model_rows(InceptionI3d().eval().to(device), device, precisions, list(sizes.model_batches), repeats)
    after = gemm_peaks(device, repeats, precisions)
    peaks = {p: max(before[p], after[p]) for p in precisions}
    table = [("model", f"GEMM peak {p}", f"{peaks[p]:.0f} GFLOP/s") for p in precisions]
    for label, precision, batch, rate, gflops in rows:
        share = gflops / peaks[precision]
        goal = {"32": 0.5, "bf16": 0.4}.get(precision) if label == "fast" and batch == 32 else None
        verdict = "" if goal is None else f" (goal >= {goal:.0%}: {'met' if share >= goal else 'NOT met'})"
        table.append(("model", f"{label} {precision} batch {batch}",
                      f"{rate:.2f} clips/s, {gflops:.0f} GFLOP/s, {share:.0%} of peak{verdict}"))
    return table


def fidelity_section(device: torch.device, sizes: Sizes, weights: Path, sample: Path) -> list[tuple[str, str, str]]:
    from i3d_lightning.evaluation.release_sample import evaluate_sample
    from i3d_lightning.fvd.metric import FrechetVideoDistance

    rng = np.random.default_rng(0)
    sides = {"real": [], "fake": []}
    for index in range(sizes.fidelity_videos):
        video = render_video(("left", "right", "up", "down")[index % 4], rng, num_frames=sizes.fidelity_frames,
                             size=64, speed=3)
        sides["real"].append(video)
        sides["fake"].append(np.clip(video + rng.normal(0, 30, video.shape), 0, 255).astype(np.uint8))
    videos = {side: torch.from_numpy(np.stack(values)) for side, values in sides.items()}

    def sample_logits(where: torch.device, precision: str) -> np.ndarray:
        return evaluate_sample(["rgb"], {"rgb": weights}, {"rgb": sample}, device=where, precision=precision,
                               fast=True)[0]

    def fvd(where: torch.device, precision: str) -> float:
        metric = FrechetVideoDistance(weights=str(weights), precision=precision).to(where)
        for side, clips in videos.items():
            metric.update(clips.to(where), real=side == "real")
        return float(metric.compute())

    cpu = torch.device("cpu")
    reference_logits, reference_fvd = sample_logits(cpu, "32"), fvd(cpu, "32")
    table = [("fidelity", "CPU IEEE fp32 reference", f"sample top-1 logit {reference_logits.max():.6f}, "
                                                      f"FVD {reference_fvd:.6f}")]
    for precision in sizes.model_precisions:
        logits = sample_logits(device, precision)
        difference = float(np.abs(logits - reference_logits).max())
        same = int(logits.argmax()) == int(reference_logits.argmax())
        value = fvd(device, precision)
        relative = abs(value - reference_fvd) / reference_fvd
        verdict = ""
        if precision == "32":
            met = difference <= 1e-4 and relative <= 1e-5
            verdict = f" (goal logits <= 1e-4, FVD <= 1e-5: {'met' if met else 'NOT met'})"
        table.append(("fidelity", f"{device.type} {precision} vs CPU",
                      f"sample max |dlogit| {difference:.2e} (top-1 {'same' if same else 'DIFFERENT'}), "
                      f"FVD {value:.6f} rel {relative:.2e}{verdict}"))
    return table


def fvd_section(device: torch.device, sizes: Sizes, weights: Path, tmp: Path) -> list[tuple[str, str, str]]:
    from i3d_lightning.fvd.embedding import VideoEmbedder
    from i3d_lightning.runtime.video_inference import default_batch_size
    from i3d_lightning.weights import i3d

    size = (sizes.fvd_size, sizes.fvd_size)
    jobs = [(str(tmp / side / f"v{index:05d}.mp4"), index, sizes.fvd_frames, size, side == "fake")
            for side in ("real", "fake") for index in range(sizes.fvd_videos)]
    written = write_videos(jobs)
    workers = max(1, (os.cpu_count() or 2) - 2)
    command = [sys.executable, "-m", "i3d_lightning.commands.fvd", str(tmp / "real"), str(tmp / "fake"), "--weights",
               str(weights), "--frames", str(sizes.fvd_frames), "--workers", str(workers), "--json",
               str(tmp / "fvd.json"), "--accelerator", "gpu" if device.type == "cuda" else "cpu", "--devices", "1"]
    start = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        return [("fvd", "i3d-fvd", f"FAILED (exit {run.returncode}): {run.stderr.strip()[-500:]}")]
    result = json.loads((tmp / "fvd.json").read_text())
    batch = default_batch_size(device.type)
    embedder = VideoEmbedder(i3d(weights=str(weights)), batch_size=batch).to(device)
    clips = torch.randint(0, 256, (batch, sizes.fvd_frames, *size, 3), dtype=torch.uint8, device=device)
    embedder(clips)  # warm-up: cuDNN picks its algorithms
    _synchronize(device)
    start_alone, calls = time.perf_counter(), 3
    for _ in range(calls):
        embedder(clips)
    _synchronize(device)
    alone = calls * batch / (time.perf_counter() - start_alone)
    rate = 2 * sizes.fvd_videos / seconds
    goal = "" if sizes.fvd_videos < 2048 else \
        f" (goals <= 20 s and >= 70%: {'met' if seconds <= 20 and rate >= 0.7 * alone else 'NOT met'})"
    return [("fvd", f"{sizes.fvd_videos} + {sizes.fvd_videos} mp4, {sizes.fvd_frames}x{size[0]}x{size[1]}",
             f"written in {written:.1f} s (not counted); FVD {result['fvd']:.4f}"),
            ("fvd", f"i3d-fvd end to end, {workers} workers, batch {batch}",
             f"{seconds:.1f} s, {rate:.1f} videos/s = {rate / alone:.0%} of the embedding alone "
             f"({alone:.1f} videos/s){goal}")]


def training_section(device: torch.device, sizes: Sizes, tmp: Path) -> list[tuple[str, str, str]]:
    root = tmp / "train_videos"
    jobs = [(str(root / f"class{c}" / f"v{i:03d}.mp4"), 1000 * c + i, sizes.train_frames, sizes.train_size, False)
            for c in range(sizes.train_classes) for i in range(sizes.train_videos_per_class)]
    write_videos(jobs)
    timings = tmp / "steps.json"
    workers = max(1, (os.cpu_count() or 2) - 2)
    command = [sys.executable, str(REPO / "train.py"), "dataset=custom", f"dataset.train={root}",
               f"dataset.val={root}", "weights.rgb=null", f"run_dir={tmp / 'train_run'}",
               f"+trainer.max_steps={sizes.train_steps}", "trainer.max_epochs=1000", "+trainer.limit_val_batches=0",
               "trainer.enable_progress_bar=false",
               "test_after_fit=false", f"data.num_workers={workers}", "data.check_videos=0",
               "~callbacks.best_checkpoint", "~callbacks.last_checkpoint", "~callbacks.learning_rate_monitor",
               "logger=[]", "+callbacks.step_timer._target_=benchmark_gpu.StepTimer",
               f"+callbacks.step_timer.out={timings}", *sizes.train_overrides]
    paths = [str(REPO / "tools" / "benchmarks"), str(REPO), os.environ.get("PYTHONPATH")]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    run = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    if run.returncode != 0 or not timings.is_file():
        return [("training", "train.py", f"FAILED (exit {run.returncode}): {run.stderr.strip()[-500:]}")]
    steps = json.loads(timings.read_text())
    skip = min(5, len(steps["step"]) - 1)  # warm-up: cuDNN's algorithm search, workers starting
    wait, step, clips = (np.array(steps[key][skip:], dtype=float) for key in ("wait", "step", "clips"))
    end_to_end, alone = clips.sum() / (wait + step).sum(), clips.sum() / step.sum()
    bound = "data-bound" if alone / end_to_end > 1.5 else "network-bound"
    return [("training", f"{len(step)} steps of {int(clips.mean())} clips ({' '.join(sizes.train_overrides)})",
             f"{end_to_end:.1f} clips/s end to end, {alone:.1f} clips/s the step alone, "
             f"{wait.sum() / (wait + step).sum():.0%} of the time waiting for data: {bound}")]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare", type=Path, help="write the inputs folder (here, with the reference data)")
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("I3D_SHARED_DIR", REPO.parent / "shared")))
    parser.add_argument("--inputs", type=Path, help="the folder --prepare wrote")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a dry run on a CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare, args.shared)
        return
    if args.inputs is None:
        parser.error("give --inputs (the folder --prepare wrote) or --prepare")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    sizes = QUICK if args.quick else Sizes()
    table: list[tuple[str, str, str]] = [("machine", describe_device(device), f"{os.cpu_count()} CPUs")]
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        weights = unpacked_weights(args.inputs, tmp)
        for section in args.sections:
            start = time.perf_counter()
            if section == "model":
                rows = model_section(device, sizes, 1 if args.quick else args.repeats)
            elif section == "fidelity":
                rows = fidelity_section(device, sizes, weights, args.inputs / SAMPLE)
            elif section == "fvd":
                rows = fvd_section(device, sizes, weights, tmp)
            else:
                rows = training_section(device, sizes, tmp)
            for row in rows:
                print(" | ".join(row), flush=True)
            table += [*rows, (section, "section time", f"{time.perf_counter() - start:.0f} s")]
    width = max(len(name) for _, name, _ in table)
    print("\n" + "\n".join(f"{section:<9} {name:<{width}}  {value}" for section, name, value in table))
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
