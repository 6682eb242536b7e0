"""The layout's rules, checked on the source: the library is pure (jobs/ own Spark)."""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = ("curation", "metadata", "training")


def _modules(package: str):
    for dirpath, _dirs, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def _imports(path: str) -> set[str]:
    """Every module an import statement names anywhere in the file (function-local ones too)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


@pytest.mark.parametrize("package", LIBRARY)
def test_the_library_imports_no_spark(package):
    offenders = sorted(os.path.relpath(p, ROOT) for p in _modules(package)
                       if any(m == "pyspark" or m.startswith("pyspark.") or m.startswith("jobs") for m in _imports(p)))
    assert not offenders, f"Spark (or a job module) imported in the library: {offenders}"


def test_spark_sessions_are_built_in_jobs_only():
    builders = sorted(os.path.relpath(p, ROOT) for pkg in (*LIBRARY, "jobs") for p in _modules(pkg)
                      if "SparkSession" in open(p, encoding="utf-8").read())
    assert builders and all(p.startswith("jobs" + os.sep) for p in builders), builders
