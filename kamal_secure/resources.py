"""Files that ship inside the package: the JSON schemas and the Kamal hook templates.

They are package data (kamal_secure/schema, kamal_secure/hook_templates) read with
importlib.resources, so a source checkout, an editable install and a wheel read the
same single copy (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

_PACKAGES = {"schema": "kamal_secure.schema", "hook_templates": "kamal_secure.hook_templates"}


def data_dir(kind: str) -> Traversable:
    return files(_PACKAGES[kind])


def schema_text(name: str) -> str:
    return data_dir("schema").joinpath(name).read_text("utf-8")


def hook_template(name: str) -> bytes:
    return data_dir("hook_templates").joinpath(name).read_bytes()
