"""The lab's one statistics layer: intervals, tests and verdicts valid at a handful of seeds.

Every comparison the lab reports, in ``muonlab report`` tables and in the claims, goes through
this module, so one set of conventions holds everywhere:

* **Intervals** are Student-t intervals of a mean (one sample, paired differences, or Welch's
  two-sample difference with the Welch–Satterthwaite degrees of freedom), t intervals of a
  log-ratio for ratios of positive quantities (a geometric-mean ratio), or t intervals of an OLS
  slope. They are exact for normal data at any n ≥ 2. The BCa bootstrap (:func:`bca`, via
  :func:`scipy.stats.bootstrap`) is offered for other statistics and refuses fewer than
  :data:`MIN_BOOTSTRAP` values: a percentile bootstrap over 3 values is just [min, max] and
  excludes 0 far more often than 5% of the time under no effect.
* **Tests** are one-sided, at level :data:`ALPHA_ONE_SIDED` = 0.025 each way, so "supported"
  means the two-sided 95% interval lies on the claimed side of the threshold. A :class:`Test`
  carries two p-values: ``p_for`` (evidence for the claimed direction, or for equivalence) and
  ``p_against`` (evidence for the opposite, or for a difference beyond the margin).
* **Equivalence** ("same as", "matches") is a TOST with a stated margin (Schuirmann 1987): both
  one-sided tests that the effect is inside ``(−margin, +margin)`` must reject.
* **Multiple comparisons**: a claim votes several parts; :func:`decide` applies Holm's
  step-down correction (Holm 1979) to the ``p_for`` values of all voted parts and, separately, to
  their ``p_against`` values. Supported: every part's corrected ``p_for`` < α. Not supported: some
  part's corrected ``p_against`` < α. Otherwise inconclusive. A claim whose regime was not run is
  "not tested in this regime", never "not supported".

Holm on the support side is conservative: a claim is supported only when *every* part holds, which
already bounds its error rate at α (an intersection–union test, Berger 1982); the correction is
kept so that each part's "holds" can also be read on its own. Power is therefore that of the
weakest part, reduced by the correction.

Calibration (tests/test_inference.py): null data simulated through these functions at n = 8
gives a false-positive rate of 2.5% ± 1% per one-sided part (≤ 6% required) on every path (paired,
Welch, log-ratio, TOST, union, Holm), and a single-part claim detects a paired effect of 1.25
standard deviations with power ≥ 80% at n = 8 (three-part claims at that effect: about 60%).
Identical values (standard error 0) give the exact sign-test p-value 0.5ⁿ, never 0.

scipy supplies the t, binomial and bootstrap distributions (it ships with scikit-learn, which the
lab extra already needs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

ALPHA = 0.05                  # two-sided level of every reported interval
ALPHA_ONE_SIDED = ALPHA / 2   # level of each one-sided test (so a test agrees with its 95% interval)
MIN_BOOTSTRAP = 10            # fewest values a bootstrap interval is computed from

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive at this scale"
NOT_TESTED = "not tested in this regime"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_TESTED)

CLAIMS = (">", "<", "!=", "equivalent", "within")


def _stats():
    try:
        from scipy import stats
    except ImportError as e:  # pragma: no cover - scipy comes with the lab extra
        raise ImportError("muonlab's statistics need scipy: pip install 'muonlab[lab]'") from e
    return stats


def clean(values: Sequence[float] | np.ndarray, what: str = "values") -> np.ndarray:
    """``values`` as a float array; ValueError naming ``what`` if any value is NaN or infinite.

    Diverged runs must be handled by the caller (counted, or given the worst finite value the
    metric allows), never silently dropped here: dropping them biases every comparison."""
    x = np.asarray(values, dtype=float).ravel()
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"{what}: {int(bad.sum())} of {len(x)} values are not finite "
                         f"({x[bad][:3].tolist()}...); count diverged runs explicitly")
    return x


# ---- intervals -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interval:
    """An estimate with its two-sided (1 − ALPHA) interval, on the scale the claim is stated in."""

    estimate: float
    lo: float
    hi: float
    n: int
    method: str
    se: float = math.nan      # standard error on the test scale (log scale for ratios)
    df: float = math.nan      # degrees of freedom of the t reference (nan: not a t interval)

    def fmt(self, spec: str = ".3g") -> str:
        """``1.59 [1.41, 1.77]`` (just the estimate when the interval is undefined)."""
        def f(v: float) -> str:
            return f"{0.0 if abs(v) < 1e-12 else v:{spec}}"
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            return f(self.estimate) if math.isfinite(self.estimate) else "n/a"
        return f"{f(self.estimate)} [{f(self.lo)}, {f(self.hi)}]"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _t_interval(est: float, se: float, df: float, n: int, method: str,
                back: Callable[[float], float] = float) -> Interval:
    if not (math.isfinite(se) and df > 0):
        return Interval(back(est), math.nan, math.nan, n, method, se, df)
    q = float(_stats().t.ppf(1 - ALPHA / 2, df))
    return Interval(back(est), back(est - q * se), back(est + q * se), n, method, se, df)


def mean_interval(values: Sequence[float]) -> Interval:
    """Mean with its Student-t interval (undefined below 2 values)."""
    x = clean(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, "t")
    se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return _t_interval(float(x.mean()), se, n - 1, n, "t")


def paired_interval(a: Sequence[float], b: Sequence[float]) -> Interval:
    """Mean of the paired differences ``a_i − b_i`` (arms sharing seeds or instances), t interval."""
    xa, xb = clean(a, "a"), clean(b, "b")
    if len(xa) != len(xb):
        raise ValueError(f"paired arms need equal lengths, got {len(xa)} and {len(xb)}")
    return replace(mean_interval(xa - xb), method="paired t")


def welch_interval(a: Sequence[float], b: Sequence[float]) -> Interval:
    """``mean(a) − mean(b)`` with Welch's interval (unequal variances, Satterthwaite df)."""
    xa, xb = clean(a, "a"), clean(b, "b")
    na, nb = len(xa), len(xb)
    est = float(xa.mean() - xb.mean()) if na and nb else math.nan
    if na < 2 or nb < 2:
        return Interval(est, math.nan, math.nan, min(na, nb), "Welch t")
    va, vb = float(xa.var(ddof=1) / na), float(xb.var(ddof=1) / nb)
    se = math.sqrt(va + vb)
    if se == 0:
        return Interval(est, est, est, min(na, nb), "Welch t", 0.0, math.inf)
    df = float((va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1)))
    return _t_interval(est, se, df, min(na, nb), "Welch t")


