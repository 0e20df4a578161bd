"""Detectors for the PII redaction policy: a regex finds candidates, a validator
(Luhn, mod-97, digit counts...) confirms them.

Every detector here matches at most 255 characters except `private_key` (a PEM block,
matched up to ~8 KB), and looks at most two characters around a match, so a hold-back of
256 catches every match however the text is split into deltas; the 4096 used with
private keys covers PEM blocks up to 4 KB (a 4096-bit RSA key is ~3.3 KB). A longer
block is still redacted in a non-streaming response, but may leak when streamed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from extproc.policies.matching import Finder, Found, regex_finder


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    kind: str  # what the replacement says: email, phone, credit_card, iban, secret
    finder: Callable[[str], Finder]  # replacement text -> finder


def _simple(
    pattern: re.Pattern[str], check: Callable[[str], bool] | None = None
) -> Callable[[str], Finder]:
    def make(replacement: str) -> Finder:
        if check is None:
            return regex_finder(pattern, lambda m: replacement)
        return regex_finder(pattern, lambda m: replacement if check(m.group()) else None)

    return make


def _trimming(pattern: re.Pattern[str], check: Callable[[str], bool]) -> Callable[[str], Finder]:
    """Like `_simple`, but a candidate that fails `check` is tried again without its
    trailing space-separated groups, longest first: a greedy match can run on into the
    next number or word ("+44 20 7946 0958 415-555-2671", "DE89 ... 3000 THEN")."""

    def make(replacement: str) -> Finder:
        def find(text: str, pos: int) -> Found | None:
            while pos <= len(text):
                m = pattern.search(text, pos)
                if m is None:
                    return None
                candidate = m.group()
                ends = [len(candidate)] + [
                    i for i in range(len(candidate) - 1, 0, -1) if candidate[i] == " "
                ]
                for end in ends:
                    if check(candidate[:end]):
                        return m.start(), m.start() + end, replacement
                pos = m.start() + 1
            return None

        return find

    return make


# -- email -------------------------------------------------------------------------------

EMAIL = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9_%+\-][A-Za-z0-9._%+\-]{0,63}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,6}[A-Za-z]{2,24}"
    r"(?![\w\-]|\.[A-Za-z0-9])"
)


def _email_ok(text: str) -> bool:
    return len(text) <= 254


# -- phone -------------------------------------------------------------------------------

PHONE = re.compile(
    # Not inside a word, an email, or a number ("4.555...", "2024-01-15", "10:30").
    r"(?<![\w+@])(?<!\d[.,\-/:])"
    r"(?:"
    # International: "+44 20 7946 0958", "+14155552671", "+1 (415) 555-2671".
    r"\+\d{1,3}(?:[ .\-]?\(\d{1,4}\))?(?:[ .\-]?\d{1,5}){1,6}"
    # US style: "(415) 555-2671", "415-555-2671", "1 415.555.2671".
    r"|(?:1[ .\-]?)?(?:\(\d{3}\)[ .\-]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}"
    # Starting with 0 (international "0049 30 1234567", national "020 7946 0958"): not
    # in the middle of a run of digit groups ("DE89 3704 0044 0532 ...").
    r"|(?<!\d )(?:00\d{1,3}[ .\-]|\(0\d{1,4}\)[ .\-]?|0\d{1,4}[ .\-])\d{1,4}(?:[ .\-]?\d{1,5}){1,4}"
    r")"
    # Not followed by more of a number ("...4567-89", "...4567.5", "...10:30").
    r"(?![\w@]|[.,\-/:]\d)",
    re.ASCII,
)
_DIGIT = re.compile(r"\d", re.ASCII)
_DATE = re.compile(
    r"(?<!\d)(?:(?:19|20)\d\d([\-/.])[01]?\d\1[0-3]?\d|[0-3]?\d([\-/.])[0-3]?\d\2(?:19|20)?\d\d)"
    r"(?!\d)",
    re.ASCII,
)


def _phone_ok(text: str) -> bool:
    return 10 <= len(_DIGIT.findall(text)) <= 15 and not _DATE.search(text)


# -- credit card -------------------------------------------------------------------------

CARD = re.compile(
    # Not inside a word or a decimal number, nor the rest of an IBAN ("DE89 3704 ...").
    r"(?<![\w\-])(?<!\d[.,])(?<![A-Z]{2}\d\d )"
    r"(?:\d{13,19}"
    r"|\d{4}(?P<s>[ \-])\d{4}(?P=s)\d{4}(?P=s)\d{1,4}(?P<tail>(?P=s)\d{1,3})?"
    r"|\d{4}(?P<a>[ \-])\d{6}(?P=a)\d{4,5})"
    r"(?![\w]|[.,\-]\d)",
    re.ASCII,
)
_YEAR = re.compile(r"(?:19|20)\d\d")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(text: str) -> bool:
    digits = re.sub(r"[ \-]", "", text)
    if not 13 <= len(digits) <= 19 or not luhn_ok(digits):
        return False
    groups = re.split(r"[ \-]", text)
    # "1999 2000 2001 2002" is a list of years, whatever its checksum.
    return len(groups) == 1 or not all(_YEAR.fullmatch(g) for g in groups)


def _card_finder(replacement: str) -> Finder:
    def find(text: str, pos: int) -> Found | None:
        while pos <= len(text):
            m = CARD.search(text, pos)
            if m is None:
                return None
            if _card_ok(m.group()):
                return m.start(), m.end(), replacement
            # "4111 1111 1111 1111 123": a card followed by its CVV.
            if m.group("tail") and _card_ok(text[m.start() : m.start("tail")]):
                return m.start(), m.start("tail"), replacement
            pos = m.start() + 1
        return None

    return find


# -- IBAN --------------------------------------------------------------------------------

IBAN = re.compile(r"(?<![\w])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![\w])")


def iban_ok(compact: str) -> bool:
    if not 15 <= len(compact) <= 34 or not compact[:2].isalpha() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


# -- secrets -----------------------------------------------------------------------------

ANTHROPIC_KEY = re.compile(r"(?<![\w\-])sk-ant-[A-Za-z0-9_\-]{20,200}(?![\w\-])")
OPENAI_KEY = re.compile(
    r"(?<![\w\-])sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,230}|[A-Za-z0-9]{32,64})"
    r"(?![\w\-])"
)
AWS_ACCESS_KEY = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")
GITHUB_TOKEN = re.compile(r"(?<!\w)(?:gh[pousr]_[A-Za-z0-9]{36,240}|github_pat_\w{22,230})(?!\w)")
SLACK_TOKEN = re.compile(r"(?<![\w\-])xox[baprs]-[A-Za-z0-9\-]{10,200}(?![\w\-])")
PRIVATE_KEY = re.compile(
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[\s\S]{1,8000}?"
    r"-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----"
)


def _random_looking(text: str) -> bool:
    """Real keys mix letters and digits; "sk-" prose like "sk-learn-..." does not."""
    body = text.split("-", 1)[1]
    return any(c.isdigit() for c in body) and any(c.isalpha() for c in body)


# In tie-break order: at the same start, the first listed wins.
DETECTORS: tuple[Detector, ...] = (
    Detector("private_key", "secret", _simple(PRIVATE_KEY)),
    Detector("anthropic_key", "secret", _simple(ANTHROPIC_KEY, _random_looking)),
    Detector("openai_key", "secret", _simple(OPENAI_KEY, _random_looking)),
    Detector("aws_access_key", "secret", _simple(AWS_ACCESS_KEY)),
    Detector("github_token", "secret", _simple(GITHUB_TOKEN)),
    Detector("slack_token", "secret", _simple(SLACK_TOKEN)),
    Detector("credit_card", "credit_card", _card_finder),
    Detector("iban", "iban", _trimming(IBAN, lambda c: iban_ok(c.replace(" ", "")))),
    Detector("email", "email", _simple(EMAIL, _email_ok)),
    Detector("phone", "phone", _trimming(PHONE, _phone_ok)),
)
DETECTOR_NAMES: tuple[str, ...] = tuple(d.name for d in DETECTORS)
SECRET_DETECTORS: tuple[str, ...] = tuple(d.name for d in DETECTORS if d.kind == "secret")
