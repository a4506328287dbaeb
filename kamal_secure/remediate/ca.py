"""`kamal-secure ca init`: the SSH certificate authority's ed25519 key, outside the repository.

The key is made exactly as `keygen` makes a deploy key (:func:`keygen.create`: the .pub
first, the private key last, each written whole and 0600/0644, the passphrase from the
environment); this module adds what a CA needs on top: a default path outside the
repository, a refusal to put the key inside the current git repository (where it would be
committed), and a comment that names it as a CA.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from kamal_secure.errors import UsageError
from kamal_secure.facts.keys import DEFAULT_CA_PATH, git_root, inside
from kamal_secure.remediate import keygen

DEFAULT_PATH = DEFAULT_CA_PATH


def comment_for(today: dt.date | None = None) -> str:
    return f"kamal-secure-ca:{(today or dt.date.today()).isoformat()}"


def init(path: Path, passphrase: bytes | None = None, force: bool = False,
         cwd: Path | None = None) -> keygen.NewKey:
    """Create the CA key at ``path``; refuses an existing key or a path inside the current
    git repository unless ``force``."""
    path = path.expanduser()
    check_path(path, force, cwd)
    return keygen.create(path, comment_for(), passphrase, force)


def check_path(path: Path, force: bool = False, cwd: Path | None = None) -> None:
    """Refuse (unless ``force``) an existing key at ``path``, or a path inside the current
    git repository."""
    if (path.exists() or path.is_symlink()) and not force:
        raise UsageError(
            f"{path} exists already; refusing to replace a CA key (every certificate it "
            "signed, and every host that trusts it, depend on it)",
            hint="give another --path; --force replaces it (the old pair is kept as a "
            "timestamped backup)")
    root = git_root(cwd or Path.cwd())
    if root is not None and inside(path, root) and not force:
        raise UsageError(
            f"{path} is inside the git repository {root}; a CA private key there is one "
            "`git add .` away from being published",
            hint=f"keep it outside the repository (the default is {DEFAULT_PATH}); --force "
            "writes it there anyway")
