r"""Gower Street light-cone shells and their Born ray tracing to tomographic convergence.

A Gower Street simulation directory holds, per PKDGRAV3 step ``s``, a light-cone shell
``run.{s:05d}.lightcone.npy`` (HEALPix particle counts, RING ordering, ``nSideHealpix`` from
``control.par``, 2048 in the real suite), a table of the shells' redshifts and distances
``z_values.txt``, and the PKDGRAV3 parameter file ``control.par``. Some steps have no shell
file (the suite skips them); they are skipped with a log line.

The convergence of each source bin is the Born sum of the shells' overdensities with GLASS
multi-plane lensing weights. Shells are streamed one at a time, nearest first, and degraded to
the output nside as they are read, so memory does not grow with the number of shells;
``control.par`` is parsed by a restricted arithmetic evaluator, never executed.
"""

from __future__ import annotations

import ast
import logging
import math
import operator
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import glass
import healpy as hp
import numpy as np

from lensing_core.sims.glass_cosmology import glass_cosmology

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from lensing_core._types import FloatArray, IntArray
    from lensing_core.sims.glass_cosmology import CCLGlassCosmology

logger = logging.getLogger(__name__)

Z_VALUES_NAME = "z_values.txt"
CONTROL_NAME = "control.par"
DEFAULT_OUTPUT_PREFIX = "run"  # PKDGRAV3's achOutName in the Gower Street suite

# Columns of z_values.txt (by position): step, z_far, z_near, delta_z, then comoving
# distance far, near, difference in Mpc/h, the same three in box units, and in some runs
# the shell volume in (Mpc/h)^3 and in box volumes.
_Z_VALUES_COLUMNS = (10, 12)
_COL_STEP, _COL_Z_FAR, _COL_Z_NEAR = 0, 1, 2
_COL_CHI_FAR, _COL_CHI_NEAR = 4, 5
# z_values.txt is written with "%.6f": neighbouring shells share an edge to that precision.
_Z_EDGE_TOLERANCE = 2e-6

# Input pixels converted to float64 at a time (32 MB per block).
_CHUNK_PIXELS = 1 << 22
# Spacing in z of the sampled radial windows handed to GLASS.
_WINDOW_DZ = 1e-3
# A source bin must have this fraction of its n(z) inside the shells' redshift range.
_MIN_SOURCE_COVERAGE = 0.99
_WARN_SOURCE_COVERAGE = 0.9999


# --------------------------------------------------------------------------------------
# z_values.txt
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ShellTable:
    """
    The shells listed in ``z_values.txt``, sorted by increasing redshift.

    Attributes
    ----------
    step
        PKDGRAV3 step number of each shell (its file is ``run.{step:05d}.lightcone.npy``).
    z_near, z_far
        Redshift limits of each shell, ``z_near < z_far``.
    chi_near_mpc_h, chi_far_mpc_h
        Comoving distances of the limits in Mpc/h, as written by the suite.
    """

    step: IntArray
    z_near: FloatArray
    z_far: FloatArray
    chi_near_mpc_h: FloatArray
    chi_far_mpc_h: FloatArray

    def __len__(self) -> int:
        return int(self.step.size)


