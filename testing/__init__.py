"""Test support code for kamal-secure's suite (beside ``tests/``; never shipped).

- :mod:`testing.cli`: run the CLI as a user would, always from a clean environment
  (``clean_env``; ``run_cli`` in a process of its own, ``Main`` in this one).
- :mod:`testing.project`: write a Kamal project on disk (``write_project``) and scan it.
- :mod:`testing.standin`: a recording stand-in ``kamal``.
- :mod:`testing.sshd`: real OpenSSH sshd test hosts on loopback, ``keygen``, ``HARDENED``,
  ``listed`` (a certificate as ``ssh-keygen -L`` reads it).
- :mod:`testing.live`: a project pointing at those hosts; the host checks on it.
- :mod:`testing.e2e`, :mod:`testing.ruby`: the e2e tier's helpers (the real Kamal, Ruby).
- :mod:`testing.hostfacts`, :mod:`testing.corpus`, :mod:`testing.fuzz`: inputs for rule,
  corpus and fuzz tests.
"""
