"""The documentation site's Reference pages (docs/reference) are generated from the code: the
committed pages must be what ``python -m jobs.lib.reference_pages`` writes now, every config key
must be on the config page and every command on the commands page."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from configs.fl_schema import TAGGED_UNIONS
from configs.schema import SimConfig
from jobs.lib import reference_pages
from jobs.lib.commands import COMMANDS

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "docs" / "reference"
REGENERATE = "python -m jobs.lib.reference_pages"


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return reference_pages.render_pages()


def _models_in(annotation) -> tuple[list[type[BaseModel]], bool]:
    """The models a field's value may be, and whether the value is a list of them."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        found = [_models_in(arg) for arg in typing.get_args(annotation)]
        return [m for models, _ in found for m in models], any(listed for _, listed in found)
    if origin is list:
        models, _ = _models_in(typing.get_args(annotation)[0])
        return models, bool(models)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation], False
    return [], False


def leaf_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every dotted key under ``model`` that holds a value, walked here on its own: a nested
    model's keys, each tagged-union member's keys, a list entry's keys as ``<n>``."""
    keys = set()
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        models, listed = _models_in(field.annotation)
        if not models:
            keys.add(key)
        for nested in models:
            keys |= leaf_keys(nested, f"{key}.<n>" if listed else key)
    return keys


def tagged_unions(model: type[BaseModel]) -> dict[str, set[str]]:
    """Field name → the tags of its tagged union's members, over every model under ``model``."""
    found: dict[str, set[str]] = {}
    for name, field in model.model_fields.items():
        models, _ = _models_in(field.annotation)
        if field.discriminator is not None:
            found[name] = {m.model_fields[field.discriminator].default for m in models}
        for nested in models:
            found.update(tagged_unions(nested))
    return found


@pytest.mark.parametrize("page", ["config.md", "commands.md"])
def test_committed_page_is_what_the_generator_writes(rendered, page):
    path = PAGES / page
    assert path.exists(), f"docs/reference/{page} is missing: run  {REGENERATE}"
    assert path.read_text(encoding="utf-8") == rendered[page], (
        f"docs/reference/{page} is stale (a config key, a description or a command option changed): "
        f"regenerate it with  {REGENERATE}  and commit the result")


def test_every_config_key_is_on_the_config_page(rendered):
    keys = leaf_keys(SimConfig)
    assert {"seed", "data.synthetic.n_users", "tiers.profiles.<n>.compute_s_per_sample.mean", "fl.optimization.levels",
            "fl.strategy.n_clusters", "retrieval.index.nprobe", "retrieval.policy.batch_size"} <= keys
    missing = sorted(key for key in keys if f"| `{key}` |" not in rendered["config.md"])
    assert not missing, f"config keys missing from the config page: {missing}"


# Fields the config page still shows without a description; a new field needs one (Field(description=...)).
UNDESCRIBED: set[str] = set()


def test_every_config_key_has_a_description():
    missing = {entry.split(" (")[0] for entry in reference_pages.undescribed()}
    assert missing <= UNDESCRIBED, f"config fields without a description: {sorted(missing - UNDESCRIBED)}"


def test_every_tagged_union_lists_each_kind(rendered):
    unions = tagged_unions(SimConfig)
    assert unions == {name: TAGGED_UNIONS[name] for name in unions}, "a tagged union differs from TAGGED_UNIONS"
    page = rendered["config.md"]
    for name, tags in unions.items():
        for tag in tags:
            assert f" kind `{tag}`\n" in page, f"kind {tag!r} of {name} has no section on the config page"


def test_every_command_is_on_the_commands_page(rendered):
    page = rendered["commands.md"]
    for command in COMMANDS:
        assert f"## `fairfleet {command.name}`" in page, f"{command.name} has no section"
        assert f"usage: fairfleet {command.name} " in page, f"{command.name}'s help is missing or names another program"


def test_pages_hold_no_machine_path(rendered):
    for page, text in rendered.items():
        assert str(ROOT) not in text and str(Path.home()) not in text, f"{page} names a folder of this machine"


def test_check_names_stale_pages_and_passes_when_current(tmp_path, capsys, monkeypatch, rendered):
    monkeypatch.setattr(reference_pages, "render_pages", lambda: dict(rendered))
    assert reference_pages.main(["--check", "--out", str(tmp_path)]) == 1
    assert "commands.md, config.md" in capsys.readouterr().err
    assert reference_pages.main(["--out", str(tmp_path)]) == 0
    assert reference_pages.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "config.md").write_text("old\n", encoding="utf-8")
    assert reference_pages.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "config.md" in err and "commands.md" not in err.split(";")[0] and REGENERATE in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["commands.md", "config.md"]  # no temporary file left
