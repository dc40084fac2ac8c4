"""Write the documentation site's Reference pages from the code itself: every config key from the
pydantic models (``configs/``) and every command's options from its own parser
(``jobs/lib/commands.py``), so the pages cannot drift from what the program accepts.

    python -m jobs.lib.reference_pages [--out docs/reference] [--check]

``--check`` writes nothing: it exits 1, naming the stale pages, when the pages in the folder
differ from what it would write.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import json
import os
import re
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Iterator, Literal, Optional, Sequence, Union, get_args, get_origin

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from cluster.atomic import atomic_path
from configs.base import _location
from configs.fl_schema import BARE_NAME_KEYS
from configs.presets import OPTIMIZATION_PRESETS
from configs.schema import SimConfig
from jobs.lib.commands import COMMANDS, Command

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "docs" / "reference"
REGENERATE = "python -m jobs.lib.reference_pages"
HELP_COLUMNS = 100  # the width every --help is formatted at, whatever the terminal
INLINE_DEFAULT_CHARS = 60  # a longer default is shown as YAML below its table
LIST_ITEM = "<n>"  # a list entry's place in a dotted key, as ``--set tiers.profiles.0.share=2`` fills it
TAG = "kind"  # the field that tells the members of a tagged union apart


# --------------------------------------------------------------------------- config.md
CONFIG_INTRO = """\
# Configuration reference

Every job reads one configuration: a YAML file given with `--config`, laid over the defaults below,
then `--set KEY=VALUE` overrides applied in order (`--set fl.rounds=5`; a list entry by its index:
`--set tiers.profiles.0.share=2`). An unknown key is an error, never ignored.

The retrieval presets (`configs/retrieval_*.yaml`) are configuration files of the same shape: the
fair retriever reads their `retrieval` section, and the run that trains its vectors the rest.

A section that is a tagged union (its `kind` picks a member) lists each kind with the keys that
kind accepts; a key of another kind is an error.
"""


def _markdown(text: str) -> str:
    """Prose as Markdown on one line: reST literals as code; outside code, ``<`` and ``*`` escaped
    so that ``<name>`` is no HTML tag and ``T*K`` no emphasis."""
    parts = " ".join(text.split()).replace("``", "`").split("`")
    for i in range(0, len(parts), 2):  # even parts lie outside code spans
        parts[i] = re.sub(r"<(?=[A-Za-z/!?])", "&lt;", parts[i]).replace("*", "\\*")
    return "`".join(parts)


def _clean(text: str) -> str:
    """One Markdown table cell: no line breaks, no pipes."""
    return _markdown(text).replace("|", "\\|")


def _paragraphs(doc: Optional[str]) -> list[str]:
    """A docstring as Markdown paragraphs, each on one line."""
    if not doc:
        return []
    return [_markdown(p) for p in inspect.cleandoc(doc).split("\n\n")
            if p.strip() and not p.lstrip().startswith(("Attributes:", ":ivar "))]


def _own_doc(cls: type) -> Optional[str]:
    return cls.__dict__.get("__doc__")


_ATTRIBUTE_LINE = re.compile(r"^\s*(?::ivar\s+)?`{0,2}(\w+)`{0,2}\s*(?:\([^)]*\))?\s*:\s*(.+)$")


def _docstring_attributes(cls: type) -> dict[str, str]:
    """``name: text`` lines of a Google-style ``Attributes:`` block, or ``:ivar name: text``
    lines, in the class's own docstring; a deeper-indented line continues the one above."""
    doc = _own_doc(cls)
    if not doc:
        return {}
    found: dict[str, str] = {}
    lines = inspect.cleandoc(doc).splitlines()
    in_block, current, indent = False, None, 0
    for line in lines:
        stripped = line.strip()
        if stripped.startswith(":ivar "):
            match = _ATTRIBUTE_LINE.match(stripped)
            if match:
                found[match.group(1)] = match.group(2)
            continue
        if stripped in ("Attributes:", "Attributes"):
            in_block, current = True, None
            continue
        if not in_block:
            continue
        if not stripped:
            current = None
            continue
        this_indent = len(line) - len(line.lstrip())
        if current is not None and this_indent > indent:
            found[current] += " " + stripped
            continue
        match = _ATTRIBUTE_LINE.match(line)
        if match is None or (current is None and found and this_indent < indent):
            in_block = False
            continue
        current, indent = match.group(1), this_indent
        found[current] = match.group(2)
    return found


