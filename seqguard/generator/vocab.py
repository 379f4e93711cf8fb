"""Vocabularies, small on purpose: what matters is how often users repeat themselves, not linguistic variety.

Countries and IP ranges, the shop's hour-of-day rhythm, search and review texts, coupon codes, event-type codes.
"""

from __future__ import annotations

import numpy as np

from seqguard.events import EVENT_TYPES
from seqguard.generator.config import LABELS

# Home countries of shoppers (weights) and countries that only appear as attacker / traveller origins.
HOME_COUNTRIES = ("CN", "HK", "TW", "SG", "MY", "US", "JP", "KR", "TH", "VN", "ID", "AU")
HOME_WEIGHTS = np.array([62, 5, 5, 5, 4, 4, 3, 3, 3, 2, 2, 2], dtype=float)
OTHER_COUNTRIES = ("GB", "DE", "NL", "RU", "BR", "NG", "IN", "FR", "CA", "UA", "RO", "PH")
COUNTRIES = HOME_COUNTRIES + OTHER_COUNTRIES
HOSTING_COUNTRIES = ("US", "SG", "DE", "NL", "HK")
# Plausible first octets; residential per country and a few hosting / datacenter ranges.
_IP_FIRST_OCTETS: dict[str, tuple[int, ...]] = {
    "CN": (36, 58, 60, 101, 112, 113, 117, 120, 183, 223), "HK": (42, 116, 219), "TW": (1, 36, 111, 114),
    "SG": (116, 175, 182), "MY": (14, 115, 175), "US": (24, 50, 71, 73, 98, 174), "JP": (110, 126, 153),
    "KR": (121, 175, 211), "TH": (49, 110, 171), "VN": (14, 27, 113), "ID": (36, 114, 180), "AU": (1, 49, 101),
    "GB": (2, 81, 86), "DE": (79, 84, 91), "NL": (77, 83, 145), "RU": (5, 46, 95), "BR": (177, 179, 189),
    "NG": (41, 102, 197), "IN": (49, 106, 117), "FR": (2, 78, 90), "CA": (24, 70, 142), "UA": (37, 46, 93),
    "RO": (5, 79, 86), "PH": (49, 112, 124),
}
_HOSTING_OCTETS = (34, 35, 45, 104, 138, 159, 167, 185, 198)

# Relative traffic by hour of day in shop time (UTC+8): quiet night, morning ramp, evening peak around 21h.
HOUR_WEIGHTS = np.array(
    [2.6, 1.1, 0.5, 0.3, 0.5, 0.75, 1.6, 2.6, 3.3, 4.0, 4.5, 4.6,
     4.1, 5.0, 5.0, 5.4, 5.3, 4.7, 5.0, 6.5, 7.9, 9.0, 7.9, 5.6]
)

_SEARCH_TERMS = (
    "wireless earbuds", "phone case", "running shoes", "winter jacket", "usb c cable", "face cream", "lipstick",
    "rice cooker", "coffee beans", "yoga mat", "laptop stand", "mechanical keyboard", "baby formula", "cat food",
    "dog toy", "led desk lamp", "water bottle", "backpack", "sunglasses", "smart watch", "power bank", "hoodie",
    "jeans", "dress", "sneakers", "bluetooth speaker", "air fryer", "vacuum cleaner", "bed sheets", "towel set",
    "shampoo", "sunscreen", "protein powder", "green tea", "snacks", "notebook", "gel pen", "lego", "puzzle",
    "phone holder", "screen protector", "hair dryer", "electric toothbrush", "umbrella", "socks", "gift box",
)
_SEARCH_MODIFIERS = ("", "", "", " cheap", " women", " men", " 2026", " sale", " original", " large", " black")
_REVIEW_OPEN = ("Good quality", "Arrived quickly", "As described", "Okay overall", "Pretty good", "Not bad",
                "Exactly what I needed", "Decent for the price", "A bit smaller than expected", "Nice")
_REVIEW_DETAIL = ("the material feels solid", "packaging was fine", "color matches the photos",
                  "works as expected so far", "delivery took four days", "size runs a little small",
                  "my kid loves it", "second time buying", "battery lasts long", "smell is mild",
                  "stitching could be better", "seller answered quickly", "fits well", "easy to set up",
                  "a little noisy")
_REVIEW_CLOSE = (".", ", would buy again.", ", recommended.", ", three stars.", ", four stars.", ", five stars.",
                 ", thanks!", ".")
# Review spam reuses a handful of texts: promotion of targets or defamation of competitors.
_SPAM_REVIEWS = (
    "Great product!!! Highly recommend, 5 stars!!!",
    "Best seller ever, 5 stars, fast shipping, recommend!!",
    "Amazing quality amazing price, buy now!!!",
    "Perfect perfect perfect. 5 stars.",
    "Very good very good, will buy again!!!",
    "Excellent!!! Everyone should buy this!!!",
    "Terrible, fake item, do not buy.",
    "Worst seller, broken on arrival, avoid!!!",
    "Scam. Do not buy from this shop.",
    "Five stars!!! Super fast delivery, great seller!!!",
)
_BRUSHING_REVIEWS = ("Good", "Good product, fast delivery", "Very satisfied", "Nice, 5 stars", "Received, good",
                     "Quality is good, recommend")
PUBLIC_COUPONS = ("WELCOME10", "AUTUMN15", "FREESHIP", "VIP20", "FLASH5")
ABUSED_COUPONS = ("WELCOME10", "NEWUSER20", "FIRSTORDER", "STAFF50", "APP-LAUNCH-30")


def _text_tables() -> tuple[np.ndarray, dict[str, tuple[int, int]]]:
    """All text values as one object table, and the [lo, hi) code range of each kind."""
    searches = [t + m for t in _SEARCH_TERMS for m in dict.fromkeys(_SEARCH_MODIFIERS)]
    reviews = [f"{o}, {d}{c}" for o in _REVIEW_OPEN for d in _REVIEW_DETAIL for c in dict.fromkeys(_REVIEW_CLOSE)]
    kinds = {"search": searches, "review": reviews, "spam": list(_SPAM_REVIEWS), "brushing": list(_BRUSHING_REVIEWS)}
    table: list[str] = []
    ranges: dict[str, tuple[int, int]] = {}
    for kind, values in kinds.items():
        ranges[kind] = (len(table), len(table) + len(values))
        table.extend(values)
    return np.array(table, dtype=object), ranges


TEXTS, TEXT_RANGES = _text_tables()
COUPONS: tuple[str, ...] = tuple(dict.fromkeys(PUBLIC_COUPONS + ABUSED_COUPONS))
ABUSED_COUPONS_IDX = np.array([COUPONS.index(c) for c in ABUSED_COUPONS])
# Throwaway accounts (brushing, coupon rings) have little life of their own besides the abuse.
THROWAWAY = np.array([name in ("brushing", "coupon_abuse") for name in LABELS])
ET = {name: i for i, name in enumerate(EVENT_TYPES)}
PRICED_TYPES = np.array([ET[t] for t in ("view", "add_to_cart", "remove_from_cart", "favorite", "purchase", "refund")])

