"""The one settings model of stickyws, its named rules and its text renderings.

>>> from stickyws.settings import Settings
>>> s = Settings().with_overrides({"idle_timeout_s": "300"})
>>> s["idle_timeout_s"]
300
>>> [f.rule for f in s.validate() if f.severity.value == "error"]
[]
"""

from stickyws.settings.codec import (
    CONTEXT_SETTINGS_FILE,
    ENV_JWT_SECRET,
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
    env_name,
    from_env,
    load_file,
    parse_bool,
    render_value,
    resolve,
    to_env,
)
from stickyws.settings.errors import SettingsError, SettingValueError, UnknownSettingError
from stickyws.settings.model import (
    FIELDS,
    ClientSettings,
    LoadBalancerSettings,
    RegistrySettings,
    ServerSettings,
    Settings,
    TargetGroupSettings,
    TaskSettings,
)
from stickyws.settings.rules import RULES, Finding, Severity, validate

__all__ = [
    "CONTEXT_SETTINGS_FILE",
    "ENV_JWT_SECRET",
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
    "RULES",
    "ClientSettings",
    "Finding",
    "LoadBalancerSettings",
    "RegistrySettings",
    "ServerSettings",
    "SettingValueError",
    "Settings",
    "SettingsError",
    "Severity",
    "TargetGroupSettings",
    "TaskSettings",
    "UnknownSettingError",
    "env_name",
    "from_env",
    "load_file",
    "parse_bool",
    "render_value",
    "resolve",
    "to_env",
    "validate",
]