def ratio_interval(a: Sequence[float], b: Sequence[float], *, paired: bool = False) -> Interval:
    """Geometric-mean ratio ``a / b`` of positive quantities: a t interval of the mean log-ratio
    (paired) or of the difference of mean logs (Welch), exponentiated."""
    la, lb = np.log(_positive(a, "a")), np.log(_positive(b, "b"))
    iv = paired_interval(la, lb) if paired else welch_interval(la, lb)
    back = math.exp
    return Interval(back(iv.estimate), back(iv.lo) if math.isfinite(iv.lo) else math.nan,
                    back(iv.hi) if math.isfinite(iv.hi) else math.nan, iv.n,
                    f"log-ratio {iv.method}", iv.se, iv.df)


def slope_interval(x: Sequence[float], y: Sequence[float]) -> Interval:
    """OLS slope of ``y`` on ``x`` with its t interval (n − 2 degrees of freedom)."""
    xs, ys = clean(x, "x"), clean(y, "y")
    n = len(xs)
    if n < 3 or np.ptp(xs) == 0:
        est = float(np.polyfit(xs, ys, 1)[0]) if n >= 2 and np.ptp(xs) > 0 else math.nan
        return Interval(est, math.nan, math.nan, n, "OLS slope t")
    fit = _stats().linregress(xs, ys)
    return _t_interval(float(fit.slope), float(fit.stderr), n - 2, n, "OLS slope t")


