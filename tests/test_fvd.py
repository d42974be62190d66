"""FVD equal to TensorFlow's: the TF1 resize, the float64 distances, the metric's states and the whole
chain on small videos against a TensorFlow computation of the same protocol."""

from __future__ import annotations

import functools
import json
import socket

import numpy as np
import pytest
import scipy.linalg
import torch

from i3d_lightning.commands import fvd as fvd_tool
from i3d_lightning.errors import UserInputError
from i3d_lightning.fvd.bootstrap import bootstrap_fvd
from i3d_lightning.fvd.distance import GaussianStatistics, frechet_distance, kernel_distance, trace_sqrt_product
from i3d_lightning.fvd.inputs import ClipProtocol, ClipSource
from i3d_lightning.fvd.metric import FrechetVideoDistance
from i3d_lightning.fvd.protocols import sample_size_warning, unequal_sides_warning
from i3d_lightning.fvd.resize import resize_bilinear_tf1
from i3d_lightning.fvd.run import compute
from i3d_lightning.fvd.statistics_file import save_statistics
from i3d_lightning.runtime.video_inference import InferenceOptions
from i3d_lightning.weights import WeightsSource
from i3d_lightning.weights.conversion import import_tensorflow
from tests.conftest import (
    IEEE,
    files_written_under,
    float32_settings_at_each_convolution,
    run_command,
    run_main,
    run_script,
    written_atomically,
)
from tests.tf_reference import TFReferenceI3D
from tests.videos import write_frames


@pytest.fixture(scope="module")
def tf():
    return import_tensorflow()


