"""The user project under user_project/ runs in the packaging test's own venv, never in this suite."""

collect_ignore = ["user_project"]
