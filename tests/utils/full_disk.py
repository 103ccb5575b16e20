"""A full (or read-only) disk for the writers of ``dassl.utils.atomic_io``, without filling one."""
import errno
import io

from dassl.utils import atomic_io


class FullDisk(io.RawIOBase):
    """A file on a disk with ``room`` bytes left: a write past them fails with ENOSPC, as the kernel's."""

    def __init__(self, room: int) -> None:
        self.room = room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return len(data)


def fill_disk(monkeypatch, room: int) -> None:
    """Every atomic write from now on finds only ``room`` bytes free (its temporary file exists)."""

    def open_new(path):
        open(path, "wb").close()
        return FullDisk(room)

    monkeypatch.setattr(atomic_io, "_open_new", open_new)


def make_read_only(monkeypatch) -> None:
    """Every atomic write from now on finds a read-only file system."""

    def open_new(path):
        raise OSError(errno.EROFS, "Read-only file system", path)

    monkeypatch.setattr(atomic_io, "_open_new", open_new)
