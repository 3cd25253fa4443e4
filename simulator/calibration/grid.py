"""Correction grids: measured latency over roofline latency, tabulated in log2 space.

Each operator family's measured latency is divided by a roofline bound computed from the
GPU's published peaks (``reference.py``); the log of that ratio, an inverse efficiency,
varies slowly with shape and is tabulated on a grid of powers of two per axis, then
interpolated multilinearly in log2 of the features and clamped at the grid's edges. The
roofline carries the steep part of the dependence (FLOPs and bytes), so one grid serves
shapes that were never measured, and the same grid scaled to another GPU's peaks is the
fallback for GPUs without measurements.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A table of log-ratios on the product of per-axis node lists.

    Attributes
    ----------
    names : tuple of str
        Feature name of each axis.
    axes : tuple of numpy.ndarray
        float64, strictly increasing node values (features, not logs) of each axis.
    values : numpy.ndarray
        float64, shape ``tuple(len(a) for a in axes)``: natural log of measured / roofline.
    counts : numpy.ndarray
        int64, same shape: measured points behind each node (0: filled from neighbours);
        all 0 for a grid read from a file, which stores only the totals.
    stored_totals : tuple of int or None
        ``(nodes_measured, points)`` as read from a file.
    floor_s : float or None
        The measured family's latency floor (1st percentile of its points, seconds): the
        part of a kernel's time that does not scale with the GPU's peaks when the grid is
        borrowed by another GPU (``Profile.predict``). None in files that predate it.
    terms : tuple of Grid
        Additive terms: grids over a few of the features (or others the predictor is
        given) whose log-ratios add to this one's (``fit_additive``). Empty for most.
    """

    names: tuple[str, ...]
    axes: tuple[np.ndarray, ...]
    values: np.ndarray
    counts: np.ndarray
    stored_totals: tuple[int, int] | None = None
    floor_s: float | None = None
    terms: tuple[Grid, ...] = ()

    def log_ratio(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Interpolated log-ratio at each point (float64, shape of the features).

        The sum of this grid's own interpolation and each of its ``terms``.
        """
        total = self._own_log_ratio(features)
        for term in self.terms:
            total = total + term.log_ratio(features)
        return total

    def _own_log_ratio(self, features: dict[str, np.ndarray]) -> np.ndarray:
        coords = [
            np.log2(np.maximum(np.asarray(features[n], dtype=np.float64), 1e-300))
            for n in self.names
        ]
        shape = np.broadcast(*coords).shape
        coords = [np.broadcast_to(c, shape).ravel() for c in coords]
        lows = []
        weights = []
        for axis, coord in zip(self.axes, coords, strict=True):
            log_axis = np.log2(axis)
            if len(axis) == 1:
                lows.append(np.zeros(coord.shape, dtype=np.int64))
                weights.append(np.zeros(coord.shape))
                continue
            idx = np.clip(np.searchsorted(log_axis, coord, side="right") - 1, 0, len(axis) - 2)
            t = (coord - log_axis[idx]) / (log_axis[idx + 1] - log_axis[idx])
            lows.append(idx)
            weights.append(np.clip(t, 0.0, 1.0))
        total = np.zeros(coords[0].shape)
        for corner in itertools.product((0, 1), repeat=len(self.axes)):
            weight = np.ones(coords[0].shape)
            index = []
            for bit, low, t, axis in zip(corner, lows, weights, self.axes, strict=True):
                weight = weight * (t if bit else 1.0 - t)
                index.append(np.minimum(low + bit, len(axis) - 1))
            total += weight * self.values[tuple(index)]
        return total.reshape(shape)

    def to_json(self) -> dict:
        """The profile file's object: axes as plain lists, log-ratios packed.

        Log-ratios are rounded to 1e-3 (0.1 %) and stored as little-endian int16
        thousandths, base64-encoded (``log_ratio_encoding``): 2.7 bytes per node instead of
        about 7 for a JSON number, which keeps the measured-node grids (tens of thousands
        of nodes) small and fast to load.
        """
        milli = np.round(self.values.ravel() * 1000.0)
        if milli.size and np.abs(milli).max() > np.iinfo(np.int16).max:
            raise ValueError("a log-ratio beyond +-32.7 cannot be stored")
        packed = base64.b64encode(milli.astype("<i2").tobytes()).decode("ascii")
        return {
            "axes": {n: [float(v) for v in a] for n, a in zip(self.names, self.axes, strict=True)},
            "nodes_measured": self.stored_totals[0]
            if self.stored_totals
            else int((self.counts > 0).sum()),
            "points": self.stored_totals[1] if self.stored_totals else int(self.counts.sum()),
            **({} if self.floor_s is None else {"floor_s": float(self.floor_s)}),
            "log_ratio_encoding": LOG_RATIO_ENCODING,
            "log_ratio": packed,
            **({"terms": [t.to_json() for t in self.terms]} if self.terms else {}),
        }

    @classmethod
    def from_json(cls, data: dict, where: str) -> Grid:
        """Rebuild from ``to_json``; ``ValueError`` naming ``where`` when malformed."""
        axes_map = data["axes"]
        if not isinstance(axes_map, dict) or not axes_map:
            raise ValueError(f"{where}.axes must be a non-empty object")
        names = tuple(axes_map)
        axes = tuple(_number_list(axes_map[n], f"{where}.axes.{n}") for n in names)
        for name, axis in zip(names, axes, strict=True):
            if (
                axis.ndim != 1
                or len(axis) == 0
                or not np.all(axis > 0)
                or np.any(np.diff(axis) <= 0)
            ):
                raise ValueError(f"{where}.axes.{name} must be increasing positive numbers")
        shape = tuple(len(a) for a in axes)
        values = _log_ratio_values(data, where)
        if values.size != int(np.prod(shape)) or not np.all(np.isfinite(values)):
            raise ValueError(
                f"{where}.log_ratio must hold {int(np.prod(shape))} finite numbers, "
                f"got {values.size}"
                + ("" if values.size != int(np.prod(shape)) else " (some null, NaN or inf)")
            )
        if np.any(np.abs(values) > 32.767):
            raise ValueError(
                f"{where}.log_ratio: values must be within +-32.767 (the natural log of "
                "measured / roofline; what the int16 encoding can store)"
            )
        # Per-node counts are not stored (they would double the file); zeros stand in.
        counts = np.zeros(shape, dtype=np.int64)
        totals = tuple(data.get(key, 0) for key in ("nodes_measured", "points"))
        for key, total in zip(("nodes_measured", "points"), totals, strict=True):
            if isinstance(total, bool) or not isinstance(total, int) or total < 0:
                raise ValueError(f"{where}.{key} must be a whole number >= 0, got {total!r:.40}")
        floor_s = data.get("floor_s")
        if floor_s is not None:
            if not isinstance(floor_s, int | float) or not (0 < floor_s < 1e3):
                raise ValueError(f"{where}.floor_s must be a positive number of seconds")
            floor_s = float(floor_s)
        terms_data = data.get("terms", [])
        if not isinstance(terms_data, list):
            raise ValueError(f"{where}.terms must be a list of grids")
        terms = []
        for i, term in enumerate(terms_data):
            if not isinstance(term, dict):
                raise ValueError(f"{where}.terms[{i}] must be an object")
            terms.append(cls.from_json(term, f"{where}.terms[{i}]"))
        return cls(names, axes, values.reshape(shape), counts, totals, floor_s, tuple(terms))


#: How ``to_json`` packs log-ratios (a plain JSON list of numbers is read too).
LOG_RATIO_ENCODING = "int16-thousandths-base64"


def _log_ratio_values(data: dict, where: str) -> np.ndarray:
    raw = data["log_ratio"]
    if isinstance(raw, str):
        encoding = data.get("log_ratio_encoding")
        if encoding != LOG_RATIO_ENCODING:
            raise ValueError(f"{where}.log_ratio_encoding must be {LOG_RATIO_ENCODING!r}")
        try:
            packed = base64.b64decode(raw.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise ValueError(f"{where}.log_ratio is not valid base64") from None
        if len(packed) % 2:
            raise ValueError(f"{where}.log_ratio must hold whole int16 values")
        return np.frombuffer(packed, dtype="<i2").astype(np.float64) / 1000.0
    if not isinstance(raw, list):
        raise ValueError(f"{where}.log_ratio must be a list of numbers or a packed string")
    return _number_list(raw, f"{where}.log_ratio")


def _number_list(values: object, where: str) -> np.ndarray:
    """A JSON list of numbers (null as NaN, for the caller's range check) as float64; else
    a ValueError naming ``where`` (numpy's own text names neither key nor expectation)."""
    if not isinstance(values, list):
        raise ValueError(f"{where} must be a list of numbers, got {values!r:.40}")
    for value in values:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"{where} must be a list of numbers, got {value!r:.40} in it")
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


def fit_grid(
    names: tuple[str, ...],
    axes: tuple[np.ndarray, ...],
    features: dict[str, np.ndarray],
    log_ratio: np.ndarray,
    *,
    product_lines: tuple[tuple[str, str], ...] = (),
    parallel_lines: bool = False,
    affine_axis: str | None = None,
    gated_lines: tuple[tuple[str, str], ...] = (),
) -> Grid:
    """Fit a grid: each node takes the median log-ratio of the points that sit on it.

    Points whose features are not all node values are ignored (they are the off-grid
    held-out set); an axis with a single node pools every point. Points that differ only
    in a feature the grid does not have (e.g. the number of query heads of a
    decode-attention grid) are pooled into one node. A node without points lying between
    filled nodes on some axis takes the median, over such axes, of the linear
    interpolation (in log2 of the feature) between them and of their two values (with
    ``parallel_lines``, also of what its filled neighbours plus the difference between
    their parallel lines give; ``_interpolate_missing``); the rest (outside the measured
    range) take the mean of their filled neighbours, repeatedly, and finally the median of
    all points.

    Parameters
    ----------
    names : tuple of str
    axes : tuple of numpy.ndarray
        Node values per axis (increasing, positive).
    features : dict of str to numpy.ndarray
        float64, one value per point, for every name.
    log_ratio : numpy.ndarray
        float64, natural log of measured / roofline per point.
    product_lines : tuple of (str, str)
        Pairs of features whose product a kernel's efficiency follows: each is one more
        line through an empty node, along which the two features change in opposite
        directions by the same factor (``_product_line_estimates``).
    parallel_lines : bool
        Also estimate an empty node from each filled neighbour's parallel lines
        (``_parallel_line_estimates``).
    affine_axis : str, optional
        A feature the roofline is proportional to and the latency affine in (a fixed
        latency plus bytes over a bandwidth): along it an empty node is interpolated
        linearly in latency between its filled neighbours (``_affine_estimates``), instead
        of in log-ratio and from their values.
    gated_lines : tuple of (str, str)
        Pairs ``(along, across)``: also estimate an empty node from each other line along
        ``along`` (at another node of ``across``) that runs parallel to its own around it
        (``_gated_line_estimates``).

    Returns
    -------
    Grid
    """
    shape = tuple(len(a) for a in axes)
    on_grid = np.ones(len(log_ratio), dtype=bool)
    index = []
    for name, axis in zip(names, axes, strict=True):
        values = np.asarray(features[name], dtype=np.float64)
        if len(axis) == 1:  # a one-node axis pools every point
            index.append(np.zeros(len(values), dtype=np.int64))
            continue
        pos = np.searchsorted(axis, values)
        pos_c = np.clip(pos, 0, len(axis) - 1)
        on_grid &= axis[pos_c] == values
        index.append(pos_c)
    flat = np.ravel_multi_index(tuple(i[on_grid] for i in index), shape)
    sums = np.full(int(np.prod(shape)), np.nan)
    counts = np.bincount(flat, minlength=sums.size).astype(np.int64)
    ratios = log_ratio[on_grid]
    order = np.argsort(flat, kind="stable")
    flat_sorted = flat[order]
    ratios_sorted = ratios[order]
    starts = np.searchsorted(flat_sorted, np.arange(sums.size), side="left")
    ends = np.searchsorted(flat_sorted, np.arange(sums.size), side="right")
    for node in np.nonzero(counts)[0]:
        sums[node] = float(np.median(ratios_sorted[starts[node] : ends[node]]))
    values = sums.reshape(shape)
    lines = tuple((names.index(a), names.index(b)) for a, b in product_lines)
    _interpolate_missing(
        values,
        [np.log2(a) for a in axes],
        lines,
        parallel_lines,
        affine_axis=None if affine_axis is None else names.index(affine_axis),
        gated_lines=tuple((names.index(a), names.index(b)) for a, b in gated_lines),
    )
    _fill_missing(values, fallback=float(np.median(ratios)) if ratios.size else 0.0)
    return Grid(tuple(names), tuple(axes), values, counts.reshape(shape))


def fit_additive(
    names: tuple[str, ...],
    axes: tuple[np.ndarray, ...],
    features: dict[str, np.ndarray],
    log_ratio: np.ndarray,
    terms: tuple[tuple[tuple[str, ...], tuple[np.ndarray, ...]], ...],
    *,
    clamped: tuple[str, ...] = (),
    iterations: int = 4,
    product_lines: tuple[tuple[str, str], ...] = (),
    parallel_lines: bool = False,
    gated_lines: tuple[tuple[str, str], ...] = (),
) -> Grid:
    """A grid plus additive terms, fitted by backfitting.

    The main grid is fitted to the log-ratios (``fit_grid``); then, ``iterations`` times,
    each term grid in turn to what the main grid and the other terms leave, and the main
    grid again to what the terms leave. A term over a feature the main grid pools (or holds
    as a coarse class) and the features that matter most with it is fitted from every
    point of the family rather than from the few points of each main-grid node: for the
    attention grids, the number of query heads per KV head is such a feature (see
    ``fit.ADDITIVE_TERMS``).

    Parameters
    ----------
    names, axes : as ``fit_grid``, for the main grid.
    features : dict of str to numpy.ndarray
        float64 features of every point, for the main grid's and the terms' names.
    log_ratio : numpy.ndarray
        float64, natural log of measured / roofline per point.
    terms : tuple of (names, axes)
        Each term grid's feature names and node lists, as ``fit_grid`` takes them.
    clamped : tuple of str
        Main-grid features clipped into their axis' range before fitting (a class axis:
        ``gqa`` with nodes 1 and 2 takes every grouped-query point at node 2). Prediction
        clamps at the grid's edges anyway.
    iterations : int
        Backfitting rounds. 4 instead of 2 cut the p90 error of held-out model shapes of
        prefill attention (three terms) on H100 from 20.1 to 18.3 % (random 20 % held
        out: A100 13.1 -> 12.3 %) and of decode attention (one term) on A100 from 9.0 to
        8.2 %; no held-out error grew.
    product_lines : tuple of (str, str)
        As ``fit_grid`` takes them, for the main grid.
    parallel_lines : bool
        As ``fit_grid`` takes it, for the main grid and the terms.
    gated_lines : tuple of (str, str)
        As ``fit_grid`` takes them, for the main grid.

    Returns
    -------
    Grid
        The main grid with the term grids in ``terms``, in the order given.
    """
    main_features = clamp_features(names, axes, features, clamped)
    grid = fit_grid(
        names,
        axes,
        main_features,
        log_ratio,
        product_lines=product_lines,
        parallel_lines=parallel_lines,
        gated_lines=gated_lines,
    )
    fitted: list[Grid] = []
    # Each term's log-ratio at every point, kept from its latest fit (not re-interpolated
    # for every other term's fit); None until the term's first fit.
    parts: list[np.ndarray | None] = [None] * len(terms)

    def others(skip: int) -> np.ndarray:
        total = np.zeros(len(log_ratio))
        for j, part in enumerate(parts):
            if j != skip and part is not None:
                total = total + part
        return total

    for _ in range(max(iterations, 1)):
        main_part = grid.log_ratio(main_features)
        fitted = []
        for j, (term_names, term_axes) in enumerate(terms):
            term = fit_grid(
                term_names,
                term_axes,
                features,
                log_ratio - main_part - others(j),
                parallel_lines=parallel_lines,
            )
            fitted.append(term)
            parts[j] = term.log_ratio(features)
        grid = fit_grid(
            names,
            axes,
            main_features,
            log_ratio - others(-1),
            product_lines=product_lines,
            parallel_lines=parallel_lines,
            gated_lines=gated_lines,
        )
    return Grid(grid.names, grid.axes, grid.values, grid.counts, terms=tuple(fitted))


def clamp_features(
    names: tuple[str, ...],
    axes: tuple[np.ndarray, ...],
    features: dict[str, np.ndarray],
    clamped: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """``features`` with each of ``clamped`` clipped into its axis' range (a class axis)."""
    out = dict(features)
    for name in clamped:
        axis = axes[names.index(name)]
        out[name] = np.clip(np.asarray(features[name], np.float64), axis[0], axis[-1])
    return out


def _interpolate_missing(
    values: np.ndarray,
    log_axes: list[np.ndarray],
    product_lines: tuple[tuple[int, int], ...] = (),
    parallel_lines: bool = False,
    affine_axis: int | None = None,
    gated_lines: tuple[tuple[int, int], ...] = (),
) -> None:
    """Fill empty nodes that lie between filled ones on some axis line (in place).

    Along each axis, an empty node has three estimates: the linear interpolation (in log2
    of the feature) between the nearest filled nodes on either side, and those two nodes'
    own values. The node takes the median of its axes' estimates. The median ignores the
    one axis that crosses a kernel's tile boundary, where the mean is pulled off: with a
    random 20 % of measured nodes held out, H100 FP8 GEMMs were predicted with p90 error
    8.8 % against 10.8 % for the mean of the interpolations. Counting the bracketing values
    too keeps one neighbour measured on another kernel from deciding the node: random 20 %
    p90 for B200 FP8 GEMMs 25.8 -> 21.8 %, L40S bf16 GEMMs 15.7 -> 14.6 %, H100 MoE
    17.3 -> 14.8 %, A100 GEMMs of held-out models 12.5 -> 10.9 %; no grid moved by more
    than 0.4 point the other way. Repeated while it fills anything; nodes outside every
    line's filled range are left NaN.

    ``product_lines`` (axis index pairs) add one line per pair through each empty node,
    along which the two features change by inverse factors (``_product_line_estimates``):
    an attention kernel splits its work into (sequence, head) tiles, so 2b sequences of
    h/2 heads run about as efficiently as b sequences of h heads (``profile._fold_heads``
    reads a grid the same way). With the batch-heads line, a random 20 % of prefill
    attention's measured nodes held out are predicted with p90 error (AIConfigurator's
    data) 12.3 % instead of 15.7 % on L40S, 13.1 instead of 14.0 on H100, 12.4 instead of
    13.1 on A100, 11.4 instead of 12.8 on B200, 12.3 instead of 12.9 on GB200 and 11.4
    instead of 12.9 on RTX PRO 6000; decode attention's (batch-KV-heads line) moved 0.1-0.9
    point lower on every GPU. Counted twice, the line changed nothing measurable; without
    its one-sided estimates it gained half as much.

    With ``parallel_lines``, each filled neighbour along an axis of at least
    ``MIN_PARALLEL_LINE_NODES`` nodes also lends its parallel lines' shape
    (``_parallel_line_estimates``): a tile boundary or a kernel switch sits at the same m
    for every GEMM n and k, so the step between two parallel lines varies less than either
    line. Which grids use it, and why not the others: ``fit.PARALLEL_LINE_GRIDS``.

    ``gated_lines`` (``(along, across)`` axis index pairs) add, for each empty node, every
    other line along ``along`` that runs parallel to its own around it
    (``_gated_line_estimates``; ``fit.GATED_LINES``). Along ``affine_axis`` the line's
    three estimates are replaced by one, the linear interpolation of latency
    (``_affine_estimates``; ``fit.AFFINE_AXES``).
    """
    for _ in range(values.ndim + 1):
        missing = np.isnan(values)
        if not missing.any():
            return
        estimates = []
        for axis, coords in enumerate(log_axes):
            if len(coords) < 3:
                continue
            if axis == affine_axis:
                estimates.append(_affine_estimates(values, coords, axis))
                continue
            moved = np.moveaxis(values, axis, -1)
            lines = moved.reshape(-1, len(coords))
            between = np.full(lines.shape, np.nan)
            below = np.full(lines.shape, np.nan)
            above = np.full(lines.shape, np.nan)
            for row_idx, row in enumerate(lines):
                ok = ~np.isnan(row)
                if ok.sum() < 2 or ok.all():
                    continue
                known = coords[ok]
                known_values = row[ok]
                inside = ~ok & (coords > known[0]) & (coords < known[-1])
                between[row_idx, inside] = np.interp(coords[inside], known, known_values)
                right = np.searchsorted(known, coords[inside])
                below[row_idx, inside] = known_values[right - 1]
                above[row_idx, inside] = known_values[right]
            for estimate in (between, below, above):
                estimates.append(np.moveaxis(estimate.reshape(moved.shape), -1, axis))
        for axis_a, axis_b in product_lines:
            estimates.extend(_product_line_estimates(values, log_axes, axis_a, axis_b))
        if parallel_lines:
            estimates.extend(_parallel_line_estimates(values, log_axes, product_lines))
        for along, across in gated_lines:
            estimates.extend(_gated_line_estimates(values, log_axes, along, across))
        if not estimates:
            return
        stacked = np.stack(estimates)
        fill = missing & ~np.isnan(stacked).all(axis=0)
        if not fill.any():
            return
        values[fill] = np.nanmedian(stacked[:, fill], axis=0)


def _product_line_estimates(
    values: np.ndarray, log_axes: list[np.ndarray], axis_a: int, axis_b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimates of each empty node along the line through it on which ``axis_a``'s
    feature times ``axis_b``'s is constant.

    From a node the line steps along ``axis_a`` to the ``axis_b`` node whose log2 value
    moves by the opposite amount (steps without such a node are passed over). The nearest
    filled node on each side gives its value (unlike an axis line, one side is enough:
    that node holds the same work in the same number of tiles, a neighbour rather than an
    extrapolation); with both sides, also the linear interpolation between them in log2 of
    ``axis_a``'s feature. NaN where there is no such estimate, and at filled nodes.
    """
    log_a, log_b = log_axes[axis_a], log_axes[axis_b]
    n_a, n_b = len(log_a), len(log_b)
    if n_a < 2 or n_b < 2:
        return tuple(np.full(values.shape, np.nan) for _ in range(3))
    moved = np.moveaxis(values, (axis_a, axis_b), (0, 1))
    node_of_b = {round(float(v), 9): k for k, v in enumerate(log_b)}
    sides = []
    for step in (-1, 1):
        value = np.full(moved.shape, np.nan)
        at = np.full(moved.shape, np.nan)
        for distance in range(1, n_a):
            # Node (i, j) looks at (t, k): t = i + step x distance along a, k the b node
            # whose log2 value moves by the opposite amount.
            ia, jb, ta, kb = [], [], [], []
            for i in range(n_a):
                t = i + step * distance
                if not 0 <= t < n_a:
                    continue
                shift = log_a[t] - log_a[i]
                for j in range(n_b):
                    k = node_of_b.get(round(float(log_b[j] - shift), 9))
                    if k is not None:
                        ia.append(i)
                        jb.append(j)
                        ta.append(t)
                        kb.append(k)
            if not ia:
                continue
            ia, jb, ta, kb = (np.array(column) for column in (ia, jb, ta, kb))
            candidate = moved[ta, kb]
            current = value[ia, jb]
            take = np.isnan(current) & ~np.isnan(candidate)
            value[ia, jb] = np.where(take, candidate, current)
            position = np.expand_dims(log_a[ta], tuple(range(1, candidate.ndim)))
            at[ia, jb] = np.where(take, position, at[ia, jb])
        sides.append((value, at))
    (low, low_at), (high, high_at) = sides
    empty = np.isnan(moved)
    here = np.expand_dims(log_a, tuple(range(1, moved.ndim)))
    share = (here - low_at) / (high_at - low_at)
    moved_between = np.where(empty, low + share * (high - low), np.nan)
    moved_below = np.where(empty, low, np.nan)
    moved_above = np.where(empty, high, np.nan)
    back = ((0, 1), (axis_a, axis_b))
    return (
        np.moveaxis(moved_between, *back),
        np.moveaxis(moved_below, *back),
        np.moveaxis(moved_above, *back),
    )


#: Fewest nodes of both axes of a parallel-line estimate (``_parallel_line_estimates``).
#: All-reduce's GPU-count axis (2, 4, 8) is left out: the message size at which the
#: algorithm switches differs with the GPU count, so one count's step is not another's
#: (with that axis, B200's all-reduce held out at random: p90 15.4 -> 32.8 %).
MIN_PARALLEL_LINE_NODES = 4


def _parallel_line_estimates(
    values: np.ndarray,
    log_axes: list[np.ndarray],
    product_lines: tuple[tuple[int, int], ...] = (),
) -> list[np.ndarray]:
    """Estimates of each empty node from a filled neighbour plus the difference between
    their two parallel lines.

    For an empty node x, a filled neighbour y = x + s along axis b, and another axis a:
    along a, the differences v(z) - v(z + s) of the line through x and the line through y,
    taken at the nearest nodes on either side where both are filled, are interpolated (in
    log2 of a's feature) to x's position and added to v(y); where only one side has such a
    difference, that difference is added (at a grid edge, or past the last filled pair).
    Both a and b need ``MIN_PARALLEL_LINE_NODES`` nodes, and are not a pair of
    ``product_lines``: there the efficiency follows the features' product, not a sum of
    their effects. NaN where there is no estimate and at filled nodes. Returns a list of
    float64 arrays of ``values.shape``.
    """
    planes = {frozenset(pair) for pair in product_lines}
    estimates = []
    missing = np.isnan(values)
    if not missing.any():
        return estimates
    long_axes = [i for i, c in enumerate(log_axes) if len(c) >= MIN_PARALLEL_LINE_NODES]
    for axis_b in long_axes:
        for step in (-1, 1):
            neighbour = _shifted(values, axis_b, step)
            difference = values - neighbour
            for axis_a in long_axes:
                if axis_a == axis_b or frozenset((axis_a, axis_b)) in planes:
                    continue
                coords = log_axes[axis_a]
                low, low_at, high, high_at = _nearest_filled(difference, coords, axis_a)
                here = np.expand_dims(coords, tuple(i for i in range(values.ndim) if i != axis_a))
                with np.errstate(invalid="ignore", divide="ignore"):
                    between = low + (here - low_at) / (high_at - low_at) * (high - low)
                one_side = np.where(np.isnan(low), high, np.where(np.isnan(high), low, np.nan))
                for diff in (between, one_side):
                    estimates.append(np.where(missing, neighbour + diff, np.nan))
    return estimates


def _nearest_filled_index(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Along the last axis, the index of the nearest non-NaN value strictly below and
    strictly above each node: ``(below, above)``, int64 arrays of ``values.shape``, -1 and
    ``n`` where there is none."""
    n = values.shape[-1]
    position = np.arange(n)
    ok = ~np.isnan(values)
    edge = np.full(values.shape[:-1] + (1,), -1)
    last = np.maximum.accumulate(np.where(ok, position, -1), axis=-1)
    below = np.concatenate([edge, last[..., :-1]], axis=-1)
    after = np.minimum.accumulate(np.where(ok, position, n)[..., ::-1], axis=-1)[..., ::-1]
    above = np.concatenate([after[..., 1:], edge * 0 + n], axis=-1)
    return below, above


def _affine_estimates(values: np.ndarray, log_coords: np.ndarray, axis: int) -> np.ndarray:
    """Estimates of each empty node between filled ones along ``axis``, on which the
    roofline is proportional to the feature x and the latency affine in it (a fixed
    latency plus x over a bandwidth: all-reduce's message size).

    The log-ratio v is then log(a + b x) - log x plus a constant of the other features, so
    the latencies of the nearest filled nodes on either side, x0 e**v0 and x1 e**v1, are
    interpolated linearly in x and the result turned back into a log-ratio. Within one
    algorithm's range this is exact, where the linear interpolation in log x of the
    log-ratios (``_interpolate_missing``'s) undershoots a node between a latency-bound and
    a bandwidth-bound neighbour: A100's two-GPU all-reduce of 2 MiB from 1 and 4 MiB's,
    +2.4 % against +8.3 %. NaN where there is no estimate and at filled nodes.
    """
    moved = np.moveaxis(values, axis, -1)
    n = moved.shape[-1]
    below, above = _nearest_filled_index(moved)
    valid = np.isnan(moved) & (below >= 0) & (above < n)
    lo = np.clip(below, 0, n - 1)
    hi = np.clip(above, 0, n - 1)
    x = np.exp2(log_coords)
    x0, x1 = x[lo], x[hi]
    with np.errstate(invalid="ignore", over="ignore"):
        t0 = np.exp(np.take_along_axis(moved, lo, -1)) * x0
        t1 = np.exp(np.take_along_axis(moved, hi, -1)) * x1
        t = t0 + (t1 - t0) * (x - x0) / np.where(valid, x1 - x0, 1.0)
        out = np.where(valid, np.log(np.where(valid, t, 1.0)) - np.log(x), np.nan)
    return np.moveaxis(out, -1, axis)


#: Largest change along a line of the difference between two lines for one to lend its
#: shape to the other (``_gated_line_estimates``), in natural log units (about 15 %).
GATED_LINE_TOLERANCE = 0.15


def _gated_line_estimates(
    values: np.ndarray, log_axes: list[np.ndarray], along: int, across: int
) -> list[np.ndarray]:
    """Estimates of each empty node from the other lines along ``along`` (one per node of
    ``across``) that run parallel to its own line around it.

    For an empty node x on its line, the nearest filled nodes on either side (x0, x1) and
    another line filled at x0, x and x1: if the difference between the two lines changes
    by at most ``GATED_LINE_TOLERANCE`` from x0 to x1, the lines are taken to share their
    shape in between, step included, and x is the other line's value plus the difference
    interpolated (in log2 of ``along``'s feature). All-reduce over 2, 4 and 8 GPUs: vLLM
    0.14 hands every message of 8 MiB or more to NCCL, whatever the GPU count, so on A100
    every count's latency steps at 8 MiB, and a count's held-out 8 MiB node is the others'
    step; on B200 (vLLM 0.24) the switch sizes differ by count, the lines' difference
    changes across the step, and no line lends it (the ungated parallel lines of
    ``_parallel_line_estimates`` took B200's held-out p90 from 15.4 to 32.8 %). Returns a
    list of float64 arrays of ``values.shape``, NaN where there is no estimate.
    """
    moved = np.moveaxis(values, (across, along), (0, -1))
    n = moved.shape[-1]
    coords = log_axes[along]
    below, above = _nearest_filled_index(moved)
    bracketed = np.isnan(moved) & (below >= 0) & (above < n)
    if not bracketed.any():
        return []
    lo = np.clip(below, 0, n - 1)
    hi = np.clip(above, 0, n - 1)
    share = (coords - coords[lo]) / np.where(bracketed, coords[hi] - coords[lo], 1.0)
    own_lo = np.take_along_axis(moved, lo, -1)
    own_hi = np.take_along_axis(moved, hi, -1)
    estimates = []
    for other_idx in range(moved.shape[0]):
        other = np.broadcast_to(moved[other_idx], moved.shape)
        d_lo = own_lo - np.take_along_axis(other, lo, -1)
        d_hi = own_hi - np.take_along_axis(other, hi, -1)
        with np.errstate(invalid="ignore"):
            parallel = bracketed & (np.abs(d_hi - d_lo) <= GATED_LINE_TOLERANCE)
            estimate = np.where(parallel, other + d_lo + share * (d_hi - d_lo), np.nan)
        estimates.append(np.moveaxis(estimate, (0, -1), (across, along)))
    return estimates


def _shifted(values: np.ndarray, axis: int, step: int) -> np.ndarray:
    """``out[i] = values[i + step]`` along ``axis``, NaN past the edge (float64 copy)."""
    out = np.full(values.shape, np.nan)
    src = [slice(None)] * values.ndim
    dst = [slice(None)] * values.ndim
    src[axis], dst[axis] = (
        (slice(1, None), slice(None, -1))
        if step > 0
        else (
            slice(None, -1),
            slice(1, None),
        )
    )
    out[tuple(dst)] = values[tuple(src)]
    return out


def _nearest_filled(
    values: np.ndarray, coords: np.ndarray, axis: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The nearest non-NaN value strictly below and strictly above each node along
    ``axis``, and their coordinates: ``(low, low_at, high, high_at)``, NaN where none."""
    moved = np.moveaxis(values, axis, -1)
    n = moved.shape[-1]
    position = np.arange(n)
    ok = ~np.isnan(moved)
    edge = np.full(moved.shape[:-1] + (1,), -1)
    last = np.maximum.accumulate(np.where(ok, position, -1), axis=-1)
    below = np.concatenate([edge, last[..., :-1]], axis=-1)
    after = np.minimum.accumulate(np.where(ok, position, n)[..., ::-1], axis=-1)[..., ::-1]
    above = np.concatenate([after[..., 1:], edge * 0 + n], axis=-1)
    out = []
    for index, valid in ((below, below >= 0), (above, above < n)):
        clipped = np.clip(index, 0, n - 1)
        value = np.where(valid, np.take_along_axis(moved, clipped, -1), np.nan)
        at = np.where(valid, coords[clipped], np.nan)
        out.extend(np.moveaxis(x, -1, axis) for x in (value, at))
    return out[0], out[1], out[2], out[3]


def _fill_missing(values: np.ndarray, fallback: float) -> None:
    for _ in range(sum(values.shape)):
        missing = np.isnan(values)
        if not missing.any():
            return
        total = np.zeros(values.shape)
        count = np.zeros(values.shape)
        for axis in range(values.ndim):
            for shift in (1, -1):
                neighbour = np.roll(values, shift, axis=axis)
                # np.roll wraps around; the wrapped slice is not a neighbour.
                edge = [slice(None)] * values.ndim
                edge[axis] = 0 if shift == 1 else -1
                neighbour[tuple(edge)] = np.nan
                ok = ~np.isnan(neighbour)
                total[ok] += neighbour[ok]
                count[ok] += 1
        fill = missing & (count > 0)
        values[fill] = total[fill] / count[fill]
    values[np.isnan(values)] = fallback


def powers_of_two(low: float, high: float) -> np.ndarray:
    """Node list ``low, 2 low, ..., high`` (float64)."""
    exponents = np.arange(round(np.log2(low)), round(np.log2(high)) + 1)
    return np.exp2(exponents).astype(np.float64)
