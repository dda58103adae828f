"""Put this folder first on PYTHONPATH to run a server as if hiredis were not installed (bench variants)."""

raise ImportError("hiredis hidden for a benchmark variant")
