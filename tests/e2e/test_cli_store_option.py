"""The CLI's `--store`: accepted before or after the action, and every bad store URL or folder is one
line on stderr (exit status 2), never a traceback. Incident commands read the same store."""

from __future__ import annotations

import pytest

from voxwatch.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_store_is_accepted_after_the_action_and_before_it(store, store_url, capsys):
    code, out, err = run(capsys, "store", "sql", "--store", store_url, "SELECT 41 + 1 AS answer")
    assert code == 0 and "42" in out, err
    code, out, _ = run(capsys, "store", "--store", store_url, "sql", "SELECT 6 * 7 AS answer", "--json")
    assert code == 0 and '"answer":42' in out
    code, out, _ = run(capsys, "store", "info", "--store", store_url)
    assert code == 0 and "incidents" in out and "incident_events" in out


@pytest.mark.parametrize(("url", "says"), [
    ("chdb:///proc/voxwatch-nope", "cannot hold a store"),
    ("chdb:///etc/hostname", "it is a file, not a folder"),
    ("bogus://x", "the scheme must be"),
    ("chdb://", "needs a folder"),
    ("clickhouse://", "needs a host"),
    ("clickhouse://h:port/db", "the port is not a number"),
    ("chdb:///tmp/x?database=a-b", "not a valid database"),
    ("chdb:///tmp/x?colour=red", "unknown option"),
])
def test_every_bad_store_url_is_one_line(capsys, url, says):
    for argv in (["store", "sql", "--store", url, "SELECT 1"], ["incident", "list", "--store", url]):
        code, _, err = run(capsys, *argv)
        assert code == 2 and says in err, err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_incident_commands_on_an_empty_store_and_an_unknown_id(store, store_url, capsys):
    code, out, _ = run(capsys, "incident", "list", "--store", store_url)
    assert code == 0 and "no incidents" in out
    code, _, err = run(capsys, "incident", "report", "INC-nope", "--store", store_url)
    assert code == 2 and "no incident with id 'INC-nope'" in err
