"""The forked reader (pcipass/inventory/parallel.py): two processes reading one list of jobs from both ends.

Whatever the speeds or failures, ``join`` returns every job's result exactly once, in order. Reads here are
tagged with the pid that made them, so the tests see who read what.
"""

from __future__ import annotations

import os
import time

import pytest

import pcipass.inventory.parallel as parallel
from pcipass.inventory.parallel import ForkedReader

PARENT = os.getpid()


@pytest.fixture(autouse=True)
def single_threaded(monkeypatch):
    """The real-kernel tier boots its guests in threads while these tests run: let the reader fork anyway."""
    monkeypatch.setattr(parallel.threading, "active_count", lambda: 1)


def tagged(job):
    return (job, os.getpid())


def slow_in_child(seconds):
    def read(job):
        if os.getpid() != PARENT:
            time.sleep(seconds)
        return tagged(job)

    return read


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
    jobs = list(range(600))

    def read(job):
        time.sleep(0.0005)
        return tagged(job)

    child = ForkedReader.start(read, jobs)
    results = child.join(read)
    mine = _check(results, jobs)
    assert 0 < mine < len(jobs)  # both took part
    assert _reaped(child)


def test_the_meeting_point_follows_the_speeds():
    jobs = list(range(400))
    # A slow child: the parent reads nearly everything.
    child = ForkedReader.start(slow_in_child(0.01), jobs)
    assert _check(child.join(tagged), jobs) >= 300
    # A parent busy elsewhere first (``meanwhile``): the child has read everything by the time it looks.
    child = ForkedReader.start(tagged, jobs)
    assert _check(child.join(tagged, meanwhile=lambda: time.sleep(0.5)), jobs) == 0


@pytest.mark.parametrize("failure", ["first chunk", "garbage", "short"])
def test_whatever_the_child_does_wrong_the_parent_reads_it(monkeypatch, failure):
    jobs = list(range(300))
    done = []

    def read(job):
        if os.getpid() != PARENT:
            done.append(job)
            if failure == "first chunk" and len(done) > 30:  # it has claimed, and dies before sending
                raise RuntimeError("child failure")
            time.sleep(0.001)
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
    results = child.join(read, meanwhile=lambda: time.sleep(0.05))
    assert [job for job, _ in results] == jobs and _reaped(child)
    assert results[-1][1] == PARENT  # the child's end was read again here


def test_the_parent_does_not_wait_for_a_child_it_no_longer_needs(monkeypatch):
    """The parent read everything before the child claimed anything: it ends the child rather than wait."""
    jobs = list(range(20))
    real = parallel._read_backwards

    def late(*args):
        time.sleep(5)  # in the child
        return real(*args)

    monkeypatch.setattr(parallel, "_read_backwards", late)
    child = ForkedReader.start(tagged, jobs)
    t0 = time.monotonic()
    assert child.join(tagged) == [(j, PARENT) for j in jobs]
    assert time.monotonic() - t0 < 2 and _reaped(child)


def test_cancel_ends_the_child_and_is_idempotent():
    child = ForkedReader.start(lambda job: time.sleep(30), [1, 2])
    child.cancel()
    child.cancel()
    assert _reaped(child) and child.rfd == -1 and child.shared.closed


def test_an_interrupted_join_leaves_no_child(monkeypatch):
    jobs = list(range(100))
    child = ForkedReader.start(slow_in_child(0.01), jobs)

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