def bca(values: Sequence[float], statistic: Callable[[np.ndarray], float] = np.mean, *,
        n_resamples: int = 10_000, seed: int = 0) -> Interval:
    """BCa bootstrap interval of ``statistic`` (Efron 1987), for statistics with no t reference.

    Refuses fewer than :data:`MIN_BOOTSTRAP` values (ValueError): below that, bootstrap intervals
    are too short. Deterministic for a given ``seed``."""
    x = clean(values)
    if len(x) < MIN_BOOTSTRAP:
        raise ValueError(f"a bootstrap interval needs at least {MIN_BOOTSTRAP} values, got {len(x)}; "
                         "use a t interval (mean_interval, paired_interval, welch_interval)")
    est = float(statistic(x))
    if np.ptp(x) == 0:
        return Interval(est, est, est, len(x), "BCa bootstrap")
    res = _stats().bootstrap((x,), statistic, n_resamples=n_resamples, confidence_level=1 - ALPHA,
                             method="BCa", random_state=np.random.default_rng(seed), vectorized=False)
    ci = res.confidence_interval
    return Interval(est, float(ci.low), float(ci.high), len(x), "BCa bootstrap")


def _positive(values, what: str) -> np.ndarray:
    x = clean(values, what)
    if (x <= 0).any():
        raise ValueError(f"{what}: a ratio needs positive values, got {x[x <= 0][:3].tolist()}")
    return x


# ---- tests -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Test:
    """One voted (or reported) part of a claim.

    Attributes:
        name: what is tested, in words (``"MiMuon − Muon gap < 0"``).
        claim: the claimed relation of the effect to ``threshold``: ">", "<", "!=" (differs, either
            sign), "equivalent" (within ±``margin`` of ``threshold``, by TOST) or "within" (the
            effect lies in ``[threshold, threshold + margin]``, e.g. a quoted range). For ratios
            (log-ratio intervals) the margin of "equivalent" and "!=" is a factor: within
            ``[threshold/margin, threshold·margin]``.
        interval: the effect's estimate and 95% interval (claim's scale).
        p_for: one-sided p-value of the evidence for the claim (TOST: the larger of its two).
        p_against: one-sided p-value of the evidence against it (the opposite side; for
            equivalence and ranges, the effect outside the margin).
        primary: the pre-registered primary test of its claim.
        voted: whether it enters the verdict (reported-only parts are not corrected for).
        p_for_holm, p_against_holm: Holm-adjusted values, filled by :func:`decide`.
        verdict: this part's verdict after the correction, filled by :func:`decide`.
        note: why a part could not be tested (then both p-values are NaN).
    """

    name: str
    claim: str
    interval: Interval
    threshold: float = 0.0
    margin: float = math.nan
    p_for: float = math.nan
    p_against: float = math.nan
    primary: bool = False
    voted: bool = True
    p_for_holm: float = math.nan
    p_against_holm: float = math.nan
    verdict: str = ""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval"] = self.interval.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Test":
        return cls(**{**d, "interval": Interval(**d["interval"])})

    def describe(self) -> str:
        """``name: estimate [lo, hi] (p = …, Holm p = …) → verdict``."""
        p = self.p_for_holm if math.isfinite(self.p_for_holm) else self.p_for
        text = f"{self.name}: {self.interval.fmt()}"
        if math.isfinite(p):
            text += f" (Holm p = {_fmt_p(p)})" if self.voted else f" (p = {_fmt_p(p)}, not voted)"
        if self.note:
            text += f" — {self.note}"
        return text + (f" → {self.verdict}" if self.verdict else "")


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def _t_p(iv: Interval, threshold: float, side: str, log: bool = False) -> float:
    """One-sided p of ``effect > threshold`` (side ">") or ``<`` from a t interval."""
    est = math.log(iv.estimate) if log else iv.estimate
    thr = math.log(threshold) if log else threshold
    if not math.isfinite(est):
        return math.nan
    if iv.se == 0:
        # Identical values (a deterministic experiment, or a coarse metric): no t reference. The
        # evidence is that of n agreeing signs, 0.5ⁿ (an exact sign test), never p = 0.
        return 0.5 ** iv.n if (est > thr if side == ">" else est < thr) else 1.0
    if not (math.isfinite(iv.se) and iv.df > 0):
        return math.nan
    t = (est - thr) / iv.se
    sf = _stats().t.sf
    return float(sf(t, iv.df) if side == ">" else sf(-t, iv.df))


