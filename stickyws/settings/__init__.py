"""The one settings model of stickyws, its named rules and its text renderings.

>>> from stickyws.settings import Settings
>>> s = Settings().with_overrides({"idle_timeout_s": "300"})
>>> s["idle_timeout_s"]
300
>>> [f.rule for f in s.validate() if f.severity.value == "error"]
[]

Modules, each importing only those before it (no cycles; the package re-exports the public names):
``findings`` (Finding, Severity), ``spec`` (field specs), ``aws_names`` (settings to AWS attribute
and property names, with AWS defaults), ``errors``, ``values`` (the one value parser and renderer),
``scopes`` (which parts a rule speaks of), ``rules`` (a package: the rule engine, then the rules by
the part they speak of), ``model`` (the Settings object), ``codec`` (environment, labels, context,
files).
"""

from stickyws.settings.codec import (
    CONTEXT_SETTINGS_FILE,
    ENV_JWT_SECRET,
    ENV_PUBLISH_KEY,
    ENV_REDIS_AUTH,
    ENV_REDIS_IAM_CACHE_NAME,
    ENV_REDIS_IAM_SERVERLESS,
    ENV_REDIS_PASSWORD,
    ENV_REDIS_PASSWORD_SECRET_ARN,
    ENV_REDIS_URL,
    ENV_REDIS_USER,
    ENV_SERVER_ID,
    ENV_SERVICE_NAME,
    ENV_TARGET_GROUP_ARN,
    LABEL_SERVER_ENV,
    LABEL_SERVER_MODE,
    env_name,
    from_env,
    load_file,
    parse_bool,
    read_server_environment,
    render_value,
    resolve,
    server_environment,
    server_labels,
    to_env,
)
from stickyws.settings.errors import SettingsError, SettingValueError, UnknownSettingError
from stickyws.settings.findings import Finding, Severity
from stickyws.settings.model import (
    FIELDS,
    ClientSettings,
    DeliverySettings,
    DeploymentSettings,
    KubernetesSettings,
    LoadBalancerSettings,
    RegistrySettings,
    ServerSettings,
    Settings,
    TargetGroupSettings,
    TaskSettings,
)
from stickyws.settings.rules import RULES, RulePlan, Skipped, validate
from stickyws.settings.scopes import PARTS, Scope

__all__ = [
    "CONTEXT_SETTINGS_FILE",
    "ENV_JWT_SECRET",
    "ENV_PUBLISH_KEY",
    "ENV_REDIS_AUTH",
    "ENV_REDIS_IAM_CACHE_NAME",
    "ENV_REDIS_IAM_SERVERLESS",
    "ENV_REDIS_PASSWORD",
    "ENV_REDIS_PASSWORD_SECRET_ARN",
    "ENV_REDIS_URL",
    "ENV_REDIS_USER",
    "ENV_SERVER_ID",
    "ENV_SERVICE_NAME",
    "ENV_TARGET_GROUP_ARN",
    "FIELDS",
    "LABEL_SERVER_ENV",
    "LABEL_SERVER_MODE",
    "PARTS",
    "RULES",
    "ClientSettings",
    "DeliverySettings",
    "DeploymentSettings",
    "Finding",
    "KubernetesSettings",
    "LoadBalancerSettings",
    "RegistrySettings",
    "RulePlan",
    "Scope",
    "ServerSettings",
    "SettingValueError",
    "Settings",
    "SettingsError",
    "Severity",
    "Skipped",
    "TargetGroupSettings",
    "TaskSettings",
    "UnknownSettingError",
    "env_name",
    "from_env",
    "load_file",
    "parse_bool",
    "read_server_environment",
    "render_value",
    "resolve",
    "server_environment",
    "server_labels",
    "to_env",
    "validate",
]