@pytest.mark.parametrize(("shape", "size"), [
    ((2, 3, 64, 64, 3), (224, 224)),    # up, as the google-research example
    ((1, 2, 300, 257, 3), (224, 224)),  # down, odd width
    ((1, 1, 7, 5, 3), (13, 3)),         # up in height, down in width, odd sizes
])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_resize_is_tensorflow_1s_resize_bilinear_bit_for_bit(tf, shape, size, dtype):
    rng = np.random.default_rng(0)
    videos = rng.integers(0, 256, shape).astype(dtype) if dtype == np.uint8 else \
        (rng.random(shape) * 255).astype(dtype)
    frames = videos.reshape(-1, *shape[-3:])
    expected = tf.compat.v1.image.resize_bilinear(frames, size, align_corners=False, half_pixel_centers=False)
    ours = resize_bilinear_tf1(torch.from_numpy(videos), size)
    assert ours.shape == (*shape[:-3], *size, 3) and ours.dtype == torch.float32
    np.testing.assert_array_equal(ours.numpy().reshape(expected.shape), expected.numpy())
    # PyTorch's own bilinear resize puts pixel centres at +0.5: a different image.
    torchs = torch.nn.functional.interpolate(torch.from_numpy(frames).float().permute(0, 3, 1, 2), size=size,
                                             mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
    assert not np.allclose(torchs.numpy(), expected.numpy(), atol=1e-3)


def _tf_frechet(tf, x: np.ndarray, y: np.ndarray) -> float:
    """TF-GAN's frechet_classifier_distance_from_activations, written with TensorFlow ops."""
    def sqrtm(mat):
        s, u, v = tf.linalg.svd(mat)
        si = tf.where(tf.less(s, 1e-10), s, tf.sqrt(s))
        return tf.matmul(tf.matmul(u, tf.linalg.tensor_diag(si)), v, transpose_b=True)

    x, y = tf.constant(x, tf.float64), tf.constant(y, tf.float64)
    m, m_w = tf.reduce_mean(x, 0), tf.reduce_mean(y, 0)
    sigma = tf.matmul(x - m, x - m, transpose_a=True) / (x.shape[0] - 1)
    sigma_w = tf.matmul(y - m_w, y - m_w, transpose_a=True) / (y.shape[0] - 1)
    root = sqrtm(sigma)
    trace_sqrt = tf.linalg.trace(sqrtm(tf.matmul(root, tf.matmul(sigma_w, root))))
    trace = tf.linalg.trace(sigma + sigma_w) - 2.0 * trace_sqrt
    return float(trace + tf.reduce_sum(tf.math.squared_difference(m, m_w)))


def _tf_kernel(tf, x: np.ndarray, y: np.ndarray, max_block_size: int) -> float:
    """TF-GAN's kernel_classifier_distance_from_activations (blocks and all), with TensorFlow ops."""
    n_blocks = -(-max(len(x), len(y)) // max_block_size)
    def bounds(n):
        base, longer = divmod(n, n_blocks)
        return np.concatenate([[0], np.cumsum([base] * (n_blocks - longer) + [base + 1] * longer)])
    bx, by, dim = bounds(len(x)), bounds(len(y)), x.shape[1]
    estimates = []
    for i in range(n_blocks):
        r, g = tf.constant(x[bx[i]:bx[i + 1]], tf.float64), tf.constant(y[by[i]:by[i + 1]], tf.float64)
        m, n = r.shape[0], g.shape[0]
        k_rr = (tf.matmul(r, r, transpose_b=True) / dim + 1) ** 3
        k_rg = (tf.matmul(r, g, transpose_b=True) / dim + 1) ** 3
        k_gg = (tf.matmul(g, g, transpose_b=True) / dim + 1) ** 3
        estimates.append(-2 * tf.reduce_mean(k_rg) + (tf.reduce_sum(k_rr) - tf.linalg.trace(k_rr)) / (m * (m - 1))
                         + (tf.reduce_sum(k_gg) - tf.linalg.trace(k_gg)) / (n * (n - 1)))
    return float(tf.reduce_mean(tf.stack(estimates)))


@pytest.mark.parametrize(("n", "m", "dim"), [(40, 30, 8), (12, 9, 400)])  # full rank; rank-deficient as FVD's
def test_distances_equal_tf_gans_in_float64(tf, n, m, dim):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 3, (n, dim))
    y = rng.normal(0.5, 2, (m, dim)) + x[:m] * 0.3
    ours = frechet_distance(GaussianStatistics.from_embeddings(torch.from_numpy(x)),
                            GaussianStatistics.from_embeddings(torch.from_numpy(y)))
    assert ours == pytest.approx(_tf_frechet(tf, x, y), rel=1e-10)
    kernel = kernel_distance(torch.from_numpy(x), torch.from_numpy(y), max_block_size=7)
    assert kernel == pytest.approx(_tf_kernel(tf, x, y, max_block_size=7), rel=1e-10)


def test_what_other_ports_choices_do_to_the_distance():
    # The same embeddings, the distance computed the ways other ports do: each choice moves the value.
    rng = np.random.default_rng(2)
    x, y = rng.normal(0, 3, (24, 400)), rng.normal(0.2, 3, (24, 400))  # n < d, as with few videos
    reference = frechet_distance(GaussianStatistics.from_embeddings(torch.from_numpy(x)),
                                 GaussianStatistics.from_embeddings(torch.from_numpy(y)))
    biased_x, biased_y = np.cov(x, rowvar=False, bias=True), np.cov(y, rowvar=False, bias=True)
    mean_term = float(np.sum((x.mean(0) - y.mean(0)) ** 2))
    def distance(sx, sy, sqrt_trace):
        return mean_term + np.trace(sx) + np.trace(sy) - 2 * sqrt_trace
    unbiased_x, unbiased_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    with_scipy = distance(unbiased_x, unbiased_y, np.real(np.trace(scipy.linalg.sqrtm(unbiased_x @ unbiased_y))))
    assert with_scipy == pytest.approx(reference, rel=1e-3)  # close: only the square root differs ...
    assert with_scipy != pytest.approx(reference, rel=1e-9)  # ... and not to float64 precision
    biased = distance(biased_x, biased_y, float(trace_sqrt_product(torch.from_numpy(biased_x),
                                                                   torch.from_numpy(biased_y))))
    assert biased == pytest.approx(reference * 23 / 24 + mean_term / 24, rel=1e-9)  # n-1 vs n scales the traces
    # The same choices, offered explicitly (StyleGAN-V's distance is both together).
    first, second = GaussianStatistics.from_embeddings(torch.from_numpy(x)), GaussianStatistics.from_embeddings(
        torch.from_numpy(y))
    # (scipy's square root of these rank-deficient products amplifies the covariances' last-bit differences
    # between numpy's np.cov and our sums: 1e-8 relative.)
    assert frechet_distance(first, second, square_root="scipy") == pytest.approx(with_scipy, rel=1e-6)
    assert frechet_distance(first, second, covariance="biased") == pytest.approx(biased, rel=1e-9)
    both = distance(biased_x, biased_y, np.real(np.trace(scipy.linalg.sqrtm(biased_x @ biased_y))))
    assert frechet_distance(first, second, covariance="biased", square_root="scipy") == pytest.approx(both, rel=1e-6)
    with pytest.raises(UserInputError, match="covariance must be one of unbiased, biased"):
        frechet_distance(first, second, covariance="n")


def test_the_bootstrap_spread_matches_the_spread_over_new_samples():
    # The spread of FVD over 40 independent draws of 300 + 300 embeddings from two Gaussians, and the
    # bootstrap's estimate of it from one draw: the bootstrap is there to tell users this number.
    generator = torch.Generator().manual_seed(5)
    def draw():
        return torch.randn(300, 6, generator=generator, dtype=torch.float64), \
            torch.randn(300, 6, generator=generator, dtype=torch.float64) * 1.3 + 0.4
    fresh = torch.tensor([frechet_distance(*map(GaussianStatistics.from_embeddings, draw())) for _ in range(40)])
    real, fake = draw()
    summary = bootstrap_fvd(real, fake, resamples=200, seed=1)
    assert summary.resampled == ("real", "fake") and summary.resamples == 200
    assert 0.6 < summary.std / float(fresh.std()) < 1.6
    assert summary.low < frechet_distance(*map(GaussianStatistics.from_embeddings, (real, fake))) < summary.high
    assert summary.low < summary.mean < summary.high
    assert bootstrap_fvd(real, fake, resamples=200, seed=1) == summary  # seeded
    assert bootstrap_fvd(real, fake, resamples=200, seed=2).mean != summary.mean
    # A side given as statistics (a statistics file's) stays fixed: only the other one's noise is left.
    fixed = bootstrap_fvd(GaussianStatistics.from_embeddings(real), fake, resamples=200, seed=1)
    assert fixed.resampled == ("fake",) and fixed.std < summary.std



@pytest.fixture
def fvd_metric(weights_cache):

    def make(**options) -> FrechetVideoDistance:
        return FrechetVideoDistance(source=WeightsSource(progress=False), **options)
    return make


def test_whole_chain_equals_tensorflow_on_small_videos(tf, fvd_metric, checkpoints_dir, user_float32_flags):
    # The reference protocol in TensorFlow: TF1 resize, 2x/255 - 1, the release graph's logits averaged
    # over time (the TF-ops forward of the rgb_scratch checkpoint), TF-GAN's distance.
    rng = np.random.default_rng(3)
    real = rng.integers(0, 256, (3, 9, 32, 40, 3), dtype=np.uint8)
    fake = np.clip(real.astype(np.int64) + rng.integers(-60, 60, real.shape), 0, 255).astype(np.uint8)
    reference = TFReferenceI3D(checkpoints_dir / "rgb_scratch" / "model.ckpt")

    def tf_embed(videos: np.ndarray) -> np.ndarray:
        frames = tf.compat.v1.image.resize_bilinear(videos.reshape(-1, 32, 40, 3), (224, 224))
        scaled = 2.0 * tf.reshape(frames, (videos.shape[0], 9, 224, 224, 3)) / 255.0 - 1
        return reference(scaled.numpy())

    expected = _tf_frechet(tf, tf_embed(real).astype(np.float64), tf_embed(fake).astype(np.float64))
    metric = fvd_metric()
    with float32_settings_at_each_convolution() as seen:  # IEEE fp32, whatever the process had set
        metric.update(torch.from_numpy(real), real=True)
        metric.update(torch.from_numpy(fake[:1]), real=False)  # in two batches: sums do not care
        metric.update(torch.from_numpy(fake[1:]), real=False)
    assert seen and all(settings == IEEE for settings in seen)
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-5)


