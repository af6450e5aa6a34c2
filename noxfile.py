"""Sessions for building, testing and benchmarking the four packages.

nox                      lint, tests, tests_package, readme (what CI runs)
nox -s demo              the main job on simulated ticks
nox -s tests_package     each package alone in a fresh venv
nox -s build bench gpu   wheels, asv smoke run, the GPU script
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PACKAGES = ["ma-kernels", "ma-features", "ma-model", "ma-runtime"]  # dependency order
# torch builds the test sessions can run against: adding one is one line.
# The CUDA builds come from PyTorch's own wheel index: set PIP_EXTRA_INDEX_URL.
TORCH = {
    "cpu": ["torch==2.13.0"],
    "cu130": ["torch==2.13.0+cu130"],
}
# Which of them this machine runs, e.g. MA_TORCH_VARIANTS=cu130 on a GPU machine.
VARIANTS = os.environ.get("MA_TORCH_VARIANTS", "cpu").split(",")

nox.options.sessions = ["lint", "tests", "tests_package", "readme"]
nox.options.reuse_existing_virtualenvs = False


def _wheelhouse(session: nox.Session) -> Path:
    """Wheels of all four packages, built once per source state and shared by
    the sessions, so pip resolves our packages from here and never an index."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "packages").rglob("*")):
        skip = {"build", "__pycache__", ".pytest_cache", ".hypothesis"}
        if path.is_file() and not skip & set(path.parts) and ".egg-info" not in str(path):
            digest.update(path.relative_to(ROOT).as_posix().encode() + path.read_bytes())
    house = ROOT / ".nox" / "_wheelhouse" / digest.hexdigest()[:16]
    if len(list(house.glob("*.whl"))) < len(PACKAGES):
        for package in PACKAGES:
            session.run(
                "python",
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "-w",
                str(house),
                str(ROOT / "packages" / package),
            )
    return house


def _torch(session: nox.Session, variant: str) -> None:
    """torch (and only what it depends on) for this session's venv, installed
    once per variant into .nox/_torch/<variant> and put on the venv's path by
    a .pth file: each session still starts from a fresh venv, without
    unpacking torch again."""
    site = ROOT / ".nox" / "_torch" / variant
    if not (site / ".installed").exists():
        session.run("python", "-m", "pip", "install", "--quiet", "--target", str(site),
                    *TORCH[variant])
        (site / ".installed").touch()
    purelib = session.run("python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                          silent=True).strip()
    (Path(purelib) / "ma_torch.pth").write_text(f"{site}\n")


def _install(
    session: nox.Session, variant: str, packages: list[str], extra: str = "[test]"
) -> None:
    _torch(session, variant)
    house = _wheelhouse(session)
    session.install("--find-links", str(house), *(p + extra for p in packages))


def _pytest(session: nox.Session, package: str) -> None:
    # pytest exits 5 when it collects nothing: a failure for a package's own
    # suite, but fine when a -k filter in posargs selects nothing in it.
    with session.chdir(ROOT / "packages" / package):
        session.run(
            "python",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *session.posargs,
            success_codes=[0, 5] if session.posargs else [0],
        )


@nox.session
@nox.parametrize("variant", VARIANTS)
def tests(session: nox.Session, variant: str) -> None:
    """All packages installed together, every package's tests."""
    _install(session, variant, PACKAGES)
    for package in PACKAGES:
        _pytest(session, package)


@nox.session
@nox.parametrize("variant", VARIANTS)
@nox.parametrize("package", PACKAGES)
def tests_package(session: nox.Session, variant: str, package: str) -> None:
    """One package in a fresh venv with only its declared dependencies."""
    _install(session, variant, [package])
    _pytest(session, package)


@nox.session
def readme(session: nox.Session) -> None:
    """Each ``pip install packages/...`` line of the README resolves as written
    (a dry run: every dependency found, nothing built or installed)."""
    lines = [line.split("#")[0].split() for line in (ROOT / "README.md").read_text().splitlines()
             if line.startswith("pip install packages/")]
    if not lines:
        session.error("README.md has no 'pip install packages/...' line")
    with session.chdir(ROOT):
        for words in lines:
            session.run("python", "-m", "pip", "install", "--dry-run", "--ignore-installed",
                        "--quiet", *words[2:])


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")


@nox.session
def build(session: nox.Session) -> None:
    """sdist and wheel of each package into dist/."""
    session.install("build")
    for package in PACKAGES:
        session.run("python", "-m", "build", "--outdir", "dist", f"packages/{package}")


@nox.session
def bench(session: nox.Session) -> None:
    """asv smoke run of every benchmark against the packages installed here."""
    _install(session, VARIANTS[0], PACKAGES, extra="")
    session.install("asv")
    session.run("asv", "machine", "--yes")
    session.run("asv", "run", "--python=same", "--quick", "--show-stderr", "--dry-run")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: simulated ticks, features, training, streaming replay."""
    _install(session, VARIANTS[0], PACKAGES, extra="")
    session.run("ma-demo", *session.posargs)


@nox.session(venv_backend="none")
def gpu(session: nox.Session) -> None:
    """On a GPU machine with its own torch: build, GPU tests, GPU benchmarks, JSON."""
    session.run("bash", "tools/device/run.sh", external=True)
