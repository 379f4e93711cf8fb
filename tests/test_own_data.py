"""Bring your own data: a 2-hour capture with an entity labels table through train and evaluate, the split modes,
config merging, the time zone, small data, and every error a user meets on the way (messages asserted)."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from seqguard.cli import main
from seqguard.scoring.ensemble import Ensemble, select_stacker
from seqguard.scoring.entity import ENTITY_AGGREGATION_KEY
from seqguard.train.config import (
    TINY_CONFIG,
    ConfigError,
    load_train_config,
    parse_train_config,
    resolve_time_zone,
)
from seqguard.train.dataset import DatasetError, build_windows, check_split, split_windows
from seqguard.train.entity_metrics import (
    _ap,
    _auc,
    choose_aggregation,
    entity_report,
    paired_difference,
    unlabelled_aggregation,
)
from seqguard.train.metrics import degenerate_sources
from seqguard.train.pipeline import train_checkpoint

# -- config: merged onto the shipped default ------------------------------------------------------------------------


def test_a_file_that_sets_one_key_changes_that_key_only(tmp_path):
    default = load_train_config()
    p = tmp_path / "mine.yaml"
    p.write_text("split:\n  mode: entity\n")
    mine = load_train_config(p)
    assert mine.split.mode == "entity"
    assert mine.model_dump(exclude={"split"}) == default.model_dump(exclude={"split"})
    assert mine.sequence.utc_offset_hours == 8 and mine.bert.pretrain_epochs == 1 and mine.rnn.epochs == 4
    assert mine.split.val_days == default.split.val_days


@pytest.mark.parametrize(("raw", "message"), [
    ({"split": {"mod": "entity"}}, "split.mod: unknown key"),
    ({"ensembel": {}}, "ensembel: unknown key"),
    ({"split": {"mode": "random"}}, "split.mode: Input should be 'time', 'entity' or 'auto'"),
    ({"split": {"val_share": 0.5, "test_share": 0.5}}, "val_share + test_share must leave at least 10 %"),
    ({"ensemble": {"entity_aggregation": "sum"}}, "ensemble.entity_aggregation"),
])
def test_unknown_and_bad_keys_name_the_key(raw, message):
    with pytest.raises(ConfigError) as e:
        parse_train_config(raw)
    assert message in str(e.value)


def test_time_zone_comes_from_config_then_mapping_then_utc():
    cfg = load_train_config()
    same, note = resolve_time_zone(cfg, {}, None, None)
    assert same.sequence.utc_offset_hours == 8 and "shipped default" in note
    m, note = resolve_time_zone(cfg, {}, -5.0, "shop")
    assert m.sequence.utc_offset_hours == -5 and "from mapping 'shop'" in note
    u, note = resolve_time_zone(cfg, {}, None, "shop")
    assert u.sequence.utc_offset_hours == 0 and "states no utc_offset_hours, so UTC" in note
    explicit = parse_train_config({"sequence": {"utc_offset_hours": 3}})
    e, note = resolve_time_zone(explicit, {"sequence": {"utc_offset_hours": 3}}, -5.0, "shop")
    assert e.sequence.utc_offset_hours == 3 and "config file" in note


# -- splits ---------------------------------------------------------------------------------------------------------


def _two_hours(events: pd.DataFrame, start_h: int = 12) -> pd.DataFrame:
    t0 = events["ts"].min() + start_h * 3600
    return events[(events["ts"] >= t0) & (events["ts"] < t0 + 7200)].reset_index(drop=True)


def test_entity_split_is_disjoint_stratified_and_stable(tiny_events):
    cfg = load_train_config(TINY_CONFIG)
    ws = build_windows(tiny_events, cfg.sequence)
    sp = split_windows(ws, cfg.split.model_copy(update={"mode": "entity"}), cfg.seed)
    parts = [set(ws.entity[getattr(sp, n)]) for n in ("train", "val", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sum(len(p) for p in parts) == len(set(ws.entity))
    for n in ("train", "val", "test"):
        assert ws.labels[getattr(sp, n)].any(), n
    again = split_windows(ws, cfg.split.model_copy(update={"mode": "entity"}), cfg.seed)
    assert np.array_equal(sp.test, again.test) and sp.mode == "entity"
    check_split(ws, sp)


def test_auto_says_which_split_it_chose_and_why(tiny_events):
    cfg = load_train_config(TINY_CONFIG)
    short = build_windows(_two_hours(tiny_events), cfg.sequence)
    sp = split_windows(short, cfg.split, cfg.seed)
    assert sp.mode == "entity" and "1 day(s) of data, the time split needs 3; split by entity" in sp.why
    # Four days, but validation without anomalies: auto leaves the time split and says why.
    ev = tiny_events.copy()
    last_days = ev["ts"] >= ev["ts"].max() - 2 * 86400
    ev.loc[last_days, "is_anomaly"] = False
    sp = split_windows(build_windows(ev, cfg.sequence), cfg.split, cfg.seed)
    assert sp.mode == "entity" and "auto: by time, test holds 0 anomalous of" in sp.why and "split by entity" in sp.why


def test_a_one_class_validation_stops_training_before_any_model(tiny_events, tmp_path):
    """The old behaviour: a warning, then the detector served alone with exit 0. Now: an error naming the fix,
    before the first model is trained, and nothing written."""
    ev = tiny_events.copy()
    day = np.floor(ev["ts"] / 86400)
    val_day = np.sort(day.unique())[-2]
    # A window reaches 24 h back, so the day before validation is cleared too (training keeps the first day).
    ev.loc[(day == val_day) | (day == val_day - 1), "is_anomaly"] = False
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["split"]["mode"] = "time"
    logged: list[str] = []
    with pytest.raises(DatasetError) as e:
        train_checkpoint(ev, parse_train_config(raw), tmp_path / "m", progress=False, log=logged.append)
    assert "time split: validation holds 0 anomalous of" in str(e.value)
    assert "use split.mode: entity" in str(e.value)
    assert not any("pretraining" in line or "detector" in line for line in logged)
    assert not (tmp_path / "m").exists()
    # The ensemble itself refuses one-class labels rather than falling back to the detector percentile.
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="needs both classes in validation: 0 anomalous of 50"):
        Ensemble.fit(["bert"], [], {"bert": rng.normal(size=50)}, rng.random(50), np.zeros((50, 0)), np.zeros(50))


# -- the entity level -----------------------------------------------------------------------------------------------


def test_entity_metrics_match_sklearn_and_warn_on_few_negatives():
    from sklearn.metrics import average_precision_score, roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.2
    s = np.round(rng.normal(size=300) + y, 1)  # ties on purpose
    assert _ap(y, s) == pytest.approx(average_precision_score(y, s))
    assert _auc(y, s) == pytest.approx(roc_auc_score(y, s))
    ent = np.arange(60).repeat(2).astype(str)  # 60 entities, 2 windows each
    yw = np.repeat(rng.random(60) < 0.3, 2)
    rep = entity_report(ent, yw, np.where(yw, "bot", "normal"), {"x": rng.random(120) + yw}, "mean", n_boot=20)
    row = rep["scores"]["x"]
    assert row["recall_at_0.01_fpr"] is None and "recall_at_0.01_fpr_unquoted" in row
    assert row["pr_auc_ci"][0] <= row["pr_auc"] <= row["pr_auc_ci"][1]
    assert "recall at 1 % FPR is not quoted: only" in rep["warnings"][0]
    assert set(row["per_scenario"]) == {"bot"}


def test_aggregation_is_chosen_on_validation_and_max_loses_on_long_benign_histories():
    rng = np.random.default_rng(2)
    ents, ys, scores = [], [], []
    for i in range(200):
        bad = i % 4 == 0
        n = 2 if bad else 30  # benign accounts have many more windows
        ents += [f"e{i}"] * n
        ys += [bad] * n
        scores += list(rng.normal(0.8 if bad else 0.0, 1.0, n))
    method, info = choose_aggregation(np.array(ents), np.array(ys), np.array(scores))
    assert method in ("mean", "median")
    assert info["candidates"]["max"]["pr_auc"] < info["candidates"][method]["pr_auc"]
    assert "highest entity-level PR-AUC on validation" in info["why"]
    fixed, info = choose_aggregation(np.array(ents), np.array(ys), np.array(scores), "max")
    assert fixed == "max" and "set in the config" in info["why"]


def test_without_labels_the_aggregation_is_the_configured_one_else_the_default():
    assert unlabelled_aggregation() == ("mean", {"why": "no labels to choose on: the default"})
    method, info = unlabelled_aggregation("max")
    assert method == "max" and "set in the config" in info["why"]


def test_paired_difference_resamples_the_same_entities_for_both_scores():
    rng = np.random.default_rng(3)
    ent = np.arange(200).repeat(3).astype(str)
    y = np.repeat(rng.random(200) < 0.3, 3)
    good, noise = y + rng.normal(0, 0.5, 600), rng.random(600)
    d = paired_difference(ent, y, good, noise, "mean", n_boot=100)
    assert d["aggregation"] == "mean" and d["entities"] == 200 and d["anomalous"] == int(y[::3].sum())
    assert d["difference"] == pytest.approx(d["pr_auc"][0] - d["pr_auc"][1]) and d["difference_ci"][0] > 0.2
    assert d["roc_auc_ci"][0][0] > 0.8 and d["roc_auc_ci"][1][0] <= 0.5 <= d["roc_auc_ci"][1][1]
    # Paired: a score against itself differs by exactly 0 in every resample, though its own interval is wide.
    same = paired_difference(ent, y, noise, noise, "mean", n_boot=100)
    assert same["difference_ci"] == [0.0, 0.0]
    # An order-preserving transform of a score ranks the same entities the same way.
    assert paired_difference(ent, y, good, 3 * good + 1, "max", n_boot=20)["difference_ci"] == [0.0, 0.0]


def test_degenerate_sources_are_named():
    y = np.array([0] * 20 + [1] * 3)
    out = degenerate_sources({"trees": np.full(23, 0.3), "bert": np.arange(23.0)}, y, 10, "validation")
    assert {(d["source"], d["problem"]) for d in out} == {("every score", "too_few_positives"),
                                                          ("trees", "constant")}
    assert "judged on 3 anomalous validation windows (fewer than 10)" in out[0]["detail"]
    y = np.array([0] * 50 + [1] * 20)
    out = degenerate_sources({"ecod": -np.arange(70.0), "good": np.arange(70.0)}, y, 10, "test")
    assert [(d["source"], d["problem"]) for d in out] == [("ecod", "inverted")]
    assert "ROC-AUC 0.000 on test: it ranks normal windows above anomalous ones" in out[0]["detail"]


def test_select_stacker_reports_candidates_and_serves_the_winner_alone():
    rng = np.random.default_rng(0)
    n = 60
    y = (np.arange(n) % 5 == 0).astype(int)
    strong = y * 2.0 + rng.normal(0, 0.5, n)
    noise = rng.normal(0, 1, (n, 8))
    x = np.column_stack([strong, noise])
    names = ["margin:bert", "margin:rnn", "tabular", "unsupervised"] + [f"rule:r{i}" for i in range(5)]
    st = select_stacker(x, y, names, 0.01, 0.001, c=100.0, seed=0, folds=5, select_best=True)
    sel = st.metrics["selection"]
    assert set(sel["cv_pr_auc"]) == {"stack", "margin:bert", "margin:rnn", "tabular", "unsupervised"}
    assert sel["chosen"] == "margin:bert" and st.inputs == ["margin:bert"]
    assert "alone has a higher cross-validated PR-AUC" in sel["why"]
    off = select_stacker(x, y, names, 0.01, 0.001, c=100.0, seed=0, folds=5, select_best=False)
    assert off.metrics["selection"]["chosen"] == "stack" and off.inputs == names


# -- end to end: a 2-hour capture with an entity labels table -------------------------------------------------------


@pytest.fixture(scope="module")
def two_hour_files(tiny_events, tmp_path_factory):
    ev = _two_hours(tiny_events)
    folder = tmp_path_factory.mktemp("own")
    data = folder / "capture.csv"
    ev.drop(columns=["is_anomaly", "scenario"]).to_csv(data, index=False)
    per_user = ev.groupby("user_id").agg(label=("is_anomaly", "max"), scenario=("scenario", lambda s: max(s)))
    labels = folder / "labels.csv"
    pd.DataFrame({"entity_id": per_user.index, "label": per_user["label"].astype(int),
                  "scenario": np.where(per_user["label"], per_user["scenario"], "")}).to_csv(labels, index=False)
    return data, labels, folder


def test_two_hour_capture_trains_and_evaluates_at_both_levels(two_hour_files, capsys):
    data, labels, folder = two_hour_files
    models, report = folder / "models", folder / "eval"
    code = main(["train", "--data", str(data), "--labels", str(labels), "--config", str(TINY_CONFIG),
                 "--out", str(models), "--no-progress"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "effective config (shipped default +" in cap.err and "mode: auto" in cap.err
    assert "split: entity (auto: 1 day(s) of data" in cap.err
    assert "small data (" in cap.err and "anomalous windows per fold: [" in cap.err
    assert "labels: 7 positive and 191 negative entities matched on user_id" in cap.err
    m = json.loads((models / "metrics.json").read_text())
    assert m["split"]["mode"] == "entity" and m["out_of_fold"]["folds"] >= 2
    assert m["data_notes"]["labels"]["positive_entities"] == 7 and "hour of day" in m["data_notes"]["time_zone"]
    assert sum(f["positives"] for f in m["out_of_fold"]["per_fold"]) == (m["split"]["train"]["anomalous"]
                                                                         + m["split"]["val"]["anomalous"])
    assert {"behaviour_bert", "sequence_rnn", "tabular", "unsupervised"} <= set(m["test_entity"]["scores"])
    assert any(d["problem"] == "too_few_positives" for d in m["degenerate"])
    ens = json.loads((models / "ensemble.json").read_text())
    assert ens[ENTITY_AGGREGATION_KEY] in ("max", "mean", "median")
    assert json.loads((models / "checkpoint.json").read_text())["train_config"]["split"]["mode"] == "auto"

    code = main(["evaluate", "--models", str(models), "--data", str(data), "--labels", str(labels),
                 "--out", str(report), "--no-progress"])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert f"entity level ({ens[ENTITY_AGGREGATION_KEY]} over windows" in cap.out
    ev = json.loads((report / "metrics.json").read_text())
    assert set(ev["models"]) == {"behaviour_bert", "sequence_rnn", "unsupervised_sequence"}
    for name in ("ensemble", "behaviour_bert", "sequence_rnn", "tabular", "unsupervised", "gradient_boosting"):
        assert name in ev["scores"] and name in ev["entity"]["scores"], name
    assert ev["entity"]["scores"]["ensemble"]["recall_at_0.01_fpr"] is None  # < 100 normal entities
    text = (report / "report.md").read_text()
    assert "## Entity level" in text and "## Warnings" in text and "recall at 1 % FPR is not quoted" in text
    assert "Training split: **entity**" in text

    code = main(["evaluate", "--models", str(models), "--data", str(data), "--labels", str(labels),
                 "--out", str(folder / "eval_entity"), "--level", "entity", "--no-progress"])
    cap = capsys.readouterr()
    assert code == 0 and "window level" not in cap.out
    assert "## Targets" not in (folder / "eval_entity" / "report.md").read_text()


def _labels_file(folder, text):
    p = folder / "bad_labels.csv"
    p.write_text(text)
    return p


@pytest.mark.parametrize("case", ["duplicates", "non_binary", "no_match", "too_few_positives", "all_positive",
                                  "missing"])
def test_label_problems_exit_2_with_the_reason(case, two_hour_files, tiny_events, tmp_path, capsys):
    data, labels, _ = two_hour_files
    users = pd.read_csv(labels)["entity_id"].tolist()
    if case == "duplicates":
        lab, expect = _labels_file(tmp_path, f"entity_id,label\n{users[0]},1\n{users[0]},0\n"), \
            "1 entity id(s) appear more than once (2 rows)"
    elif case == "non_binary":
        lab, expect = _labels_file(tmp_path, f"entity_id,label\n{users[0]},0.5\n"), \
            "1 row(s) are not binary (0/1, true/false): '0.5' x1"
    elif case == "no_match":
        lab, expect = _labels_file(tmp_path, "entity_id,label\nnobody,1\n"), "0 of 1 labelled ids match the 198"
    elif case == "too_few_positives":
        lab = _labels_file(tmp_path, "entity_id,label\n" + "".join(f"{u},{int(i < 2)}\n"
                                                                  for i, u in enumerate(users)))
        expect = "entity split needs at least 3 anomalous and 3 normal entities (this data has 2 and 196)"
    elif case == "all_positive":
        lab = _labels_file(tmp_path, "entity_id,label\n" + "".join(f"{u},1\n" for u in users))
        expect = "every entity is labelled anomalous"
    else:
        lab, expect = tmp_path / "nope.csv", "labels file"
    code = main(["train", "--data", str(data), "--labels", str(lab), "--config", str(TINY_CONFIG),
                 "--out", str(tmp_path / "m"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expect in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_unknown_config_key_exits_2_naming_it(two_hour_files, tmp_path, capsys):
    data, labels, _ = two_hour_files
    cfg = tmp_path / "c.yaml"
    cfg.write_text("split:\n  mode: entity\n  shuffle: true\n")
    code = main(["train", "--data", str(data), "--labels", str(labels), "--config", str(cfg), "--out",
                 str(tmp_path / "m"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "split.shuffle: unknown key" in err


def test_export_carries_the_entity_aggregation_to_the_repository(tiny_checkpoint, tiny_repo):
    """`seqguard score` reads the aggregation from a checkpoint or a Triton repository alike."""
    chosen = json.loads((tiny_checkpoint / "ensemble.json").read_text())[ENTITY_AGGREGATION_KEY]
    assert chosen in ("max", "mean", "median")
    assert Ensemble.load(tiny_repo / "ensemble.json").entity_aggregation == chosen
    manifest = json.loads((tiny_repo / "manifest.json").read_text())
    assert manifest["ensemble"][ENTITY_AGGREGATION_KEY] == chosen
