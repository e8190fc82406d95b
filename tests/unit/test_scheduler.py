"""`revstats.scheduler`: the `--scheduler` spec (parsing, errors) and its context manager."""

from __future__ import annotations

import dask
import dask.array as da
import pytest

from revstats.scheduler import default_threads, parse_scheduler, use_scheduler


@pytest.mark.parametrize(("spec", "parsed"), [
    ("threads", ("threads", None)), ("processes", ("processes", None)),
    ("synchronous", ("synchronous", None)), ("sync", ("synchronous", None)),
    (" Threads ", ("threads", None)), ("local:1", ("local", 1)), ("threads:3", ("threads", 3)), ("local:12", ("local", 12)),
    ("tcp://10.0.0.1:8786", ("address", "tcp://10.0.0.1:8786")),
    ("tls://sched.example.org:8786", ("address", "tls://sched.example.org:8786")),
])
def test_parse_scheduler(spec, parsed):
    assert parse_scheduler(spec) == parsed


def test_parse_scheduler_errors():
    with pytest.raises(ValueError, match="local:N with N >= 1"):
        parse_scheduler("local:0")
    with pytest.raises(ValueError, match="`scheduler` must be .*'local:N'"):
        parse_scheduler("cluster")
    with pytest.raises(ValueError, match="`scheduler` must be"):
        parse_scheduler("tcp://")
    with pytest.raises(ValueError, match="`scheduler` must be"):
        parse_scheduler("local:two")
    with pytest.raises(ValueError, match="threads:N with N >= 1"):
        parse_scheduler("threads:0")
    with pytest.raises(TypeError, match="`scheduler` must be a string, got int"):
        parse_scheduler(3)


@pytest.mark.parametrize("spec", ["threads", "synchronous", "sync"])
def test_local_schedulers_are_set_and_restored(spec):
    before = dask.config.get("scheduler", None)
    with use_scheduler(spec) as desc:
        assert dask.config.get("scheduler") == parse_scheduler(spec)[0] == desc
        assert int(da.ones(10, chunks=3).sum().compute()) == 10
    assert dask.config.get("scheduler", None) == before


def test_thread_count_is_set_and_restored():
    with use_scheduler("threads:3"):
        assert dask.config.get("num_workers") == 3
    with use_scheduler("threads"):
        assert dask.config.get("num_workers") == default_threads() >= 4
    assert dask.config.get("num_workers", None) is None


def test_unreachable_address_says_how_to_start_a_scheduler():
    with pytest.raises(ValueError, match="cannot reach the dask scheduler at tcp://127.0.0.1:9.*dask scheduler"):
        with use_scheduler("tcp://127.0.0.1:9", connect_timeout="1s"):
            pass  # pragma: no cover


def test_bad_spec_raises_before_entering():
    with pytest.raises(ValueError, match="`scheduler` must be"):
        with use_scheduler("gpu"):
            pass  # pragma: no cover
