"""The one module that touches a YAML library: manifests to multi-document YAML text and back.

PyYAML (``pip install 'stickyws[k8s]'``) is imported inside the functions, so importing
:mod:`stickyws.k8s` and rendering to plain data need no YAML library at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def dump_documents(documents: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML (``---`` between documents), keys in the order given, block style."""
    import yaml

    return str(yaml.safe_dump_all([dict(d) for d in documents], sort_keys=False, default_flow_style=False, width=120))


def load_documents(text: str) -> list[dict[str, Any]]:
    """Every non-empty document of multi-document YAML text, as plain data."""
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc is not None]
