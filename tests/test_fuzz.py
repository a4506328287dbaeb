"""The fuzz tier (issue 13): many generated projects through `scan --offline`, in one process.

Every case goes through the real CLI entry point (cli.main) with all four output formats
at once (text on stdout, json, sarif and github into files) and must give exit 0, 1 or 2,
no traceback or internal error, and no planted secret (whole, or any 8 characters beyond
the 4-character prefix we show) in stdout, stderr or any report file.

Budget: KAMAL_SECURE_FUZZ_CASES (default below: about a minute on 2 busy cores),
KAMAL_SECURE_FUZZ_SEED (default fixed, so `make test` is repeatable; `make fuzz` runs a
long campaign with a fresh seed). A failing case is kept on disk and named in the failure.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from kamal_secure import cli
from testing.fuzz import Case, generate, leaked

DEFAULT_CASES = 1000
DEFAULT_SEED = 13
FORMATS = ["--format", "json", "--output", "r.json", "--format", "sarif", "--output", "r.sarif",
           "--format", "github", "--output", "r.github", "--format", "text"]  # text: stdout
REPORTS = ("r.json", "r.sarif", "r.github")


def _run(case: Case, root: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    args = ["scan", "--offline", *FORMATS, *case.args]
    if case.index % 3 == 0:
        args.append("--show-suppressed")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = cli.main(args)
    finally:
        os.chdir(cwd)
    written = "".join((root / name).read_text(encoding="utf-8", errors="replace")
                      for name in REPORTS if (root / name).exists())
    return code, out.getvalue() + err.getvalue() + written


def _problem(code: int, output: str, case: Case) -> str | None:
    if code not in (0, 1, 2):
        crash = ""
        if "details in " in output:
            log = output.split("details in ", 1)[1].split()[0]
            crash = Path(log).read_text() if Path(log).exists() else ""
        return f"exit {code}: {output[-500:]}\n{crash}"
    if "Traceback" in output or "internal error" in output:
        return f"traceback/internal error: {output[-500:]}"
    for secret in case.planted:
        if leaked(secret, output):
            return f"planted secret {secret[:4]}… leaked"
    return None


def test_fuzz_scan_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = int(os.environ.get("KAMAL_SECURE_FUZZ_CASES", DEFAULT_CASES))
    seed = int(os.environ.get("KAMAL_SECURE_FUZZ_SEED", DEFAULT_SEED))
    for var in [v for v in os.environ if v.startswith("KAMAL_SECURE_") and "FUZZ" not in v]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no real keys or known_hosts
    start = time.monotonic()
    codes: dict[int, int] = {}
    planted = 0
    for index in range(cases):
        case = generate(seed, index)
        root = tmp_path / f"case-{index}"
        case.write(root)
        code, output = _run(case, root)
        problem = _problem(code, output, case)
        if problem is not None:
            keep = Path(tempfile.mkdtemp(prefix=f"kamal-secure-fuzz-{seed}-{index}-"))
            shutil.copytree(root, keep, dirs_exist_ok=True)
            pytest.fail(f"seed {seed} case {index} ({keep}): {problem}")
        codes[code] = codes.get(code, 0) + 1
        planted += len(case.planted)
        shutil.rmtree(root)
    seconds = time.monotonic() - start
    print(f"\nfuzz: {cases} projects (seed {seed}) in {seconds:.1f}s, "
          f"{cases / seconds:.1f}/s; exit codes {dict(sorted(codes.items()))}; "
          f"{planted} planted secrets, none leaked")
    assert sum(codes.values()) == cases
    assert len(codes) >= 2  # the generator reaches clean/finding and error paths alike
