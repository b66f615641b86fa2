"""MkDocs hook: the configuration and command-line references, generated from the code at build time."""

from __future__ import annotations

from typing import Any

from mkdocs.structure.files import File, Files

from landcoverpy.docsgen import cli_reference, settings_reference

GENERATED = {"reference/configuration.md": settings_reference, "reference/cli.md": cli_reference}


def on_files(files: Files, config: Any) -> Files:
    for uri, make in GENERATED.items():
        files.append(File.generated(config, uri, content=make()))
    return files
