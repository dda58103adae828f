"""Put this folder first on PYTHONPATH to run a server as if orjson were not installed (bench variants)."""

raise ImportError("orjson hidden for a benchmark variant")