def _filled(metric: FrechetVideoDistance, real: torch.Tensor, fake: torch.Tensor) -> FrechetVideoDistance:
    """``metric`` after adding ``real`` and ``fake`` embeddings ``[n, d]``."""
    metric.update(real, real=True, embedded=True)
    metric.update(fake, real=False, embedded=True)
    return metric


def test_sharded_sums_give_the_distance_of_one_pass(fvd_metric):
    rng = np.random.default_rng(4)
    real, fake = torch.from_numpy(rng.normal(0, 4, (20, 400))), torch.from_numpy(rng.normal(1, 4, (16, 400)))
    whole = _filled(fvd_metric(), real, fake)
    shards = [fvd_metric() for _ in range(3)]
    for index, shard in enumerate(shards):
        shard.update(real[index::3], real=True, embedded=True)
        shard.update(fake[index::3], real=False, embedded=True)
    for shard in shards[1:]:
        shards[0].merge_state(shard)
    assert float(shards[0].compute()) == pytest.approx(float(whole.compute()), rel=1e-12)
    assert shards[0].compute_kvd() == pytest.approx(whole.compute_kvd(), rel=1e-12)


def test_real_statistics_survive_reset_when_asked(fvd_metric):
    rng = np.random.default_rng(5)
    real, fake = torch.from_numpy(rng.normal(0, 4, (10, 400))), torch.from_numpy(rng.normal(1, 4, (10, 400)))
    metric = _filled(fvd_metric(reset_real_features=False), real, fake)
    first = float(metric.compute())
    metric.reset()
    assert int(metric.real_count) == 10 and int(metric.fake_count) == 0
    metric.update(fake, real=False, embedded=True)
    assert float(metric.compute()) == first
    fresh = fvd_metric()
    fresh.update(real, real=True, embedded=True)
    fresh.reset()
    assert int(fresh.real_count) == 0


