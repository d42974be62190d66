"""The videos a run could not read: collected from every batch and process, written as CSV."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from i3d_lightning.runtime.distributed import gather_objects

log = logging.getLogger(__name__)


class SkipReport:
    """Videos that could not be read, by video id: where and why."""

    def __init__(self, *, announce: bool = True) -> None:
        self.entries: dict[str, tuple[str, str]] = {}
        self.announce = announce  # log a warning for each video as it is skipped

    def add(self, skipped: list[tuple[str, str, str]]) -> None:
        for video_id, path, reason in skipped:
            if video_id not in self.entries and self.announce:
                log.warning("skipped unreadable video %s: %s", video_id, reason)
            self.entries[video_id] = (path, reason)

    def __len__(self) -> int:
        return len(self.entries)

    def gathered(self) -> SkipReport:
        """The videos skipped by all processes (a collective: every process must call it)."""
        report = SkipReport(announce=self.announce)
        for entries in gather_objects(self.entries):
            report.entries.update(entries)
        return report

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``video_id,path,reason`` rows (sorted) to ``path``."""
        return write_rows(Path(path), ("video_id", "path", "reason"),
                           [(video_id, *entry) for video_id, entry in sorted(self.entries.items())])


def write_rows(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> Path:
    """Write a CSV file of ``header`` and ``rows``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


