"""The documentation: generated references cover every setting and every command-line option, and
the README stays a user guide."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer.main

from landcoverpy.cli import app
from landcoverpy.config import Settings
from landcoverpy.docsgen import cli_reference, settings_reference

ROOT = Path(__file__).resolve().parents[1]


def every_command(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command of the app (typer's own click), with its path of subcommand names."""
    found = [(path, command)]
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            found += every_command(sub, (*path, name))
    return found


def test_every_setting_is_in_the_configuration_reference_with_its_meaning() -> None:
    page = settings_reference()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([A-Z0-9_]+)` \|.*$", page, re.M)}
    assert set(rows) == set(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert field.description.split(".")[0][:40] in rows[name], name


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    page = cli_reference()
    commands = every_command(typer.main.get_command(app))
    assert len(commands) > 20
    for path, command in commands:
        if path:
            assert f"`landcoverpy {' '.join(path)}`" in page, path
        for param in command.params:
            if param.param_type_name == "option":
                for opt in param.opts:
                    assert opt in page, (path, opt)
            else:
                assert param.name is not None and param.name.upper() in page, (path, param.name)


def test_the_readme_is_a_user_guide() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 400
    for phrase in ("this session", "correction", "before this change", "as before", "replaces an earlier"):
        assert phrase not in text.lower(), phrase
    for command in ("make demo", "make test"):
        assert command in text
    # every relative link of the README points at a file of the checkout
    for target in re.findall(r"\]\(((?!https?:|#)[^)#]+)", text):
        assert (ROOT / target).exists(), target


def test_the_docs_hold_no_history() -> None:
    for page in (ROOT / "docs").rglob("*.md"):
        text = page.read_text(encoding="utf-8").lower()
        for phrase in ("this session", "correction (", "before this change", "replaces an earlier"):
            assert phrase not in text, (page, phrase)
