"""The inputs a run set aside: collected from every batch and process, written as one CSV layout.

Every command lists what it skipped the same way: ``skipped_videos.csv`` (:data:`SKIPPED_VIDEOS`) in
its output or run folder, rows ``video_id,path,reason`` sorted by video id, written atomically by
:meth:`SkipReport.write` (with its header alone when nothing was skipped). ``i3d-check-videos`` writes
its failures in this layout too, and a DataModule its annotated videos missing on disk
(``missing_videos_<split>.csv``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from i3d_lightning.atomic_files import write_csv

#: The file name of the list of skipped inputs, in a command's output or run folder.
SKIPPED_VIDEOS = "skipped_videos.csv"

log = logging.getLogger(__name__)


class SkipReport:
    """Videos that could not be read, by video id: where and why."""

    def __init__(self, *, announce: bool = True) -> None:
        self.entries: dict[str, tuple[str, str]] = {}
        self.announce = announce  # log a warning for each video as it is skipped

    def add(self, skipped: list[tuple[str, str, str]]) -> None:
        """Add ``(video_id, path, reason)`` entries."""
        for video_id, path, reason in skipped:
            if video_id not in self.entries and self.announce:
                log.warning("skipped unreadable video %s: %s", video_id, reason)
            self.entries[video_id] = (path, reason)

    def __len__(self) -> int:
        return len(self.entries)

    def gathered(self) -> SkipReport:
        """The videos skipped by all processes (a collective: every process must call it)."""
        # Imported here: torch.distributed (torch itself, ~4 s) is not needed by the commands that list
        # what they skipped in one process (i3d-check-videos, i3d-extract-flow).
        from i3d_lightning.runtime.distributed import gather_objects

        report = SkipReport(announce=self.announce)
        for entries in gather_objects(self.entries):
            report.entries.update(entries)
        return report

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``video_id,path,reason`` rows (sorted), atomically."""
        return write_csv(path, ("video_id", "path", "reason"),
                         [(video_id, *entry) for video_id, entry in sorted(self.entries.items())])
