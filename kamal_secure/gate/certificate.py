"""Certificate mode (issue #17): mint the deploy key's short-lived certificate for a command.

Certificate mode is on when a CA is named: the policy's ``certificates.ca`` (a private key
file), or, for CI, the environment: ``KAMAL_SECURE_CA_ENV=NAME`` (the variable ``NAME``
holds the CA's private key text) or ``KAMAL_SECURE_CA_AGENT=1`` (an ssh-agent holds the
CA; its public key is ``certificates.ca`` + ``.pub``, by default ``~/.ssh/kamal_ca.pub``).
The environment wins over the policy. The gate cannot take options of its own (argv goes
to Kamal untouched), hence variables.

``mint_for`` is the one way every gate path mints: the guarded path (the verdict process,
once Kamal said which command it runs and how it reaches the hosts), the fallback path
(``gate/run.py: run_gate``) and our pre-connect hook under plain ``kamal``. It mints
before the gate's own live host checks, because they log in with the same key (paramiko,
like net-ssh, loads ``KEY-cert.pub`` beside the key); a refused command's certificate is
removed again. ``gate/kamal.py: exec_kamal`` drops the CA variable from every Kamal it
starts. Any failure in certificate mode refuses (exit 3): Kamal never runs without
the certificate.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from kamal_secure.config.inventory import SshSettings
from kamal_secure.errors import CheckIncomplete, KamalSecureError, UsageError

if TYPE_CHECKING:
    from kamal_secure.policy.file import CertificatePolicy
    from kamal_secure.remediate.certs import CaSource
    from kamal_secure.remote.fleet import Certify, LoginKeys

INTERACTIVE = frozenset({"-i", "--interactive"})


def ca_source(policy_ca: Path | None, environ: MutableMapping[str, str]) -> CaSource | None:
    """The CA (a ``remediate.certs.CaSource``) when in certificate mode, else None. A CA
    in a variable is taken out of the environment here (``gate.kamal.take_secret``)."""
    from kamal_secure.facts.keys import ca_choice
    from kamal_secure.gate.kamal import take_secret
    from kamal_secure.remediate.certs import CaSource

    choice = ca_choice(policy_ca, environ)
    if choice is None:
        return None
    if choice.env is not None:
        return CaSource(env=choice.env, secret=take_secret(choice.env, environ))
    return CaSource(path=choice.path, agent=choice.agent)


def needs_pty(words: list[str], interactive: bool) -> bool:
    """``permit-pty`` only for a terminal: ``console`` and ``... exec -i``."""
    return words[:1] == ["console"] or (interactive and "exec" in words[:2])


def interactive_flag(args: list[str]) -> bool:
    """Whether a command line asks for ``-i``/``--interactive`` (before ``--``)."""
    for arg in args:
        if arg == "--":
            return False
        if arg in INTERACTIVE or arg.startswith("--interactive="):
            return arg.partition("=")[2].lower() not in ("false", "no")
    return False


def mint_for(ssh: Iterable[SshSettings], command: list[str], pty: bool,
             environ: MutableMapping[str, str]) -> Path | None:
    """In certificate mode, write ``KEY-cert.pub`` for the deploy key (the first of
    ``ssh.keys``) with principal ``ssh.user``; None when not in certificate mode.

    ``ssh``: how the command reaches its hosts (as Kamal resolved it where known).
    ``command``: the command words for the key id (never its arguments: no secrets).
    The CA variable was taken out of the environment when the command started
    (``gate.kamal.hold_ca_secret``); what key it held stays known to the checks that
    follow (``facts.keys.gather_ca``)."""
    from kamal_secure.remediate import certs

    signed = _signed(list(ssh), command, pty, environ)
    if signed is None:
        return None
    with _refused_when_unminted():
        return certs.write_cert(*signed)


def certify_in_memory(command: str, policy: CertificatePolicy,
                      environ: MutableMapping[str, str]) -> Certify | None:
    """``scan``'s live checks in certificate mode: log in first with a certificate minted
    for them and held in memory (nothing written), so that hosts whose ``authorized_keys``
    no longer holds the deploy key (``harden --remove-static-keys``) are still checked;
    None in key mode. The CA is read when the first hosts are checked."""
    from kamal_secure.facts.keys import ca_choice

    if ca_choice(policy.ca, environ) is None:
        return None

    def certify(ssh: SshSettings) -> LoginKeys:
        from kamal_secure.remote.actions import certified

        signed = _signed([ssh], [command], False, environ, policy)
        return certified(*signed) if signed is not None else ()
    return certify


def _signed(ssh: list[SshSettings], command: list[str], pty: bool,
            environ: MutableMapping[str, str],
            policy: CertificatePolicy | None = None) -> tuple[Path, bytes] | None:
    """(the deploy key, its certificate) in certificate mode; None in key mode or with no
    host. Any failure is CheckIncomplete (exit 3): nothing runs without the certificate."""
    from kamal_secure.policy.file import load_policy

    policy = policy or load_policy().certificates
    source = ca_source(policy.ca, environ)  # a CA in a variable was taken at the start
    if source is None:
        return None
    with _refused_when_unminted():
        return _sign(source, ssh, command, pty, policy.validity, policy.minimum,
                     policy.source_address)


@contextmanager
def _refused_when_unminted() -> Iterator[None]:
    """Any failure to mint or write the certificate refuses (exit 3)."""
    try:
        yield
    except KamalSecureError as err:
        raise CheckIncomplete(f"certificate mode: no certificate was minted: {err.message}",
                              hint=err.hint or "Kamal was not started") from None
    except OSError as err:
        raise CheckIncomplete(f"certificate mode: no certificate was minted: "
                              f"{err.strerror or err}") from None


def _sign(source: CaSource, ssh: list[SshSettings], command: list[str], pty: bool,
          validity: int, minimum: int,
          source_address: tuple[str, ...] | None) -> tuple[Path, bytes] | None:
    from kamal_secure.gate.run import _git_commit, account_name
    from kamal_secure.remediate import certs

    pairs = {(s.keys[0] if s.keys else "", s.user) for s in ssh}
    if not pairs:
        return None  # no host to log in to
    if len(pairs) > 1:
        raise UsageError("the hosts are reached with different users or deploy keys "
                         f"({', '.join(sorted(u + ' ' + k for k, u in pairs))}); one "
                         "certificate names one user")
    (key, user), = pairs
    if not key:
        raise UsageError("ssh.keys names no deploy key: certificate mode certifies the "
                         "first key of ssh.keys")
    key_path = Path(key).expanduser()
    try:
        public = key_path.with_name(key_path.name + ".pub").read_text()
    except OSError as err:
        raise UsageError(f"{key_path}.pub: {err.strerror or err} (the certificate is for "
                         "the deploy key's public half)") from None
    cert = certs.mint(source, public, user, validity,
                      certs.key_id(account_name(), _git_commit() or "",
                                   " ".join(command) or "kamal"),
                      certs.serial_now(), source_address, pty)
    certs.ensure_lasts(cert, minimum)
    return key_path, cert
