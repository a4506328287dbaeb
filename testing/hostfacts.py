"""Build HostFacts for rule tests from sshd_config text, through the fallback parser."""

from __future__ import annotations

from dataclasses import replace

from kamal_secure.facts.host import SOURCE_ROOT, HostFacts, SshdConfig
from kamal_secure.remote.sshd_config import ConnInfo, derive
from testing import sshd

# the live hosts' baseline (whose BASE sets KbdInteractiveAuthentication), for user "deploy"
HARDENED = "KbdInteractiveAuthentication no\n" + sshd.HARDENED.replace(
    f"AllowUsers {sshd.DEPLOY_USER}", "AllowUsers deploy")


def sshd_of(text: str, user: str = "deploy", addr: str = "192.0.2.7",
            files: dict[str, str] | None = None) -> SshdConfig:
    tree = {"/etc/ssh/sshd_config": text, **(files or {})}
    config, _ = derive(ConnInfo(user, addr), lambda path: tree.get(path, ""),
                       lambda pattern: [p for p in tree if _glob(p, pattern)])
    assert config is not None, "the main sshd_config must be in files"
    return replace(config, source=SOURCE_ROOT)


def _glob(path: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(path, pattern)


def facts(text: str = HARDENED, user: str = "deploy",
          offered: tuple[str, ...] | None = ("publickey",), **extra: object) -> HostFacts:
    base = HostFacts(name="web-1", address="192.0.2.10", port=22, user=user,
                     offered=offered, sshd=sshd_of(text, user))
    return replace(base, **extra)  # type: ignore[arg-type]