def t_test(name: str, iv: Interval, claim: str, threshold: float = 0.0, margin: float = math.nan, *,
           primary: bool = False, voted: bool = True) -> Test:
    """A :class:`Test` of a t-based :class:`Interval` (mean, paired, Welch, slope or log-ratio).

    ``claim`` is ">", "<", "!=", "equivalent" (|effect − threshold| < margin, TOST) or "within"
    (threshold ≤ effect ≤ threshold + margin). Ratios are tested on the log scale (threshold is a
    ratio, e.g. 1)."""
    if claim not in CLAIMS:
        raise ValueError(f"claim={claim!r} must be one of {CLAIMS}")
    log = iv.method.startswith("log-ratio")
    if claim in ("equivalent", "within") and not (margin > 0):
        raise ValueError(f"{name}: claim={claim!r} needs a positive margin, got {margin}")
    if log and not threshold > 0:
        raise ValueError(f"{name}: a ratio is tested against a positive threshold, got threshold={threshold}")
    if log and claim in ("equivalent", "!=") and math.isfinite(margin) and not margin > 1:
        raise ValueError(f"{name}: a ratio's margin is a factor > 1 (within [threshold/margin, threshold·margin]), "
                         f"got margin={margin}")
    if claim == ">":
        pf, pa = _t_p(iv, threshold, ">", log), _t_p(iv, threshold, "<", log)
    elif claim == "<":
        pf, pa = _t_p(iv, threshold, "<", log), _t_p(iv, threshold, ">", log)
    elif claim == "!=":
        # the smaller one-sided p: below 0.025 exactly when the 95% interval excludes the threshold
        pf = min(_t_p(iv, threshold, ">", log), _t_p(iv, threshold, "<", log))
        pa = math.nan  # "differs" is refuted only by an equivalence test with a margin
        if margin > 0:
            lo, hi = (threshold / margin, threshold * margin) if log else (threshold - margin, threshold + margin)
            pa = _tost(iv, lo, hi, log)
    else:
        lo, hi = ((threshold - margin, threshold + margin) if claim == "equivalent"
                  else (threshold, threshold + margin))
        if log:
            lo, hi = (threshold / margin, threshold * margin) if claim == "equivalent" else (lo, hi)
        pf = _tost(iv, lo, hi, log)
        pa = min(_t_p(iv, hi, ">", log), _t_p(iv, lo, "<", log))
    return Test(name, claim, iv, threshold, margin, pf, pa, primary, voted)


def _tost(iv: Interval, lo: float, hi: float, log: bool) -> float:
    """TOST p-value that the effect lies in (lo, hi): the larger of the two one-sided p's."""
    return max(_t_p(iv, lo, ">", log), _t_p(iv, hi, "<", log))


def sign_test(name: str, wins: int, losses: int, claim: str = ">", *, primary: bool = False,
              voted: bool = True) -> Test:
    """Exact binomial sign test on win/loss counts (ties dropped): claim ">" = more wins than
    losses. The interval is the win fraction with its Clopper–Pearson interval."""
    if claim not in (">", "<"):
        raise ValueError(f"{name}: a sign test's claim is '>' or '<', got {claim!r}")
    n = wins + losses
    if n == 0:
        return untestable(name, "no decisive comparisons (all ties)", primary=primary, voted=voted)
    st = _stats()
    ci = st.binomtest(wins, n).proportion_ci(confidence_level=1 - ALPHA, method="exact")
    iv = Interval(wins / n, float(ci.low), float(ci.high), n, "Clopper–Pearson")
    p_more = float(st.binomtest(wins, n, 0.5, alternative="greater").pvalue)
    p_less = float(st.binomtest(wins, n, 0.5, alternative="less").pvalue)
    pf, pa = (p_more, p_less) if claim == ">" else (p_less, p_more)
    return Test(name, claim, iv, 0.5, math.nan, pf, pa, primary, voted)


