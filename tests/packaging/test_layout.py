"""What the layout promises without a build: no import cycles, no auditor in the constructs, one image tail."""

from __future__ import annotations

import ast
import functools
import importlib.machinery
import importlib.metadata
import inspect
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import stickyws.testing
from constructs_lib.image import IMAGE_CONTEXT_DIR, PACKAGED_CONTEXT, REQUIREMENT_BUILD_ARG
from stickyws.testing import plugin

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Modules of the settings package that import nothing else from stickyws.
SETTINGS_LEAVES = {"stickyws.settings.findings", "stickyws.settings.spec", "stickyws.settings.aws_names"}


def module_name(path: Path) -> str:
    """``stickyws/settings/model.py`` -> ``stickyws.settings.model`` (packages by their ``__init__``)."""
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST) -> Iterator[str]:
    """Every module imported anywhere in ``tree`` (functions too), except under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (name for child in node.orelse for name in _runtime_imports(child))
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        yield from _runtime_imports(node)


def import_graph(*packages: str) -> dict[str, set[str]]:
    """Module -> the first-party modules it names in run-time imports (``from pkg import mod`` names ``pkg.mod``)."""
    modules = {module_name(p): p for pkg in packages for p in (REPO_ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for imported in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if imported in modules:
                edges.add(imported)
        graph[name] = edges - {name}
    return graph


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_settings_package_has_no_import_cycle() -> None:
    """No settings module reaches itself through run-time imports (lazy ones in functions included)."""
    graph = import_graph("stickyws")
    settings = [m for m in graph if m.startswith("stickyws.settings.")]
    assert len(settings) >= 8
    assert [m for m in settings if m in _reachable(graph, m)] == []


def test_findings_spec_and_aws_names_are_leaf_modules() -> None:
    """Finding/Severity, the field specs and the AWS names table import nothing from stickyws."""
    graph = import_graph("stickyws")
    assert {m: graph[m] for m in SETTINGS_LEAVES} == {m: set() for m in SETTINGS_LEAVES}
    assert _reachable(graph, "stickyws.settings.values") == {
        "stickyws.errors",
        "stickyws.settings.errors",
        "stickyws.settings.findings",
        "stickyws.settings.spec",
    }


def test_constructs_never_reach_the_auditor() -> None:
    """Nothing constructs_lib imports, directly or through stickyws, is part of stickyws.audit or stickyws.testing."""
    graph = import_graph("stickyws", "constructs_lib")
    reached = set().union(*(_reachable(graph, m) for m in graph if m.startswith("constructs_lib")))
    assert sorted(m for m in reached if m.startswith(("stickyws.audit", "stickyws.testing"))) == []
    assert "stickyws.settings.aws_names" in reached


def test_packaged_dockerfile_runs_the_server_like_the_repository_one() -> None:
    """From ENV on, the packaged Dockerfile is the repository's (user, port, health check, entry point)."""
    ours = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    packaged = (PACKAGED_CONTEXT / "Dockerfile").read_text(encoding="utf-8")
    tail = ours[ours.index("ENV PYTHONUNBUFFERED=1") :]
    assert packaged.endswith(tail)
    assert f"ARG {REQUIREMENT_BUILD_ARG}\nCOPY . {IMAGE_CONTEXT_DIR}/\n" in packaged
    assert f'pip install --no-cache-dir "${REQUIREMENT_BUILD_ARG}"' in packaged


@pytest.mark.synth
def test_a_requirement_selects_the_packaged_dockerfile_even_in_a_checkout(tmp_path: Path) -> None:
    """server_image(requirement=...) stages only the packaged Dockerfile with that build argument."""
    from aws_cdk import App, Stack
    from aws_cdk import aws_ecs as ecs

    from constructs_lib import server_image

    app = App(outdir=str(tmp_path), builtin_cloud_formation_validation=False)
    stack = Stack(app, "ImageOnly")
    task = ecs.FargateTaskDefinition(stack, "Task")
    requirement = "stickyws[server] @ https://example.com/stickyws-0.1.0-py3-none-any.whl"
    task.add_container("server", image=server_image(requirement=requirement))
    app.synth()
    (image,) = json.loads((tmp_path / "ImageOnly.assets.json").read_text(encoding="utf-8"))["dockerImages"].values()
    assert image["source"]["dockerBuildArgs"] == {REQUIREMENT_BUILD_ARG: requirement}
    assert sorted(p.name for p in (tmp_path / image["source"]["directory"]).iterdir()) == ["Dockerfile"]


def test_a_stickyws_that_is_neither_checkout_nor_installation_makes_the_default_image_ask_for_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stickyws imported from a bare source folder (no pyproject, no RECORD of its own): staging the default
    image raises, saying to install stickyws or pass image=."""
    import stickyws
    from constructs_lib import image

    source = tmp_path / "stickyws" / "__init__.py"
    source.parent.mkdir()
    source.write_text("", encoding="utf-8")
    monkeypatch.setattr(stickyws, "__file__", str(source))
    assert image.checkout_root() is None
    with pytest.raises(image.InstalledPackageError) as caught:
        image.repack_installed(tmp_path)
    assert str(caught.value).startswith(
        f"cannot stage the default server image: stickyws at {source.parent} is neither a checkout nor an "
        "installed distribution with a file list (RECORD)."
    )
    assert "pass image= to WebSocketFargateService" in str(caught.value)
    assert list(tmp_path.iterdir()) == [source.parent]


def test_readme_moto_example_uses_only_the_plugins_fixtures_and_the_public_helpers() -> None:
    """The README's moto example overrides a plugin fixture, requests only plugin fixtures and imports public names."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- moto-example:start -->\s*```python\n(?P<code>.*?)```\s*<!-- moto-example:end -->", readme, re.S
    )
    assert match is not None, "README.md lost its moto example markers"
    tree = ast.parse(match.group("code"))
    functions = [node for node in tree.body if isinstance(node, ast.FunctionDef)]
    fixtures = {name for name, value in inspect.getmembers(plugin) if name.startswith("stickyws_") and callable(value)}
    assert {f.name for f in functions if not f.name.startswith("test_")} <= fixtures
    assert {a.arg for f in functions if f.name.startswith("test_") for a in f.args.args} <= fixtures
    imported = {
        a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "stickyws.testing" for a in n.names
    }
    assert imported == {"assert_websocket_ready"}
    assert imported <= set(stickyws.testing.__all__)


