"""File-system model registry with atomic aliases.

Writers take an exclusive ``flock`` on ``<name>/.lock``; ``index.json`` is replaced
atomically (write to a temp file, fsync, ``os.replace``), so a reader never sees a
half-written alias and a crash leaves either the old or the new index.
A version directory is claimed with ``os.mkdir`` (atomic), so two trainers can never
register the same version; the model becomes visible only once it is in the index.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.registry.errors import ModelRefError, RegistryError

ALIASES = ("champion", "challenger")
STATUSES = ("staged", "deployed", "retired")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
MODEL_FILE = "model.txt"
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.json"
MANIFEST_FORMAT = 1


def utc_now() -> datetime:
    return datetime.now(UTC)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelRef:
    """``NAME@ALIAS`` or ``NAME@VERSION``; a bare ``NAME`` means ``NAME@champion``."""

    name: str
    selector: str

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        name, at, selector = text.strip().partition("@")
        if not at:
            selector = "champion"
        if not NAME_RE.match(name):
            raise ModelRefError(
                f"bad model reference {text!r}: use NAME@ALIAS or NAME@VERSION, e.g. fraud@champion"
            )
        if selector not in ALIASES and not selector.isdigit():
            raise ModelRefError(
                f"bad model reference {text!r}: after @ give champion, challenger or a version number"
            )
        return cls(name, selector)

    def __str__(self) -> str:
        return f"{self.name}@{self.selector}"


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path
    status: str
    aliases: tuple[str, ...]
    created_at: str

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    def manifest(self) -> dict[str, Any]:
        with self.manifest_path.open() as fh:
            data: dict[str, Any] = json.load(fh)
        return data


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Registry:
    def __init__(self, root: Path, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.root = Path(root)
        self._clock = clock

    # ------------------------------------------------------------------ reading

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / INDEX_FILE).is_file())

    def index(self, name: str) -> dict[str, Any]:
        path = self.root / name / INDEX_FILE
        if not path.is_file():
            raise ModelRefError(
                f"no model named {name!r} in registry {self.root} "
                f"(train one with `fraudstream train`, or point --registry at the right place)"
            )
        with path.open() as fh:
            data: dict[str, Any] = json.load(fh)
        return data

    def versions(self, name: str) -> list[ModelVersion]:
        idx = self.index(name)
        return [self._version_from_index(name, v, idx) for v in sorted(idx["versions"], key=int)]

    def resolve(self, ref: ModelRef | str) -> ModelVersion:
        ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
        idx = self.index(ref.name)
        if ref.selector in ALIASES:
            version = idx["aliases"].get(ref.selector)
            if version is None:
                raise ModelRefError(f"{ref} is not set; see `fraudstream models list`")
        else:
            version = ref.selector
            if version not in idx["versions"]:
                raise ModelRefError(f"{ref} does not exist; see `fraudstream models list`")
        return self._version_from_index(ref.name, version, idx)

    def aliases(self, name: str) -> dict[str, str | None]:
        return dict(self.index(name)["aliases"])

    def _version_from_index(self, name: str, version: str, idx: Mapping[str, Any]) -> ModelVersion:
        entry = idx["versions"][version]
        aliases = tuple(a for a in ALIASES if idx["aliases"].get(a) == version)
        return ModelVersion(
            name=name,
            version=version,
            path=self.root / name / version,
            status=entry["status"],
            aliases=aliases,
            created_at=entry["created_at"],
        )

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[dict[str, Any]]:
        """Hold the name's lock and yield its index; the index is saved on success."""
        if not NAME_RE.match(name):
            raise RegistryError(f"bad model name {name!r}: use lowercase letters, digits, - and _")
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = folder / INDEX_FILE
            if path.is_file():
                with path.open() as fh:
                    idx = json.load(fh)
            else:
                idx = {"name": name, "aliases": dict.fromkeys(ALIASES), "versions": {}, "history": []}
            yield idx
            _write_json_atomic(path, idx)

    def _now(self) -> str:
        now = self._clock()
        if now.tzinfo is None:
            raise RegistryError("registry clock returned a naive datetime")
        return now.astimezone(UTC).isoformat(timespec="milliseconds")

    def register(
        self,
        name: str,
        model_text: str,
        manifest: Mapping[str, Any],
        *,
        promote: bool = False,
        lineage: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Store a model and its manifest as the next version.

        The first version of a name becomes champion; later ones are staged as challenger
        unless ``promote``. ``manifest`` comes from the trainer; the registry adds the
        identity fields (name, version, created_at, sha256, code version).
        """
        with self._locked(name) as idx:
            version = self._claim_version(name, idx)
            folder = self.root / name / version
            (folder / MODEL_FILE).write_text(model_text)
            now = self._now()
            full = dict(manifest)
            full.update(
                manifest_format=MANIFEST_FORMAT,
                name=name,
                version=version,
                created_at=now,
                code_version=full.get("code_version") or git_sha(),
                model_sha256=sha256_file(folder / MODEL_FILE),
                lineage=dict(lineage or full.get("lineage") or {}),
            )
            _write_json_atomic(folder / MANIFEST_FILE, full)
            idx["versions"][version] = {"status": "staged", "created_at": now}
            self._log(idx, "registered", version, now)
            first = idx["aliases"].get("champion") is None
            if first or promote:
                self._promote_in(idx, version, now)
            else:
                self._set_challenger_in(idx, version, now)
            return self._version_from_index(name, version, idx)

    def _claim_version(self, name: str, idx: Mapping[str, Any]) -> str:
        existing = [int(v) for v in idx["versions"]]
        on_disk = [int(p.name) for p in (self.root / name).iterdir() if p.name.isdigit()]
        candidate = max(existing + on_disk, default=0) + 1
        while True:
            try:
                (self.root / name / str(candidate)).mkdir()
                return str(candidate)
            except FileExistsError:
                candidate += 1

    def promote(self, ref: ModelRef | str) -> ModelVersion:
        """Make a version champion; the old champion is retired (kept, and restorable)."""
        target = self.resolve(ref)
        with self._locked(target.name) as idx:
            self._promote_in(idx, target.version, self._now())
            return self._version_from_index(target.name, target.version, idx)

    def set_challenger(self, ref: ModelRef | str) -> ModelVersion:
        target = self.resolve(ref)
        with self._locked(target.name) as idx:
            self._set_challenger_in(idx, target.version, self._now())
            return self._version_from_index(target.name, target.version, idx)

    def retire(self, ref: ModelRef | str) -> ModelVersion:
        target = self.resolve(ref)
        with self._locked(target.name) as idx:
            if idx["aliases"].get("champion") == target.version:
                raise RegistryError(
                    f"{target.name}@{target.version} is the champion; promote another version first"
                )
            now = self._now()
            if idx["aliases"].get("challenger") == target.version:
                idx["aliases"]["challenger"] = None
            self._set_status(idx, target.version, "retired", now)
            self._log(idx, "retired", target.version, now)
            return self._version_from_index(target.name, target.version, idx)

    def _promote_in(self, idx: dict[str, Any], version: str, now: str) -> None:
        old = idx["aliases"].get("champion")
        if old == version:
            return
        if old is not None:
            self._set_status(idx, old, "retired", now)
        idx["aliases"]["champion"] = version
        if idx["aliases"].get("challenger") == version:
            idx["aliases"]["challenger"] = None
        self._set_status(idx, version, "deployed", now)
        self._log(idx, "promoted", version, now, previous=old)

    def _set_challenger_in(self, idx: dict[str, Any], version: str, now: str) -> None:
        idx["aliases"]["challenger"] = version
        self._set_status(idx, version, "staged", now)
        self._log(idx, "challenger", version, now)

    @staticmethod
    def _set_status(idx: dict[str, Any], version: str, status: str, now: str) -> None:
        entry = idx["versions"][version]
        entry["status"] = status
        entry[f"{status}_at"] = now

    @staticmethod
    def _log(idx: dict[str, Any], action: str, version: str, now: str, **extra: Any) -> None:
        idx["history"].append({"at": now, "action": action, "version": version, **extra})

    def delete_unindexed(self, name: str) -> list[str]:
        """Remove version folders a crashed register left behind (never indexed ones)."""
        with self._locked(name) as idx:
            removed = []
            for path in (self.root / name).iterdir():
                if path.name.isdigit() and path.name not in idx["versions"]:
                    shutil.rmtree(path)
                    removed.append(path.name)
            return removed


def git_sha() -> str:
    """The code version: the git commit of the checkout, if there is one."""
    head = Path(__file__).resolve().parents[2] / ".git"
    try:
        ref = (head / "HEAD").read_text().strip()
        if ref.startswith("ref: "):
            ref_path = head / ref[5:]
            if ref_path.is_file():
                return ref_path.read_text().strip()
            packed = head / "packed-refs"
            for line in packed.read_text().splitlines() if packed.is_file() else []:
                if line.endswith(" " + ref[5:]):
                    return line.split()[0]
            return "unknown"
        return ref
    except OSError:
        return "unknown"
