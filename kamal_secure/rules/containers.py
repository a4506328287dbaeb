"""KS3xx: docker run options and mounts that break container isolation.

Kamal passes ``options`` of roles and accessories to ``docker run`` unchecked;
the checks read the flags Docker parses (``dockerargs``), whatever the YAML
spelling (``privileged: true``, ``"privileged=true": true``, ``"pid=host": true``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from kamal_secure.config.erb import DYNAMIC, is_dynamic
from kamal_secure.config.yamlsafe import Path
from kamal_secure.report.model import Finding, Severity
from kamal_secure.rules.base import (
    Context,
    Rule,
    define,
    filled_schema_check,
    yaml_path,
)
from kamal_secure.rules.dockerargs import Flag, all_flags, mounts
from kamal_secure.rules.hostpaths import docker_socket_mount, root_mount, sensitive_mount_why

FAMILY = "containers"
APP = "service: shop\nimage: acme/shop\nservers:\n  web:\n    hosts: [203.0.113.10]\n"
DANGEROUS_CAP = re.compile(r"^(cap_)?(all|sys_admin|net_admin|sys_ptrace|sys_module|sys_rawio|"
                           r"dac_read_search|dac_override|sys_boot|sys_time|mknod|bpf|perfmon|"
                           r"net_raw)$", re.IGNORECASE)
UNCONFINED = re.compile(r"(seccomp[=:]unconfined|apparmor[=:]unconfined|label[=:]disable|"
                        r"systempaths[=:]unconfined|no-new-privileges[=:]false)", re.IGNORECASE)
NAMESPACES = ("pid", "ipc", "uts", "userns", "cgroupns")
FlagTest = Callable[[Flag], str | None]


def _flags(test: FlagTest) -> Callable[[Rule, Context], Iterator[Finding]]:
    """A check over every docker flag Kamal renders from options."""

    def check(rule: Rule, ctx: Context) -> Iterator[Finding]:
        for flag in all_flags(ctx.project.data):
            if flag.value is not None and is_dynamic(flag.value):
                continue
            why = test(flag)
            if why:
                yield rule.finding(f"{yaml_path(flag.path)}: {why}", ctx.at(*flag.path))

    return check


def _is_host(flag: Flag, *names: str) -> bool:
    return flag.name in names and (flag.value or "").strip().lower() == "host"


def _privileged(flag: Flag) -> str | None:
    if flag.name == "privileged" and flag.on:
        return "renders --privileged: root in the container is root on the host"
    return None


def _cap_add(flag: Flag) -> str | None:
    if flag.name != "cap-add" or flag.value is None:
        return None
    bad = [cap for cap in re.split(r"[,\s]+", flag.value) if DANGEROUS_CAP.match(cap)]
    return f"adds {', '.join(bad)}: a capability that breaks container isolation" if bad \
        else None


def _network(flag: Flag) -> str | None:
    if _is_host(flag, "network"):
        return "uses the host's network stack: every port it opens is public"
    return None


def _namespace(flag: Flag) -> str | None:
    if _is_host(flag, *NAMESPACES):
        return f"shares the host's {flag.name} namespace (--{flag.name}=host)"
    return None


def _user(flag: Flag) -> str | None:
    value = (flag.value or "").strip()
    if flag.name == "user" and re.match(r"^(root|0)(:.*)?$", value):
        return "runs the container as root"
    return None


def _unconfined(flag: Flag) -> str | None:
    if flag.name == "security-opt" and UNCONFINED.search(flag.value or ""):
        return "turns off a kernel confinement (seccomp, AppArmor, SELinux, masked paths)"
    return None


def _device(flag: Flag) -> str | None:
    if flag.name == "device":
        return "passes a host device into the container"
    if flag.name == "device-cgroup-rule":
        return "lets the container use host devices by cgroup rule (device-cgroup-rule)"
    return None


def _accessory_network(rule: Rule, ctx: Context) -> Iterator[Finding]:
    groups = ctx.project.get("accessories")
    for name, item in groups.items() if isinstance(groups, dict) else ():
        if isinstance(item, dict) and str(item.get("network", "")).strip().lower() == "host":
            path: Path = ("accessories", name, "network")
            yield rule.finding(f"{yaml_path(path)}: uses the host's network stack: every port "
                               "it opens is public", ctx.at(*path))


def _host_network(rule: Rule, ctx: Context) -> Iterator[Finding]:
    yield from _flags(_network)(rule, ctx)
    yield from _accessory_network(rule, ctx)


def _mounts(test: Callable[[str], str | None]) -> Callable[[Rule, Context], Iterator[Finding]]:
    """A check over the normalised host side of every bind mount (volumes and options)."""

    def check(rule: Rule, ctx: Context) -> Iterator[Finding]:
        for host, path in mounts(ctx.project.data):
            why = test(host)
            if why:
                why = why.replace(DYNAMIC, "<%= ... %>")
                yield rule.finding(f"{yaml_path(path)}: {why}", ctx.at(*path))

    return check


privileged = define(
    "KS301", Severity.CRITICAL, "Container runs privileged",
    rationale="`--privileged` gives the container every capability and every device: root in "
    "the container is root on the host, and any app bug becomes a host compromise. Kamal "
    "renders option keys verbatim, so `\"privileged=true\": true` is the same flag.",
    fix="Remove `privileged: true`; add the one capability or device the app needs instead.",
    insecure=APP + "    options:\n      privileged: true\n",
    secure=APP + "    options:\n      memory: 1g\n",
    family=FAMILY,
)(_flags(_privileged))

cap_add = define(
    "KS302", Severity.HIGH, "Container gets a dangerous capability (cap-add)",
    rationale="Capabilities such as ALL, SYS_ADMIN, NET_ADMIN, SYS_PTRACE or SYS_MODULE let a "
    "process in the container escape it or reconfigure the host.",
    fix="Drop the capability; if the app needs one, grant the narrowest (e.g. NET_BIND_SERVICE).",
    insecure=APP + "    options:\n      cap-add: SYS_ADMIN\n",
    secure=APP + "    options:\n      cap-add: NET_BIND_SERVICE\n",
    family=FAMILY,
)(_flags(_cap_add))

host_network = define(
    "KS303", Severity.HIGH, "Container uses the host network",
    rationale="With `network: host` the container shares the host's network stack: every port "
    "it opens is reachable on the host's addresses, past Docker's port mapping and the proxy.",
    fix="Remove `network: host`; publish only the ports needed, bound to 127.0.0.1.",
    insecure=APP + "    options:\n      network: host\n",
    secure=APP + "    options:\n      network: kamal\n",
    family=FAMILY,
)(_host_network)

host_namespace = define(
    "KS304", Severity.HIGH, "Container shares a host namespace (pid, ipc, uts, userns, cgroupns)",
    rationale="`pid: host` shows and lets the container signal every host process; `ipc: host` "
    "shares host shared memory; `uts: host` lets it rename the host; `userns: host` turns off "
    "user-namespace remapping; `cgroupns: host` shows the host's cgroup tree. Every spelling "
    "Kamal renders counts (`\"pid=host\": true` is `--pid=host`).",
    fix="Remove the host namespace option.",
    insecure=APP + "    options:\n      pid: host\n",
    secure=APP + "    options:\n      init: true\n",
    family=FAMILY,
)(_flags(_namespace))

root_user = define(
    "KS305", Severity.MEDIUM, "Container is told to run as root",
    rationale="`user: root` (or 0) overrides a non-root USER in the image; a compromised app "
    "then owns every file in the container and is one kernel bug away from the host.",
    fix="Run as an unprivileged user: set USER in the Dockerfile and drop the option.",
    insecure=APP + "    options:\n      user: root\n",
    secure=APP + "    options:\n      user: \"1000:1000\"\n",
    family=FAMILY,
)(_flags(_user))

unconfined = define(
    "KS306", Severity.HIGH, "Kernel confinement turned off (security-opt)",
    rationale="`seccomp=unconfined`, `apparmor=unconfined`, `label=disable` and "
    "`systempaths=unconfined` remove the kernel policies and masked paths that stop container "
    "escapes.",
    fix="Remove the security-opt, or use a custom profile that allows just what is needed.",
    insecure=APP + "    options:\n      security-opt: seccomp=unconfined\n",
    secure=APP + "    options:\n      security-opt: no-new-privileges\n",
    family=FAMILY,
)(_flags(_unconfined))

device = define(
    "KS307", Severity.MEDIUM, "Host device passed into the container",
    rationale="`device` gives the container raw access to a host device (a disk, a GPU, "
    "/dev/mem), and `device-cgroup-rule` lets it create and open host devices: a path around "
    "the filesystem and its permissions.",
    fix="Remove the device unless the service really drives hardware; document why if so.",
    insecure=APP + "    options:\n      device: /dev/sda\n",
    secure=APP + "    options:\n      memory: 1g\n",
    family=FAMILY,
)(_flags(_device))

docker_socket = define(
    "KS308", Severity.CRITICAL, "Docker socket mounted into a container",
    rationale="Whoever talks to /var/run/docker.sock can start a privileged container that "
    "mounts /: the socket is root on the host. `:ro` does not help (it only stops deleting the "
    "socket file), and every spelling of the path counts (`//var/run/docker.sock`, "
    "`/run/docker.sock`, `/var/run/../run/docker.sock`, a mount of /run itself).",
    fix="Do not mount the socket; if a tool must watch containers use a filtering socket "
    "proxy that allows read-only calls.",
    insecure="service: shop\nimage: acme/shop\naccessories:\n  watch:\n"
    "    image: acme/watch:1.0\n    host: 203.0.113.10\n"
    "    volumes:\n      - /var/run/docker.sock:/var/run/docker.sock\n",
    secure="service: shop\nimage: acme/shop\naccessories:\n  watch:\n"
    "    image: acme/watch:1.0\n    host: 203.0.113.10\n"
    "    volumes:\n      - watch-data:/data\n",
    family=FAMILY,
)(_mounts(docker_socket_mount))

host_root = define(
    "KS309", Severity.CRITICAL, "Host root filesystem mounted into a container",
    rationale="Mounting / gives the container every file on the host, /etc/shadow and "
    "root's authorized_keys included.",
    fix="Mount only the directory the service needs, read-only where possible.",
    insecure="service: shop\nimage: acme/shop\nvolumes:\n  - /:/host\n",
    secure="service: shop\nimage: acme/shop\nvolumes:\n  - /srv/shop/storage:/rails/storage\n",
    family=FAMILY,
)(_mounts(root_mount))

sensitive_mount = define(
    "KS311", Severity.HIGH, "Sensitive host path mounted into a container",
    rationale="Some host paths hand the container what it must never have: /var/lib/docker "
    "(every container's environment, secrets included), .ssh directories (keys), Docker's "
    "config.json (registry credentials), the containerd socket, /etc, /proc, /sys, /dev and "
    "/run. Paths are normalised first (`//etc/`, `/var/run/../etc`), and `:ro` still lets the "
    "container read everything there.",
    fix="Mount only the one file or directory the service needs; hand credentials over as "
    "secrets (env.secret) instead of mounting them.",
    insecure="service: shop\nimage: acme/shop\naccessories:\n  logs:\n"
    "    image: acme/logs:1.0\n    host: 203.0.113.10\n"
    "    volumes:\n      - /var/lib/docker/containers:/var/lib/docker/containers:ro\n",
    secure="service: shop\nimage: acme/shop\naccessories:\n  logs:\n"
    "    image: acme/logs:1.0\n    host: 203.0.113.10\n"
    "    volumes:\n      - /srv/shop/log:/logs:ro\n",
    family=FAMILY,
)(_mounts(sensitive_mount_why))

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
                           unconfined, device, docker_socket, host_root, sensitive_mount,
                           floating_image)
