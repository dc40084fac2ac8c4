"""Download and verify an official GroupLens MovieLens archive into the cache.

    python jobs/download_movielens.py ml-1m [--cache-dir DIR] [--sha256 HEX | --md5 HEX]

Prints the folder that holds the files; use it as data.path.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
from typing import Optional, Sequence

from cluster.data.download import ARCHIVES, GROUPLENS_BASE_URL, fetch_movielens
from cluster.data.source import default_cache_dir
from jobs.lib.cli import run_guarded, first_paragraph


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=first_paragraph(__doc__))
    parser.add_argument("name", choices=ARCHIVES, metavar="NAME",
                        help=f"the archive, one of: {', '.join(ARCHIVES)}")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="folder the archive is kept and unpacked in (default: downloads/ in $FAIRFLEET_CACHE, "
                             "else in $XDG_CACHE_HOME/fairfleet or ~/.cache/fairfleet)")
    parser.add_argument("--base-url", default=GROUPLENS_BASE_URL,
                        help="where NAME.zip and NAME.zip.md5 are fetched from (default: %(default)s)")
    checksum = parser.add_mutually_exclusive_group()
    checksum.add_argument("--sha256", metavar="HEX",
                          help="the archive's expected SHA-256 (default: check the MD5 published beside it)")
    checksum.add_argument("--md5", metavar="HEX", help="the archive's expected MD5, instead of the published one")
    args = parser.parse_args(argv)
    folder = fetch_movielens(args.name, args.cache_dir or default_cache_dir() / "downloads",
                             base_url=args.base_url, sha256=args.sha256, md5=args.md5)
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(run_guarded(main))
