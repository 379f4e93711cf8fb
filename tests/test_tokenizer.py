import numpy as np
from transformers import AutoTokenizer

from seqguard.config import SequenceConfig
from seqguard.features import CLS_ID, SEP_ID, TokenSpace, encode_window, pad_batch
from seqguard.io import events_to_frame
from seqguard.sequences import columns_from_frame, sort_for_sequences
from seqguard.tokenizer import build_tokenizer, ids_to_text, tokenizer_hash

T0 = 1791187200.0


def _window(cfg):
    rows = [
        {"user_id": "u", "ts": T0, "event_type": "login", "device_id": "d1", "country": "DE"},
        {"user_id": "u", "ts": T0 + 5, "event_type": "view", "item_id": "i1", "category_id": "c1", "price": 30.0},
        {"user_id": "u", "ts": T0 + 50, "event_type": "add_to_cart", "item_id": "i1", "price": 30.0},
        {"user_id": "u", "ts": T0 + 4000, "event_type": "payment_attempt", "price": 30.0, "payment_status": "failed"},
        {"user_id": "u", "ts": T0 + 4100, "event_type": "login", "device_id": "d2", "country": "BR"},
    ]
    return columns_from_frame(sort_for_sequences(events_to_frame(rows), cfg))


def test_saved_tokenizer_reloads_with_autotokenizer_and_matches_encoding(tmp_path):
    cfg = SequenceConfig()
    enc = encode_window(_window(cfg), cfg)
    tok = build_tokenizer(cfg)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = ids_to_text(enc.input_ids, cfg)
    out = again(text)
    assert out["input_ids"] == enc.input_ids.tolist()
    assert again.convert_ids_to_tokens([CLS_ID, SEP_ID]) == ["[CLS]", "[SEP]"]
    assert len(again) == TokenSpace.of(cfg).vocab_size
    assert "payment_failed:p2:c0" in text  # a failed payment is its own kind; 30.0 falls in the second price bucket
    assert "f1010" in text  # the second login: new device and new country (no ip given)
    assert tokenizer_hash(tmp_path) == tokenizer_hash(tmp_path)


def test_tokenizer_is_deterministic(tmp_path):
    cfg = SequenceConfig()
    build_tokenizer(cfg).save_pretrained(tmp_path / "a")
    build_tokenizer(cfg).save_pretrained(tmp_path / "b")
    assert tokenizer_hash(tmp_path / "a") == tokenizer_hash(tmp_path / "b")


def test_dynamic_padding():
    cfg = SequenceConfig()
    short = encode_window(_window(cfg).slice(0, 1), cfg)
    full = encode_window(_window(cfg), cfg)
    batch = pad_batch([short, full])
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"].sum(axis=1).tolist() == [4, 12]
    assert np.all(batch["input_ids"][0, 4:] == 0)
