"""A cache of validated specs: an unchanged spec is not parsed and validated again at every parse.

The dag-processor parses the loader file again and again (every ``min_file_process_interval``,
each time in a fresh process) and a worker parses it at every task start; nearly always the specs
are the ones validated last time. Reading YAML with locations and validating it was a third of
the factory's parse time.

An entry holds one validated :class:`~airflow_mlpipe.spec.models.Pipeline` under a key of
everything its validation read: the paths and bytes of the spec and of its environment's overlay,
the environment, the allowed component module prefixes, the package version and the code of the
spec layer. The entry also records a fingerprint of each component module the spec uses (its
``__version__`` and the digest of its source file), compared with the modules as they are now
when the entry is read. Anything different is a miss, and the spec is validated as if there were
no cache. Broken specs are never cached: their problems are worked out afresh every time.

Entries are pickles, so the cache directory must be the user's own: it is created private
(``0700``), and a directory that is not owned by the user or that others may write to is not used.
There is one entry file per spec file and environment, replaced atomically, so the cache does not
grow with edits. The cache lives outside the dags folder (which may be read-only): any failure to
create, read or write it only means no cache for that spec or that parse.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from airflow_mlpipe import __version__
from airflow_mlpipe.resolver import resolve_component
from airflow_mlpipe.spec.models import Pipeline

log = logging.getLogger(__name__)

# Bump when the entry layout changes; entries of another format are misses.
FORMAT = b"mlpipe-spec-cache 1\n"
_PACKAGE = Path(__file__).resolve().parent.parent
# The code whose changes can change what a spec validates to, besides the component modules.
_VALIDATION_CODE = ("spec/*.py", "resolver.py", "contract.py", "suggest.py")


class SpecCache:
    """Validated pipelines in ``directory``; build one with :func:`open_spec_cache`.

    :param directory: an existing directory private to this user
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def key(self, sources: Mapping[Path, bytes], environment: str, component_modules: Sequence[str]) -> str:
        """The digest of everything a spec's validation reads, component modules aside.

        Raises :class:`OSError` if the package's own code cannot be read (then there is no cache).
        """
        digest = hashlib.sha256()
        for part in (__version__, _validation_code_digest(), environment, *component_modules):
            digest.update(part.encode("utf-8", "surrogatepass") + b"\0")
        for path, raw in sources.items():
            digest.update(str(path).encode("utf-8", "surrogatepass") + b"\0")
            digest.update(hashlib.sha256(raw).digest())
        return digest.hexdigest()

    def get(
        self, base: Path, environment: str, key: str, component_modules: Sequence[str]
    ) -> Pipeline | None:
        """The pipeline stored under ``key`` for this spec, or ``None`` (a miss, also if unreadable)."""
        path = self._entry(base, environment)
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        header = FORMAT + key.encode() + b"\n"
        if not raw.startswith(header):
            return None
        try:
            stored = pickle.loads(raw[len(header) :])
            pipeline, fingerprints = stored["pipeline"], stored["components"]
            if not isinstance(pipeline, Pipeline) or fingerprints != component_fingerprints(
                pipeline, component_modules
            ):
                return None
        except Exception:  # a corrupt or truncated entry, or a component that no longer resolves
            log.debug("ignoring the spec cache entry %s", path, exc_info=True)
            return None
        return pipeline

    def put(
        self, base: Path, environment: str, key: str, pipeline: Pipeline, component_modules: Sequence[str]
    ) -> None:
        """Store ``pipeline`` under ``key``, replacing this spec's earlier entry; never raises."""
        path = self._entry(base, environment)
        try:
            payload = {
                "pipeline": pipeline,
                "components": component_fingerprints(pipeline, component_modules),
            }
            data = FORMAT + key.encode() + b"\n" + pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
            fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".pkl")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                os.replace(temporary, path)  # readers see the old entry or the new one, never half
            except BaseException:
                os.unlink(temporary)
                raise
        except Exception:
            log.debug("cannot write the spec cache entry %s", path, exc_info=True)

    def _entry(self, base: Path, environment: str) -> Path:
        name = hashlib.sha256(f"{base}\0{environment}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.directory / f"{name}.pkl"


def open_spec_cache(directory: str | os.PathLike[str]) -> SpecCache | None:
    """The cache in ``directory`` (created private if missing), or ``None`` if it cannot be used."""
    path = Path(directory).expanduser()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        log.debug("no spec cache: cannot create %s: %s", path, exc)
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        log.warning(
            "Not using the spec cache %s: it must be owned by this user and writable by nobody else "
            "(chmod 700 it, or set [mlpipe] spec_cache_dir to another directory)",
            path,
        )
        return None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return None
    return SpecCache(path)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/airflow-mlpipe/specs``, by default ``~/.cache/airflow-mlpipe/specs``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "airflow-mlpipe" / "specs"


def component_fingerprints(pipeline: Pipeline, component_modules: Sequence[str]) -> dict[str, str]:
    """For each component the pipeline uses: its module, ``__version__`` and source digest."""
    fingerprints = {}
    for stage in pipeline.stages:
        if stage.component not in fingerprints:
            module = resolve_component(stage.component, component_modules).module
            fingerprints[stage.component] = _module_fingerprint(
                module.__name__, getattr(module, "__file__", None)
            )
    return fingerprints


def _module_fingerprint(name: str, file: str | None) -> str:
    module = sys.modules.get(name)
    version = str(getattr(module, "__version__", ""))
    if not file:
        return f"{name} {version}"
    stat = os.stat(file)
    return f"{name} {version} {_file_digest(file, stat.st_mtime_ns, stat.st_size)}"


@functools.lru_cache(maxsize=256)
def _file_digest(file: str, mtime_ns: int, size: int) -> str:
    """The digest of a file's bytes; the stat values in the cache key re-read an edited file."""
    with open(file, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@functools.cache
def _validation_code_digest() -> str:
    """One digest of the package's validation code, so a changed checkout never reads old entries."""
    digest = hashlib.sha256(sys.version.encode())
    import pydantic

    digest.update(pydantic.VERSION.encode())
    for pattern in _VALIDATION_CODE:
        for file in sorted(_PACKAGE.glob(pattern)):
            digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()
