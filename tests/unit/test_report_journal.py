"""A coordinator's journal of exposure reports: what it holds outlives its process, a live
coordinator's journal is never adopted, a dead one's is, once, without the reports it gave up, and
acknowledged files are deleted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cluster.retrieval.report_journal import ReportJournal, adopt_orphans

ROOT = Path(__file__).resolve().parents[2]


def _journal_in_a_process(folder: Path, reporter: str, hold: bool) -> subprocess.Popen:
    """A process that journals reports 0-4, gives up report 1, and then exits without closing
    anything (``hold``: stays alive, holding the journal, until killed)."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from cluster.retrieval.report_journal import ReportJournal\n"
        f"journal = ReportJournal(Path({str(folder)!r}), {reporter!r})\n"
        "for seq in range(5):\n"
        "    journal.append(seq, [float(seq), 1.0], seq + 1)\n"
        "journal.dropped(1)\n"
        "print('ready', flush=True)\n"
        f"time.sleep(3600 if {hold} else 0)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def test_a_dead_coordinators_journal_is_adopted_once_without_what_it_gave_up(tmp_path: Path):
    _journal_in_a_process(tmp_path, "dead", hold=False).wait(timeout=60)
    orphans = adopt_orphans(tmp_path, own="me")
    assert [o.reporter for o in orphans] == ["dead"]
    assert orphans[0].reports == [(0, [0.0, 1.0], 1), (2, [2.0, 1.0], 3), (3, [3.0, 1.0], 4), (4, [4.0, 1.0], 5)]
    assert adopt_orphans(tmp_path, own="me") == []  # locked by its adopter meanwhile
    orphans[0].forget()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert adopt_orphans(tmp_path, own="me") == []


def test_a_live_coordinators_journal_is_left_alone_until_its_process_dies(tmp_path: Path):
    process = _journal_in_a_process(tmp_path, "alive", hold=True)
    try:
        assert adopt_orphans(tmp_path, own="me") == []
        own = ReportJournal(tmp_path, "me")
        own.append(0, [1.0], 1)
        assert adopt_orphans(tmp_path, own="me") == []  # its own journal neither
        own.close()
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    orphans = adopt_orphans(tmp_path, own="me")
    assert [o.reporter for o in orphans] == ["alive"] and len(orphans[0].reports) == 4
    orphans[0].release()  # not sent: left for the next try
    assert [o.reporter for o in adopt_orphans(tmp_path, own="me")] == ["alive"]


def test_a_file_goes_once_every_report_in_it_is_acknowledged(tmp_path: Path):
    journal = ReportJournal(tmp_path, "me", rotate_every=3)
    for seq in range(7):  # files: 0-2, 3-5, 6
        journal.append(seq, [1.0], 1)
    files = lambda: sorted(p.name for p in tmp_path.glob("me.log.*"))  # noqa: E731
    assert files() == ["me.log.0", "me.log.1", "me.log.2"]
    journal.acknowledged_below(2)
    assert files() == ["me.log.0", "me.log.1", "me.log.2"]
    journal.acknowledged_below(4)
    assert files() == ["me.log.1", "me.log.2"]
    journal.acknowledged_below(None)
    assert files() == ["me.log.2"]  # the file being written stays
    journal.close()
    assert [o.reports for o in adopt_orphans(tmp_path, own="other")] == [[(6, [1.0], 1)]]
