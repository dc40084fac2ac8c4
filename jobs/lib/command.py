"""The ``fairfleet`` command: every job under one name, ``fairfleet <command> [its arguments]``.

``fairfleet <command> ...`` runs the same ``main`` as ``python jobs/<module>.py ...``, with the
same arguments and exit codes (2 for bad input, with its message and no traceback). Job modules
are imported only when their command runs, so ``fairfleet --help`` starts no Ray and loads no
model code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Optional, Sequence

from jobs.lib.commands import COMMANDS, EXAMPLES, GROUPS, Command

PROG = "fairfleet"
EXIT_BAD_INPUT = 2  # the value of jobs.lib.cli.EXIT_BAD_INPUT, which imports the data and storage code
SERVE_SUMMARY = "serve the fair retriever over HTTP with Ray Serve (serve run on a Serve config)"
SERVE_CONFIG = "configs/serve/retriever_synthetic.yaml"
HELP = ("-h", "--help")


def _table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(f"  {name:<{width}}{text}" for name, text in rows)


def _top_level() -> list[Command]:
    return [c for c in COMMANDS if " " not in c.name]


def _group(group: str) -> list[Command]:
    return [c for c in COMMANDS if c.name.startswith(group + " ")]


def _command_names() -> list[str]:
    return [c.name for c in _top_level()] + list(GROUPS) + ["serve"]


def _parser() -> argparse.ArgumentParser:
    rows = [(c.name, c.summary) for c in _top_level()]
    for group in GROUPS:
        rows += [(c.name, c.summary) for c in _group(group)]
    rows.append(("serve", SERVE_SUMMARY))
    examples = "\n".join(f"  {line}\n      {what}" for line, what in EXAMPLES)
    parser = argparse.ArgumentParser(
        prog=PROG, usage=f"{PROG} [-h] [--version] COMMAND [ARGS ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="FairFleet simulates fair federated recommendation on Ray actors; each command below\n"
                    "runs one of its jobs.\n\ncommands:\n" + _table(rows),
        epilog=f"smallest useful settings:\n{examples}\n\n"
               f"Every argument after COMMAND goes to the command: '{PROG} COMMAND --help' lists its options.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    return parser


def _group_parser(group: str) -> argparse.ArgumentParser:
    members = _group(group)
    return argparse.ArgumentParser(
        prog=f"{PROG} {group}", usage=f"{PROG} {group} [-h] NAME [ARGS ...]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"{GROUPS[group][0].upper()}{GROUPS[group][1:]}: each command below runs one.\n\n"
                    f"{group} commands:\n"
                    + _table([(c.name.split(" ", 1)[1], c.summary) for c in members]),
        epilog=f"Every argument after NAME goes to the benchmark: '{PROG} {group} NAME --help' lists its options.",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fairfleet")
    except PackageNotFoundError:
        return "(not installed)"


def _unknown(what: str, name: str, names: Sequence[str], where: str) -> int:
    print(f"{PROG}: unknown {what} {name!r}; choose one of: {', '.join(names)} ('{where} --help' says what each "
          f"does)", file=sys.stderr)
    return EXIT_BAD_INPUT


def run_command(command: Command, argv: Sequence[str]) -> int:
    """``jobs.<module>.main(argv)`` as ``python jobs/<module>.py`` runs it, its help and messages
    naming ``fairfleet <command>``."""
    from jobs.lib.cli import run_guarded

    module = importlib.import_module(f"jobs.{command.module}")
    saved = sys.argv
    # argparse names the program after sys.argv[0], and a job's parser is built inside main.
    sys.argv = [f"{PROG} {command.name}", *argv]
    try:
        code = run_guarded(module.main, list(argv))
    finally:
        sys.argv = saved
    return 0 if code is None else code


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        _parser().print_help()
        return EXIT_BAD_INPUT
    head, rest = args[0], args[1:]
    if head.startswith("-"):
        _parser().parse_args([head])  # --help and --version exit here; any other option is an error
    if head == "serve":
        return serve(rest)
    if head in GROUPS:
        if not rest or rest[0] in HELP:
            _group_parser(head).print_help()
            return 0 if rest else EXIT_BAD_INPUT
        by_name = {c.name.split(" ", 1)[1]: c for c in _group(head)}
        if rest[0] not in by_name:
            return _unknown(f"{head} command", rest[0], list(by_name), f"{PROG} {head}")
        return run_command(by_name[rest[0]], rest[1:])
    by_name = {c.name: c for c in _top_level()}
    if head not in by_name:
        return _unknown("command", head, _command_names(), PROG)
    return run_command(by_name[head], rest)


# --------------------------------------------------------------------------- serve
def packaged_serve_config() -> Path:
    from configs.loader import CONFIG_DIR

    return CONFIG_DIR / "serve" / Path(SERVE_CONFIG).name


def _serve_help(run) -> str:
    import shutil
    import textwrap

    ctx = run.make_context(f"{PROG} serve", [], resilient_parsing=True)
    formatter = ctx.make_formatter()
    run.format_options(ctx, formatter)
    width = min(shutil.get_terminal_size().columns, 100) - 2
    paragraphs = [
        "Serve the fair retriever over HTTP: Ray Serve's 'serve run' on a Serve config, which blocks and streams "
        "the replicas' logs until Ctrl-C.",
        f"CONFIG is a Ray Serve config file (default: the packaged {SERVE_CONFIG}, HTTP on 127.0.0.1:8000). A "
        "relative path not in the current directory is read from the project folder, as --config of the other "
        "commands is; a value that names no .yaml file goes to 'serve run' as an import path. Every other "
        "argument goes to 'serve run':",
    ]
    text = "\n\n".join(textwrap.fill(p, width) for p in paragraphs)
    return f"usage: {PROG} serve [-h] [CONFIG] [OPTIONS ...]\n\n{text}\n\n{formatter.getvalue()}"


def serve(argv: Sequence[str]) -> int:
    """``serve run`` on CONFIG (the packaged synthetic retriever by default), in this process."""
    from ray.serve.scripts import run

    args = list(argv)
    before_separator = args[: args.index("--")] if "--" in args else args
    if any(a in HELP for a in before_separator):
        print(_serve_help(run), end="")
        return 0
    # Parsing as 'serve run' does finds CONFIG wherever it stands among the options.
    ctx = run.make_context(f"{PROG} serve", list(args), resilient_parsing=True)
    given = ctx.params.get("config_or_import_path")
    if given is None:
        args.insert(0, str(packaged_serve_config()))
    elif given.endswith((".yaml", ".yml")):
        from configs.loader import PROJECT_DIR, find_config

        found = find_config(given)
        if not found.is_file():
            tried = given if Path(given).is_absolute() else f"{Path.cwd() / given} and {PROJECT_DIR / given}"
            print(f"{PROG} serve: {given}: Serve config not found (looked for {tried})", file=sys.stderr)
            return EXIT_BAD_INPUT
        args[args.index(given)] = str(found)
    try:
        run.main(args=args, prog_name=f"{PROG} serve", standalone_mode=True)
    except SystemExit as stopped:
        code = stopped.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0
