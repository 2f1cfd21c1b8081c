"""The lab's statistics layer (muonlab.lab.inference): exact values on hand-made data, and the
calibration the claims rely on — null data simulated through the module at the lab's sample size
(8 seeds per arm) is called "supported" at most 6% of the time, and a paired effect of 1.25
standard deviations is detected with power of at least 80%."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from muonlab.lab import inference as inf

N = 8          # evaluation seeds per arm in the claims lab's small budgets
SIMS = 3000    # Monte Carlo standard error of a 5% rate: 0.4%


def _rate(verdicts, which=inf.SUPPORTED) -> float:
    return float(np.mean([v == which for v in verdicts]))


def _decide_one(test) -> str:
    return inf.decide([test])[0]


# ---- exact values -------------------------------------------------------------------------------

def test_t_interval_matches_scipy():
    x = [1.0, 2.0, 4.0, 3.0, 5.0, 2.5]
    iv = inf.mean_interval(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert iv.estimate == pytest.approx(np.mean(x)) and (iv.lo, iv.hi) == pytest.approx((lo, hi))
    p = stats.ttest_1samp(x, 2.0, alternative="greater").pvalue
    assert inf.t_test("x > 2", iv, ">", threshold=2.0).p_for == pytest.approx(p)


def test_welch_matches_scipy():
    a, b = [1.0, 2.0, 3.0, 4.5], [2.0, 2.5, 2.7, 3.1, 6.0]
    iv = inf.welch_interval(a, b)
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert (iv.lo, iv.hi) == pytest.approx((ci.low, ci.high))
    # "!=" votes with the smaller one-sided p, so it agrees with the 95% interval excluding 0
    assert inf.t_test("a != b", iv, "!=").p_for == pytest.approx(res.pvalue / 2)


def test_paired_ratio_and_slope():
    a, b = [2.0, 4.0, 8.0], [1.0, 2.0, 4.1]
    iv = inf.ratio_interval(a, b, paired=True)
    assert iv.lo < iv.estimate < iv.hi and iv.estimate == pytest.approx(math.exp(np.mean(np.log(np.divide(a, b)))))
    s = inf.slope_interval([1, 2, 3, 4, 5], [2.1, 3.9, 6.2, 7.8, 10.1])
    fit = stats.linregress([1, 2, 3, 4, 5], [2.1, 3.9, 6.2, 7.8, 10.1])
    assert s.estimate == pytest.approx(fit.slope) and s.hi - s.estimate == pytest.approx(
        stats.t.ppf(0.975, 3) * fit.stderr)


def test_holm_step_down():
    assert inf.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = inf.holm([0.5, math.nan, 0.001])
    assert out[0] == pytest.approx(0.5) and math.isnan(out[1]) and out[2] == pytest.approx(0.002)


def test_decide_rules():
    iv_up = inf.Interval(1.0, 0.5, 1.5, 8, "t", se=0.2, df=7)
    iv_down = inf.Interval(-1.0, -1.5, -0.5, 8, "t", se=0.2, df=7)
    iv_flat = inf.Interval(0.05, -0.4, 0.5, 8, "t", se=0.2, df=7)
    up = inf.t_test("up", iv_up, ">", primary=True)
    assert inf.decide([up])[0] == inf.SUPPORTED
    assert inf.decide([up, inf.t_test("down", iv_down, ">")])[0] == inf.NOT_SUPPORTED
    assert inf.decide([up, inf.t_test("flat", iv_flat, ">")])[0] == inf.INCONCLUSIVE
    # a part that cannot be tested never supports; a regime that was not run is "not tested"
    assert inf.decide([up, inf.untestable("x", "optimum on the grid edge")])[0] == inf.INCONCLUSIVE
    assert inf.decide([up, inf.untestable("x", "CIFAR-10", regime=True)])[0] == inf.NOT_TESTED
    # reported parts do not vote
    assert inf.decide([up, inf.t_test("down", iv_down, ">", voted=False)])[0] == inf.SUPPORTED
    with pytest.raises(ValueError, match="voted"):
        inf.decide([inf.t_test("down", iv_down, ">", voted=False)])


def test_equivalence_and_within():
    tight = inf.mean_interval([0.01, -0.01, 0.02, 0.0, -0.02, 0.01, 0.0, -0.01])
    assert _decide_one(inf.t_test("≈0", tight, "equivalent", margin=0.1)) == inf.SUPPORTED
    far = inf.mean_interval([1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 1.02, 0.98])
    assert _decide_one(inf.t_test("≈0", far, "equivalent", margin=0.1)) == inf.NOT_SUPPORTED
    assert _decide_one(inf.t_test("in [0.5, 1.5]", far, "within", threshold=0.5, margin=1.0)) == inf.SUPPORTED
    assert _decide_one(inf.t_test("in [2, 3]", far, "within", threshold=2.0, margin=1.0)) == inf.NOT_SUPPORTED
    ratio = inf.ratio_interval([1.0, 1.02, 0.99, 1.01], [1.0] * 4, paired=True)
    assert _decide_one(inf.t_test("ratio ≈ 1", ratio, "equivalent", threshold=1.0, margin=1.1)) == inf.SUPPORTED
    assert _decide_one(inf.t_test("ratio ≠ 1", ratio, "!=", threshold=1.0, margin=1.1)) == inf.NOT_SUPPORTED
    with pytest.raises(ValueError, match="margin"):
        inf.t_test("no margin", tight, "equivalent")


def test_sign_test_and_any_of():
    assert _decide_one(inf.sign_test("wins", 9, 0)) == inf.SUPPORTED          # p = 1/512
    assert _decide_one(inf.sign_test("wins", 5, 1)) == inf.INCONCLUSIVE
    assert _decide_one(inf.sign_test("wins", 0, 9)) == inf.NOT_SUPPORTED
    iv_up = inf.Interval(1.0, 0.5, 1.5, 8, "t", se=0.2, df=7)
    iv_flat = inf.Interval(0.05, -0.4, 0.5, 8, "t", se=0.2, df=7)
    one = inf.any_of("some", [inf.t_test("a", iv_flat, ">"), inf.t_test("b", iv_up, ">")])
    assert _decide_one(one) == inf.SUPPORTED and "at least one of 2" in one.note


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="not finite"):
        inf.mean_interval([1.0, math.inf])
    with pytest.raises(ValueError, match="positive"):
        inf.ratio_interval([1.0, -1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="equal lengths"):
        inf.paired_interval([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="at least 10"):
        inf.bca([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="claim"):
        inf.t_test("x", inf.mean_interval([1.0, 2.0]), ">=")


def test_bca_interval_covers_the_mean():
    x = np.random.default_rng(0).normal(1.0, 1.0, 40)
    iv = inf.bca(x)
    assert iv.lo < x.mean() < iv.hi and iv.method == "BCa bootstrap"


def test_percentile_bootstrap_is_the_failure_this_layer_avoids():
    """With 3 values, the percentile bootstrap of the mean spans roughly [min, max]: under no
    effect it excludes 0 about a quarter of the time (why the lab no longer uses it)."""
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(400):
        x = rng.normal(0, 1, 3)
        m = x[rng.integers(0, 3, (2000, 3))].mean(axis=1)
        lo, hi = np.quantile(m, [0.025, 0.975])
        hits += lo > 0 or hi < 0
    assert hits / 400 > 0.15


# ---- calibration --------------------------------------------------------------------------------

@pytest.mark.parametrize("noise", ["normal", "t3", "lognormal-diff"])
def test_false_positive_rate_of_a_paired_claim(noise):
    rng = np.random.default_rng(2)
    verdicts = []
    for _ in range(SIMS):
        a = rng.normal(0, 1, N) if noise == "normal" else rng.standard_t(3, N) if noise == "t3" else rng.lognormal(0, 1, N)
        b = rng.normal(0, 1, N) if noise == "normal" else rng.standard_t(3, N) if noise == "t3" else rng.lognormal(0, 1, N)
        verdicts.append(_decide_one(inf.t_test("a − b > 0", inf.paired_interval(a, b), ">")))
    assert _rate(verdicts) <= 0.06
    assert _rate(verdicts, inf.NOT_SUPPORTED) <= 0.06
    if noise == "normal":  # exact t: the nominal one-sided 2.5%, so the threshold itself is pinned
        assert 0.015 <= _rate(verdicts) <= 0.035


def test_false_positive_rate_of_welch_and_ratio_claims():
    rng = np.random.default_rng(3)
    welch, ratio = [], []
    for _ in range(SIMS):
        a, b = rng.normal(0, 1, N), rng.normal(0, 3, N)   # unequal variances: Welch's case
        welch.append(_decide_one(inf.t_test("a > b", inf.welch_interval(a, b), ">")))
        ra, rb = rng.lognormal(0, 0.5, N), rng.lognormal(0, 0.5, N)
        ratio.append(_decide_one(inf.t_test("a/b > 1", inf.ratio_interval(ra, rb, paired=True), ">", threshold=1.0)))
    assert 0.01 <= _rate(welch) <= 0.06 and 0.01 <= _rate(ratio) <= 0.06


def test_false_positive_rate_of_equivalence_at_the_margin():
    """TOST: when the true difference sits exactly on the margin, "equivalent" is a false positive."""
    rng = np.random.default_rng(4)
    verdicts = [_decide_one(inf.t_test("≈", inf.mean_interval(rng.normal(0.5, 0.3, N)), "equivalent", margin=0.5))
                for _ in range(SIMS)]
    assert 0.01 <= _rate(verdicts) <= 0.06


def test_familywise_error_of_a_union_and_of_holm():
    """Four null parts: 'any one holds' (Bonferroni) and Holm's per-part calls both keep the
    family-wise false-positive rate at most 6%."""
    rng = np.random.default_rng(5)
    union, any_part = [], []
    for _ in range(SIMS // 2):
        tests = [inf.t_test(f"part {k}", inf.mean_interval(rng.normal(0, 1, N)), ">") for k in range(4)]
        union.append(_decide_one(inf.any_of("some part", tests)))
        _, parts = inf.decide(tests)
        any_part.append(inf.SUPPORTED if any(t.verdict == inf.SUPPORTED for t in parts) else "")
    assert _rate(union) <= 0.06 and _rate(any_part) <= 0.06


def test_power_for_the_stated_effect():
    """A paired effect of 1.25 standard deviations at n = 8: power ≥ 80% (noncentral t: 0.83)."""
    rng = np.random.default_rng(6)
    verdicts = [_decide_one(inf.t_test("a − b > 0", inf.paired_interval(rng.normal(1.25, 1, N), np.zeros(N)), ">"))
                for _ in range(SIMS)]
    assert _rate(verdicts) >= 0.80
    assert inf.required_n(1.25) <= N


def test_power_of_each_path():
    """The other paths detect a stated effect too (so their low false-positive rates are not
    vacuous): Welch at 1.75 SD (n = 8 + 8), a paired log-ratio at 1.25 SD of the log, TOST when
    the truth is 0 and the margin is 1.25 SD, a union of four parts of which one has 1.5 SD."""
    rng = np.random.default_rng(7)
    welch, ratio, tost, union, three = [], [], [], [], []
    for _ in range(SIMS // 3):
        welch.append(_decide_one(inf.t_test("a > b", inf.welch_interval(rng.normal(1.75, 1, N), rng.normal(0, 1, N)), ">")))
        ra = np.exp(rng.normal(1.25, 1, N))
        ratio.append(_decide_one(inf.t_test("a/b > 1", inf.ratio_interval(ra, np.ones(N), paired=True), ">",
                                            threshold=1.0)))
        tost.append(_decide_one(inf.t_test("≈", inf.mean_interval(rng.normal(0, 1, N)), "equivalent", margin=1.25)))
        parts = [inf.t_test(f"p{k}", inf.mean_interval(rng.normal(1.5 if k == 0 else 0, 1, N)), ">") for k in range(4)]
        union.append(_decide_one(inf.any_of("some", parts)))
        three.append(inf.decide([inf.t_test(f"p{k}", inf.mean_interval(rng.normal(1.25, 1, N)), ">")
                                 for k in range(3)])[0])
    assert _rate(welch) >= 0.75 and _rate(ratio) >= 0.8 and _rate(tost) >= 0.5 and _rate(union) >= 0.7
    assert _rate(three) >= 0.5  # a three-part claim at 1.25 SD per part (documented: about 60%)


def test_identical_values_give_the_sign_test_p():
    iv = inf.mean_interval([2.0] * 8)
    assert iv.se == 0 and inf.t_test("x > 1", iv, ">", threshold=1.0).p_for == pytest.approx(0.5 ** 8)
    few = inf.mean_interval([2.0] * 3)
    assert _decide_one(inf.t_test("x > 1", few, ">", threshold=1.0)) == inf.INCONCLUSIVE  # 1/8 is no evidence


def test_ratio_thresholds_and_margins_are_checked():
    iv = inf.ratio_interval([1.1, 1.2, 1.15], [1.0, 1.0, 1.0], paired=True)
    with pytest.raises(ValueError, match="positive threshold"):
        inf.t_test("r", iv, ">")
    with pytest.raises(ValueError, match="factor"):
        inf.t_test("r", iv, "equivalent", threshold=1.0, margin=0.1)


def test_gating_keeps_a_reported_part_reported():
    from muonlab.claims.base import Tuned, gated

    stuck = Tuned("arm", 1.0, [0.25, 0.5, 1.0], [3.0, 2.0, 1.0], False, 4)
    reported = gated(inf.t_test("control", inf.mean_interval([1.0, 2.0, 3.0]), ">", voted=False), stuck)
    up = inf.t_test("up", inf.mean_interval([1.0, 1.1, 0.9, 1.2, 1.0, 1.05, 0.95, 1.0]), ">", primary=True)
    assert not reported.voted and inf.decide([up, reported])[0] == inf.SUPPORTED
