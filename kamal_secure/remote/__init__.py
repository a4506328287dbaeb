"""Everything that talks to hosts. Only this package imports paramiko, and only lazily:
``facts`` and ``sshd_config`` are plain data and parsing, safe to import anywhere."""
