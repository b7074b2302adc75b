"""Private helpers shared by every stage: serialising records, atomic files, ISO dates.

Importable from everywhere (it imports nothing from bmdqct), like :mod:`bmdqct.volume`:

* :func:`record_dict` — the ``to_dict`` of a frozen dataclass, generated from its
  fields (JSON-safe values; a field can be left out or given another value);
* :func:`json_safe` — numpy scalars and arrays, tuples, enums, paths, NaN and
  mappings to plain JSON values;
* :func:`renamed_value` — a document's value under its current or its earlier key;
* :func:`deprecated_alias` — a read-only property under a field's old name
  that warns (:class:`DeprecationWarning`) and returns the renamed field;
* :func:`atomic_write` / :func:`atomic_write_text` — the one atomic writer: a
  temporary file beside the target, flushed to disk (``fsync``), then renamed
  (or hard-linked, which refuses to replace an existing file);
* :func:`iso_date` — the one date parser: ISO ``YYYY-MM-DD``, DICOM
  ``YYYYMMDD``, a :class:`datetime.date` or :class:`datetime.datetime`;
* :func:`strip_image_suffix` — a file name without its image suffix (the
  stem of a case id); :func:`package_versions` — installed versions (provenance).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import functools
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

__all__ = ["record_dict", "json_safe", "deprecated_alias", "renamed_value", "atomic_write", "atomic_write_text", "iso_date", "IMAGE_SUFFIXES",
           "strip_image_suffix", "package_versions"]

#: Suffixes of the volume files bmdqct reads (compared case-insensitively), longest first.
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")


def json_safe(value):
    """Convert `value` into plain JSON values (dict, list, str, int, float, bool, None).

    Non-finite floats become None; enums their ``value``; paths ``str``; a
    dataclass its ``to_dict()`` (or :func:`record_dict`); tuples and arrays lists.

    Examples
    --------
    >>> json_safe({"a": (np.float32(1.5), float("nan")), 2: np.arange(2), "p": Path("x")})
    {'a': [1.5, None], '2': [0, 1], 'p': 'x'}
    """
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return to_dict() if callable(to_dict) else record_dict(value)
    return str(value)


def record_dict(record, *, exclude=(), **overrides) -> dict:
    """JSON-safe dictionary of a dataclass instance, one key per field, in field order.

    Parameters
    ----------
    record : dataclass instance
    exclude : iterable of str, optional
        Fields left out.
    **overrides
        Values used instead of a field's own (a new key is appended at the end).

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True)
    ... class Point:
    ...     x_mm: float
    ...     tags: tuple = ()
    ...     note: str = ""
    >>> record_dict(Point(np.float64(1.0), ("a",), "n"), exclude=("note",))
    {'x_mm': 1.0, 'tags': ['a']}
    >>> record_dict(Point(2.0), tags="none")
    {'x_mm': 2.0, 'tags': 'none', 'note': ''}
    """
    if not dataclasses.is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"record_dict expects a dataclass instance, got {type(record).__name__}")
    skip = set(exclude)
    out = {}
    for f in dataclasses.fields(record):
        if f.name in skip:
            continue
        out[f.name] = overrides.pop(f.name) if f.name in overrides else getattr(record, f.name)
    out.update(overrides)
    return json_safe(out)


def renamed_value(entry: Mapping, key: str, old: str):
    """``entry[key]``, or the value under its earlier name `old` (None if neither).

    For reading ``result.json`` documents of every format (``mean_hu`` was
    ``hu_mean`` before result format 3).

    Examples
    --------
    >>> renamed_value({"hu_mean": 150.0}, "mean_hu", "hu_mean"), renamed_value({}, "mean_hu", "hu_mean")
    (150.0, None)
    """
    return entry[key] if key in entry else entry.get(old)


def deprecated_alias(new: str, old: str) -> property:
    """A read-only property `old` returning attribute `new`, with a :class:`DeprecationWarning`.

    For fields renamed to put the unit last (``hu_mean`` -> ``mean_hu``): the
    old name keeps working for reading, and says what to use instead. It is not
    a dataclass field, so :func:`record_dict` and ``dataclasses.replace`` know
    only the new name.

    Parameters
    ----------
    new : str
        The attribute's current name.
    old : str
        The deprecated name (the property's own name in the class body).

    Examples
    --------
    >>> @dataclasses.dataclass(frozen=True)
    ... class Stat:
    ...     mean_hu: float
    ...     hu_mean = deprecated_alias("mean_hu", "hu_mean")
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     value = Stat(150.0).hu_mean
    >>> value, str(caught[0].message)
    (150.0, 'Stat.hu_mean is deprecated, use Stat.mean_hu (units last, bmdqct result format 3)')
    """

    def get(self):
        cls = type(self).__name__
        warnings.warn(f"{cls}.{old} is deprecated, use {cls}.{new} (units last, bmdqct result format 3)",
                      DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    get.__name__ = old
    return property(get, doc=f"Deprecated read-only alias of :attr:`{new}` (emits DeprecationWarning).")


# --------------------------------------------------------------------------- files


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the OS tells it, else the machine's).

    Examples
    --------
    >>> usable_cores() >= 1
    True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


#: Most threads the library's own thread pools use: each holds its working arrays, so the
#: count bounds the memory they add on a many-core machine.
MAX_WORKER_THREADS = 4


def worker_threads() -> int:
    """Threads for the library's pools: the usable cores, at most :data:`MAX_WORKER_THREADS`.

    Examples
    --------
    >>> 1 <= worker_threads() <= MAX_WORKER_THREADS
    True
    """
    return min(usable_cores(), MAX_WORKER_THREADS)


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where there is no glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> bool:
    """Hand the heap memory freed so far back to the system (glibc ``malloc_trim(0)``).

    numpy's, scipy's and TensorFlow's large temporaries are freed into glibc's
    arenas (one per thread that allocated), which keep them: the process's
    resident memory then stays at its high-water mark. Called after the
    network and after threaded work, so the next stage starts from what is in
    use. A no-op returning False where there is no glibc.

    Examples
    --------
    >>> isinstance(release_freed_memory(), bool)
    True
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def atomic_write(path, write: Callable[[Path], object], *, overwrite: bool = True) -> Path:
    """Call ``write(tmp)`` with a temporary path beside `path`, flush it to disk, rename it.

    The temporary name keeps the file's suffix (``.nii.gz``, ``.png``: writers
    choose the format from it) and starts with a dot. A reader never sees a
    half-written `path`; a failed write leaves nothing behind; parent folders
    are created.

    Parameters
    ----------
    path : str or os.PathLike
    write : callable
        Writes the file at the path it is given.
    overwrite : bool, optional
        False: the final step is a hard link, which raises
        :class:`FileExistsError` instead of replacing an existing `path` (so a
        concurrent writer cannot be clobbered either).

    Returns
    -------
    pathlib.Path
        `path`.

    Examples
    --------
    >>> folder = Path(tempfile.mkdtemp())
    >>> atomic_write_text(folder / "a.json", "{}").read_text()
    '{}'
    >>> atomic_write_text(folder / "a.json", "[]", overwrite=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: ... already exists
    >>> sorted(p.name for p in folder.iterdir())
    ['a.json']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    suffix = "".join(path.suffixes[-2:]) if name.lower().endswith(".nii.gz") else path.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name[: len(name) - len(suffix)]}.", suffix=f".tmp{suffix}",
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path} already exists") from None
        _fsync_folder(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path, text: str, *, overwrite: bool = True) -> Path:
    """Write `text` (UTF-8) to `path` with :func:`atomic_write`."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), overwrite=overwrite)


# --------------------------------------------------------------------------- dates


def iso_date(value) -> str | None:
    """ISO ``YYYY-MM-DD`` of a date given as ISO text, DICOM ``YYYYMMDD``, date or datetime.

    Text may carry a time after the date (``2024-03-01T10:00``,
    ``20240301101500``). None and ``""`` give None.

    Raises
    ------
    ValueError
        If `value` is not a date in one of these forms.

    Examples
    --------
    >>> iso_date("20240301"), iso_date("2024-03-01T08:00:00"), iso_date(_dt.date(2024, 3, 1)), iso_date("")
    ('2024-03-01', '2024-03-01', '2024-03-01', None)
    >>> iso_date("March 1")
    Traceback (most recent call last):
    ...
    ValueError: expected an ISO date 'YYYY-MM-DD' or a DICOM date 'YYYYMMDD', got 'March 1'
    """
    if value is None or value == "":
        return None
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    text = str(value).strip()
    for fmt, width in (("%Y-%m-%d", 10), ("%Y%m%d", 8)):
        try:
            return _dt.datetime.strptime(text[:width], fmt).date().isoformat()
        except ValueError:
            continue
    raise ValueError(f"expected an ISO date 'YYYY-MM-DD' or a DICOM date 'YYYYMMDD', got {value!r}")


# --------------------------------------------------------------------------- names and versions


def strip_image_suffix(name: str) -> str:
    """`name` without an image suffix (:data:`IMAGE_SUFFIXES` or ``.dcm``, any case).

    Examples
    --------
    >>> strip_image_suffix("CT.NII.GZ"), strip_image_suffix("s1.dcm"), strip_image_suffix("series_7")
    ('CT', 's1', 'series_7')
    """
    for suffix in IMAGE_SUFFIXES + (".dcm",):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def package_versions(names) -> dict:
    """Installed version of each distribution in `names` (None if absent).

    Examples
    --------
    >>> package_versions(["numpy", "no-such-package-bmdqct"])["no-such-package-bmdqct"] is None
    True
    """
    from importlib import metadata

    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out
