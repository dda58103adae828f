"""The reference app synthesized with each traffic-shifting ``deployment_strategy``, once per test session.

``synth_strategy("blue_green")`` builds the app exactly like the reference synth (``app.build`` with
cdk.json's context and a certificate, cdk-nag included) plus ``-c deployment_strategy=...``. The
result is cached for the process, so the CDK, audit and moto tests share one synth per strategy
(each costs about a second).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.cdk_reference import REFERENCE_CONTEXT, new_app

#: The strategies that shift traffic between two target groups.
SHIFTING_STRATEGIES = ("blue_green", "linear", "canary")


@dataclass(frozen=True)
class StrategySynth:
    """One synth of the reference app with ``deployment_strategy=strategy``."""

    strategy: str
    stack: Any
    template_json: dict[str, Any]
    outdir: Path


@functools.cache
def synth_strategy(strategy: str) -> StrategySynth:
    """The reference app with ``-c deployment_strategy=strategy``, synthesized once per process."""
    import app as cdk_app

    outdir = Path(tempfile.mkdtemp(prefix=f"stickyws-{strategy}-"))
    atexit.register(shutil.rmtree, outdir, ignore_errors=True)
    application = new_app(outdir, {**REFERENCE_CONTEXT, "deployment_strategy": strategy})
    stack = cdk_app.build(application)
    template = application.synth().get_stack_by_name(stack.stack_name).template
    return StrategySynth(strategy=strategy, stack=stack, template_json=template, outdir=outdir)
