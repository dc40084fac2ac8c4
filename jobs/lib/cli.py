"""Shared command-line handling: --config / --set parsing and exit codes for bad input."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from cluster.checkpoint import CheckpointError
from cluster.data.download import DownloadError
from cluster.data.errors import DataFormatError
from cluster.storage import StorageError
from configs import ConfigError, SimConfig, load_config
from configs.loader import preset_paths

EXIT_BAD_INPUT = 2
EXIT_RUN_LOST = 3  # the run stopped part-way; its checkpoint lets --resume continue it


def first_paragraph(doc: str) -> str:
    """A module docstring's first paragraph as one line: the sentence --help opens with."""
    return " ".join(doc.strip().split("\n\n")[0].split())


CONFIG_HELP = (
    "YAML config file (default: %(default)s; the presets in configs/: {presets}, each NAME.yaml). A relative "
    "path not in the current directory is read from the project folder, as is a relative data.path in a preset; "
    "paths given with --set, and storage, stay relative to the current directory."
)


def config_parser(description: str, default_config: Optional[str] = "configs/demo.yaml") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    names = [p.stem for p in preset_paths()]
    presets = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)
    parser.add_argument("--config", default=default_config, help=CONFIG_HELP.format(presets=presets))
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one setting, e.g. --set fl.rounds=5 (repeatable; the value is YAML)",
    )
    return parser


def add_storage_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage", "--output-dir", dest="storage", metavar="LOCATION",
        help="where every file goes (overrides the config's storage): a local path, an NFS mount, or a URI such "
             "as s3://bucket/prefix?endpoint_override=host:port&region=... or gs://bucket/prefix; a cluster of "
             "more than one node needs one that every node reaches",
    )


def add_catalogue_arguments(parser: argparse.ArgumentParser, queries: int) -> None:
    """The synthetic retrieval catalogue and query set the retrieval benchmarks share."""
    parser.add_argument("--items", type=int, default=1_000_000, help="items in the catalogue (default: %(default)s)")
    parser.add_argument("--dim", type=int, default=64, help="embedding dimension (default: %(default)s)")
    parser.add_argument("--shards", type=int, default=4,
                        help="shards the catalogue is split into (default: %(default)s)")
    parser.add_argument("--users", type=int, default=10_000, help="synthetic users, one query vector each "
                                                                  "(default: %(default)s)")
    parser.add_argument("--k", type=int, default=10, help="items returned per query, K (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=queries,
                        help="query vectors searched per in-process measurement (default: %(default)s)")


def with_storage(cfg: SimConfig, storage: Optional[str]) -> SimConfig:
    return cfg.model_copy(update={"storage": storage}) if storage else cfg


def load_or_exit(args: argparse.Namespace) -> SimConfig:
    try:
        return load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None


def run_guarded(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None) -> int:
    """Bad input a user can fix exits 2 with its message, not a traceback."""
    try:
        return main(argv)
    except (ConfigError, DataFormatError, DownloadError, StorageError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
