"""Reading a large host's devices in two processes that meet wherever their speeds take them.

Why a process and not threads: reading sysfs from Python is interpreter time between short syscalls, so
threads would take turns on the GIL; a forked child has its own interpreter, and sends its rows back through
a pipe with marshal (C; rows are plain values). This is what brings ``list`` on a large host near lspci
(issue #2, bench/run.py).

Why meeting rather than halves: the two do not start together (the child of a reading begun at process start
reads while the CLI is still being imported, cli/startup.py; a scan's child while the parent reads the host
tables), and the two vCPUs of the machines this was measured on run at different speeds from one moment to the
next. So the child reads from the end and the parent from the start, a chunk at a time; each publishes in a shared
page how far it has claimed and claims only short of the other's claim. Neither stops before reaching the
other's claim, so nothing is left out; at worst the chunk both claimed at the same moment is read twice.
Anything going wrong on the child's side (no fork, a signal, an exception, short data) makes the parent read
what the child had claimed, so the result never depends on the child.
"""

from __future__ import annotations

import gc
import marshal
import mmap
import os
import signal
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

# How many jobs each process claims at a time: the two meet within a chunk of each other, and claiming (two
# 8-byte accesses to the shared page) is nothing next to reading 64 devices.
CHUNK = 64
_POSITION = struct.Struct("=q")
_PARENT_AT = 0  # the parent has claimed jobs[:value]
_CHILD_AT = _POSITION.size  # the child has claimed jobs[value:]


def can_fork() -> bool:
    """Only from a single-threaded process with a second CPU: a child forked while another thread holds a lock
    it needs would wait forever (and the parent with it, reading the pipe); Python 3.12+ warns about exactly
    that."""
    return hasattr(os, "fork") and (os.cpu_count() or 1) >= 2 and threading.active_count() == 1


class ForkedReader:
    """A forked child calling ``read(job)`` on ``jobs`` from the end while this process goes from the start
    (``join``): every job's result, in order. ``cancel`` ends the child."""

    def __init__(
        self, pid: int, rfd: int, shared: mmap.mmap, jobs: Sequence[object], receive: Callable[[Any], Any] | None
    ) -> None:
        self.pid = pid
        self.rfd = rfd
        self.shared = shared
        self.jobs = jobs
        self.receive = receive
        self.reaped = False

    @classmethod
    def start(
        cls,
        read: Callable[[Any], object],
        jobs: Sequence[Any],
        send: Callable[[Any], Any] | None = None,
        receive: Callable[[Any], Any] | None = None,
    ) -> ForkedReader | None:
        """The child, forked and reading; None when it cannot be (``can_fork``, or a failed pipe or fork).
        ``send``: what the child sends of each result, when marshal is cheaper on another form of it;
        ``receive``: the result again, from what was sent."""
        if not can_fork():
            return None
        try:
            shared = mmap.mmap(-1, 2 * _POSITION.size)  # anonymous and shared: both processes see one page
        except OSError:
            return None
        _POSITION.pack_into(shared, _PARENT_AT, 0)
        _POSITION.pack_into(shared, _CHILD_AT, len(jobs))
        try:
            rfd, wfd = os.pipe()
        except OSError:
            shared.close()
            return None
        try:
            pid = os.fork()
        except OSError:
            os.close(rfd)
            os.close(wfd)
            shared.close()
            return None
        if pid == 0:  # the child: read, send, and leave without running any of the parent's exit handlers
            status = 1
            try:
                # No collections in the child: a collection writes to every tracked object's header, which
                # would copy the parent's whole heap page by page (copy-on-write) for a process living 0.1 s.
                gc.disable()
                os.close(rfd)
                child_read = read if send is None else lambda job: send(read(job))
                view = memoryview(marshal.dumps(_read_backwards(child_read, jobs, shared)))
                while view:
                    view = view[os.write(wfd, view) :]
                status = 0
            finally:
                os._exit(status)
        os.close(wfd)
        return cls(pid, rfd, shared, jobs, receive)

    def join(self, read: Callable[[Any], object], meanwhile: Callable[[], object] = lambda: None) -> list:
        """``meanwhile()`` (other work the caller needs), then ``read`` from the start up to the child's claim,
        then the child's results: every job's, in order."""
        jobs, shared = self.jobs, self.shared
        count = len(jobs)
        try:
            meanwhile()
            results: list = []
            end = 0
            while True:
                theirs = _POSITION.unpack_from(shared, _CHILD_AT)[0]
                if end >= theirs:
                    break
                stop = min(end + CHUNK, theirs)
                _POSITION.pack_into(shared, _PARENT_AT, stop)
                results += [read(job) for job in jobs[end:stop]]
                end = stop
            if end == count:
                return results  # all read here: nothing to wait for (``finally`` ends the child)
            with os.fdopen(self.rfd, "rb", closefd=False) as pipe:
                data = pipe.read()
            _, status = os.waitpid(self.pid, 0)
            self.reaped = True
        finally:
            self.cancel()  # interrupted: do not leave the child behind; else it only releases what is left
        theirs_results = _results_for(data if status == 0 else b"", count, end)
        if theirs_results is None:
            return results + [read(job) for job in jobs[end:]]
        if self.receive is not None:
            theirs_results = [self.receive(r) for r in theirs_results]
        return results + theirs_results

    def cancel(self) -> None:
        """End the child (if ``join`` has not reaped it) and release the pipe and the shared page; idempotent."""
        if not self.reaped:
            self.reaped = True
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
        if self.rfd >= 0:
            os.close(self.rfd)
            self.rfd = -1
        if not self.shared.closed:
            self.shared.close()


def _read_backwards(read: Callable[[Any], object], jobs: Sequence[Any], shared: mmap.mmap) -> tuple:
    """The child's part: from the end, a chunk at a time, until it reaches the parent's claim. Returns (where
    it stopped, the results from there on, in order)."""
    chunks = []
    end = len(jobs)
    while True:
        theirs = _POSITION.unpack_from(shared, _PARENT_AT)[0]
        if end <= theirs:
            break
        start = max(end - CHUNK, theirs)
        _POSITION.pack_into(shared, _CHILD_AT, start)
        chunks.append([read(job) for job in jobs[start:end]])
        end = start
    chunks.reverse()
    return end, [result for chunk in chunks for result in chunk]


def _results_for(data: bytes, count: int, end: int) -> list | None:
    """The child's results for jobs[end:count], from what it sent; None if that is not what it sent."""
    try:
        start, results = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    if type(start) is not int or not 0 <= start <= end or not isinstance(results, list):
        return None
    if len(results) != count - start:
        return None
    return results[end - start :]