def test_bad_videos_are_one_clear_error(fvd_metric):
    metric = fvd_metric()
    with pytest.raises(UserInputError, match="at least 9"):
        metric.update(torch.zeros(2, 5, 32, 32, 3, dtype=torch.uint8), real=True)
    with pytest.raises(UserInputError, match=r"\[N, T, H, W, 3\]"):
        metric.update(torch.zeros(2, 9, 32, 32, 4, dtype=torch.uint8), real=True)
    preprocessed = fvd_metric(preprocessed=True)
    with pytest.raises(UserInputError, match="are network-ready \\[-1, 1\\]: leave it out for pixels 0..255"):
        preprocessed.update(torch.full((2, 9, 224, 224, 3), 255.0), real=True)
    # The other way round: [0, 1] or [-1, 1] floats given as pixels would be nearly black videos.
    for low in (0.0, -1.0):
        with pytest.raises(UserInputError, match=r"not pixels 0..255: scale \[0, 1\] videos by 255"):
            metric.update(torch.linspace(low, 1, 9 * 32 * 32 * 3 * 2).reshape(2, 9, 32, 32, 3), real=True)
    assert metric.real_count == 0  # refused before anything was added


@pytest.mark.parametrize(("values", "preprocessed", "expected"), [
    (lambda rng: rng.random((3, 9, 8, 8, 3), dtype=np.float32), False, "not pixels 0..255"),  # [0, 1]
    (lambda rng: rng.random((3, 9, 8, 8, 3)) * 2 - 1, False, "not pixels 0..255"),             # [-1, 1]
    (lambda rng: rng.random((3, 9, 224, 224, 3), dtype=np.float32) * 255, True, "leave it out for pixels"),
    (lambda rng: np.zeros((3, 9, 8, 8, 3), np.float32), False, None),  # the google-research example's zeros
    (lambda rng: rng.random((3, 9, 8, 8, 3), dtype=np.float32) * 255, False, None),
    (lambda rng: rng.integers(0, 2, (3, 9, 8, 8, 3), dtype=np.uint8), False, None),  # uint8 is pixels
    (lambda rng: rng.random((3, 9, 224, 224, 3), dtype=np.float32) * 2 - 1, True, None),
])
def test_arrays_in_the_other_value_convention_are_refused_when_opened(tmp_path, values, preprocessed, expected):
    np.save(tmp_path / "videos.npy", values(np.random.default_rng(0)))
    open_source = functools.partial(ClipSource, tmp_path / "videos.npy", ClipProtocol(frames=9),
                                    preprocessed=preprocessed)
    if expected is None:
        assert len(open_source()) == 3
    else:
        with pytest.raises(UserInputError, match=expected):
            open_source()