def read_z_values(path: str | os.PathLike[str]) -> ShellTable:
    """
    Read the shell table ``z_values.txt`` of a Gower Street simulation.

    Parameters
    ----------
    path
        The file: comma-separated, header lines starting with ``#``, then one row per step
        with 10 columns (step, z_far, z_near, delta_z, comoving distance far, near and
        difference in Mpc/h, the same three in box units) or 12 (plus the shell volume in
        (Mpc/h)^3 and in box volumes).

    Returns
    -------
        The shells, sorted by increasing redshift (the file lists them farthest first).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If a row has another number of columns or a non-numeric value, a step is not an
        integer or appears twice, a shell has ``z_far <= z_near``, or two shells overlap.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: shell table not found (every Gower Street simulation has {Z_VALUES_NAME})"
        raise FileNotFoundError(msg)
    rows: list[list[float]] = []
    n_columns: int | None = None
    with path.open(encoding="utf-8", errors="replace") as handle:
        for lineno, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = [field.strip() for field in line.split(",")]
            if len(fields) not in _Z_VALUES_COLUMNS or (n_columns not in (None, len(fields))):
                expected = n_columns or " or ".join(map(str, _Z_VALUES_COLUMNS))
                msg = (
                    f"{path}, line {lineno}: expected {expected} comma-separated columns, "
                    f"got {len(fields)}: {line[:80]!r}"
                )
                raise ValueError(msg)
            n_columns = len(fields)
            try:
                rows.append([float(field) for field in fields])
            except ValueError:
                msg = f"{path}, line {lineno}: non-numeric value in {line[:80]!r}"
                raise ValueError(msg) from None
    if not rows:
        msg = f"{path}: no shell rows (only header or blank lines)"
        raise ValueError(msg)

    data = np.array(rows)  # (n_shells, 10 or 12)
    if not np.all(np.isfinite(data)):
        msg = f"{path}: non-finite values in the shell table"
        raise ValueError(msg)
    steps = data[:, _COL_STEP]
    if np.any(steps != np.round(steps)) or np.any(steps < 0):
        msg = f"{path}: step numbers must be non-negative integers, got {steps.tolist()}"
        raise ValueError(msg)
    unique, counts = np.unique(steps, return_counts=True)
    if np.any(counts > 1):
        msg = f"{path}: steps listed more than once: {unique[counts > 1].astype(int).tolist()}"
        raise ValueError(msg)
    z_far, z_near = data[:, _COL_Z_FAR], data[:, _COL_Z_NEAR]
    bad = (z_far <= z_near) | (z_near < 0)
    if np.any(bad):
        msg = (
            f"{path}: shells of steps {steps[bad].astype(int).tolist()} do not have "
            f"0 <= z_near < z_far"
        )
        raise ValueError(msg)

    order = np.argsort(z_near, kind="stable")
    data = data[order]
    overlap = data[1:, _COL_Z_NEAR] < data[:-1, _COL_Z_FAR] - _Z_EDGE_TOLERANCE
    if np.any(overlap):
        i = int(np.flatnonzero(overlap)[0])
        msg = (
            f"{path}: shells of steps {int(data[i, _COL_STEP])} "
            f"(z {data[i, _COL_Z_NEAR]}-{data[i, _COL_Z_FAR]}) and {int(data[i + 1, _COL_STEP])} "
            f"(z {data[i + 1, _COL_Z_NEAR]}-{data[i + 1, _COL_Z_FAR]}) overlap"
        )
        raise ValueError(msg)

    columns = {
        "step": data[:, _COL_STEP].astype(np.int64),
        "z_near": data[:, _COL_Z_NEAR].copy(),
        "z_far": data[:, _COL_Z_FAR].copy(),
        "chi_near_mpc_h": data[:, _COL_CHI_NEAR].copy(),
        "chi_far_mpc_h": data[:, _COL_CHI_FAR].copy(),
    }
    for array in columns.values():
        array.flags.writeable = False
    return ShellTable(**columns)


# --------------------------------------------------------------------------------------
# control.par: a restricted evaluator
# --------------------------------------------------------------------------------------

ParValue = float | int | str


class _UnsupportedError(Exception):
    """An expression outside the arithmetic subset that control.par may use."""


_MATH_CONSTANTS: dict[str, float] = {
    name: getattr(math, name) for name in ("pi", "e", "tau", "inf", "nan")
}
# Pure float functions of math; factorial, comb, perm and friends are left out (they take
# unbounded time on large integers).
_MATH_FUNCTIONS: dict[str, Callable[..., float]] = {
    name: getattr(math, name)
    for name in (
        *("acos", "acosh", "asin", "asinh", "atan", "atan2", "atanh", "cbrt", "ceil"),
        *("copysign", "cos", "cosh", "degrees", "erf", "erfc", "exp", "exp2", "expm1"),
        *("fabs", "floor", "fmod", "gamma", "hypot", "ldexp", "lgamma", "log", "log10"),
        *("log1p", "log2", "pow", "radians", "sin", "sinh", "sqrt", "tan", "tanh", "trunc"),
    )
    if hasattr(math, name)
}
_BINARY_OPS: dict[type[ast.operator], Callable[[object, object], object]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.Mod: operator.mod,
}
_UNARY_OPS: dict[type[ast.unaryop], Callable[[Any], object]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
# Bounds that keep a hostile file from exhausting memory or time with big integers/strings.
_MAX_INT_BITS = 1024
_MAX_STR_LEN = 4096


def _is_number(value: object) -> bool:
    return isinstance(value, int | float)


def _checked(value: object) -> ParValue:
    if isinstance(value, int) and abs(value).bit_length() > _MAX_INT_BITS:
        msg = f"integer of more than {_MAX_INT_BITS} bits"
        raise _UnsupportedError(msg)
    if isinstance(value, str) and len(value) > _MAX_STR_LEN:
        msg = f"string longer than {_MAX_STR_LEN} characters"
        raise _UnsupportedError(msg)
    if not isinstance(value, int | float | str):
        msg = f"value of type {type(value).__name__}"
        raise _UnsupportedError(msg)
    return value


def _binary(op: ast.operator, left: ParValue, right: ParValue) -> ParValue:
    func = _BINARY_OPS.get(type(op))
    if func is None:
        msg = f"operator {type(op).__name__}"
        raise _UnsupportedError(msg)
    if isinstance(left, str) or isinstance(right, str):
        # only string concatenation: no repetition or %-formatting
        if isinstance(op, ast.Add) and isinstance(left, str) and isinstance(right, str):
            return _checked(left + right)
        msg = f"operator {type(op).__name__} on strings"
        raise _UnsupportedError(msg)
    if (
        isinstance(op, ast.Pow)
        and isinstance(left, int)
        and isinstance(right, int)
        and abs(left) > 1
        and right * abs(left).bit_length() > _MAX_INT_BITS
    ):
        msg = f"integer power {left} ** {right} too large"
        raise _UnsupportedError(msg)
    try:
        return _checked(func(left, right))
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise _UnsupportedError(str(exc)) from None


def _evaluate(node: ast.expr, names: Mapping[str, ParValue]) -> ParValue:
    """Value of an arithmetic expression; anything else raises :class:`_UnsupportedError`."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, int | float | str):  # bool is an int
            return _checked(node.value)
        msg = f"constant {node.value!r}"
        raise _UnsupportedError(msg)
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        if node.id in _MATH_CONSTANTS:  # bare names, as after "from math import *"
            return _MATH_CONSTANTS[node.id]
        msg = f"unknown name {node.id!r}"
        raise _UnsupportedError(msg)
    if isinstance(node, ast.Attribute):
        if _is_math_module(node.value, names) and node.attr in _MATH_CONSTANTS:
            return _MATH_CONSTANTS[node.attr]
        msg = f"attribute {ast.unparse(node)!r}"
        raise _UnsupportedError(msg)
    if isinstance(node, ast.UnaryOp):
        func = _UNARY_OPS.get(type(node.op))
        operand = _evaluate(node.operand, names)
        if func is None or not _is_number(operand):
            msg = f"unary {type(node.op).__name__} on {type(operand).__name__}"
            raise _UnsupportedError(msg)
        return _checked(func(operand))
    if isinstance(node, ast.BinOp):
        return _binary(node.op, _evaluate(node.left, names), _evaluate(node.right, names))
    if isinstance(node, ast.Call):
        return _call(node, names)
    msg = f"{type(node).__name__} expression"
    raise _UnsupportedError(msg)


