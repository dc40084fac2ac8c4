"""A results page for the documentation site, written by the job that measured it.

``--report docs/results/<name>.md`` on a producing job writes one Markdown page: its title, the
exact command, the seeds, the versions and the machine line, then the job's own tables and
plots. Plots go into ``<name>/`` beside the page, so the page's links are relative and the site
shows them. The page and its plots go through :class:`cluster.storage.Storage`, so a job on a
cluster may write them to an object store as it writes its other outputs.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from cluster.storage import Storage, as_storage
from jobs.lib.fl_results import versions

PlotWriter = Callable[[Storage], None]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> Optional[float]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def machine_line() -> str:
    """One line naming the machine a figure was measured on: CPU, cores, memory, OS."""
    memory = _memory_gib()
    parts = [_cpu_model(), f"{os.cpu_count()} cores"]
    if memory is not None:
        parts.append(f"{memory:.0f} GiB")
    parts.append(f"{platform.system()} {platform.machine()}")
    return ", ".join(parts)


def load_line() -> str:
    """The machine's load average now: timings taken beside other work read as ratios within a run."""
    try:
        one, five, fifteen = os.getloadavg()
    except (OSError, AttributeError):
        return "load average unknown"
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min)"


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; cells are written as given (format numbers before)."""
    lines = ["| " + " | ".join(str(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def command_line(argv: Optional[Sequence[str]] = None, program: Optional[str] = None) -> str:
    """The command as a user would type it again: ``python jobs/x.py --flag ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    script = program or script_path(sys.argv[0])
    return " ".join(shlex.quote(a) for a in ["python", script, *args])


def script_path(path: "str | Path") -> str:
    """A job's file as the user types it: relative to the project folder where it lies there."""
    resolved = Path(path).resolve()
    root = Path(__file__).resolve().parents[2]
    try:
        return str(resolved.relative_to(root))
    except ValueError:
        return Path(path).name


@dataclass
class ResultsPage:
    """A page in the making: sections of Markdown and the plots they show."""

    title: str
    command: str
    seeds: Sequence[int] = ()
    intro: str = ""
    sections: list[tuple[str, str]] = field(default_factory=list)
    plots: list[tuple[str, str, PlotWriter]] = field(default_factory=list)

    def add(self, heading: str, markdown: str) -> None:
        self.sections.append((heading, markdown.rstrip() + "\n"))

    def add_plot(self, filename: str, caption: str, writer: PlotWriter) -> None:
        """``writer`` draws the PNG into the Storage it is given."""
        self.plots.append((filename, caption, writer))

    def markdown(self, asset_folder: str) -> str:
        lines = [f"# {self.title}", ""]
        if self.intro:
            lines += [self.intro.strip(), ""]
        lines += ["| | |", "|---|---|", f"| command | `{self.command}` |"]
        if self.seeds:
            seeds = ", ".join(str(s) for s in self.seeds)
            lines.append(f"| seeds | {seeds} ({len(self.seeds)} {'seed' if len(self.seeds) == 1 else 'seeds'}) |")
        lines.append(f"| machine | {machine_line()} |")
        found = versions()
        software = ", ".join(f"{k} {found[k]}" for k in ("fairfleet", "python", "ray", "torch", "numpy", "faiss-cpu")
                             if k in found)
        lines.append(f"| versions | {software} |")
        lines.append(f"| written | {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} |")
        lines.append("")
        for heading, body in self.sections:
            lines += [f"## {heading}", "", body]
        for filename, caption, _ in self.plots:
            lines += [f"![{caption}]({asset_folder}/{filename})", "", f"*{caption}*", ""]
        return "\n".join(lines).rstrip() + "\n"

    def write(self, location: "Storage | str | Path") -> Storage:
        """Write the plots into ``<stem>/`` beside the page, then the page (atomically, last, so a
        page never links a plot that is missing)."""
        page = as_storage(location)
        name = page.name
        if not name.endswith(".md"):
            raise ValueError(f"{page}: a results page is a Markdown file ending in .md")
        stem = name[: -len(".md")]
        for filename, _, writer in self.plots:
            writer(page.parent / stem / filename)
        page.parent.write_text(name, self.markdown(stem))
        return page


def add_report_argument(parser) -> None:
    parser.add_argument(
        "--report", metavar="PAGE.md",
        help="also write a results page for the documentation site (e.g. docs/results/<name>.md; a local path "
             "or a storage URI), with its plots in <name>/ beside it, the command, versions and machine line",
    )
