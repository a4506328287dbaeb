"""Host paths that must not be mounted into a container, and why: domain knowledge as data.

Paths arrive normalised (``dockerargs.normalise``): no ``//``, ``..`` or trailing ``/``, and
``/var/run`` is ``/run``.
"""

from __future__ import annotations

SOCKETS = ("docker.sock", "podman.sock")


def docker_socket_mount(host: str) -> str | None:
    name = host.rsplit("/", 1)[-1]
    if name in SOCKETS:
        return (f"mounts the Docker socket ({host}; read-only does not help): the container "
                "controls Docker, i.e. root on the host")
    if host in ("/run", "/run/docker"):
        return f"mounts {host}, which holds the Docker socket: root on the host"
    return None


def root_mount(host: str) -> str | None:
    return "mounts the host's root filesystem into the container" if host == "/" else None


SENSITIVE_TREES: dict[str, str] = {
    "/var/lib/docker": "Docker's data: every container's environment and secrets",
    "/var/lib/containerd": "containerd's data: every container's filesystem",
    "/run/containerd": "the containerd socket: root on the host",
    "/proc": "the host's /proc: its processes, their environment and kernel knobs",
    "/sys": "the host's /sys: kernel and cgroup controls",
    "/root": "root's home directory (its .ssh among others)",
    "/etc/ssh": "the host's ssh configuration and host keys",
    "/etc/sudoers.d": "the host's sudo rules",
    "/etc/docker": "the Docker daemon's configuration",
}
SENSITIVE_EXACT: dict[str, str] = {
    "/etc": "the host's /etc: users, passwords, ssh and sudo configuration",
    "/etc/shadow": "the host's password hashes",
    "/etc/sudoers": "the host's sudo rules",
    "/home": "every user's home directory (their .ssh among others)",
    "/dev": "every host device",
}  # /var/run and /run (normalised to /run) hold the Docker socket: KS308
HARMLESS_DEV = frozenset({"/dev/log", "/dev/shm", "/dev/null", "/dev/zero",  # noqa: S108
                          "/dev/random", "/dev/urandom", "/dev/fuse"})


def sensitive_mount_why(host: str) -> str | None:
    parts = host.split("/")
    if ".ssh" in parts:
        return f"mounts {host}: an .ssh directory (private keys, authorized_keys)"
    if ".docker" in parts and (parts[-1] in (".docker", "config.json")):
        return f"mounts {host}: Docker's config.json holds registry credentials"
    if host.endswith("containerd.sock"):
        return f"mounts {host}: the containerd socket, root on the host"
    for tree, why in SENSITIVE_TREES.items():
        if host == tree or host.startswith(tree + "/"):
            return f"mounts {host}: {why}"
    if host.startswith("/dev/") and host not in HARMLESS_DEV:
        return f"mounts {host}: a host device"
    exact = SENSITIVE_EXACT.get(host)
    return f"mounts {host}: {exact}" if exact else None
