"""Dataset annotations: which videos, with which labels, in which split.

Each reader returns a :class:`VideoList`: records (video path, label index, id) and class names in
label order. Nothing here decodes video; :mod:`i3d_lightning.data.clip_dataset` does.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from i3d_lightning.errors import UserInputError
from i3d_lightning.video.decoding import VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video: ``path`` of the video file, ``label`` index, ``video_id`` for reports."""

    path: Path
    label: int
    video_id: str


@dataclass
class VideoList:
    """Records of one split and the class names (index = label)."""

    records: list[VideoRecord]
    classes: list[str]
    #: Annotated videos whose file was not found: (video id, where it was looked for).
    missing: list[tuple[str, str]] = field(default_factory=list)

    def require_videos(self, description: str) -> VideoList:
        """This list, or a one-line refusal naming ``description`` when it holds no video."""
        if not self.records:
            raise UserInputError(f"{description}: no videos found (extensions: {', '.join(VIDEO_EXTENSIONS)})"
                                 + (f" ({len(self.missing)} annotated videos are missing)" if self.missing else ""))
        return self


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise UserInputError(f"{what} not found: {path}")
    return [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


class _CaseInsensitiveFiles:
    """Finds ``folder/name`` even when the list's case differs from the disk's (UCF101's list files
    say ``HandStandPushups`` where the files say ``HandstandPushups``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._folders: dict[Path, dict[str, str]] = {}

    def find(self, relative: str) -> Path | None:
        path = self.root / relative
        if path.is_file():
            return path
        current = self.root
        for part in Path(relative).parts:
            if current not in self._folders:
                self._folders[current] = ({entry.lower(): entry for entry in os.listdir(current)}
                                          if current.is_dir() else {})
            actual = self._folders[current].get(part.lower())
            if actual is None:
                return None
            current = current / actual
        return current if current.is_file() else None


def _resolve(files: _CaseInsensitiveFiles, entries: Iterable[tuple[str, int]], classes: list[str]) -> VideoList:
    records, missing = [], []
    for relative, label in entries:
        path = files.find(relative)
        video_id = str(Path(relative).with_suffix(""))
        if path is None:
            missing.append((video_id, str(files.root / relative)))
        else:
            records.append(VideoRecord(path, label, video_id))
    return VideoList(records, classes, missing)


def ucf101(videos: str | os.PathLike, annotations: str | os.PathLike, split: int, stage: str) -> VideoList:
    """UCF101: ``videos/<Class>/v_<Class>_gXX_cYY.avi`` and the official ``ucfTrainTestlist`` files
    (``classInd.txt``, ``trainlist0N.txt``, ``testlist0N.txt``); ``stage`` is ``train`` or ``test``."""
    annotations = Path(annotations)
    classes = []
    for number, line in enumerate(_read_lines(annotations / "classInd.txt", "UCF101 class index"), 1):
        index, name = line.split(maxsplit=1)
        if int(index) != number:
            raise UserInputError(f"{annotations / 'classInd.txt'}: line {number} numbers its class {index}")
        classes.append(name)
    by_lower = {name.lower(): label for label, name in enumerate(classes)}
    list_file = annotations / f"{'train' if stage == 'train' else 'test'}list0{split}.txt"
    entries = []
    for line in _read_lines(list_file, f"UCF101 split file for split {split}"):
        relative = line.split()[0]
        class_name = Path(relative).parts[0]
        if class_name.lower() not in by_lower:
            raise UserInputError(f"{list_file}: {relative} has class {class_name!r}, which is not in classInd.txt")
        entries.append((relative, by_lower[class_name.lower()]))
    return _resolve(_CaseInsensitiveFiles(Path(videos)), entries, classes)


HMDB_TAGS = {"train": "1", "test": "2"}


def hmdb51(videos: str | os.PathLike, annotations: str | os.PathLike, split: int, stage: str) -> VideoList:
    """HMDB51: ``videos/<class>/<video>.avi`` and ``testTrainMulti_7030_splits/<class>_test_split<N>.txt``
    (lines ``<video>.avi <tag>``; tag 1 = train, 2 = test, 0 = unused). Classes in alphabetical order."""
    annotations = Path(annotations)
    split_files = sorted(annotations.glob(f"*_test_split{split}.txt"))
    if not split_files:
        raise UserInputError(f"no HMDB51 split files *_test_split{split}.txt in {annotations}")
    classes = [path.name.removesuffix(f"_test_split{split}.txt") for path in split_files]
    entries = []
    for label, (name, path) in enumerate(zip(classes, split_files, strict=True)):
        for line in _read_lines(path, "HMDB51 split file"):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise UserInputError(f"{path}: expected '<video> <0|1|2>', got {line!r}")
            if parts[1] == HMDB_TAGS[stage]:
                entries.append((f"{name}/{parts[0]}", label))
    return _resolve(_CaseInsensitiveFiles(Path(videos)), entries, classes)


def kinetics(videos: str | os.PathLike, annotation_csv: str | os.PathLike, classes: Sequence[str]) -> VideoList:
    """Kinetics: the official CSV (``label,youtube_id,time_start,time_end,split``) and clips named
    ``<youtube_id>_<start:06d>_<end:06d>.<ext>`` anywhere below ``videos`` (flat, per split, per class).

    ``classes`` fixes the label order (the checkpoints' logit order). Annotated clips without a file
    are returned in ``missing``.
    """
    annotation_csv = Path(annotation_csv)
    if not annotation_csv.is_file():
        raise UserInputError(f"Kinetics annotation file not found: {annotation_csv}")
    by_stem = _index_videos(Path(videos))
    label_of = {name: index for index, name in enumerate(classes)}
    records, missing = [], []
    with annotation_csv.open(newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        required = {"label", "youtube_id", "time_start", "time_end"}
        if reader.fieldnames is None or not required <= set(reader.fieldnames):
            raise UserInputError(f"{annotation_csv}: expected the columns {sorted(required)}, got {reader.fieldnames}")
        for row in reader:
            label = row["label"].strip()
            if label not in label_of:
                raise UserInputError(f"{annotation_csv}: label {label!r} of {row['youtube_id']} is not one of the "
                                     f"{len(classes)} Kinetics classes")
            stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
            if stem in by_stem:
                records.append(VideoRecord(by_stem[stem], label_of[label], stem))
            else:
                missing.append((stem, f"{videos}/**/{stem}.*"))
    return VideoList(records, list(classes), missing)


def _index_videos(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        raise UserInputError(f"video folder not found: {root}")
    index: dict[str, Path] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            stem, extension = os.path.splitext(name)
            if extension.lower() in VIDEO_EXTENSIONS:
                index.setdefault(stem, Path(folder) / name)
    return index


def custom(source: str | os.PathLike, classes: Sequence[str] | None = None) -> VideoList:
    """Your own videos: a folder with one subfolder per class, or a CSV/TXT list of ``path,label``
    (or ``path label``) lines, relative paths taken from the list's folder; labels are class names
    or indices. Class names default to the sorted subfolders, or the sorted names in the list."""
    source = Path(source)
    if source.is_dir():
        folders = sorted(p.name for p in source.iterdir() if p.is_dir())
        names = list(classes) if classes else folders
        label_of = {name: index for index, name in enumerate(names)}
        records = []
        for folder in folders:
            if folder not in label_of:
                raise UserInputError(f"{source / folder}: class folder not in the class list {names}")
            for path in sorted((source / folder).iterdir()):
                if path.suffix.lower() in VIDEO_EXTENSIONS:
                    records.append(VideoRecord(path, label_of[folder], f"{folder}/{path.stem}"))
        return VideoList(records, names)
    # "path,label" or "path label", split at the last comma (else white space): paths may hold spaces.
    rows = [[part.strip() for part in (line.rsplit(",", 1) if "," in line else line.rsplit(None, 1))]
            for line in _read_lines(source, "video list") if not line.startswith("#")]
    if rows and rows[0] == ["path", "label"]:
        rows = rows[1:]
    for number, row in enumerate(rows, 1):
        if len(row) != 2:
            raise UserInputError(f"{source}: entry {number} is not 'path,label': {','.join(row)!r}")
    labels = [label for _, label in rows]
    numeric = all(label.isdigit() for label in labels)
    if classes:
        names = list(classes)
    elif numeric:
        names = [str(index) for index in range(max(map(int, labels), default=-1) + 1)]
    else:
        names = sorted(set(labels))
    label_of = {name: index for index, name in enumerate(names)}
    records, missing = [], []
    for path_text, label in rows:
        index = int(label) if numeric else label_of.get(label)
        if index is None or not 0 <= index < len(names):
            raise UserInputError(f"{source}: label {label!r} of {path_text} is not one of {len(names)} classes")
        path, video_id = _list_entry(source, path_text)
        if path.is_file():
            records.append(VideoRecord(path, index, video_id))
        else:
            missing.append((video_id, str(path)))
    return VideoList(records, names, missing)


def video_files(source: str | os.PathLike) -> VideoList:
    """Unlabelled videos: every video below a folder (id = path below it without extension), one video
    file (id = its name without extension), or the paths of a ``path[,label]`` text list (relative to
    the list's folder). Labels are all 0."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(path for path in source.rglob("*") if path.suffix.lower() in VIDEO_EXTENSIONS)
        return VideoList([VideoRecord(path, 0, str(path.relative_to(source).with_suffix(""))) for path in paths], [])
    if source.is_file() and source.suffix.lower() in VIDEO_EXTENSIONS:
        return VideoList([VideoRecord(source, 0, source.stem)], [])
    try:
        lines = _read_lines(source, "video list")
    except UnicodeDecodeError:
        raise UserInputError(f"{source} is neither a folder, a video ({', '.join(VIDEO_EXTENSIONS)}) nor a text "
                             f"list of videos (one path[,label] per line)") from None
    records = []
    for line in lines:
        entry = line.split(",")[0].strip()
        if entry.startswith("#") or entry == "path":
            continue
        path, video_id = _list_entry(source, entry)
        records.append(VideoRecord(path, 0, video_id))
    return VideoList(records, [])


def _list_entry(list_file: Path, path_text: str) -> tuple[Path, str]:
    """The video path of a list entry (a relative one is taken from the list's folder) and its id
    (the path as written, without extension)."""
    path = Path(path_text) if Path(path_text).is_absolute() else list_file.parent / path_text
    return path, str(Path(path_text).with_suffix(""))