def test_fvd_tool_on_arrays_videos_and_saved_statistics(tmp_path, weights_cache, monkeypatch, capsys):
    rng = np.random.default_rng(6)
    real = rng.integers(0, 256, (3, 10, 24, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "real.npy", real)
    videos = tmp_path / "fake"
    for index in range(3):
        write_frames(videos / f"clip{index}.mp4", np.ascontiguousarray(np.roll(real[index], index + 1, axis=2)))
    write_frames(videos / "short.mp4", real[0, :5])  # shorter than a clip: skipped and listed
    stats = tmp_path / "real_stats.npz"
    monkeypatch.setenv("I3D_WEIGHTS_MIRROR", str(tmp_path / "no-mirror"))
    # --save-stats without .npz gets it (said once); --json into a folder that does not exist yet. A process
    # of its own: what it prints and logs, and where, is the point.
    first = run_script("-m", "i3d_lightning.commands.fvd", str(tmp_path / "real.npy"), str(videos), "--frames", "9",
                       "--save-stats", str(tmp_path / "real_stats"), "--json", str(tmp_path / "new" / "first.json"),
                       "--devices", "1", timeout=900)
    assert first.returncode == 3, first.stderr[-3000:]  # done, but a video was skipped
    assert f"will be written to {stats}" in first.stderr and "1 input was skipped" in first.stderr
    last = first.stdout.strip().splitlines()[-1]
    assert last.startswith("FVD: ") and float(last.removeprefix("FVD: ")) > 0
    listed = [line for line in (first.stdout + first.stderr).splitlines() if "short.mp4" in line]
    assert len(listed) == 1  # listed once, not logged as well
    assert "skipped fake video short.mp4: " in first.stdout and "shorter than a clip" in first.stdout
    results = json.loads((tmp_path / "new" / "first.json").read_text())
    assert results["counts"] == {"real_clips": 3, "fake_clips": 3, "real_videos": 3, "fake_videos": 3,
                                 "real_skipped": 0, "fake_skipped": 1, "real_discarded": 0, "fake_discarded": 0}
    assert results["fvd"] == pytest.approx(float(last.removeprefix("FVD: ")), abs=1e-6) and results["kvd"] is not None
    # What was compared, with what, and what was left out, by name and reason; and that 3 clips are too few.
    assert results["inputs"] == {"real": str(tmp_path / "real.npy"), "fake": str(videos)}
    assert results["weights"]["name"] == "rgb_scratch" and len(results["weights"]["sha256"]) == 64
    assert results["skipped"]["real"] == [] and [entry["video"] for entry in results["skipped"]["fake"]] == [
        "short.mp4"] and "shorter than a clip" in results["skipped"]["fake"][0]["reason"]
    assert [w[:60] for w in results["warnings"]] == [
        "warning: real has 3 clips, fewer than the embedding's 400 di",
        "warning: fake has 3 clips, fewer than the embedding's 400 di"]
    # The saved statistics stand in for the real videos: the same value, without KVD (it needs embeddings).
    # The command's main() in this process from here on.
    with files_written_under(tmp_path) as written:
        status, stdout, stderr = run_main(fvd_tool.main, [str(stats), str(videos), "--frames", "9", "--json",
                                                          str(tmp_path / "again.json"), "--devices", "1"], capsys)
    assert status == 3, stderr[-3000:]
    assert [path.name.split(".")[1:3] for path in written] == [["again", "json"]], written
    assert written_atomically(written)
    second = json.loads((tmp_path / "again.json").read_text())
    assert second["fvd"] == results["fvd"] and second["kvd"] is None
    assert "KVD: not computed (a statistics file holds no embeddings" in stdout
    # Statistics of another protocol are refused in one line.
    status, _, stderr = run_main(fvd_tool.main, [str(stats), str(videos), "--frames", "10", "--devices", "1"], capsys)
    assert status == 2 and stderr.strip().startswith("error: ") and "protocol" in stderr
    assert len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("make", "json_in", "expected"), [
    (lambda root: root.mkdir(), "new", "no videos"),
    (lambda root: None, "new", "no such folder, .npy/.npz array or statistics file"),  # FAKE missing: refused first
    (lambda root: np.save(root.with_suffix(".npy"), np.zeros((2, 9, 8, 8, 3), np.uint8)), "a_file", "--json"),
    (lambda root: np.save(root.with_suffix(".npy"), np.zeros((2, 9, 8, 8, 4), np.uint8)), "new", "[N, T, H, W, 3]"),
    (lambda root: np.save(root.with_suffix(".npy"), np.zeros((2, 5, 8, 8, 3), np.uint8)), "new",
     "shorter than a clip"),
])
def test_fvd_tool_refuses_bad_input_in_one_line(tmp_path, weights_cache, make, json_in, expected, monkeypatch, capsys):
    # The command's main() in this process: the refusal is its one line and exit status.
    target = tmp_path / "fake"
    make(target)
    path = target if target.exists() else target.with_suffix(".npy")
    good = tmp_path / "real.npy"
    np.save(good, np.zeros((2, 9, 8, 8, 3), np.uint8))
    (tmp_path / "a_file").write_text("")  # --json a_file/x.json: its folder is a file, refused before embedding
    monkeypatch.setenv("I3D_WEIGHTS_MIRROR", str(tmp_path / "no-mirror"))
    status, _, stderr = run_main(fvd_tool.main, [str(good), str(path), "--frames", "9", "--json",
                                                 str(tmp_path / json_in / "x.json"), "--devices", "1"], capsys)
    assert status == 2, stderr[-2000:]
    assert stderr.strip().startswith("error: ") and expected in stderr
    assert len(stderr.strip().splitlines()) == 1  # and nothing was embedded before the refusal


