"""Every user-visible string of the web app has a Chinese translation."""

from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

WEB = Path(__file__).resolve().parents[2] / "web"
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]
KEYWORDS = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None}


def _catalogue(locale: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for po in WEB.glob(f"translations/*/{locale}/LC_MESSAGES/messages.po"):
        with po.open("rb") as fh:
            merged |= {m.id: m.string for m in read_po(fh) if m.id}
    return merged


def test_every_message_has_a_chinese_translation():
    found = {
        message: f"{filename}:{lineno}"
        for filename, lineno, message, _comments, _context in extract_from_dir(
            str(WEB), METHODS, keywords=KEYWORDS
        )
        if isinstance(message, str)
    }
    zh = _catalogue("zh_CN")
    missing = {m: where for m, where in found.items() if not zh.get(m)}
    assert not missing, f"untranslated: {missing}"
    assert set(found) <= set(_catalogue("en")) | set(zh)