def _description(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    """The field's own description, else its line in the docstring of the class that declares it."""
    if field.description:
        return field.description
    return _docstring_attributes(_declaring(model, name)).get(name, "")


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _strip(annotation: Any) -> tuple[Any, list]:
    """The type under ``Annotated[...]`` and the metadata that wrapped it."""
    metadata: list = []
    while get_origin(annotation) is Annotated:
        annotation, *more = get_args(annotation)
        metadata.extend(more)
    return annotation, metadata


def _union_args(annotation: Any) -> Optional[tuple]:
    """A union's members, each out of its ``Annotated[...]`` and nested unions flattened; None
    for a type that is no union."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return None
    members: list = []
    for arg in get_args(annotation):
        arg = _strip(arg)[0]
        members.extend(_union_args(arg) or (arg,))
    return tuple(dict.fromkeys(members))


def _tagged_members(annotation: Any) -> Optional[list[type[BaseModel]]]:
    """The members of a tagged union (each a model with a Literal ``kind``), else None."""
    args = [a for a in _union_args(_strip(annotation)[0]) or () if a is not type(None)]
    if len(args) < 2 or not all(_is_model(a) and TAG in a.model_fields for a in args):
        return None
    return args


def _tag(member: type[BaseModel]) -> str:
    return member.model_fields[TAG].default


def _bounds(metadata: Sequence, base: str) -> list[str]:
    bounds = []
    for item in metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attr, None)
            if value is not None and not callable(value):
                bounds.append(f"{sign} {value}")
        length = getattr(item, "min_length", None)
        if isinstance(length, int) and length > 0:
            if base == "string":
                bounds.append("non-empty" if length == 1 else f"at least {length} characters")
            else:
                bounds.append(f"at least {length} {'entry' if length == 1 else 'entries'}")
        length = getattr(item, "max_length", None)
        if isinstance(length, int):
            bounds.append(f"at most {length} {'characters' if base == 'string' else 'entries'}")
    return bounds


def _with_bounds(base: str, metadata: Sequence) -> str:
    if any(getattr(item, "func", None) is _location for item in metadata):
        base = "path or URI"
    bounds = _bounds(metadata, base)
    if not bounds:
        return base
    comparisons = [b for b in bounds if b[0] in "<>"]
    others = [b for b in bounds if b[0] not in "<>"]
    text = base + (" " + " and ".join(comparisons) if comparisons else "")
    return ", ".join([text, *others])


_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}


def _type_name(annotation: Any, metadata: Sequence = ()) -> str:
    """A field's type in words, with its bounds (``integer > 0``, ``list of integer > 0``)."""
    inner, more = _strip(annotation)
    metadata = [*more, *metadata]
    members = _tagged_members(inner)
    if members is not None:
        nullable = type(None) in (_union_args(inner) or ())
        return "one of the kinds " + ", ".join(f"`{_tag(m)}`" for m in members) + (" or null" if nullable else "")
    args = _union_args(inner)
    if args is not None:
        present = [a for a in args if a is not type(None)]
        # A bound on an Optional field (``Field(None, ge=0)``) bounds the value when there is one.
        text = " or ".join(_type_name(a, metadata if len(present) == 1 else ()) for a in present)
        return text + " or null" if type(None) in args else text
    origin = get_origin(inner)
    if origin is Literal:
        return "one of " + ", ".join(f"`{_scalar(v)}`" for v in get_args(inner))
    if origin in (list, tuple, set, frozenset):
        item = get_args(inner)[0] if get_args(inner) else Any
        return _with_bounds(f"list of {'sections' if _is_model(item) else _type_name(item)}", metadata)
    if origin is dict:
        key, value = get_args(inner) or (Any, Any)
        return _with_bounds(f"mapping of {_type_name(key)} to {_type_name(value)}", metadata)
    if _is_model(inner):
        return "section"
    return _with_bounds(_NAMES.get(inner, getattr(inner, "__name__", str(inner))), metadata)


def _scalar(value: Any) -> str:
    """A value as YAML would spell it in a config file."""
    if isinstance(value, str):
        return value if value else '""'
    return json.dumps(value, ensure_ascii=False)


def _json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _tagged_default(value: BaseModel) -> dict:
    """A tagged union's default as its kind plus the settings that differ from that kind's own defaults."""
    return {TAG: getattr(value, TAG), **{k: v for k, v in value.model_dump(mode="json", exclude_defaults=True).items()
                                        if k != TAG}}


class _Table:
    """One model's keys: the rows, and the YAML of defaults too long for a cell."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str]] = []
        self.long_defaults: list[tuple[str, Any]] = []

    def add(self, key: str, type_name: str, default: str, description: str) -> None:
        self.rows.append((f"`{key}`", _clean(type_name), default, _clean(description)))

    def default_cell(self, key: str, value: Any) -> str:
        shown = json.dumps(_json(value), ensure_ascii=False, sort_keys=True)
        if isinstance(value, (str, int, float, bool)) or value is None:
            shown = _scalar(value)
        if len(shown) <= INLINE_DEFAULT_CHARS:
            return "`" + shown.replace("|", "\\|") + "`"
        self.long_defaults.append((key, _json(value)))
        count = f"{len(value)} entries, " if isinstance(value, (list, tuple, dict)) else ""
        return f"{count}below the table"

    def render(self) -> list[str]:
        if not self.rows:
            return ["This kind has no settings of its own.", ""]
        lines = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines.append("")
        for key, value in self.long_defaults:
            dumped = yaml.safe_dump(value, sort_keys=True, allow_unicode=True, default_flow_style=None, width=100)
            lines += [f"Default of `{key}`:", "", "```yaml", dumped.rstrip("\n"), "```", ""]
        return lines


def _intro(description: str, doc: Optional[str]) -> list[str]:
    """A nested section's opening: the field's description, then the model's docstring; the
    description is left out where the docstring opens with it."""
    described, documented = [_sentence(p) for p in _paragraphs(description)], _paragraphs(doc)
    if described and documented and documented[0].lower().startswith(described[0].rstrip(".").lower()):
        described = []
    return described + documented


def _heading(depth: int, text: str) -> str:
    return "#" * min(6, depth) + " " + text


def _model_section(out: list[str], model: type[BaseModel], prefix: str, defaults: Optional[BaseModel], depth: int,
                   tag_of: Optional[str] = None) -> None:
    """``model``'s table (its keys under ``prefix``), then a section per nested model or tagged union."""
    table, nested = _Table(), []
    names = list(model.model_fields)
    if tag_of is not None:  # a tagged union's member: its tag first
        names = [TAG] + [n for n in names if n != TAG]
    for name in names:
        field = model.model_fields[name]
        key = f"{prefix}.{name}" if prefix else name
        if tag_of is not None and name == TAG:
            table.add(key, f"`{tag_of}`", "—", f"`{tag_of}` selects this kind")
            continue
        description = _description(model, name, field)
        if defaults is not None:
            default_value, required = getattr(defaults, name), False
        else:
            required = field.is_required()
            default_value = None if required else field.get_default(call_default_factory=True)
        inner, _ = _strip(field.annotation)
        members = _tagged_members(inner)
        optional_args = _union_args(inner)
        single = [a for a in optional_args if a is not type(None)] if optional_args else [inner]
        type_name = _type_name(field.annotation, field.metadata)
        default = "required" if required else None
        if members is not None:
            if default is None:
                shown = None if default_value is None else _tagged_default(default_value)
                default = "`" + json.dumps(shown, sort_keys=True) + "`"
            nested.append(("union", key, members, name, description))
        elif len(single) == 1 and _is_model(single[0]):
            if default is None:
                default = "`null`" if default_value is None else "see below"
            nested.append(("model", key, single[0], default_value, description))
        elif get_origin(single[0]) in (list, tuple) and get_args(single[0]) and _is_model(get_args(single[0])[0]):
            nested.append(("model", f"{key}.{LIST_ITEM}", get_args(single[0])[0], None, description))
        if default is None:
            default = table.default_cell(key, default_value)
        table.add(key, type_name, default, description)
    out += table.render()
    for kind, key, target, extra, description in nested:
        if kind == "model":
            out += [_heading(depth + 1, f"`{key}`"), ""]
            for paragraph in _intro(description, _own_doc(target)):
                out += [paragraph, ""]
            _model_section(out, target, key, extra, depth + 1)
        else:
            _union_section(out, key, target, extra, description, depth + 1)


def _union_section(out: list[str], key: str, members: list[type[BaseModel]], name: str, description: str,
                   depth: int) -> None:
    out += [_heading(depth, f"`{key}`"), ""]
    for paragraph in _paragraphs(description):
        out += [_sentence(paragraph), ""]
    shared = [_own_doc(base) for base in members[0].__mro__[1:]
              if all(base in m.__mro__ for m in members) and _is_model(base) and base.model_fields
              and _own_doc(base)]
    for doc in shared[:1]:
        out += [p for para in _paragraphs(doc) for p in (para, "")]
    out += ["Kinds: " + ", ".join(f"`{_tag(m)}`" for m in members) + ".", ""]
    bare = BARE_NAME_KEYS.get(name)
    if bare is not None:
        out += [f"The whole value may be a name alone: `{key}: <name>` (or `--set {key}=<name>`) stands for "
                f"`{{{bare}: <name>}}`.", ""]
    if bare == "preset":
        out += ["Presets: " + ", ".join(f"`{p}`" for p in OPTIMIZATION_PRESETS) + ".", ""]
    for member in members:
        out += [_heading(depth + 1, f"`{key}` kind `{_tag(member)}`"), ""]
        for paragraph in _paragraphs(_own_doc(member)):
            out += [paragraph, ""]
        _model_section(out, member, key, None, depth + 1, tag_of=_tag(member))


def config_page() -> str:
    out = CONFIG_INTRO.splitlines() + [""]
    out += ["## Top-level keys", ""]
    for paragraph in _paragraphs(_own_doc(SimConfig)):
        out += [paragraph, ""]
    _model_section(out, SimConfig, "", None, 1)
    return "\n".join(out).rstrip("\n") + "\n"


def _fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, type[BaseModel], str, FieldInfo]]:
    """Every (key, declaring model, name, field) under ``model``, tagged-union members and list entries included."""
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        yield key, model, name, field
        inner, _ = _strip(field.annotation)
        targets = _tagged_members(inner)
        if targets is None:
            args = [a for a in (_union_args(inner) or (inner,)) if a is not type(None)]
            targets = []
            for arg in args:
                if _is_model(arg):
                    targets.append(arg)
                elif get_origin(arg) in (list, tuple) and get_args(arg) and _is_model(get_args(arg)[0]):
                    key_item = f"{key}.{LIST_ITEM}"
                    yield from _fields(get_args(arg)[0], key_item)
        for target in targets:
            yield from _fields(target, key)


