"""The documentation's reference pages, generated from the code so they cannot drift from it: the
configuration reference from :class:`~landcoverpy.config.Settings` and the command-line reference
from the Typer app. ``docs/hooks.py`` adds both pages to the MkDocs build."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import typer.main
from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from typer.cli import get_docs_for_click

from landcoverpy.cli import app
from landcoverpy.config import Settings


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "unset"
    names = {str: "text", int: "integer", float: "number", bool: "true/false", Path: "path", SecretStr: "secret text"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: FieldInfo) -> str:
    value = field.default
    if value is PydanticUndefined or value is None:
        return "unset"
    if hasattr(value, "get_secret_value"):
        return "(secret)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path) and value.is_absolute():
        return "system temp + `/landcoverpy`" if value.name == "landcoverpy" else f"`{value}`"
    return f"`{value}`" if str(value) != "" else "empty"


def _constraints(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for attr, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                parts.append(f"{word} {getattr(meta, attr)}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            parts.append("one of " + ", ".join(f"`{c}`" for c in pattern.strip("^$()").split("|")))
    return "; ".join(parts)


def settings_reference() -> str:
    """Markdown: every setting with its type, default, allowed values and meaning."""
    lines = [
        "# Configuration reference",
        "",
        "Every setting landcoverpy reads, from the environment or a `.env` file in the working",
        "directory (generated from `landcoverpy.config.Settings`). A malformed value stops a command",
        "at start with the variable's name. See the [configuration guide](../guide/configuration.md)",
        "for the essentials and the presets.",
        "",
        "| variable | type | default | allowed | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        meaning = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {_constraints(field)} | {meaning} |"
        )
    return "\n".join(lines) + "\n"


def cli_reference() -> str:
    """Markdown: every command, argument and option of the ``landcoverpy`` command line."""

    command = typer.main.get_command(app)
    ctx = typer.Context(command)
    body = get_docs_for_click(obj=command, ctx=ctx, name="landcoverpy", title="Command-line reference")
    return body.rstrip() + "\n"
