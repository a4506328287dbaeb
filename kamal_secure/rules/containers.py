"""KS3xx: docker run options that break container isolation (in the security schema).

Kamal passes ``options`` of roles and accessories to ``docker run`` unchecked.
"""

from __future__ import annotations

from kamal_secure.report.model import Severity
from kamal_secure.rules.base import Rule, define, filled_schema_check, schema_check

FAMILY = "containers"
APP = "service: shop\nimage: acme/shop\nservers:\n  web:\n    hosts: [203.0.113.10]\n"

privileged = define(
    "KS301", Severity.CRITICAL, "Container runs privileged",
    rationale="`--privileged` gives the container every capability and every device: root in "
    "the container is root on the host, and any app bug becomes a host compromise.",
    fix="Remove `privileged: true`; add the one capability or device the app needs instead.",
    insecure=APP + "    options:\n      privileged: true\n",
    secure=APP + "    options:\n      memory: 1g\n",
    family=FAMILY,
)(schema_check)

cap_add = define(
    "KS302", Severity.HIGH, "Container gets a dangerous capability (cap-add)",
    rationale="Capabilities such as ALL, SYS_ADMIN, NET_ADMIN, SYS_PTRACE or SYS_MODULE let a "
    "process in the container escape it or reconfigure the host.",
    fix="Drop the capability; if the app needs one, grant the narrowest (e.g. NET_BIND_SERVICE).",
    insecure=APP + "    options:\n      cap-add: SYS_ADMIN\n",
    secure=APP + "    options:\n      cap-add: NET_BIND_SERVICE\n",
    family=FAMILY,
)(schema_check)

host_network = define(
    "KS303", Severity.HIGH, "Container uses the host network",
    rationale="With `network: host` the container shares the host's network stack: every port "
    "it opens is reachable on the host's addresses, past Docker's port mapping and the proxy.",
    fix="Remove `network: host`; publish only the ports needed, bound to 127.0.0.1.",
    insecure=APP + "    options:\n      network: host\n",
    secure=APP + "    options:\n      network: kamal\n",
    family=FAMILY,
)(schema_check)

host_namespace = define(
    "KS304", Severity.HIGH, "Container shares a host namespace (pid, ipc, uts, userns)",
    rationale="`pid: host` shows and lets the container signal every host process; `ipc: host` "
    "shares host shared memory; `userns: host` turns off user-namespace remapping.",
    fix="Remove the host namespace option.",
    insecure=APP + "    options:\n      pid: host\n",
    secure=APP + "    options:\n      init: true\n",
    family=FAMILY,
)(schema_check)

root_user = define(
    "KS305", Severity.MEDIUM, "Container is told to run as root",
    rationale="`user: root` (or 0) overrides a non-root USER in the image; a compromised app "
    "then owns every file in the container and is one kernel bug away from the host.",
    fix="Run as an unprivileged user: set USER in the Dockerfile and drop the option.",
    insecure=APP + "    options:\n      user: root\n",
    secure=APP + "    options:\n      user: \"1000:1000\"\n",
    family=FAMILY,
)(schema_check)

unconfined = define(
    "KS306", Severity.HIGH, "Kernel confinement turned off (security-opt)",
    rationale="`seccomp=unconfined`, `apparmor=unconfined` and `label=disable` remove the "
    "kernel policies that stop container escapes.",
    fix="Remove the security-opt, or use a custom profile that allows just what is needed.",
    insecure=APP + "    options:\n      security-opt: seccomp=unconfined\n",
    secure=APP + "    options:\n      security-opt: no-new-privileges\n",
    family=FAMILY,
)(schema_check)

device = define(
    "KS307", Severity.MEDIUM, "Host device passed into the container",
    rationale="`device` gives the container raw access to a host device (a disk, a GPU, "
    "/dev/mem): a path around the filesystem and its permissions.",
    fix="Remove the device unless the service really drives hardware; document why if so.",
    insecure=APP + "    options:\n      device: /dev/sda\n",
    secure=APP + "    options:\n      memory: 1g\n",
    family=FAMILY,
)(schema_check)

docker_socket = define(
    "KS308", Severity.CRITICAL, "Docker socket mounted into a container",
    rationale="Whoever talks to /var/run/docker.sock can start a privileged container that "
    "mounts /: the socket is root on the host.",
    fix="Do not mount the socket; if a tool must watch containers use a filtering socket "
    "proxy that allows read-only calls.",
    insecure="service: shop\nimage: acme/shop\naccessories:\n  watch:\n"
    "    image: acme/watch:1.0\n    host: 203.0.113.10\n"
    "    volumes:\n      - /var/run/docker.sock:/var/run/docker.sock\n",
    secure="service: shop\nimage: acme/shop\naccessories:\n  watch:\n"
    "    image: acme/watch:1.0\n    host: 203.0.113.10\n"
    "    volumes:\n      - watch-data:/data\n",
    family=FAMILY,
)(schema_check)

host_root = define(
    "KS309", Severity.CRITICAL, "Host root filesystem mounted into a container",
    rationale="Mounting / gives the container every file on the host, /etc/shadow and "
    "root's authorized_keys included.",
    fix="Mount only the directory the service needs, read-only where possible.",
    insecure="service: shop\nimage: acme/shop\nvolumes:\n  - /:/host\n",
    secure="service: shop\nimage: acme/shop\nvolumes:\n  - /srv/shop/storage:/rails/storage\n",
    family=FAMILY,
)(schema_check)

floating_image = define(
    "KS310", Severity.LOW, "Accessory image is :latest or untagged",
    rationale="Accessories are booted from whatever the tag points to today: an upstream "
    "change (or a hijacked tag) reaches production unreviewed, and reboots are not "
    "reproducible.",
    fix="Pin a version tag (postgres:16.4) or a digest (postgres@sha256:...).",
    insecure="service: shop\nimage: acme/shop\naccessories:\n  db:\n    image: postgres\n"
    "    host: 203.0.113.10\n",
    secure="service: shop\nimage: acme/shop\naccessories:\n  db:\n    image: postgres:16.4\n"
    "    host: 203.0.113.10\n",
    family=FAMILY,
)(filled_schema_check(lambda ctx, value: (_pin_fix(value), None)))


def _pin_fix(image: object) -> str | None:
    """Name the image the config uses: `redis:VERSION`, not a generic example."""
    if not isinstance(image, str) or not image:
        return None
    name = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return (f"Pin the version you run today: `image: {name}:VERSION` (an exact tag), or a "
            f"digest `{name}@sha256:...`.")


RULES: tuple[Rule, ...] = (privileged, cap_add, host_network, host_namespace, root_user,
                           unconfined, device, docker_socket, host_root, floating_image)