def _is_math_module(node: ast.expr, names: Mapping[str, ParValue]) -> bool:
    return isinstance(node, ast.Name) and node.id == "math" and "math" not in names


def _call(node: ast.Call, names: Mapping[str, ParValue]) -> ParValue:
    func_node = node.func
    if isinstance(func_node, ast.Attribute) and _is_math_module(func_node.value, names):
        name = func_node.attr
    elif isinstance(func_node, ast.Name) and func_node.id not in names:
        name = func_node.id  # bare math function, as after "from math import *"
    else:
        msg = f"call of {ast.unparse(func_node)!r}"
        raise _UnsupportedError(msg)
    func = _MATH_FUNCTIONS.get(name)
    if func is None or node.keywords:
        msg = f"call of {ast.unparse(func_node)!r}"
        raise _UnsupportedError(msg)
    args = []
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            msg = "starred argument"
            raise _UnsupportedError(msg)
        value = _evaluate(arg, names)
        if not _is_number(value):
            msg = f"{name}() of a {type(value).__name__}"
            raise _UnsupportedError(msg)
        args.append(value)
    try:
        return _checked(func(*args))
    except (ArithmeticError, ValueError, TypeError) as exc:
        raise _UnsupportedError(f"{name}(): {exc}") from None


def _assigned_names(targets: Iterable[ast.expr]) -> list[str] | None:
    names = [target.id for target in targets if isinstance(target, ast.Name)]
    return names if len(names) == len(list(targets)) else None