def _declaring(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The class in ``model``'s bases whose own body declares field ``name``."""
    return next((cls for cls in model.__mro__ if name in cls.__dict__.get("__annotations__", {})), model)


def undescribed() -> list[str]:
    """Config fields with neither a Field description nor a docstring line, each as
    ``module.Class.field (a key it appears as)``; a tagged union member's tag is described by the page."""
    missing: dict[str, str] = {}
    for key, model, name, field in _fields(SimConfig):
        if name == TAG and get_origin(field.annotation) is Literal and len(get_args(field.annotation)) == 1:
            continue
        if not _description(model, name, field):
            owner = _declaring(model, name)
            missing.setdefault(f"{owner.__module__}.{owner.__qualname__}.{name}", key)
    return [f"{field} ({key})" for field, key in sorted(missing.items())]


# --------------------------------------------------------------------------- commands.md
COMMANDS_INTRO = """\
# Command reference

Every command's options, as its own `--help` prints them. `fairfleet <command>` runs a job;
`python jobs/<module>.py` runs the same job as a script, with the same options and exit codes.
"""


def _cli():
    """The ``fairfleet`` command's module, where this checkout has it."""
    try:
        return importlib.import_module("jobs.lib.command")
    except ModuleNotFoundError as missing:
        if missing.name != "jobs.lib.command":
            raise
        return None


@contextlib.contextmanager
def _help_environment() -> Iterator[io.StringIO]:
    """A fixed help width and no colour, stdout captured; the environment and argv restored."""
    saved_env = {name: os.environ.get(name) for name in ("COLUMNS", "NO_COLOR", "FORCE_COLOR")}
    saved_argv = list(sys.argv)
    os.environ["COLUMNS"] = str(HELP_COLUMNS)
    os.environ["NO_COLOR"] = "1"
    os.environ.pop("FORCE_COLOR", None)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        sys.argv[:] = saved_argv


def _captured_help(what: str, call) -> str:
    """What ``call()`` prints, which must end by exiting 0 (argparse's --help) or returning 0;
    the text has no machine path and no trailing spaces."""
    with _help_environment() as buffer:
        try:
            code = call()
        except SystemExit as exc:
            code = exc.code
    if code not in (0, None):
        raise RuntimeError(f"{what} --help ended with {code!r}, not 0")
    text = buffer.getvalue().replace(str(ROOT) + os.sep, "").replace(str(Path.home()), "~")
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def prog_name(command: Command) -> str:
    cli = _cli()
    return f"{cli.PROG if cli is not None else 'fairfleet'} {command.name}"


def command_help(command: Command) -> str:
    """``jobs.<module>.main(["--help"])``'s output at the fixed width, run as ``fairfleet`` runs it."""
    cli = _cli()
    if cli is not None:
        return _captured_help(prog_name(command), lambda: cli.run_command(command, ["--help"]))

    def call():
        sys.argv[:] = [prog_name(command), "--help"]  # argparse names the program after sys.argv[0]
        return importlib.import_module(f"jobs.{command.module}").main(["--help"])

    return _captured_help(prog_name(command), call)


def _fence(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")


def _command_entries() -> list[tuple[str, str, Optional[str], str]]:
    """(program, summary, script, help text) of ``fairfleet`` itself, every registered command
    and ``fairfleet serve``, in the order ``fairfleet --help`` lists them."""
    cli = _cli()
    entries = []
    if cli is not None:
        entries.append((cli.PROG, "Every command under one name.", None,
                        _captured_help(cli.PROG, lambda: cli.main(["--help"]))))
    for command in COMMANDS:
        entries.append((prog_name(command), _sentence(command.summary), f"python jobs/{command.module}.py",
                        command_help(command)))
    if cli is not None and hasattr(cli, "serve") and not any(c.name == "serve" for c in COMMANDS):
        entries.append((f"{cli.PROG} serve", _sentence(getattr(cli, "SERVE_SUMMARY", "")), None,
                        _captured_help(f"{cli.PROG} serve", lambda: cli.serve(["--help"]))))
    return entries


def commands_page() -> str:
    out = COMMANDS_INTRO.splitlines() + [""]
    for program, summary, script, text in _command_entries():
        fence = _fence(text)
        out += [f"## `{program}`", "", summary, ""]
        if script:
            out += [f"Script: `{script}`", ""]
        out += [fence + "text", text, fence, ""]
    return "\n".join(out).rstrip("\n") + "\n"


# --------------------------------------------------------------------------- writing
def render_pages() -> dict[str, str]:
    """Each page's file name and text, exactly as written."""
    return {"config.md": config_page(), "commands.md": commands_page()}


def stale_pages(folder: Path, pages: dict[str, str]) -> list[str]:
    """The pages whose file in ``folder`` is missing or differs from ``pages``."""
    stale = []
    for name, text in sorted(pages.items()):
        path = folder / name
        try:
            current = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        if current != text:
            stale.append(name)
    return stale


def write_pages(folder: Path, pages: dict[str, str]) -> list[str]:
    """Write the pages that changed, each atomically; return their names."""
    changed = stale_pages(folder, pages)
    for name in changed:
        with atomic_path(folder / name) as tmp:
            tmp.write_text(pages[name], encoding="utf-8", newline="\n")
    return changed


def _shown(folder: Path) -> str:
    try:
        return str(folder.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.lib.reference_pages",
                                     description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="folder of the pages (default: docs/reference of this checkout)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming the pages that differ from what would be written")
    parser.add_argument("--undescribed", action="store_true",
                        help="also list the config keys that have no description")
    args = parser.parse_args(argv)
    pages = render_pages()
    folder = _shown(args.out)
    if args.undescribed:
        for key in undescribed():
            print(f"no description: {key}")
    if args.check:
        stale = stale_pages(args.out, pages)
        if stale:
            print(f"stale reference pages in {folder}: {', '.join(stale)}; regenerate with  {REGENERATE}",
                  file=sys.stderr)
            return 1
        print(f"reference pages in {folder} are up to date")
        return 0
    changed = write_pages(args.out, pages)
    print(f"wrote {', '.join(changed)} in {folder}" if changed else f"reference pages in {folder} are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
