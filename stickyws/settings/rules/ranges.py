"""The rule that runs for any part: every setting the deployment has lies inside its range."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from stickyws.settings.findings import Finding
from stickyws.settings.rules.engine import _error, define_rule

if TYPE_CHECKING:
    from stickyws.settings.model import Settings


@define_rule("in-range", "Every setting lies inside its AWS (or stickyws) range.")
def _in_range(s: Settings) -> Iterator[Finding]:
    for name, value in s.items():
        spec = s.fields_index[name].spec
        if value is None:
            if not spec.nullable:
                yield _error("in-range", f"{name} is unset", f"set {name} ({spec.describe_range()})", name)
            continue
        if spec.choices:
            if str(value) not in spec.choices:
                yield _error(
                    "in-range",
                    f"{name}={value!r} is not one of {spec.describe_range()} ({spec.source})",
                    f"set {name} to one of {spec.describe_range()}",
                    name,
                )
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if (spec.lo is not None and value < spec.lo) or (spec.hi is not None and value > spec.hi):
            yield _error(
                "in-range",
                f"{name}={value:g} is outside the {spec.source} range {spec.describe_range()}",
                f"set {name} within {spec.describe_range()}",
                name,
            )
