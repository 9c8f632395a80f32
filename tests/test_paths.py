"""Default database locations: per user, and per broker account, never the working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dtms
from dtms.paths import server_slug


@pytest.fixture(autouse=True)
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg"


def test_the_default_is_in_the_user_data_directory(data_home: Path) -> None:
    assert dtms.default_db_path() == data_home / "dtms" / "dtms.db"


def test_each_account_has_its_own_database(data_home: Path) -> None:
    path = dtms.default_db_path(50123456, "MetaQuotes-Demo")
    assert path == data_home / "dtms" / "accounts" / "metaquotes-demo-50123456" / "dtms.db"
    assert dtms.default_db_path(50123456, "metaquotes-demo ") == path  # case and blanks do not split it
    assert dtms.default_db_path(50123457, "MetaQuotes-Demo") != path


@pytest.mark.parametrize(
    ("server", "slug"),
    [
        ("ICMarketsSC-Live12", "icmarketssc-live12"),
        ("Broker Ltd. / Server #3", "broker-ltd.-server-3"),
        ("../../etc", "etc"),
        ("..", None),
        ("", None),
        ("Sérvér", "s-rv-r"),
    ],
)
def test_server_names_become_safe_directory_names(server: str, slug: str | None) -> None:
    if slug is None:
        with pytest.raises(dtms.InvalidArgumentError):
            server_slug(server)
    else:
        assert server_slug(server) == slug


@pytest.mark.parametrize(("login", "server"), [(1, None), (None, "X"), (0, "X"), (True, "X"), ("12", "X")])
def test_bad_account_arguments_are_refused(login: object, server: str | None) -> None:
    with pytest.raises(dtms.InvalidArgumentError):
        dtms.default_db_path(login, server)  # type: ignore[arg-type]


def test_processes_in_two_working_directories_agree(tmp_path: Path, data_home: Path) -> None:
    """Two real processes started from two folders get the same default path (and the same account one)."""
    code = "import dtms; print(dtms.default_db_path()); print(dtms.default_db_path(7, 'Demo'))"
    outs = []
    for folder in ("bot-a", "bot-b"):
        (tmp_path / folder).mkdir()
        env = {**os.environ, "XDG_DATA_HOME": str(data_home)}
        run = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path / folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outs.append(run.stdout)
    assert outs[0] == outs[1]
    assert outs[0].splitlines() == [
        str(data_home / "dtms" / "dtms.db"),
        str(data_home / "dtms" / "accounts" / "demo-7" / "dtms.db"),
    ]
