"""The forked reader (pcipass/inventory/parallel.py): two processes reading one list of jobs from both ends.

Whatever the speeds or failures, ``join`` returns every job's result exactly once, in order. Reads here are
tagged with the pid that made them, so the tests see who read what. The two processes are put in the order a
test needs with events shared across the fork (``EVENTS``), never with sleeps or timing windows; a wait that
times out fails the test instead of hanging it.
"""

from __future__ import annotations

import multiprocessing
import os

import pytest

import pcipass.inventory.parallel as parallel
from pcipass.inventory.parallel import ForkedReader

PARENT = os.getpid()
EVENTS = multiprocessing.get_context("fork")
WAIT = 60  # seconds: only ever reached when the reader is broken


@pytest.fixture(autouse=True)
def single_threaded(monkeypatch):
    """The real-kernel tier boots its guests in threads while these tests run: let the reader fork anyway."""
    monkeypatch.setattr(parallel.threading, "active_count", lambda: 1)


def tagged(job):
    return (job, os.getpid())


def in_child() -> bool:
    return os.getpid() != PARENT


def wait(event) -> None:
    assert event.wait(WAIT), "the other process never got there"


def _check(results, jobs):
    """Every job once, in order; the parent's results first, then the child's. Returns the parent's count."""
    assert [job for job, _ in results] == list(jobs)
    pids = [pid for _, pid in results]
    mine = pids.count(PARENT)
    assert pids[:mine] == [PARENT] * mine and PARENT not in pids[mine:]
    return mine


def _reaped(child: ForkedReader) -> bool:
    try:
        os.waitpid(child.pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_both_read_and_meet():
    """Each process's first read waits for the other's: both have claimed a chunk, and both take part."""
    jobs = list(range(600))
    parent_reads, child_reads = EVENTS.Event(), EVENTS.Event()

    def read(job):
        mine, theirs = (child_reads, parent_reads) if in_child() else (parent_reads, child_reads)
        mine.set()
        wait(theirs)
        return tagged(job)

    child = ForkedReader.start(read, jobs)
    results = child.join(read)
    mine = _check(results, jobs)
    assert parallel.CHUNK <= mine <= len(jobs) - parallel.CHUNK  # both took part
    assert _reaped(child)


def test_the_meeting_point_follows_the_speeds():
    jobs = list(range(400))
    # A child stuck in its first read (its first chunk claimed) until the parent has read 300 jobs: the parent
    # reads all it can reach.
    child_claimed, far_enough = EVENTS.Event(), EVENTS.Event()

    def parent_ahead(job):
        if in_child():
            child_claimed.set()
            wait(far_enough)
        elif job == 299:
            far_enough.set()
        return tagged(job)

    child = ForkedReader.start(parent_ahead, jobs)
    mine = _check(child.join(parent_ahead, meanwhile=lambda: wait(child_claimed)), jobs)
    assert 300 <= mine <= len(jobs) - parallel.CHUNK  # job 299 is the parent's: it let the child go on
    # A parent busy elsewhere first (``meanwhile``) until the child has read the first job (it reads from the
    # end): the child has read everything by the time the parent looks.
    all_read = EVENTS.Event()

    def child_ahead(job):
        if in_child() and job == 0:
            all_read.set()
        return tagged(job)

    child = ForkedReader.start(child_ahead, jobs)
    assert _check(child.join(child_ahead, meanwhile=lambda: wait(all_read)), jobs) == 0


@pytest.mark.parametrize("failure", ["first chunk", "garbage", "short"])
def test_whatever_the_child_does_wrong_the_parent_reads_it(monkeypatch, failure):
    """The parent starts reading only once the child has read (``meanwhile``), so the child has claimed jobs
    whose results it then fails to deliver: the parent reads them itself."""
    jobs = list(range(300))
    child_read = EVENTS.Event()
    done = []

    def read(job):
        if in_child():
            done.append(job)
            child_read.set()
            if failure == "first chunk" and len(done) > 30:  # it has claimed, and dies before sending
                raise RuntimeError("child failure")
        return tagged(job)

    if failure != "first chunk":
        real = parallel.marshal.dumps
        # In the child only (the patched module is inherited by the fork): what it sends is not what it read.
        monkeypatch.setattr(
            parallel.marshal,
            "dumps",
            lambda value: b"\x00garbage" if failure == "garbage" else real((value[0], value[1][:-1])),
        )
    child = ForkedReader.start(read, jobs)
    results = child.join(read, meanwhile=lambda: wait(child_read))
    assert [job for job, _ in results] == jobs and _reaped(child)
    assert results[-1][1] == PARENT  # the child's end was read again here


def test_the_parent_does_not_wait_for_a_child_it_no_longer_needs(monkeypatch, tmp_path):
    """The parent read everything before the child claimed anything: it ends the child rather than wait. The
    child, held before its first claim, would leave a mark once let go; none is there after the join."""
    jobs = list(range(20))
    real = parallel._read_backwards
    never = EVENTS.Event()
    mark = tmp_path / "child-went-on"

    def late(*args):
        never.wait(WAIT)  # in the child: held until killed (or, were the parent waiting, until WAIT)
        mark.touch()
        return real(*args)

    monkeypatch.setattr(parallel, "_read_backwards", late)
    child = ForkedReader.start(tagged, jobs)
    assert child.join(tagged) == [(j, PARENT) for j in jobs]
    assert _reaped(child) and not mark.exists()


def test_cancel_ends_the_child_and_is_idempotent():
    never = EVENTS.Event()
    child = ForkedReader.start(lambda job: never.wait(WAIT), [1, 2])
    child.cancel()
    child.cancel()
    assert _reaped(child) and child.rfd == -1 and child.shared.closed


def test_an_interrupted_join_leaves_no_child(monkeypatch):
    jobs = list(range(100))
    never = EVENTS.Event()
    child = ForkedReader.start(lambda job: never.wait(WAIT) if in_child() else tagged(job), jobs)

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        child.join(tagged, meanwhile=interrupted)
    assert _reaped(child)


def test_no_fork_without_a_second_cpu_or_with_threads(monkeypatch):
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 1)
    assert ForkedReader.start(tagged, [1]) is None
    monkeypatch.undo()
    monkeypatch.setattr(parallel.threading, "active_count", lambda: 2)
    assert ForkedReader.start(tagged, [1]) is None
