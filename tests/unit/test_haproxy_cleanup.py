"""The HAProxy clean-up ends exactly the HAProxy processes that appeared after its snapshot: a
real process whose program is named ``haproxy`` (a link to ``sleep``), and nothing older."""

import os
import subprocess
import time

from jobs.lib.haproxy_cleanup import haproxy_pids, stop_new_haproxies


def _exec_done(process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Popen returns after fork, before the child has exec'd: until then its name is Python's."""
    deadline = time.monotonic() + timeout_s
    while process.pid not in haproxy_pids() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_only_the_haproxies_started_after_the_snapshot_are_stopped(tmp_path):
    fake = tmp_path / "bin" / "haproxy"
    fake.parent.mkdir()
    os.symlink("/bin/sleep", fake)
    older = subprocess.Popen([str(fake), "60"])
    try:
        _exec_done(older)
        before = haproxy_pids()
        assert older.pid in before
        newer = subprocess.Popen([str(fake), "60"])
        _exec_done(newer)
        assert newer.pid in haproxy_pids() - before
        assert stop_new_haproxies(before) == [newer.pid]
        assert newer.wait(timeout=10) != 0  # ended by SIGTERM
        time.sleep(0.1)
        assert older.poll() is None, "a HAProxy running before the snapshot is left alone"
    finally:
        older.kill()
        older.wait()
