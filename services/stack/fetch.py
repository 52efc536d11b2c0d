"""Find java, mvn and redis-server; fetch and cache the Kafka broker jars with Maven.

The jars (about 46 MB) live outside the repo, in ``kafka_cache``. A fetch goes to a
temporary folder that is renamed into place only when complete, and a marker file
records the sha256 of the pom it came from: an interrupted fetch is never used and an
edited pom fetches again. A file lock makes concurrent fetches wait for each other.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from services.stack.procs import file_lock

log = logging.getLogger(__name__)

POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"
MARKER = ".complete"
MIN_JAVA = 17
FETCH_TIMEOUT_S = 900.0
APT_JAVA = "apt-get install -y openjdk-17-jre-headless"
APT_MAVEN = "apt-get install -y maven"
APT_REDIS = "apt-get install -y redis-server"


class ToolMissing(Exception):
    """A program the stack needs is not installed; the message says how to get it."""


class FetchError(Exception):
    """Maven could not fetch the broker jars; the message ends with Maven's output."""


def find_java(environ: Mapping[str, str]) -> str:
    """Path of a java >= 17: $JAVA_HOME/bin/java if set, else the one on PATH."""
    java_home = environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if java is None:
        raise ToolMissing(f"java not found; install Java {MIN_JAVA}+: {APT_JAVA}")
    version = java_major_version(_java_version_banner(java))
    if version is None or version < MIN_JAVA:
        raise ToolMissing(
            f"{java} is Java {version or 'of unknown version'}; Kafka needs {MIN_JAVA}+: {APT_JAVA}"
        )
    return java


def _java_version_banner(java: str) -> str:
    done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    return done.stderr + done.stdout


def java_major_version(banner: str) -> int | None:
    """17 from 'openjdk version "17.0.15" ...', 8 from 'java version "1.8.0_392"'."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', banner)
    if not match:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def find_mvn() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ToolMissing(f"mvn not found; Maven fetches the Kafka jars once: {APT_MAVEN}")
    return mvn


def find_redis_server() -> str:
    server = shutil.which("redis-server")
    if server is None:
        raise ToolMissing(f"redis-server not found; install it: {APT_REDIS}")
    return server


def pom_digest(pom: Path = POM) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def libs_dir(cache: Path) -> Path:
    return cache / "libs"


def cached_libs(cache: Path, pom: Path = POM) -> Path | None:
    """The cached jar folder if a complete fetch of this very pom is there."""
    libs = libs_dir(cache)
    try:
        done = (libs / MARKER).read_text().strip()
    except FileNotFoundError:
        return None
    return libs if done == pom_digest(pom) else None


def ensure_kafka_libs(cache: Path, pom: Path = POM) -> Path:
    """The folder of broker jars, fetching them with Maven first if needed."""
    cache = cache.expanduser().resolve()
    libs = cached_libs(cache, pom)
    if libs is not None:
        return libs
    if not pom.is_file():
        raise FetchError(f"{pom} is missing; run from a fraudstream source checkout")
    mvn = find_mvn()
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / ".fetch.lock"):
        libs = cached_libs(cache, pom)  # somebody else may have fetched while we waited
        if libs is not None:
            return libs
        return _fetch(mvn, cache, pom)


def _fetch(mvn: str, cache: Path, pom: Path) -> Path:
    staging = cache / f"libs.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    work_pom = cache / "pom.xml"
    shutil.copyfile(pom, work_pom)
    argv = [
        mvn, "-q", "-B", "-f", str(work_pom), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]  # fmt: skip
    log.info("fetching the Kafka broker jars with Maven into %s", cache)
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(f"Maven took over {FETCH_TIMEOUT_S:.0f} s; is Maven Central reachable?") from None
    if done.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise FetchError(f"Maven could not fetch the Kafka jars (exit {done.returncode}):\n{tail}")
    (staging / MARKER).write_text(pom_digest(pom) + "\n")
    libs = libs_dir(cache)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    log.info("fetched %d jars in %.1f s", len(list(libs.glob("*.jar"))), time.monotonic() - started)
    return libs