def test_fvd_tool_names_what_a_misnamed_file_should_have_been(tmp_path, weights_cache, capsys):
    (tmp_path / "notes.npz").write_text("real videos are in /data\n")
    np.save(tmp_path / "fake.npy", np.zeros((2, 9, 8, 8, 3), np.uint8))
    status, _, stderr = run_main(fvd_tool.main, [str(tmp_path / "notes.npz"), str(tmp_path / "fake.npy")], capsys)
    assert status == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith(f"error: {tmp_path / 'notes.npz'}: not a NumPy .npz file of videos [N, T, H, W, 3] nor "
                             "statistics of --save-stats")


def test_unequal_or_small_sides_are_warned_about():
    protocol = ClipProtocol()
    assert unequal_sides_warning(2, 8).startswith("warning: the sides have 2 real and 8 fake clips")
    assert unequal_sides_warning(2048, 1900) is None
    assert sample_size_warning(protocol, "real", 2, 400).startswith("warning: real has 2 clips, fewer than")
    assert sample_size_warning(protocol, "real", 400, 400) is None


@pytest.mark.long
def test_fvd_does_not_depend_on_the_batch_size(tmp_path, weights_cache, monkeypatch, user_float32_flags, capsys):
    # Two clips per video, 5 real videos from an array and 4 fake mp4s (and one broken file): batch 1
    # embeds one clip per network call; batch 4 two videos' clips at once, and --bootstrap resamples the
    # embeddings it has (written to --json and printed).
    monkeypatch.setenv("I3D_WEIGHTS_MIRROR", str(tmp_path / "no-mirror"))
    rng = np.random.default_rng(9)
    np.save(tmp_path / "real.npy", rng.integers(0, 256, (5, 12, 24, 32, 3), dtype=np.uint8))
    for index in range(4):
        write_frames(tmp_path / "fake" / f"v{index}.mp4", rng.integers(0, 200, (12, 24, 32, 3), dtype=np.uint8))
    (tmp_path / "fake" / "broken.mp4").write_bytes(b"\x00" * 100)
    results, printed = {}, {}
    for batch, extra in ((1, []), (4, ["--bootstrap", "30", "--seed", "4"])):
        with float32_settings_at_each_convolution() as seen:
            status = fvd_tool.main([str(tmp_path / "real.npy"), str(tmp_path / "fake"), "--frames", "9",
                                    "--clips-per-video", "2", "--start", "uniform", "--devices", "1",
                                    "--accelerator", "cpu", "--batch-size", str(batch), *extra,
                                    "--json", str(tmp_path / f"{batch}.json")])
        assert status == 3  # done, but broken.mp4 was skipped
        assert seen and all(settings == IEEE for settings in seen)  # and the user's settings are back:
        assert torch.get_float32_matmul_precision() == "medium"
        results[batch] = json.loads((tmp_path / f"{batch}.json").read_text())
        printed[batch] = capsys.readouterr().out.strip().splitlines()
    assert results[1]["counts"] == results[4]["counts"] == {
        "real_clips": 10, "fake_clips": 8, "real_videos": 5, "fake_videos": 4, "real_skipped": 0, "fake_skipped": 1,
        "real_discarded": 0, "fake_discarded": 0}
    assert results[4]["fvd"] == pytest.approx(results[1]["fvd"], rel=1e-6)
    assert results[4]["kvd"] == pytest.approx(results[1]["kvd"], rel=1e-6)
    # The same from Python: fvd.run.compute is what the command runs.
    protocol = ClipProtocol(frames=9, clips_per_video=2, start="uniform")
    comparison = compute(tmp_path / "real.npy", tmp_path / "fake", protocol,
                         options=InferenceOptions(accelerator="cpu", devices=1, batch_size=2))
    assert comparison.report["counts"] == results[1]["counts"]
    assert comparison.report["fvd"] == pytest.approx(results[1]["fvd"], rel=1e-6)
    assert [video for video, _ in comparison.fake.skipped] == ["broken.mp4"]
    # --bootstrap: the resamples' spread, as bootstrap_fvd gives it on the same embeddings.
    assert "bootstrap" not in results[1]
    expected = bootstrap_fvd(comparison.real.embeddings, comparison.fake.embeddings, resamples=30, seed=4)
    assert results[4]["bootstrap"].pop("resampled") == ["real", "fake"]
    assert results[4]["bootstrap"] == pytest.approx({key: value for key, value in expected.as_dict().items()
                                                     if key != "resampled"}, rel=1e-5)
    assert printed[4][-2].startswith("FVD over 30 bootstrap resamples of real and fake: mean ")
    assert printed[4][-1].startswith("FVD: ")  # still the last line
    save_statistics(tmp_path / "stats.npz", comparison.real.statistics, comparison.description)
    with pytest.raises(UserInputError, match="both sides are statistics files"):
        compute(tmp_path / "stats.npz", tmp_path / "stats.npz", protocol, bootstrap=10)


