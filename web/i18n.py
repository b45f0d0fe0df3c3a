"""Translations: gettext catalogues read straight from the .po files (no compile step to forget).

Each area of the app keeps its own catalogue in `web/translations/<area>/<locale>/LC_MESSAGES/
messages.po`; all are merged. Message ids are English; the default locale is zh_CN."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

from babel import support
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, request, session
from flask_babel import Babel, Domain
from flask_login import current_user

TRANSLATIONS = Path(__file__).with_name("translations")
LOCALES = ("zh_CN", "en")
DEFAULT_LOCALE = "zh_CN"


@cache
def _catalogue(locale: str) -> support.Translations:
    merged = support.Translations()
    for po in sorted(TRANSLATIONS.glob(f"*/{locale}/LC_MESSAGES/messages.po")):
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=locale)
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        merged.merge(support.Translations(fp=buf))
    return merged


class PoDomain(Domain):  # type: ignore[misc]
    def get_translations(self) -> support.Translations:
        from flask_babel import get_locale

        locale = str(get_locale() or DEFAULT_LOCALE)
        return _catalogue(locale if locale in LOCALES else DEFAULT_LOCALE)


def select_locale() -> str:
    if request.args.get("lang") in LOCALES:
        return str(request.args["lang"])
    if session.get("lang") in LOCALES:
        return str(session["lang"])
    if getattr(current_user, "is_authenticated", False):
        return str(current_user.account.locale)
    return request.accept_languages.best_match(LOCALES) or DEFAULT_LOCALE


class PoBabel(Babel):  # type: ignore[misc]
    _domain = PoDomain()

    @property
    def domain_instance(self) -> PoDomain:
        return self._domain


def init_app(app: Flask) -> None:
    PoBabel().init_app(
        app,
        default_locale=DEFAULT_LOCALE,
        default_timezone="Asia/Shanghai",
        locale_selector=select_locale,
    )