@pytest.mark.synth
def test_the_settings_file_example_of_docs_iac_reads_in_the_cdk_app_the_twin_and_the_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/iac.md's TOML file loads with load_file; its CDK snippet gives the file's values with a -c name on top;
    the twin and audit options it names parse."""
    from stickyws.cli import build_parser
    from stickyws.settings import Settings, load_file

    docs = (REPO_ROOT / "docs" / "iac.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- settings-file-example:start -->(?P<text>.*?)<!-- settings-file-example:end -->", docs, re.S
    )
    assert match is not None, "docs/iac.md lost its settings-file example markers"
    blocks = dict(re.findall(r"```(toml|python)\n(.*?)```", match.group("text"), re.S))
    (tmp_path / "websocket.toml").write_text(blocks["toml"], encoding="utf-8")
    assert load_file(tmp_path / "websocket.toml") == {
        "idle_timeout_s": 300, "deregistration_delay_s": 90, "stickiness_duration_s": 3600, "ping_interval_s": 25,
    }  # fmt: skip
    monkeypatch.chdir(tmp_path)
    import aws_cdk

    # What `cdk synth -c settings_file=websocket.toml -c idle_timeout_s=350` gives the app's App().
    context = {"settings_file": "websocket.toml", "idle_timeout_s": "350"}
    monkeypatch.setattr(aws_cdk, "App", functools.partial(aws_cdk.App, context=context))
    scope: dict[str, object] = {}
    exec(compile(blocks["python"], "docs/iac.md", "exec"), scope)
    settings = scope["settings"]
    assert isinstance(settings, Settings)
    assert [settings[n] for n in ("idle_timeout_s", "deregistration_delay_s", "ping_interval_s")] == [350, 90, 25.0]
    parser = build_parser()
    twin = parser.parse_args(["twin", "up", "--settings-file", "websocket.toml", "--set", "idle_timeout_s=350"])
    assert twin.settings_file == "websocket.toml"
    audit = parser.parse_args(["audit", "--template", "t.json", "--assume", "ping_interval_s=25"])
    assert audit.assume == ["ping_interval_s=25"]


def _fake_installation(root: Path, tag: str) -> importlib.metadata.Distribution:
    """An installed stickyws under ``root`` (a site-packages) with one module, its compiled extension, the
    compiled build's record and a dist-info whose WHEEL names ``tag``."""
    (root / "stickyws").mkdir(parents=True)
    files = {
        "stickyws/__init__.py": b"",
        "stickyws/protocol.py": b"X = 1\n",
        f"stickyws/protocol{importlib.machinery.EXTENSION_SUFFIXES[0]}": b"\x7fELF",
        "stickyws/compiled.json": b"{}",
        "stickyws-0.1.0.dist-info/METADATA": b"Metadata-Version: 2.4\nName: stickyws\nVersion: 0.1.0\n",
        "stickyws-0.1.0.dist-info/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n".encode(),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    rows = [f"{name},," for name in [*files, "stickyws-0.1.0.dist-info/RECORD"]]
    (root / "stickyws-0.1.0.dist-info/RECORD").write_text("\n".join(rows) + "\n")
    return importlib.metadata.PathDistribution(root / "stickyws-0.1.0.dist-info")


@pytest.mark.parametrize(
    ("tag", "staged_tag", "compiled_kept"),
    [
        ("cp311-cp311-linux_x86_64", "cp311-cp311-linux_x86_64", True),
        ("cp312-cp312-macosx_11_0_arm64", "py3-none-any", False),
    ],
)
def test_a_compiled_installation_is_staged_compiled_only_for_the_images_interpreter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tag: str, staged_tag: str, compiled_kept: bool
) -> None:
    """The staged wheel keeps the extension modules of a compiled stickyws built for the image's interpreter and
    platform; built for another, it is a pure wheel of the sources, which the image runs as they are."""
    from constructs_lib import image

    dist = _fake_installation(tmp_path / "site", tag)
    monkeypatch.setattr(image, "_installed_distribution", lambda: dist)
    (tmp_path / "out").mkdir()
    wheel = image.repack_installed(tmp_path / "out")
    assert wheel.name == f"stickyws-0.1.0-{staged_tag}.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        wheel_file = archive.read("stickyws-0.1.0.dist-info/WHEEL").decode()
    compiled_files = {f"stickyws/protocol{importlib.machinery.EXTENSION_SUFFIXES[0]}", "stickyws/compiled.json"}
    assert compiled_files <= names if compiled_kept else not compiled_files & names
    assert {"stickyws/__init__.py", "stickyws/protocol.py"} <= names
    assert f"Tag: {staged_tag}\n" in wheel_file
    assert ("Root-Is-Purelib: true" in wheel_file) is not compiled_kept
