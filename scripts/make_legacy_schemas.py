"""Writes tests/data/legacy/<commit>.sql: the install script exactly as pgmrl built it at an earlier landed commit.

For each commit, the commit's own `pyext/pgmrl/sqlinstall.py` (with the `errors.py` it imports) and its own `sql/`
folder are taken from git history (`git archive`) into a temporary package `pgmrl`, and that commit's
`build_script("public", ...)` is called in a separate interpreter, so the output is what `pgmrl install` ran on
a database at that commit (pgvector in schema public). Commits whose build_script takes `plpython` also get a
`<commit>-plpython.sql` (the variant for servers with plpython3u).

The upgrade tests (tests/test_upgrade.py) read the committed files, never git: a fresh clone may be shallow.

    python scripts/make_legacy_schemas.py            # f74a3b3, 6df6e11, dfa4366, fe255e2
    python scripts/make_legacy_schemas.py f74a3b3    # one commit
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "legacy"
# The first landed core version; the end of the first session; 007_security.sql as it first landed (dfa4366) and
# as first edited (fe255e2), before it was edited again (f1b8e09).
COMMITS = ["f74a3b3", "6df6e11", "dfa4366", "fe255e2"]

# Run in a separate interpreter whose sys.path starts at the temporary folder, so `pgmrl` is the old package.
_BUILD = r"""
import inspect, json, sys
try:
    from pgmrl import schema as sqlinstall  # the layout since the subpackages (pgmrl/schema/)
except ImportError:
    from pgmrl import sqlinstall
assert sqlinstall.__file__.startswith(sys.argv[1]), sqlinstall.__file__
params = inspect.signature(sqlinstall.build_script).parameters
out = {"default": sqlinstall.build_script("public")}
if "plpython" in params:
    out["plpython"] = sqlinstall.build_script("public", plpython=True)
json.dump(out, sys.stdout)
"""


def _git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True).stdout


def build(commit: str) -> dict[str, str]:
    full = _git("rev-parse", "--verify", f"{commit}^{{commit}}").decode().strip()
    with tempfile.TemporaryDirectory(prefix="pgmrl-legacy-") as tmp:
        if _git("ls-tree", "--name-only", full, "pyext/pgmrl/schema/__init__.py").strip():
            # the subpackage layout: the commit's whole package, its sql/ where the package's symlink points
            with tarfile.open(fileobj=io.BytesIO(_git("archive", "--format=tar", full, "sql", "pyext/pgmrl"))) as tar:
                tar.extractall(tmp, filter="tar")
            path = str(Path(tmp) / "pyext")
        else:
            _flat_package(full, Path(tmp))
            path = tmp
        res = subprocess.run([sys.executable, "-c", _BUILD, path], check=True, capture_output=True, text=True,
                             env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin"}, cwd=tmp)
        return json.loads(res.stdout)


def _flat_package(full: str, tmp: Path) -> None:
    """The flat layout (before the subpackages): only sqlinstall.py, errors.py and sql/, as package `pgmrl`."""
    pkg = tmp / "pgmrl"
    pkg.mkdir()
    archive = _git("archive", "--format=tar", full, "sql", "pyext/pgmrl/sqlinstall.py", "pyext/pgmrl/errors.py")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            parts = Path(member.name).parts
            dest = pkg / parts[-1] if parts[0] == "pyext" else pkg / Path(*parts)  # sql/... -> pgmrl/sql/...
            dest.parent.mkdir(parents=True, exist_ok=True)
            extracted = tar.extractfile(member)
            assert extracted is not None
            dest.write_bytes(extracted.read())
    (pkg / "__init__.py").write_text("")


def main() -> None:
    ap = argparse.ArgumentParser(description=inspect.getdoc(sys.modules[__name__]).splitlines()[0])
    ap.add_argument("commits", nargs="*", default=COMMITS)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for commit in args.commits:
        for variant, script in build(commit).items():
            name = f"{commit}.sql" if variant == "default" else f"{commit}-{variant}.sql"
            header = (f"-- pgmrl install script as built at commit {commit} ({variant} variant), "
                      f"by scripts/make_legacy_schemas.py. Do not edit.\n")
            (OUT / name).write_text(header + script, encoding="utf-8")
            print(f"wrote {OUT / name} ({len(script)} chars)")


if __name__ == "__main__":
    main()
