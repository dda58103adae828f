"""What the docs name is what the code has: registry keys, the server's modules, the repository's layout."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import constructs_lib
import stickyws.server
from stickyws import keys
from stickyws.settings import FIELDS
from stickyws.twin.blue_green import DeployReport
from stickyws.twin.kill_report import KillReport
from stickyws.twin.operations import DeregisterReport

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*/README.md"))]
#: A placeholder in a documented name: ``<user>``, ``${serverId}``, ``*``.
_PLACEHOLDER = re.compile(r"\$\{[^}]*\}|<[^>]*>|\*")


def _shape(name: str) -> str:
    return _PLACEHOLDER.sub("X", name)


def _key_shapes() -> set[str]:
    """Every key and channel name stickyws.keys builds, with the id as the placeholder X."""
    one_arg = [
        keys.user_key,
        keys.session_key,
        keys.topic_meta_key,
        keys.topic_log_key,
        keys.topic_channel,
        keys.user_push_channel,
        keys.heartbeat_key,
        keys.push_channel,
        keys.drain_key,
        keys.reconnect_channel,
        keys.takeover_channel,
    ]
    return {fn("X") for fn in one_arg} | {keys.push_key("X", "X")}


def test_every_registry_name_in_the_docs_is_built_by_keys() -> None:
    """Each `ws:...` key or channel a doc names is one that stickyws.keys builds (a renamed key breaks this test)."""
    known = _key_shapes()
    wrong = {}
    for doc in DOCS:
        for name in re.findall(r"`(ws:[^`\s]+)`", doc.read_text(encoding="utf-8")):
            if name.startswith("ws://"):
                continue
            if _shape(name) not in known:
                wrong.setdefault(doc.name, []).append(name)
    assert wrong == {}


def test_server_package_index_names_every_module() -> None:
    """The module index in stickyws.server's docstring names every module of the package."""
    modules = {p.stem for p in Path(stickyws.server.__file__).parent.glob("*.py") if p.stem != "__init__"}
    doc = stickyws.server.__doc__ or ""
    assert {m for m in modules if f"stickyws.server.{m}`" not in doc} == set()


def test_readme_layout_names_every_top_level_part() -> None:
    """The README's layout table names each package of stickyws and each top-level folder of code."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 1)]
    packages = {f"stickyws/{p.name}/" for p in (ROOT / "stickyws").iterdir() if (p / "__init__.py").is_file()}
    folders = {f"{name}/" for name in ("constructs_lib", "stacks", "tests", "bench", "scripts", "examples")}
    assert {part for part in packages | folders if f"`{part}" not in layout} == set()


def test_architecture_tour_names_only_files_that_exist() -> None:
    """Every module, package or script path the tour in docs/architecture.md names exists in the repository."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:stickyws|constructs_lib|stacks)/[\w/]*(?:\.py)?)`", text))
    scripts = {f"stickyws/registry/{p}" for p in re.findall(r"`(scripts/\w+\.lua)`", text)}
    missing = sorted(p for p in paths | scripts if not (ROOT / p).exists())
    assert len(paths) > 30
    assert missing == []


def test_every_setting_like_name_in_the_docs_is_a_setting_or_a_named_field() -> None:
    """A backticked name with a unit suffix in the docs is a setting of the model, a field of one of the twin's
    reports or a parameter of a construct: a renamed setting breaks this test, not the docs."""
    known = set(FIELDS)
    for report in (DeployReport, KillReport, DeregisterReport):
        known |= {f.name for f in dataclasses.fields(report)} | {n for n, _ in inspect.getmembers(report)}
    for name in constructs_lib.__all__:
        thing = getattr(constructs_lib, name)
        if inspect.isclass(thing):
            known |= set(inspect.signature(thing.__init__).parameters)
    unit = re.compile(r"_(s|ms|min|bytes|percent|count|messages|per_s|connections|replicas)$")
    wrong = {}
    for doc in DOCS:
        for name in re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)`", doc.read_text(encoding="utf-8")):
            if unit.search(name) and name not in known:
                wrong.setdefault(doc.name, set()).add(name)
    assert wrong == {}
