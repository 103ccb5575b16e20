"""Fetch one file: resumable HTTP (Range), Google Drive through gdown, checksum verification.

A download is written to ``<target>.part`` and renamed to ``<target>`` only once it is
complete and verified, so a file under its final name is always a whole, checked file. A
killed download leaves the ``.part`` file, and the next run asks the server for the rest
(HTTP ``Range``); a connection cut mid-stream is resumed the same way, a few times, within
the same run. A verified file gets a small ``.<name>.verified`` record (size, mtime, md5),
so it is neither fetched nor hashed again.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from typing import Callable, Optional

import requests

CHUNK = 1 << 20  # hashing
STREAM_CHUNK = 1 << 15  # small: a cut connection loses at most this much of what it received
CONNECT_TIMEOUT_S = 15
READ_TIMEOUT_S = 60
RESUME_TRIES = 5  # reconnections after a connection cut mid-stream, within one run
USER_AGENT = "sempt-tools-data/1 (python-requests)"
# Bytes as stored: a transfer encoding would change what the checksum sees and what Range counts.
HEADERS = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}

Progress = Callable[[int, Optional[int]], None]  # (bytes so far, total or None)

# Set on Ctrl-C: running downloads stop at their next chunk, keeping their .part files.
CANCEL = threading.Event()


class FetchError(RuntimeError):
    """A file could not be fetched or failed its check; the message says why and what to do."""


def md5_of(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------ verification records
def _record_path(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.verified")


def write_record(path: str, md5: str, fetched_from: str) -> None:
    st = os.stat(path)
    record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": md5, "fetched_from": fetched_from}
    tmp = _record_path(path) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, _record_path(path))


def read_record(path: str) -> Optional[dict]:
    """The verification record of ``path`` if it still describes the file on disk."""
    try:
        with open(_record_path(path)) as f:
            record = json.load(f)
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if record.get("size") != st.st_size or record.get("mtime_ns") != st.st_mtime_ns:
        return None
    return record


def remove_with_record(path: str) -> None:
    for p in (path, _record_path(path)):
        if os.path.exists(p):
            os.remove(p)


def verify(path: str, md5: Optional[str], is_split_file: bool = False, name: str = "") -> str:
    """Check ``path`` against ``md5`` (and a split file's structure); its md5. Raises FetchError
    naming ``name`` (default: the path)."""
    name = name or path
    record = read_record(path)
    actual = record["md5"] if record else md5_of(path)
    if md5 and actual != md5:
        raise FetchError(f"checksum mismatch for {name}: md5 {actual}, expected {md5}")
    if is_split_file:
        try:
            with open(path) as f:
                split = json.load(f)
            ok = isinstance(split, dict) and all(k in split for k in ("train", "val", "test"))
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise FetchError(f"{name} is not a CoOp split file (a JSON object with train, val and test)")
    return actual


# ------------------------------------------------------------------------------- HTTP
def remote_size(url: str, session: Optional[requests.Session] = None) -> Optional[int]:
    """The Content-Length a server announces for ``url``; None when it does not say or cannot be asked."""
    session = session or requests.Session()
    try:
        response = session.head(url, allow_redirects=True, timeout=CONNECT_TIMEOUT_S, headers=HEADERS)
        if response.status_code >= 400:
            return None
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None
    except requests.RequestException:
        return None


def _total_from(response: requests.Response, offset: int) -> Optional[int]:
    if response.status_code == 206:
        content_range = response.headers.get("Content-Range", "")  # bytes a-b/total
        total = content_range.rsplit("/", 1)[-1]
        return int(total) if total.isdigit() else None
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def http_download(url: str, part: str, progress: Optional[Progress] = None,
                  session: Optional[requests.Session] = None) -> None:
    """Download ``url`` into ``part``, continuing what ``part`` already holds (HTTP Range).

    Returns when the server's whole file is in ``part``; raises FetchError otherwise (the
    bytes received so far are kept for the next run). A connection cut mid-stream is
    resumed up to RESUME_TRIES times; a server that cannot be reached fails at once.
    """
    session = session or requests.Session()
    cuts = 0
    while True:
        offset = os.path.getsize(part) if os.path.exists(part) else 0
        headers = dict(HEADERS, **({"Range": f"bytes={offset}-"} if offset else {}))
        try:
            response = session.get(url, headers=headers, stream=True, allow_redirects=True,
                                   timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        except requests.RequestException as err:
            raise FetchError(f"cannot download {url}: {_short(err)}" + _kept(part)) from None
        with response:
            if response.status_code == 416 and offset:
                # Nothing left to send: the part file may already hold the whole file.
                total = response.headers.get("Content-Range", "").rsplit("/", 1)[-1]
                if total.isdigit() and int(total) == offset:
                    return
                os.remove(part)  # larger than the server's file: start again
                continue
            if response.status_code >= 400:
                raise FetchError(f"HTTP {response.status_code} {response.reason} from {url}" + _kept(part))
            if response.status_code != 206:
                offset = 0  # a whole file (the server ignores Range, or none was asked)
            total = _total_from(response, offset)
            received = offset
            try:
                with open(part, "ab" if offset else "wb") as f:
                    if progress:
                        progress(received, total)
                    for chunk in response.iter_content(STREAM_CHUNK):
                        if CANCEL.is_set():
                            raise FetchError(f"interrupted; {received} bytes kept in {part}, the next run resumes")
                        f.write(chunk)
                        received += len(chunk)
                        if progress:
                            progress(received, total)
                    f.flush()
                    os.fsync(f.fileno())
                if total is not None and received < total:
                    raise requests.ConnectionError(f"connection closed after {received} of {total} bytes")
                return
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
                cuts += 1
                if cuts > RESUME_TRIES:
                    raise FetchError(f"cannot download {url}: the connection broke {cuts} times, "
                                     f"last: {_short(err)}" + _kept(part)) from None
                time.sleep(min(2 ** cuts, 30) * 0.05)


def _kept(part: str) -> str:
    have = os.path.getsize(part) if os.path.exists(part) else 0
    return f" ({have} bytes kept in {part}; the next run resumes)" if have else ""


def _short(err: BaseException) -> str:
    text = str(err)
    for marker in ("Failed to establish a new connection", "Name or service not known",
                   "Connection refused", "Temporary failure in name resolution", "Read timed out"):
        if marker in text:
            return marker + " (is the network available?)"
    return text.splitlines()[0][:300] if text else type(err).__name__


def drive_download(drive_id: str, part: str) -> None:
    """Download a Google Drive file with gdown (which answers Drive's confirmation page) into ``part``."""
    import gdown

    try:
        result = gdown.download(id=drive_id, output=part, quiet=True, resume=True)
    except Exception as err:  # gdown raises many types; all mean "not fetched"
        raise FetchError(f"cannot download Google Drive file {drive_id}: {type(err).__name__}: {_short(err)}") from None
    if not result or not os.path.isfile(part):
        raise FetchError(f"cannot download Google Drive file {drive_id}: gdown returned no file")
