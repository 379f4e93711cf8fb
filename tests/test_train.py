"""Training: windows and split, the checkpoint contract, reloads, determinism, CLI errors, foreign layouts."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from seqguard.cli import main
from seqguard.config import SequenceConfig
from seqguard.io import events_to_frame
from seqguard.scoring.scorer import Scorer
from seqguard.train.calibration import calibration_logits, read_calibration
from seqguard.train.config import TINY_CONFIG, ConfigError, load_train_config, parse_train_config
from seqguard.train.dataset import DatasetError, build_windows, split_windows
from seqguard.train.pipeline import train_checkpoint

T0 = 1791158400.0  # a UTC midnight


# -- windows and split ----------------------------------------------------------------------------------------------


def test_windows_labels_and_scenarios():
    day = 86400.0
    rows = [
        {"user_id": "a", "ts": T0 + 100, "event_type": "view"},
        {"user_id": "a", "ts": T0 + 200, "event_type": "payment_attempt", "payment_status": "failed"},
        {"user_id": "a", "ts": T0 + day + 100, "event_type": "view"},
        {"user_id": "b", "ts": T0 + 50, "event_type": "view"},
    ]
    frame = events_to_frame(rows)
    frame["is_anomaly"] = [False, True, False, False]
    frame["scenario"] = ["normal", "card_testing", "normal", "normal"]
    cfg = SequenceConfig(span_seconds=3600.0)
    ws = build_windows(frame, cfg)
    got = {(e, int(d)): (bool(lab), s) for e, d, lab, s in zip(ws.entity, ws.day, ws.labels, ws.scenario,
                                                                 strict=True)}
    d0 = int(T0 // day)
    assert got == {("a", d0): (True, "card_testing"), ("a", d0 + 1): (False, "normal"), ("b", d0): (False, "normal")}
    unlabeled = build_windows(frame.drop(columns=["is_anomaly", "scenario"]), cfg)
    assert unlabeled.labels is None and set(unlabeled.scenario) == {"unlabeled"}


def test_split_is_chronological_and_keeps_unseen_entities_out(tiny_events):
    cfg = load_train_config(TINY_CONFIG)
    ws = build_windows(tiny_events, cfg.sequence)
    split = split_windows(ws, cfg.split, cfg.seed)
    assert ws.day[split.train].max() < ws.day[split.val].min() <= ws.day[split.val].max() < ws.day[split.test].min()
    unseen = set(ws.entity[split.unseen])
    assert unseen and not unseen & set(ws.entity[split.train]) and not unseen & set(ws.entity[split.val])
    assert unseen & set(ws.entity[split.test])
    assert split.mode == "time" and "split by time" in split.why  # auto: 4 days, both classes in val and test
    with pytest.raises(DatasetError, match=r"time split needs at least 7 .* use split.mode: entity"):
        split_windows(ws, cfg.split.model_copy(update={"test_days": 5, "mode": "time"}), 0)


# -- config ---------------------------------------------------------------------------------------------------------


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"bert\.hiden: unknown key"):
        parse_train_config({"bert": {"hiden": 3}})
    with pytest.raises(ConfigError, match=r"bert\.heads: .*divide hidden"):
        parse_train_config({"bert": {"hidden": 30, "heads": 4}})
    with pytest.raises(ConfigError, match=r"split\.test_days"):
        parse_train_config({"split": {"test_days": 0}})
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "nope.yaml")
    default = load_train_config()
    assert default.name == "default" and default.sequence.utc_offset_hours == 8


# -- the checkpoint contract ----------------------------------------------------------------------------------------


def test_checkpoint_layout_and_index(tiny_checkpoint):
    index = json.loads((tiny_checkpoint / "checkpoint.json").read_text())
    assert [(m["name"], m["kind"], m["path"]) for m in index["models"]] == [
        ("behaviour_bert", "bert", "behaviour_bert"), ("sequence_rnn", "rnn", "sequence_rnn"),
        ("unsupervised_sequence", "surprise", "unsupervised_sequence")]
    assert index["version"].startswith("seqguard-") and index["labels_used"] is True
    assert index["sequence_config_hash"] == SequenceConfig.load(tiny_checkpoint / "sequence_config.json").config_hash()
    for name in ("sequence_config.json", "tokenizer/tokenizer.json", "unsupervised.json", "rules.yaml",
                 "ensemble.json", "metrics.json", "calibration.npz", "behaviour_bert/seqguard.json",
                 "sequence_rnn/tokenizer.json"):
        assert (tiny_checkpoint / name).is_file(), name
    metrics = json.loads((tiny_checkpoint / "metrics.json").read_text())
    assert {"ensemble", "behaviour_bert", "sequence_rnn", "unsupervised", "rules_only"} <= set(metrics["test"])


def test_models_reload_with_auto_classes_and_match_saved_logits(tiny_checkpoint):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    import seqguard.models  # noqa: F401  (registers the RNN)

    cal = read_calibration(tiny_checkpoint / "calibration.npz")
    assert cal["input_ids"].dtype == np.int64 and cal["features"].dtype == np.float32
    assert set(cal["labels"].tolist()) <= {0, 1} and cal["labels"].sum() > 0
    for name, expected in calibration_logits(cal).items():
        model = AutoModelForSequenceClassification.from_pretrained(tiny_checkpoint / name).eval()
        tok = AutoTokenizer.from_pretrained(tiny_checkpoint / name)
        assert tok.pad_token_id == 0 and tok.cls_token_id == 2
        with torch.inference_mode():
            got = model(**{k: torch.from_numpy(cal[k]) for k in ("input_ids", "attention_mask",
                                                                   "token_type_ids")}).logits.numpy()
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert AutoTokenizer.from_pretrained(tiny_checkpoint / "tokenizer").vocab_size > 100


def test_scorer_reproduces_saved_validation_scores_exactly(tiny_checkpoint):
    cal = read_calibration(tiny_checkpoint / "calibration.npz")
    scorer = Scorer.load(tiny_checkpoint)
    assert scorer.components == ["behaviour_bert", "sequence_rnn", "unsupervised_sequence"]
    dec = scorer.score(calibration_logits(cal), cal["features"])
    np.testing.assert_array_equal(np.array([d.score for d in dec]), cal["score"])
    assert [d.decision for d in dec] == [("allow", "review", "block")[i] for i in cal["decision"]]
    degraded = scorer.score(None, cal["features"])
    np.testing.assert_array_equal(np.array([d.score for d in degraded]), cal["degraded_score"])


def _digest(folder):
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".json", ".yaml", ".npz")
                   and p.name not in ("checkpoint.json", "metrics.json"))
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_training_is_deterministic(tiny_events, tiny_checkpoint, tmp_path):
    again = train_checkpoint(tiny_events, load_train_config(TINY_CONFIG), tmp_path / "again", progress=False,
                             log=lambda *_: None)
    assert _digest(again) == _digest(tiny_checkpoint)
    a = json.loads((again / "checkpoint.json").read_text())
    b = json.loads((tiny_checkpoint / "checkpoint.json").read_text())
    assert a["version"].split("-")[-1] == b["version"].split("-")[-1]


def test_training_without_labels_gives_an_encoder_detector_rules_and_surprise_model(tiny_events, tmp_path):
    out = train_checkpoint(tiny_events.drop(columns=["is_anomaly", "scenario"]), load_train_config(TINY_CONFIG),
                           tmp_path / "unlabeled", progress=False, log=lambda *_: None)
    index = json.loads((out / "checkpoint.json").read_text())
    assert [(m["name"], m["kind"]) for m in index["models"]] == [("unsupervised_sequence", "surprise")]
    assert index["labels_used"] is False
    assert index["pretrained"]["kind"] == "bert_mlm" and (out / index["pretrained"]["path"] / "config.json").is_file()
    scorer = Scorer.load(out)
    assert scorer.components == ["unsupervised_sequence"]
    cal = read_calibration(out / "calibration.npz")
    dec = scorer.score({"unsupervised_sequence": cal["logits__unsupervised_sequence"]}, cal["features"])
    np.testing.assert_array_equal([d.score for d in dec], cal["score"])
    assert all(0.0 <= d.score <= 1.0 for d in dec) and (cal["labels"] == -1).all()


# -- the command ----------------------------------------------------------------------------------------------------


def test_train_command_on_a_foreign_csv_with_a_mapping(tiny_events, tmp_path, capsys):
    ev = tiny_events[tiny_events["user_id"].isin(tiny_events["user_id"].unique()[:400])]
    foreign = pd.DataFrame({
        "customer": ev["user_id"],
        "when_epoch_ms": (ev["ts"] * 1000).round().astype("int64"),
        "action": ev["event_type"].map(lambda e: {"view": "pv", "purchase": "buy"}.get(e, e)),
        "sku": ev["item_id"], "cat": ev["category_id"], "amount": ev["price"], "device": ev["device_id"],
        "ip": ev["ip"], "country": ev["country"], "pay_status": ev["payment_status"], "coupon": ev["coupon_code"],
        "fraud": ev["is_anomaly"].map({True: "yes", False: "no"}), "attack": ev["scenario"],
    })
    data = tmp_path / "shop_export.csv"
    foreign.to_csv(data, index=False, sep=";")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(yaml.safe_dump({
        "name": "shop", "delimiter": ";", "ts_unit": "ms",
        "fields": {"user_id": "customer", "ts": "when_epoch_ms", "event_type": "action", "item_id": "sku",
                   "category_id": "cat", "price": "amount", "device_id": "device", "ip": "ip", "country": "country",
                   "payment_status": "pay_status", "coupon_code": "coupon", "is_anomaly": "fraud",
                   "scenario": "attack"},
        "values": {"event_type": {"pv": "view", "buy": "purchase"}},
    }))
    out = tmp_path / "models"
    code = main(["train", "--data", str(data), "--mapping", str(mapping), "--config", str(TINY_CONFIG), "--out",
                 str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "wrote" in captured.out and "test:" in captured.out
    index = json.loads((out / "checkpoint.json").read_text())
    assert index["labels_used"] and len(index["models"]) == 3  # BERT, GRU and the label-free surprise model


def _tiny_config_with(tmp_path, **changes):
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw.update(changes)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize("case", ["missing_file", "no_rows", "unknown_key", "bad_rules", "too_few_days",
                                  "not_a_checkpoint_folder"])
def test_train_command_errors_are_clear(case, tiny_events, tmp_path, capsys):
    data = tmp_path / "events.csv"
    tiny_events.head(2000).to_csv(data, index=False)
    args = ["train", "--data", str(data), "--config", str(TINY_CONFIG), "--out", str(tmp_path / "m"), "--no-progress"]
    expect = ""
    if case == "missing_file":
        args[2] = str(tmp_path / "nope.csv")
        expect = "does not exist"
    elif case == "no_rows":
        data.write_text("user_id,ts,event_type\n")
        expect = "no usable rows"
    elif case == "unknown_key":
        args[4] = str(_tiny_config_with(tmp_path, bert={"hidden": 16, "layrs": 2}))
        expect = "bert.layrs: unknown key"
    elif case == "bad_rules":
        rules = tmp_path / "rules.yaml"
        rules.write_text("rules:\n  - id: r1\n    outcome: block\n    conditions:\n"
                         "      - {feature: failed_payments, op: '>=', value: 5}\n")
        args[4] = str(_tiny_config_with(tmp_path, rules=str(rules)))
        expect = "rule 'r1': conditions[0].feature: unknown feature 'failed_payments'"
    elif case == "too_few_days":
        tiny_events[tiny_events["ts"] < tiny_events["ts"].min() + 86400].to_csv(data, index=False)
        args[4] = str(_tiny_config_with(tmp_path, split={"mode": "time"}))
        expect = "time split needs at least"
    else:
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "precious.txt").write_text("keep me")
        expect = "refusing to overwrite"
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert expect in err and "Traceback" not in err
    if case == "not_a_checkpoint_folder":
        assert (tmp_path / "m" / "precious.txt").read_text() == "keep me"


# -- masked-token pretraining ---------------------------------------------------------------------------------------


def test_pretraining_masks_through_the_hf_collator_and_lowers_the_loss(tiny_events):
    """The collator masks about mask_prob of the event tokens and never a special one; pretraining on the tiny
    config lowers the masked-token loss on the same masked batch against the untrained model (same seed, same init)."""
    import torch
    from transformers import BertForMaskedLM

    from seqguard.features import MASK_ID, SPECIAL_TOKENS
    from seqguard.train.bert import make_config, mask_batch, mlm_collator, pretrain
    from seqguard.train.loop import setup_torch, tensors

    cfg = load_train_config(TINY_CONFIG)
    setup_torch(cfg.seed, cfg.threads)  # as train_checkpoint does: one thread, no oversubscription on a busy machine
    bert = cfg.bert.model_copy(update={"pretrain_epochs": 3})
    ws = build_windows(tiny_events, cfg.sequence)
    idx = np.arange(len(ws.encoded))
    batch = tensors(ws.encoded, idx[:256])
    ids = batch["input_ids"]
    collator = mlm_collator(cfg.sequence, bert.mask_prob, seed=1)
    inputs, labels = mask_batch(collator, ids)
    special = ids < len(SPECIAL_TOKENS)
    chosen = labels != -100
    assert special.any() and not (chosen & special).any() and (inputs[special] == ids[special]).all()
    assert (labels[chosen] == ids[chosen]).all()
    share = chosen.sum().item() / (~special).sum().item()
    assert abs(share - bert.mask_prob) < 0.03, share
    replaced = inputs[chosen]
    assert 0.7 < (replaced == MASK_ID).float().mean().item() < 0.9  # 80 % [MASK], the rest random or unchanged

    def loss(model) -> float:
        with torch.inference_mode():
            return model(input_ids=inputs, attention_mask=batch["attention_mask"],
                         token_type_ids=batch["token_type_ids"], labels=labels).loss.item()

    torch.manual_seed(cfg.seed)
    untrained = BertForMaskedLM(make_config(cfg.sequence, bert)).eval()
    result = pretrain(ws.encoded, idx, cfg.sequence, bert, cfg.seed)
    assert result.steps > 0 and result.final_loss is not None
    before, after = loss(untrained), loss(result.model)
    assert after < 0.8 * before, (before, after)