def read_control_par(path: str | os.PathLike[str]) -> dict[str, ParValue]:
    """
    Read a PKDGRAV3 ``control.par`` without executing it.

    Parameters
    ----------
    path
        The parameter file: Python source of assignments such as ``dBoxSize = 1250``,
        ``nSideHealpix = 2048``, ``w0 = math.cos(2.48555827755058)`` or
        ``achOutName = "run"``, usually after ``import math``.

    Returns
    -------
        ``{name: value}`` for every assignment whose right-hand side could be evaluated,
        in file order; numbers stay ``int`` or ``float`` as Python would compute them.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not valid Python syntax.

    Notes
    -----
    The file is parsed with :mod:`ast` and only assignments to plain names are evaluated,
    by a small interpreter that knows numbers, strings, ``+ - * / ** %``, unary ``+ -``,
    names assigned earlier in the file, ``math.<function or constant>`` and the same
    functions and constants as bare names (as after ``from math import *``). Nothing is
    imported, called or looked up outside that set: any other statement or expression
    (calls of other functions, attribute access, ``__import__``, comprehensions ...) is
    skipped with a debug log line, and the name it would have assigned is left out. Large
    integer powers and long strings are refused as well, so that a hostile file cannot
    exhaust time or memory.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: PKDGRAV3 parameter file not found (every simulation has {CONTROL_NAME})"
        raise FileNotFoundError(msg)
    source = path.read_text(encoding="utf-8", errors="replace")
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        msg = f"{path}, line {exc.lineno}: not valid Python syntax ({exc.msg})"
        raise ValueError(msg) from None
    except (RecursionError, MemoryError):
        msg = f"{path}: expressions nested too deeply to parse"
        raise ValueError(msg) from None

    values: dict[str, ParValue] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in stmt.names] if isinstance(stmt, ast.Import) else []
            if isinstance(stmt, ast.ImportFrom):
                modules = [stmt.module or ""]
            if any(module != "math" for module in modules):
                logger.debug("%s, line %d: import of %s ignored", path, stmt.lineno, modules)
            continue
        if isinstance(stmt, ast.Assign):
            targets, value_node = stmt.targets, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets, value_node = [stmt.target], stmt.value
        elif isinstance(stmt, ast.AugAssign):
            targets = [stmt.target]
            value_node = ast.BinOp(
                left=ast.Name(id=getattr(stmt.target, "id", "")), op=stmt.op, right=stmt.value
            )
        else:
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)):
                logger.debug(
                    "%s, line %d: %s statement not evaluated",
                    path,
                    stmt.lineno,
                    type(stmt).__name__,
                )
            continue
        names = _assigned_names(targets)
        if names is None:
            logger.debug("%s, line %d: assignment to a non-name skipped", path, stmt.lineno)
            continue
        try:
            value = _evaluate(value_node, values)
        except (_UnsupportedError, RecursionError) as exc:
            logger.debug(
                "%s, line %d: %s not evaluated (%s)", path, stmt.lineno, ", ".join(names), exc
            )
            for name in names:  # a stale earlier value would be wrong
                values.pop(name, None)
            continue
        for name in names:
            values[name] = value
    return values


# --------------------------------------------------------------------------------------
# Shell files
# --------------------------------------------------------------------------------------


def shell_filename(step: int, prefix: str = DEFAULT_OUTPUT_PREFIX) -> str:
    """
    File name of the light-cone shell of one step.

    Examples
    --------
    >>> shell_filename(7)
    'run.00007.lightcone.npy'
    """
    return f"{prefix}.{int(step):05d}.lightcone.npy"


def _nside_from_control(control: Mapping[str, ParValue], path: Path) -> int:
    nside = control.get("nSideHealpix")
    if nside is None:
        msg = (
            f"{path}: nSideHealpix is missing or not a plain arithmetic expression; "
            f"it gives the HEALPix resolution of the shells"
        )
        raise ValueError(msg)
    if isinstance(nside, str) or nside != int(nside) or not _is_power_of_two(int(nside)):
        msg = f"{path}: nSideHealpix must be a power of two, got {nside!r}"
        raise ValueError(msg)
    return int(nside)


def _output_prefix(control: Mapping[str, ParValue]) -> str:
    name = control.get("achOutName")
    if isinstance(name, str) and Path(name).name:
        return Path(name).name
    return DEFAULT_OUTPUT_PREFIX


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _check_nside_out(nside_out: int, nside: int, where: Path) -> None:
    if not isinstance(nside_out, int | np.integer) or not _is_power_of_two(int(nside_out)):
        msg = f"nside_out must be a power of two, got {nside_out!r}"
        raise ValueError(msg)
    if nside_out > nside:
        msg = (
            f"nside_out = {nside_out} exceeds the shell resolution nSideHealpix = {nside} "
            f"of {where}: shells are only degraded, never upgraded"
        )
        raise ValueError(msg)


class _RingDegrader:
    """
    Sums of RING pixels at ``nside_in`` over their parents at ``nside_out`` (RING).

    The parent of every input pixel is computed once (through NESTED indices, where the
    children of a parent are contiguous) and kept as int32, 4 bytes per input pixel; each
    shell is then one pass of :func:`numpy.bincount` over blocks of the memory-mapped file.
    """

    def __init__(self, nside_in: int, nside_out: int) -> None:
        self.nside_in = nside_in
        self.nside_out = nside_out
        self._parent: IntArray | None = None

    @property
    def parent(self) -> IntArray:
        if self._parent is None:
            t0 = time.perf_counter()
            npix_in = hp.nside2npix(self.nside_in)
            shift = 2 * (int(math.log2(self.nside_in)) - int(math.log2(self.nside_out)))
            parent = np.empty(npix_in, dtype=np.int32)
            for start in range(0, npix_in, _CHUNK_PIXELS):
                ipix = np.arange(start, min(start + _CHUNK_PIXELS, npix_in), dtype=np.int64)
                nest = hp.ring2nest(self.nside_in, ipix) >> shift  # NESTED parent index
                parent[start : start + ipix.size] = hp.nest2ring(self.nside_out, nest)
            self._parent = parent
            logger.debug(
                "RING parent map nside %d -> %d in %.2f s",
                self.nside_in,
                self.nside_out,
                time.perf_counter() - t0,
            )
        return self._parent

    def sums(self, counts: np.ndarray, path: Path) -> FloatArray:
        """Per-parent sums of *counts* (``(npix_in,)``, any real dtype), float64."""
        npix_out = hp.nside2npix(self.nside_out)
        out = np.zeros(npix_out)
        same = self.nside_in == self.nside_out
        check_finite = counts.dtype.kind == "f"
        check_sign = counts.dtype.kind in "if"
        for start in range(0, counts.size, _CHUNK_PIXELS):
            stop = min(start + _CHUNK_PIXELS, counts.size)
            block = np.asarray(counts[start:stop], dtype=np.float64)
            if check_finite and not np.all(np.isfinite(block)):
                msg = f"{path}: non-finite particle counts in pixels {start}-{stop - 1}"
                raise ValueError(msg)
            if check_sign and block.min() < 0:
                msg = f"{path}: negative particle counts in pixels {start}-{stop - 1}"
                raise ValueError(msg)
            if same:
                out[start:stop] = block
                continue
            parent = self.parent[start:stop]
            # rings of a RING block map to a contiguous run of parent rings
            lo, hi = int(parent.min()), int(parent.max())
            out[lo : hi + 1] += np.bincount(parent - lo, weights=block, minlength=hi - lo + 1)
        return out


def _open_shell_file(path: Path, npix: int, nside: int, control_path: Path | None) -> np.ndarray:
    """Memory-map one shell after checking its header, size and length against the file."""
    try:
        with path.open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            data_offset = handle.tell()
    except (ValueError, OSError, EOFError) as exc:
        msg = f"{path}: not a readable .npy file (truncated or corrupt header: {exc})"
        raise ValueError(msg) from None
    if len(shape) != 1 or dtype.kind not in "iuf":
        msg = (
            f"{path}: expected a 1-d array of particle counts, got shape {shape} and dtype {dtype}"
        )
        raise ValueError(msg)
    if shape[0] != npix:
        msg = f"{path}: shell has {shape[0]} pixels, expected 12 * nside**2 = {npix} " + (
            f"for nSideHealpix = {nside} in {control_path}"
            if control_path
            else f"for nside {nside}"
        )
        raise ValueError(msg)
    expected_bytes = data_offset + npix * dtype.itemsize
    actual_bytes = path.stat().st_size
    if actual_bytes < expected_bytes:
        msg = (
            f"{path}: truncated .npy file: its header promises {npix} {dtype} values "
            f"({expected_bytes} bytes), the file has {actual_bytes} bytes"
        )
        raise ValueError(msg)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _shell_delta(
    path: Path, *, nside: int, degrader: _RingDegrader, control_path: Path | None
) -> FloatArray:
    counts = _open_shell_file(path, hp.nside2npix(nside), nside, control_path)
    try:
        sums = degrader.sums(counts, path)
    finally:
        del counts  # drop the memory map (and its resident pages) before the next shell
    total = float(sums.sum())
    if not total > 0:
        msg = f"{path}: shell holds no particles (all counts are zero)"
        raise ValueError(msg)
    # delta = n / mean(n) - 1; the mean of the parent sums is total / npix_out, so that a
    # uniform shell gives exactly zero.
    sums /= total / sums.size
    sums -= 1.0
    return sums


def read_shell(
    path: str | os.PathLike[str], *, nside: int, nside_out: int | None = None
) -> FloatArray:
    r"""
    Overdensity of one light-cone shell file.

    Parameters
    ----------
    path
        A ``run.NNNNN.lightcone.npy`` file: HEALPix particle counts, RING ordering, shape
        ``(12 * nside**2,)``, any integer or float dtype.
    nside
        Resolution of the file (``nSideHealpix`` of ``control.par``).
    nside_out
        Output resolution, a power of two not above *nside*; *nside* if not given.

    Returns
    -------
        :math:`\delta = n / \bar n - 1`, RING ordering, shape ``(12 * nside_out**2,)``,
        float64, where the counts are summed over the children of each output pixel
        (equivalently, :math:`\delta` averaged over them).

    Raises
    ------
    ValueError
        If the file is not a 1-d numeric ``.npy`` of the right length, is truncated, or
        holds negative, non-finite or no counts.
    """
    path = Path(path)
    if not _is_power_of_two(int(nside)):
        msg = f"nside must be a power of two, got {nside!r}"
        raise ValueError(msg)
    nside_out = nside if nside_out is None else nside_out
    _check_nside_out(nside_out, nside, path)
    return _shell_delta(
        path, nside=nside, degrader=_RingDegrader(nside, nside_out), control_path=None
    )


# --------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------


class Shell(NamedTuple):
    """
    One light-cone shell, as streamed by :func:`iter_shells`.

    Attributes
    ----------
    step
        PKDGRAV3 step number.
    z_near, z_far
        Redshift limits of the shell.
    delta
        Matter overdensity, HEALPix RING ordering, shape ``(12 * nside_out**2,)``, float64.
    """

    step: int
    z_near: float
    z_far: float
    delta: FloatArray


@dataclass(frozen=True)
class _Simulation:
    sim_dir: Path
    table: ShellTable
    control: Mapping[str, ParValue]
    nside: int
    prefix: str

    @property
    def z_values_path(self) -> Path:
        return self.sim_dir / Z_VALUES_NAME

    @property
    def control_path(self) -> Path:
        return self.sim_dir / CONTROL_NAME

    def shell_path(self, step: int) -> Path:
        return self.sim_dir / shell_filename(step, self.prefix)


def _open_simulation(sim_dir: str | os.PathLike[str]) -> _Simulation:
    sim_dir = Path(sim_dir)
    if not sim_dir.is_dir():
        msg = f"{sim_dir}: simulation directory not found"
        raise FileNotFoundError(msg)
    table = read_z_values(sim_dir / Z_VALUES_NAME)
    control_path = sim_dir / CONTROL_NAME
    control = read_control_par(control_path)
    nside = _nside_from_control(control, control_path)
    return _Simulation(sim_dir, table, control, nside, _output_prefix(control))


def _stream(
    sim: _Simulation, nside_out: int, steps: Iterable[int] | None = None
) -> Iterator[Shell]:
    wanted = None if steps is None else {int(step) for step in steps}
    degrader = _RingDegrader(sim.nside, nside_out)
    for i, step in enumerate(sim.table.step.tolist()):
        if wanted is not None and step not in wanted:
            continue
        z_near, z_far = float(sim.table.z_near[i]), float(sim.table.z_far[i])
        path = sim.shell_path(step)
        if not path.is_file():
            logger.info(
                "%s: no shell file for step %d (z %.4f-%.4f): skipped", path, step, z_near, z_far
            )
            continue
        t0 = time.perf_counter()
        delta = _shell_delta(
            path, nside=sim.nside, degrader=degrader, control_path=sim.control_path
        )
        logger.debug("%s: read in %.2f s", path, time.perf_counter() - t0)
        yield Shell(step, z_near, z_far, delta)


def iter_shells(
    sim_dir: str | os.PathLike[str], *, nside_out: int, steps: Iterable[int] | None = None
) -> Iterator[Shell]:
    """
    Stream the light-cone shells of a simulation, one at a time, nearest first.

    Parameters
    ----------
    sim_dir
        Simulation directory with ``z_values.txt``, ``control.par`` and the shells.
    nside_out
        Output resolution of the overdensity maps, a power of two not above the shells'
        ``nSideHealpix``.
    steps
        If given, only the shells of these steps are read.

    Returns
    -------
        An iterator of :class:`Shell` ``(step, z_near, z_far, delta)`` in order of
        increasing redshift; ``delta`` is RING at *nside_out*. Steps listed in
        ``z_values.txt`` without a shell file are skipped with an INFO log line.

    Raises
    ------
    FileNotFoundError
        At the call, if the directory, ``z_values.txt`` or ``control.par`` is missing.
    ValueError
        At the call for a bad table, parameter file or *nside_out*; while iterating, for
        a shell file of the wrong size, truncated or otherwise unreadable.

    Notes
    -----
    Each file is memory-mapped and read in blocks of 4M pixels, which are converted to
    float64 and summed into their parent pixels at *nside_out*: the memory in use is one
    output map, one block and the parent index of every input pixel (4 bytes each),
    whatever the number of shells. Shells are not kept; a consumer that drops each
    ``delta`` before asking for the next keeps memory flat.
    """
    sim = _open_simulation(sim_dir)
    _check_nside_out(nside_out, sim.nside, sim.control_path)
    return _stream(sim, int(nside_out), steps)


# --------------------------------------------------------------------------------------
# Born ray tracing
# --------------------------------------------------------------------------------------


def _check_nz(nz: tuple[FloatArray, FloatArray], where: Path) -> tuple[FloatArray, FloatArray]:
    try:
        z, n = (np.asarray(a, dtype=np.float64) for a in nz)
    except (TypeError, ValueError) as exc:
        msg = f"{where}: nz must be a pair (z, n) of numeric arrays ({exc})"
        raise ValueError(msg) from None
    if z.ndim != 1 or z.size < 2 or n.ndim != 2 or n.shape[1] != z.size or n.shape[0] < 1:
        msg = (
            f"{where}: source n(z) must be (z of shape (n_z,), n of shape (n_bins, n_z)) "
            f"with n_bins = 4 for the platform, got shapes {z.shape} and {n.shape}"
        )
        raise ValueError(msg)
    if not (np.all(np.isfinite(z)) and np.all(np.isfinite(n))):
        msg = f"{where}: source n(z) has non-finite values"
        raise ValueError(msg)
    if np.any(np.diff(z) <= 0) or z[0] < 0:
        msg = f"{where}: source n(z) redshifts must increase from z >= 0, got {z[0]}..{z[-1]}"
        raise ValueError(msg)
    if np.any(n < 0) or np.any(np.trapezoid(n, z, axis=1) <= 0):
        msg = f"{where}: every source n(z) bin must be non-negative with a positive integral"
        raise ValueError(msg)
    return z, n


def _radial_windows(
    table: ShellTable, cosmo: CCLGlassCosmology
) -> tuple[list[glass.RadialWindow], list[glass.RadialWindow]]:
    """Per shell: the lens window (top-hat in comoving distance) and a top-hat in z."""
    distance_weight = glass.DistanceWeight(cosmo)
    lens, source = [], []
    for z_near, z_far in zip(table.z_near.tolist(), table.z_far.tolist(), strict=True):
        n_z = max(3, math.ceil((z_far - z_near) / _WINDOW_DZ) + 1)
        za = np.linspace(z_near, z_far, n_z)
        lens.append(glass.RadialWindow(za, distance_weight(za)))
        source.append(glass.RadialWindow(za, np.ones_like(za)))
    return lens, source


def shell_lensing_weights(
    table: ShellTable,
    nz: tuple[FloatArray, FloatArray],
    cosmo: CCLGlassCosmology,
    *,
    where: Path | None = None,
) -> FloatArray:
    r"""
    Born lensing weight of every shell for every source bin, from GLASS.

    Parameters
    ----------
    table
        The shells (e.g. :func:`read_z_values`).
    nz
        ``(z, n)`` with ``n`` of shape ``(n_bins, n_z)``, any normalisation.
    cosmo
        The simulation's cosmology (see :mod:`lensing_core.sims.glass_cosmology`).
    where
        File named in error messages (the shell table).

    Returns
    -------
        ``weights[i, b]``, shape ``(n_shells, n_bins)``, in the order of *table*: the
        convergence of bin *b* is :math:`\kappa_b = \sum_i w_{ib}\,\delta_i`.

    Raises
    ------
    ValueError
        If less than 99 % of some bin's n(z) lies within the shells' redshift range.

    Notes
    -----
    Each shell is a top-hat in comoving distance between ``z_near`` and ``z_far``: a
    :class:`glass.RadialWindow` on those limits with :class:`glass.DistanceWeight`
    (:math:`dz / E(z)`). The n(z) of each bin is split over the shells by
    :func:`glass.partition` (``method="restrict"``) with plain top-hats in z, i.e. the
    fraction of sources whose redshift falls in each shell. :func:`glass.multi_plane_weights`
    then combines these with the matrix of :class:`glass.MultiPlaneConvergence`, whose
    thin-lens recursion places shell *j*'s mass on one plane at its effective redshift
    :math:`z_j` (the distance-weighted mean) with weight

    .. math::

        w_{ij} = \frac32 \Omega_m \frac{(1+z_j)\,\chi_j (\chi_i-\chi_j)}{\chi_i}
            \frac{\Delta\chi_j}{d_H^2}

    for the sources of shell :math:`i > j`, placed at :math:`z_i`. That is the midpoint
    rule for the Born integral

    .. math::

        \kappa(\chi_s) = \frac{3 \Omega_m H_0^2}{2 c^2} \int_0^{\chi_s} d\chi\,
            (1 + z)\, \frac{\chi (\chi_s - \chi)}{\chi_s}\, \delta(\chi),

    exact in :math:`\Delta\chi_j`, with an error of second order in the shell width,
    and no lensing of sources by the shell they sit in.
    """
    z, n = nz
    lens_windows, source_windows = _radial_windows(table, cosmo)
    # (n_shells, n_bins): integral of each bin's n(z) over each shell
    per_shell = glass.partition(z, n, source_windows, method="restrict")
    coverage = per_shell.sum(axis=0) / np.trapezoid(n, z, axis=1)
    z_lo, z_hi = float(table.z_near[0]), float(table.z_far[-1])
    if np.any(coverage < _MIN_SOURCE_COVERAGE):
        msg = (
            f"{where}: the shells span z = {z_lo:.4g}-{z_hi:.4g} but hold only "
            f"{np.round(100 * coverage, 2).tolist()} % of the source bins' n(z)"
        )
        raise ValueError(msg)
    if np.any(coverage < _WARN_SOURCE_COVERAGE):
        logger.warning(
            "%s: %s %% of the source bins' n(z) lie within the shells (z = %.4g-%.4g); "
            "the rest is left out",
            where,
            np.round(100 * coverage, 3).tolist(),
            z_lo,
            z_hi,
        )
    return glass.multi_plane_weights(per_shell, lens_windows, cosmo)


def born_convergence(
    sim_dir: str | os.PathLike[str],
    params: Mapping[str, float],
    nz: tuple[FloatArray, FloatArray],
    *,
    nside_out: int = 1024,
) -> FloatArray:
    r"""
    Tomographic convergence maps of a Gower Street simulation by Born ray tracing.

    Parameters
    ----------
    sim_dir
        Simulation directory with ``z_values.txt``, ``control.par`` and the shells
        ``run.NNNNN.lightcone.npy`` (HEALPix particle counts, RING).
    params
        The simulation's parameters (a catalog entry: ``Omega_m``, ``sigma_8``, ``S8``,
        ``w``, ``h``, ``n_s``, ``Omega_b``, ``Omega_bh2``, ``m_nu``); they set the
        distances and the lensing prefactor.
    nz
        ``(z, n)``: redshifts of shape ``(n_z,)`` and source distributions of shape
        ``(4, n_z)`` (any normalisation), e.g.
        :func:`lensing_core.sims.theory.des_y3_like_nz`.
    nside_out
        Output resolution, a power of two not above the shells' ``nSideHealpix``.

    Returns
    -------
        Convergence maps, shape ``(4, 12 * nside_out**2)``, RING ordering, float64.

    Raises
    ------
    FileNotFoundError
        If ``z_values.txt`` or ``control.par`` is missing.
    ValueError
        For a malformed shell table or parameter file, a shell of the wrong size
        (``npix != 12 * nSideHealpix**2``), a truncated or unreadable shell, an *nz* of the
        wrong shape, sources outside the shells' redshift range, or no shell file at all.
        Messages name the file.
    KeyError
        If *params* lacks a parameter.

    Notes
    -----
    The weights come from :func:`shell_lensing_weights` (GLASS multi-plane weights, see
    there for the discretisation). Shells are then streamed one at a time
    (:func:`iter_shells`), each degraded to *nside_out* as it is read, and added to the
    maps with their weights; shells behind every source (weight zero) are not read. A
    shell without a file contributes nothing and is reported in a warning. The peak
    memory is the 4 output maps, one degraded shell and the degrading buffers (about
    1 GB at nside 2048 in, 1024 out), whatever the number of shells.

    Born approximation: no ray deflection and no lens-lens coupling, with delta taken
    as constant along each line of sight through a shell.
    """
    t0 = time.perf_counter()
    sim = _open_simulation(sim_dir)
    z, n = _check_nz(nz, sim.sim_dir)
    _check_nside_out(nside_out, sim.nside, sim.control_path)
    cosmo = glass_cosmology(params)
    weights = shell_lensing_weights(sim.table, (z, n), cosmo, where=sim.z_values_path)

    needed = np.any(weights != 0, axis=1)
    row_of_step = {step: i for i, step in enumerate(sim.table.step.tolist())}
    missing = [s for s in sim.table.step[needed].tolist() if not sim.shell_path(s).is_file()]
    if len(missing) == int(needed.sum()):
        msg = (
            f"{sim.sim_dir}: no shell files {sim.prefix}.NNNNN.lightcone.npy for the "
            f"{len(missing)} steps of {sim.z_values_path} in front of the sources"
        )
        raise ValueError(msg)
    if missing:
        lost = np.abs(weights[[row_of_step[s] for s in missing]]).sum(axis=0)
        share = lost / np.abs(weights).sum(axis=0)
        logger.warning(
            "%s: %d shells in front of the sources have no file (steps %s), %s %% of each "
            "bin's lensing weight: skipped",
            sim.sim_dir,
            len(missing),
            missing,
            np.round(100 * share, 2).tolist(),
        )

    kappa = np.zeros((n.shape[0], hp.nside2npix(nside_out)))
    n_read = 0
    for shell in _stream(sim, int(nside_out), sim.table.step[needed].tolist()):
        for b, w in enumerate(weights[row_of_step[shell.step]].tolist()):
            kappa[b] += w * shell.delta
        n_read += 1
    logger.info(
        "%s: Born convergence of %d bins from %d shells at nside %d -> %d in %.1f s",
        sim.sim_dir,
        n.shape[0],
        n_read,
        sim.nside,
        nside_out,
        time.perf_counter() - t0,
    )
    return kappa