def any_of(name: str, tests: Sequence[Test], *, primary: bool = False, voted: bool = True) -> Test:
    """One part that holds when *at least one* of ``tests`` holds ("not consistently better": some
    workload where it is not). Evidence for it is the smallest ``p_for`` with Bonferroni's factor k;
    evidence against needs every one refuted, so ``p_against`` is the largest (intersection–union,
    Berger 1982). The interval shown is the one of the test with the smallest ``p_for``."""
    if not tests:
        raise ValueError(f"{name}: any_of needs at least one test")
    k = len(tests)
    pf = [t.p_for for t in tests]
    best = tests[int(np.nanargmin(pf))] if np.isfinite(pf).any() else tests[0]
    p_for = min(1.0, k * float(np.nanmin(pf))) if np.isfinite(pf).any() else math.nan
    pa = [t.p_against for t in tests]
    p_against = float(max(pa)) if all(math.isfinite(p) for p in pa) else math.nan
    return Test(name, best.claim, best.interval, best.threshold, best.margin, p_for, p_against, primary, voted,
                note=f"at least one of {k}: " + "; ".join(f"{t.name} {t.interval.fmt()}" for t in tests))


def untestable(name: str, why: str, *, primary: bool = False, regime: bool = False, voted: bool = True) -> Test:
    """A part that could not be tested (censored, optimum off the grid, regime not run):
    both p-values NaN, so it can only make its claim inconclusive (or "not tested" with
    ``regime=True``); a reported part (``voted=False``) stays reported."""
    return Test(name, "!=", Interval(math.nan, math.nan, math.nan, 0, "none"), primary=primary, voted=voted,
                note=why, verdict=NOT_TESTED if regime else "")


# ---- correction and verdict --------------------------------------------------------------------

def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count toward m)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def decide(tests: Sequence[Test], alpha: float = ALPHA_ONE_SIDED) -> tuple[str, list[Test]]:
    """The claim's verdict from its parts, with Holm's correction over the voted parts.

    Returns ``(verdict, tests with p_*_holm and verdict filled)``. Rules: any voted part marked
    not-tested-in-this-regime → NOT_TESTED; every voted part's corrected ``p_for`` < alpha →
    SUPPORTED; some voted part's corrected ``p_against`` < alpha → NOT_SUPPORTED; otherwise
    INCONCLUSIVE (including any part with undefined p-values). No voted part → ValueError."""
    voted = [i for i, t in enumerate(tests) if t.voted]
    if not voted:
        raise ValueError("a claim needs at least one voted part")
    pf = holm([tests[i].p_for for i in voted])
    pa = holm([tests[i].p_against for i in voted])
    out = list(tests)
    for k, i in enumerate(voted):
        t = tests[i]
        if t.verdict == NOT_TESTED:
            v = NOT_TESTED
        elif pf[k] < alpha:
            v = SUPPORTED
        elif pa[k] < alpha:
            v = NOT_SUPPORTED
        else:
            v = INCONCLUSIVE
        out[i] = replace(t, p_for_holm=pf[k], p_against_holm=pa[k], verdict=v)
    for i, t in enumerate(tests):
        if not t.voted:
            single = SUPPORTED if t.p_for < alpha else NOT_SUPPORTED if t.p_against < alpha else INCONCLUSIVE
            out[i] = replace(t, verdict=NOT_TESTED if t.verdict == NOT_TESTED else single)
    parts = [out[i].verdict for i in voted]
    if NOT_TESTED in parts:
        return NOT_TESTED, out
    if all(v == SUPPORTED for v in parts):
        return SUPPORTED, out
    if NOT_SUPPORTED in parts:
        return NOT_SUPPORTED, out
    return INCONCLUSIVE, out


def required_n(effect_sd: float, power: float = 0.8, alpha: float = ALPHA_ONE_SIDED) -> int:
    """Smallest n at which a one-sided one-sample (or paired) t test at ``alpha`` detects a mean
    of ``effect_sd`` standard deviations with probability ≥ ``power`` (noncentral t)."""
    st = _stats()
    for n in range(2, 10_000):
        crit = st.t.ppf(1 - alpha, n - 1)
        if st.nct.sf(crit, n - 1, effect_sd * math.sqrt(n)) >= power:
            return n
    raise ValueError(f"effect {effect_sd} SD needs more than 10,000 samples")
