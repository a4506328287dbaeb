"""Derive kamal_secure/schema/kamal-versions.json from a basecamp/kamal git checkout.

Kamal validates deploy.yml against the example files in
lib/kamal/configuration/docs/*.yml (an unknown key is rejected). This script
reads those files at every Kamal 2 release tag (git show, nothing checked out)
and records, for each config key path, the releases that accept it. Only the
derived table is committed, never Kamal's files.

Usage (from the repository root):
  PYTHONPATH=. python scripts/kamal_keys_table.py KAMAL_GIT_DIR \
    > kamal_secure/schema/kamal-versions.json
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import yaml

from kamal_secure.facts.kamal_version import config_paths

DOCS = "lib/kamal/configuration/docs"
RELEASE_RE = re.compile(r"^v(2\.\d+\.\d+)$")
def _git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                          check=True).stdout


def _releases(repo: str) -> list[str]:
    found = [m.group(1) for t in _git(repo, "tag").split() if (m := RELEASE_RE.match(t))]
    return sorted(found, key=lambda v: tuple(int(p) for p in v.split(".")))


def keys_at(repo: str, version: str) -> set[str]:
    out: set[str] = set()
    for name in _git(repo, "ls-tree", "--name-only", f"v{version}", f"{DOCS}/").split():
        if name.endswith(".yml"):
            doc = yaml.safe_load(_git(repo, "show", f"v{version}:{name}"))
            out.update(".".join(path) for path in config_paths(doc))
    return out


def table(repo: str) -> dict[str, Any]:
    versions = _releases(repo)
    per = {v: keys_at(repo, v) for v in versions}
    keys: dict[str, list[list[str | None]]] = {}
    for path in sorted(set().union(*per.values())):
        ranges: list[list[str | None]] = []
        for i, version in enumerate(versions):
            inside = path in per[version]
            was = i > 0 and path in per[versions[i - 1]]
            if inside and not was:
                ranges.append([version, None])
            elif was and not inside:
                ranges[-1][1] = version
        keys[path] = ranges
    return {
        "source": "basecamp/kamal lib/kamal/configuration/docs/*.yml at each release tag "
                  "(derived by scripts/kamal_keys_table.py)",
        "note": "keys[path] lists [since, until) release ranges; until null: still accepted",
        "versions": versions,
        "keys": keys,
    }


if __name__ == "__main__":
    json.dump(table(sys.argv[1]), sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
