"""Space held back on the data directory's disk for the writes that free space.

LMDB copies pages on write, so even a delete needs fresh pages; on a disk with no room left, deleting a
topic or trimming by retention could never commit, and the disk would stay full for good. The reserve is
a file of allocated (not sparse) space beside data.mdb: when a commit that frees space finds the disk
full, the writer gives the file up, commits, and takes back what is free again. Pages LMDB frees are
reused inside data.mdb (the file never shrinks), so produce resumes there while the disk stays full.
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

log = structlog.get_logger("tidelog.disk_reserve")

FILE_NAME = "disk-reserve"
# Never more than this share of the filesystem, so a small disk is not taken over by its own reserve.
MAX_SHARE_OF_DISK = 0.10
_CHUNK = 1 << 20


class DiskReserve:
    def __init__(self, data_dir: Path, size_bytes: int) -> None:
        self.path = data_dir / FILE_NAME
        stat = os.statvfs(data_dir)
        self.target = min(size_bytes, int(stat.f_blocks * stat.f_frsize * MAX_SHARE_OF_DISK)) // _CHUNK * _CHUNK

    @property
    def short(self) -> bool:
        return self.held < self.target

    @property
    def held(self) -> int:
        try:
            return self.path.stat().st_blocks * 512
        except FileNotFoundError:
            return 0

    def fill(self) -> int:
        """Allocate the reserve up to its size, or as much of it as the disk has free; the bytes held."""
        if self.target <= 0:
            return 0
        held = self.held
        if held >= self.target:
            return held
        with open(self.path, "ab") as file:
            length = max(held, file.seek(0, os.SEEK_END))
            while length < self.target:
                try:
                    os.posix_fallocate(file.fileno(), length, _CHUNK)
                except OSError:  # ENOSPC: keep what was allocated
                    break
                length += _CHUNK
            os.ftruncate(file.fileno(), length)
        held = self.held
        if held < self.target:
            log.warning("disk_reserve_short", path=str(self.path), held_bytes=held, target_bytes=self.target)
        return held

    def release(self) -> int:
        """Give the reserve's space back to the disk; the bytes freed."""
        held = self.held
        self.path.unlink(missing_ok=True)
        if held:
            log.warning("disk_reserve_released", path=str(self.path), freed_bytes=held)
        return held