def _two_process_fvd(rank: int, port: int, real: torch.Tensor, fake: torch.Tensor, results) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        metric = FrechetVideoDistance(source=WeightsSource(progress=False))
        metric.update(real[rank::2], real=True, embedded=True)  # each process its own share
        metric.update(fake[rank::2], real=False, embedded=True)
        results[rank] = (float(metric.compute()), metric.compute_kvd())
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_give_the_value_of_one(fvd_metric):
    rng = np.random.default_rng(7)
    real, fake = torch.from_numpy(rng.normal(0, 4, (13, 400))), torch.from_numpy(rng.normal(1, 4, (11, 400)))
    one = _filled(fvd_metric(), real, fake)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = torch.multiprocessing.Manager().dict()
    torch.multiprocessing.spawn(_two_process_fvd, args=(port, real, fake, results), nprocs=2, join=True)
    assert results[0] == results[1]
    assert results[0][0] == pytest.approx(float(one.compute()), rel=1e-12)
    assert results[0][1] == pytest.approx(one.compute_kvd(), rel=1e-12)


@pytest.mark.long
def test_fvd_tool_on_two_processes_prints_the_value_of_one(tmp_path, weights_cache, monkeypatch):
    # torchrun starts 2 processes; each embeds its share of the videos (5 real, 4 fake: unequal shares),
    # two videos per network call, against this process embedding one video per call.
    rng = np.random.default_rng(8)
    np.save(tmp_path / "real.npy", rng.integers(0, 256, (5, 9, 16, 20, 3), dtype=np.uint8))
    np.save(tmp_path / "fake.npy", rng.integers(0, 128, (4, 9, 16, 20, 3), dtype=np.uint8))
    inputs = [str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), "--frames", "9"]
    monkeypatch.setenv("I3D_WEIGHTS_MIRROR", str(tmp_path / "no-mirror"))  # this process's and torchrun's
    assert fvd_tool.main([*inputs, "--devices", "1", "--batch-size", "1", "--json", str(tmp_path / "one.json")]) == 0
    two = run_script("-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                     "-m", "i3d_lightning.commands.fvd", *inputs, "--devices", "2", "--accelerator", "cpu",
                     "--batch-size", "2", "--json", str(tmp_path / "two.json"), env={"OMP_NUM_THREADS": "1"},
                     timeout=900)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert two.stdout.count("FVD: ") == 1  # printed by rank 0 only
    results = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in ("one", "two")}
    assert results["two"]["counts"] == results["one"]["counts"] == {
        "real_clips": 5, "fake_clips": 4, "real_videos": 5, "fake_videos": 4, "real_skipped": 0, "fake_skipped": 0,
        "real_discarded": 0, "fake_discarded": 0}
    assert results["two"]["fvd"] == pytest.approx(results["one"]["fvd"], rel=1e-6)
    assert results["two"]["kvd"] == pytest.approx(results["one"]["kvd"], rel=1e-6)


def test_fvd_choices_tool_reports_each_choice_against_the_reference(weights_cache, capsys, monkeypatch):
    status, stdout, stderr = run_command("tools/benchmarks/fvd_choices.py", ["--videos", "3", "--frames", "9",
                                                                       "--size", "16"], capsys, monkeypatch)
    assert status == 0, stderr[-3000:]
    rows = {line[:52].strip(): (float(line.split()[-2]), float(line.split()[-1]))
            for line in stdout.splitlines()[1:]}
    reference = rows["reference (TF1 resize, float, unbiased, SVD roots)"]
    assert reference[1] == 0 and reference[0] > 0
    assert rows["biased covariance (divided by n)"][0] < reference[0]  # the traces shrink by (n-1)/n
    assert abs(rows["scipy.linalg.sqrtm"][1]) < 1e-3 and rows["PyTorch half-pixel bilinear resize"][1] != 0
    assert rows["StyleGAN-V's distance (biased, scipy.linalg.sqrtm)"][0] == pytest.approx(
        rows["biased covariance (divided by n)"][0], rel=1e-3)
