"""Scoring without torch: rules engine, ECOD detector, ensemble stacker, and the one Scorer."""

import json
import subprocess
import sys

import numpy as np
import pytest

from seqguard.features import FEATURE_INDEX, FEATURE_NAMES
from seqguard.scoring.detector import ECODDetector
from seqguard.scoring.ensemble import Ensemble, logit_margin, threshold_for_fpr
from seqguard.scoring.rules import Mode, RulesError, default_rules_path, load_rules, parse_rules
from seqguard.scoring.scorer import Scorer, ScorerError

F = len(FEATURE_NAMES)
RULES = """
mode: {mode}
rules:
  - id: card_testing
    description: many failed payments
    outcome: block
    conditions:
      - {{feature: max_failed_payments_10m, op: ">=", value: 5}}
  - id: busy
    outcome: review
    conditions:
      - {{feature: n_events, op: ">", value: 50}}
      - {{feature: night_share, op: "<=", value: 0.5}}
"""


def _row(**values: float) -> np.ndarray:
    x = np.zeros(F, dtype=np.float32)
    for k, v in values.items():
        x[FEATURE_INDEX[k]] = v
    return x


def _normal_traffic(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros((n, F), dtype=np.float32)
    x[:, FEATURE_INDEX["n_events"]] = rng.poisson(15, n)
    x[:, FEATURE_INDEX["count_view"]] = rng.poisson(10, n)
    x[:, FEATURE_INDEX["gap_median_seconds"]] = rng.lognormal(4, 1, n)
    x[:, FEATURE_INDEX["max_failed_payments_10m"]] = rng.binomial(1, 0.02, n)
    x[:, FEATURE_INDEX["night_share"]] = rng.beta(1, 6, n)
    return x


# -- rules ----------------------------------------------------------------------------------------------------------


def test_rules_first_matched_vs_all_matched():
    x = np.stack([_row(max_failed_payments_10m=8, n_events=60), _row(n_events=60), _row(n_events=3)])
    first = parse_rules(RULES.format(mode="FIRST_MATCHED"))
    every = parse_rules(RULES.format(mode="all_matched"))  # mode is case-insensitive
    assert every.mode == Mode.ALL_MATCHED
    np.testing.assert_array_equal(first.hits(x), [[True, True], [False, True], [False, False]])
    assert [r["id"] for r in first.fired(first.hits(x)[0])] == ["card_testing"]
    assert [r["id"] for r in every.fired(every.hits(x)[0])] == ["card_testing", "busy"]
    assert first.fired(first.hits(x)[2]) == []
    assert first.fired(first.hits(x)[0])[0] == {"id": "card_testing", "outcome": "block",
                                                 "reason": "many failed payments"}
    # A rule without a description explains itself by its conditions.
    assert every.fired(every.hits(x)[1])[0]["reason"] == "n_events > 50 and night_share <= 0.5"
    np.testing.assert_array_equal(first.outcome_rank(first.hits(x)), [2, 1, 0])


def test_first_matched_reports_priority_not_strength():
    text = RULES.format(mode="FIRST_MATCHED").replace("  - id: card_testing", "  - id: zz").split("  - id: busy")
    reordered = "mode: FIRST_MATCHED\nrules:\n  - id: busy" + text[1] + text[0].split("rules:\n")[1]
    rs = parse_rules(reordered)
    assert rs.ids == ["busy", "zz"]
    hits = rs.hits(_row(max_failed_payments_10m=8, n_events=60)[None])
    assert [r["id"] for r in rs.fired(hits[0])] == ["busy"]
    assert rs.outcome_rank(hits).tolist() == [1]


def test_unknown_feature_names_rule_and_field(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text(RULES.format(mode="FIRST_MATCHED").replace("night_share", "nite_share"))
    with pytest.raises(RulesError) as e:
        load_rules(p)
    msg = str(e.value)
    assert "rule 'busy'" in msg and "conditions[1].feature" in msg and "nite_share" in msg and str(p) in msg


@pytest.mark.parametrize(("text", "expected"), [
    ("mode: SOMETIMES\nrules: []", "mode"),
    ("rules:\n  - {id: a, outcome: allow, conditions: [{feature: n_events, op: '>', value: 1}]}", "outcome"),
    ("rules:\n  - {id: a, outcome: block, conditions: [{feature: n_events, op: '=>', value: 1}]}", "op"),
    ("rules:\n  - {id: a, outcome: block, conditions: []}", "conditions"),
    ("rules:\n  - {id: a, outcome: block, conditions: [{feature: n_events, op: '>', value: 1}]}\n"
     "  - {id: a, outcome: block, conditions: [{feature: n_events, op: '>', value: 2}]}", "used twice"),
    ("- just a list", "top level"),
    ("rules: [", "not valid YAML"),
])
def test_bad_rules_files_are_clear(text, expected):
    with pytest.raises(RulesError, match=expected):
        parse_rules(text)


def test_missing_rules_file(tmp_path):
    with pytest.raises(RulesError, match="does not exist"):
        load_rules(tmp_path / "nope.yaml")


def test_default_rules_load_and_are_quiet_on_normal_traffic():
    rules = load_rules(default_rules_path())
    assert len(rules.rules) >= 5
    assert not rules.hits(_normal_traffic()).any()
    takeover = _row(credential_changes=1, max_purchase_15m_after_credential_change=900,
                    new_device_purchase_amount=900, new_device_events=1)
    assert rules.fired(rules.hits(takeover[None])[0])[0]["id"] == "takeover_checkout"


# -- detector -------------------------------------------------------------------------------------------------------


def test_detector_reasons_name_the_right_feature():
    x = _normal_traffic()
    det = ECODDetector().fit(x)
    probe = np.stack([_row(n_events=15, count_view=10, gap_median_seconds=50, night_share=0.1,
                           max_failed_payments_10m=8),
                      _row(n_events=15, count_view=10, night_share=0.1, gap_median_seconds=0.05)])
    reasons = det.reasons(probe, k=2)
    top = reasons[0][0]
    assert top.feature == "max_failed_payments_10m" and top.direction == "high"
    assert top.text() == "max_failed_payments_10m=8 (p>99.9%)"
    assert top.tail_prob < 1e-3 and top.z > 3
    assert reasons[1][0].feature == "gap_median_seconds" and reasons[1][0].direction == "low"
    assert reasons[1][0].text().endswith("(p<0.1%)")
    s = det.score_samples(probe)
    assert (s > np.quantile(det.score_samples(x), 0.99)).all()
    assert det.predict(probe).tolist() == [1, 1]
    assert 0.005 < det.predict(x).mean() < 0.02  # contamination 1 %


def test_detector_round_trips_through_json_exactly(tmp_path):
    x = _normal_traffic()
    det = ECODDetector().fit(x)
    det.save(tmp_path / "det.json")
    again = ECODDetector.load(tmp_path / "det.json")
    probe = _normal_traffic(200, seed=1)
    np.testing.assert_array_equal(det.score_samples(probe), again.score_samples(probe))
    pct = again.percentile(again.score_samples(probe))
    assert ((pct >= 0) & (pct <= 1)).all()
    order = np.argsort(again.score_samples(probe))
    assert (np.diff(pct[order]) >= 0).all()  # percentile is monotone in the score
    with pytest.raises(ValueError, match="features"):
        det.score_samples(np.zeros((2, 3)))


def test_detector_tail_probs_vectorised_equals_the_per_feature_reference():
    """One searchsorted over all features (complex keys) gives bit for bit what the per-feature loop gives: exact
    grids (few values), quantile grids with interpolation (continuous features), values on, between and beyond the
    grid points, batches of 1 and many."""
    det = ECODDetector(max_exact=64).fit(_normal_traffic(3000, seed=2))
    assert det._flat()[6].any() and not det._flat()[6].all()  # both kinds of grid are present
    rng = np.random.default_rng(3)
    for b in (1, 2, 17, 400):
        probe = _normal_traffic(b, seed=b)
        probe[: b // 2] *= rng.uniform(0.0, 3.0, probe[: b // 2].shape).astype(np.float32)
        on_grid = [v for v, *_ in det._arrays()]
        probe[-1] = [v[rng.integers(len(v))] for v in on_grid]
        probe[0, :5] = [-1e6, 1e6, 0.0, -0.0, 3.5]
        fast, slow = det.tail_probs(probe), det._tail_probs_loop(probe)
        np.testing.assert_array_equal(fast[0], slow[0])
        np.testing.assert_array_equal(fast[1], slow[1])


# -- ensemble + scorer ----------------------------------------------------------------------------------------------


def _labelled(n: int = 2000, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = _normal_traffic(n, seed)
    y = rng.random(n) < 0.08
    x[y, FEATURE_INDEX["n_events"]] += rng.poisson(20, y.sum())
    logits = {
        "bert": np.column_stack([np.zeros(n), rng.normal(0, 1, n) + 3.0 * y]).astype(np.float32),
        "rnn": np.column_stack([np.zeros(n), rng.normal(0, 1, n) + 1.5 * y]).astype(np.float32),
    }
    return x, y, logits


def _checkpoint(tmp_path, mode="FIRST_MATCHED", labelled=True):
    x, y, logits = _labelled()
    rules_text = RULES.format(mode=mode)
    rules = parse_rules(rules_text)
    det = ECODDetector().fit(_normal_traffic(3000, seed=5))
    comps = ["bert", "rnn"] if labelled else []
    ens = Ensemble.fit(comps, rules.ids, {k: logit_margin(v) for k, v in logits.items()}, det.score_samples(x),
                       rules.hits(x), y if labelled else None, 0.01, 0.001, seed=0)
    (tmp_path / "rules.yaml").write_text(rules_text)
    det.save(tmp_path / "unsupervised.json")
    ens.save(tmp_path / "ensemble.json")
    return tmp_path, x, y, logits


def test_scorer_scores_decides_and_explains(tmp_path):
    folder, x, y, logits = _checkpoint(tmp_path)
    scorer = Scorer.load(folder)
    assert scorer.components == ["bert", "rnn"]
    dec = scorer.score(logits, x)
    scores = np.array([d.score for d in dec])
    assert ((scores >= 0) & (scores <= 1)).all()
    assert np.mean(scores[y]) > 0.5 > np.mean(scores[~y])
    # Validation-chosen thresholds: about 1 % of normal windows reviewed or blocked.
    flagged = np.array([d.decision != "allow" for d in dec])
    assert flagged[~y].mean() < 0.03 and flagged[y].mean() > 0.5
    d0 = dec[int(np.argmax(scores))]
    assert set(d0.component_scores) == {"bert", "rnn", "unsupervised"}
    assert any(r.startswith("model bert") for r in d0.reasons)
    json.dumps([d.to_dict() for d in dec[:50]])  # JSON-friendly
    again = Scorer.load(folder).score(logits, x)
    assert [d.to_dict() for d in again] == [d.to_dict() for d in dec]  # deterministic


def test_a_fired_block_rule_raises_the_decision_and_leads_the_reasons(tmp_path):
    folder, _, _, _ = _checkpoint(tmp_path)
    scorer = Scorer.load(folder)
    x = _row(n_events=15, count_view=10, gap_median_seconds=50, night_share=0.1, max_failed_payments_10m=9)[None]
    low = {"bert": np.array([[0.0, -8.0]], np.float32), "rnn": np.array([[0.0, -8.0]], np.float32)}
    d = scorer.score(low, x)[0]
    assert d.decision == "block"
    assert d.rules_fired == [{"id": "card_testing", "outcome": "block", "reason": "many failed payments"}]
    assert d.reasons[0] == "rule card_testing: many failed payments"
    assert d.reasons[1] == "max_failed_payments_10m=9 (p>99.9%)"


def test_degraded_scoring_without_logits(tmp_path):
    folder, x, y, logits = _checkpoint(tmp_path)
    scorer = Scorer.load(folder)
    dec = scorer.score(None, x)
    assert all(d.degraded for d in dec)
    assert all(set(d.component_scores) == {"unsupervised"} for d in dec)
    s = np.array([d.score for d in dec])
    assert ((s >= 0) & (s <= 1)).all() and s[y].mean() > s[~y].mean()
    assert not any(d.degraded for d in scorer.score({k: v[:5] for k, v in logits.items()}, x[:5]))
    with pytest.raises(ScorerError, match="missing"):
        scorer.score({"bert": logits["bert"]}, x)


def test_scorer_without_labels_uses_detector_percentiles(tmp_path):
    folder, x, _, _ = _checkpoint(tmp_path, labelled=False)
    scorer = Scorer.load(folder)
    assert scorer.components == []
    dec = scorer.score({}, x)
    assert not any(d.degraded for d in dec)
    s = np.array([d.score for d in dec])
    assert ((s >= 0) & (s <= 1)).all()
    assert np.mean([d.decision != "allow" for d in dec]) < 0.1
    assert scorer.score(None, x[:3])[0].degraded is False  # nothing to degrade from


def test_scorer_refuses_rules_that_do_not_match_the_ensemble(tmp_path):
    folder, _, _, _ = _checkpoint(tmp_path)
    (folder / "rules.yaml").write_text("rules:\n  - {id: other, outcome: review, conditions: "
                                       "[{feature: n_events, op: '>', value: 1}]}\n")
    with pytest.raises(ScorerError, match="re-train"):
        Scorer.load(folder)
    with pytest.raises(ScorerError, match="missing"):
        Scorer.load(folder / "nowhere")


def test_threshold_for_fpr():
    neg = np.arange(1000, dtype=float)
    t = threshold_for_fpr(neg, 0.01)
    assert (neg >= t).sum() == 10
    assert (neg >= threshold_for_fpr(neg, 0.0)).sum() == 0


def test_scoring_package_does_not_import_torch():
    code = ("import sys, seqguard.scoring, seqguard.scoring.scorer; "
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_tree_model_matches_sklearn_and_round_trips():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from seqguard.scoring.tabular import TreeModel

    x, y, _ = _labelled(1500)
    tm = TreeModel.fit(x, y, max_iter=30, max_leaf_nodes=8, seed=0)
    ref = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=8, random_state=0).fit(x, y)
    probe = _labelled(300, seed=9)[0]
    np.testing.assert_allclose(tm.decision_function(probe), ref.decision_function(probe), atol=1e-9)
    again = TreeModel.from_dict(json.loads(json.dumps(tm.to_dict())))
    np.testing.assert_array_equal(again.decision_function(probe), tm.decision_function(probe))


def test_tree_model_is_an_ensemble_input_and_keeps_degraded_scoring_strong(tmp_path):
    from seqguard.scoring.tabular import TreeModel

    x, y, logits = _labelled()
    rules = parse_rules(RULES.format(mode="FIRST_MATCHED"))
    det = ECODDetector().fit(_normal_traffic(3000, seed=5))
    tm = TreeModel.fit(*_labelled(3000, seed=3)[:2], max_iter=30, max_leaf_nodes=4)
    ens = Ensemble.fit(["bert", "rnn"], rules.ids, {k: logit_margin(v) for k, v in logits.items()},
                       det.score_samples(x), rules.hits(x), y, seed=0, tabular=tm, features=x)
    assert ens.main.inputs[:3] == ["margin:bert", "margin:rnn", "tabular"]
    assert ens.degraded.inputs[0] == "tabular"
    (tmp_path / "rules.yaml").write_text(RULES.format(mode="FIRST_MATCHED"))
    det.save(tmp_path / "unsupervised.json")
    ens.save(tmp_path / "ensemble.json")
    scorer = Scorer.load(tmp_path)
    dec = scorer.score(None, x)
    assert set(dec[0].component_scores) == {"tabular", "unsupervised"}
    from seqguard.train.metrics import pr_auc

    assert pr_auc(y, np.array([d.score for d in dec])) > 0.8  # n_events carries the signal; the trees find it


def test_tree_model_jump_and_walk_agree_bit_for_bit():
    """The two exact evaluations of the trees (pointer jumping for small requests, the level walk for batches)
    give identical log-odds, NaN routing included, and match scikit-learn's decision function."""
    from seqguard.scoring.tabular import TreeModel

    rng = np.random.default_rng(11)
    x = _normal_traffic(1500, seed=4)
    y = (x[:, FEATURE_INDEX["n_events"]] + rng.normal(0, 3, len(x)) > 17).astype(np.int64)
    model = TreeModel.fit(x, y, max_iter=40, max_leaf_nodes=15, seed=0)
    assert model._depth >= 3
    probe = _normal_traffic(64, seed=9)
    probe[5, FEATURE_INDEX["n_events"]] = np.nan
    walk = model._walk(probe.astype(np.float64))
    for i in range(0, 64, 3):
        rows = probe[i : i + 3].astype(np.float64)
        np.testing.assert_array_equal(model._jump(rows), walk[i : i + 3])
    np.testing.assert_array_equal(model.decision_function(probe[:2]), walk[:2])
    np.testing.assert_array_equal(model.decision_function(probe), walk)


def test_rule_hits_grouped_by_operator_equal_the_condition_by_condition_definition():
    from seqguard.scoring.rules import _OPS, RuleSet

    rng = np.random.default_rng(11)
    x = rng.normal(size=(50, len(FEATURE_NAMES))).astype(np.float32)
    x[::7, 3] = 0.1  # exact ties with a threshold, in float32
    names = list(FEATURE_NAMES)
    rules = [{"id": f"r{j}", "outcome": "review",
              "conditions": [{"feature": names[int(rng.integers(len(names)))], "op": str(rng.choice(list(_OPS))),
                              "value": 0.1 if k == 0 else float(rng.normal())} for k in range(int(rng.integers(1, 4)))]}
             for j in range(12)]
    rs = RuleSet.model_validate({"mode": "ALL_MATCHED", "rules": rules})
    naive = np.ones((len(x), len(rules)), dtype=bool)
    for j, rule in enumerate(rs.rules):
        for c in rule.conditions:
            naive[:, j] &= _OPS[c.op](x[:, FEATURE_INDEX[c.feature]], np.float32(c.value))
    assert np.array_equal(rs.hits(x), naive) and 0 < naive.sum() < naive.size
    assert np.array_equal(rs.hits(x[:1]), naive[:1])
