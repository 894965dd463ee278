"""The store DSN check of controlplane/config.py reads URLs as SQLAlchemy does without
importing it: the two agree on valid and broken URLs."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from controlplane.config import sqlalchemy_url_problem

URLS = [
    "sqlite:///controlplane.db", "sqlite://", "sqlite:////tmp/x.db",
    "postgresql://cp:secret@db:5432/cp", "postgresql+psycopg://cp@db/cp?sslmode=require",
    "postgresql://cp:pa%40ss@[::1]:5432/cp", "postgresql://db:abc/cp", "postgresql://db:/cp",
    "postgresql://db:5432x/cp", "not a url", "://db/cp", "postgres ql://db/cp",
    "mysql+pymysql://u:p@h:3306/d?charset=utf8", "postgresql://@db/cp", "",
]


def sqlalchemy_refuses(url: str) -> bool:
    try:
        make_url(url)
    except (ArgumentError, ValueError):
        return True
    return False


@pytest.mark.parametrize("url", URLS)
def test_light_check_agrees_with_sqlalchemy(url: str) -> None:
    assert sqlalchemy_url_problem(url) is sqlalchemy_refuses(url)


def test_the_sample_holds_both_verdicts() -> None:
    assert {sqlalchemy_refuses(u) for u in URLS} == {True, False}
