"""``batchdeck serve --metrics``: a real serve, scraped over HTTP, its text parsed by
prometheus_client's parser (and checked by ``promtool check metrics`` where installed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.proc_support import Deck, Serve, deck_in, wait_recipe
from tests.waiting import until_sync as wait_for


@pytest.fixture
def deck(tmp_path: Path, deck_db: str | None) -> Iterator[Deck]:
    with deck_in(tmp_path, deck_db) as d:
        yield d


def metrics_url(serve: Serve) -> str:
    def logged() -> str | None:
        m = re.search(r"metrics on (http://\S+/metrics)", serve.errors())
        return m.group(1) if m else None

    return wait_for(logged, "serve to log its metrics address")


def scrape(url: str) -> tuple[str, dict[str, dict[tuple, float]]]:
    """The text, and each sample by name -> {sorted labels: value}."""
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return text, samples


FAMILIES = {
    "batchdeck_up": "gauge",
    "batchdeck_build_info": "gauge",  # an info metric, in the text format
    "batchdeck_jobs": "gauge",
    "batchdeck_tasks": "gauge",
    "batchdeck_tasks_ended": "counter",
    "batchdeck_cancel_latency_seconds": "histogram",
    "batchdeck_abort_latency_seconds": "histogram",
    "batchdeck_stuck_jobs": "gauge",
    "batchdeck_server_slots": "gauge",
    "batchdeck_server_slots_in_use": "gauge",
    "batchdeck_server_lease_age_seconds": "gauge",
    "batchdeck_tick_duration_seconds": "histogram",
    "batchdeck_database_write_errors": "counter",
}


def check_text(text: str) -> None:
    """Every family, of its type; and ``promtool check metrics`` passes, where installed."""
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families == FAMILIES
    promtool = shutil.which("promtool")
    if promtool is not None:
        proc = subprocess.run(
            [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


SLOW = (
    'name = "slow"\n[[task]]\nname = "run"\naction = "shell"\n'
    'command = ["sleep", "60"]\non_cancel = "finish"\n'
)


@pytest.mark.both_databases
def test_metrics_show_every_figure_of_a_serving_engine(deck: Deck, tmp_path: Path) -> None:
    deck.ok("settings", "stuck_seconds", "0.1")
    ended = deck.submit(deck.recipe("quick", wait_recipe("quick", 0)))
    canceled = deck.submit(deck.recipe("long", wait_recipe("long", 60)))
    aborted = deck.submit(deck.recipe("slow", SLOW))
    serve = deck.serve("--server", "batch-01:2", "--server", "batch-02:2", "--metrics", "0")
    url = metrics_url(serve)
    assert url.startswith("http://127.0.0.1:")  # localhost unless told
    deck.wait_job(ended, "ended")
    deck.wait_task(canceled, "sleep", "executing")
    deck.wait_task(aborted, "run", "executing")
    deck.ok("cancel", str(canceled))
    deck.wait_job(canceled, "canceled")
    deck.ok("cancel", str(aborted))

    def stuck() -> dict | None:
        _text, samples = scrape(url)
        return samples if samples["batchdeck_stuck_jobs"][()] == 1 else None

    samples = wait_for(stuck, "the stuck job in the metrics")
    server = (("server", "batch-01"),)
    assert samples["batchdeck_server_slots"][server] == 2
    assert set(samples["batchdeck_server_slots_in_use"]) == {server, (("server", "batch-02"),)}
    assert sum(samples["batchdeck_server_slots_in_use"].values()) == 1  # the shell task
    assert 0 <= samples["batchdeck_server_lease_age_seconds"][server] < 60
    deck.ok("abort", str(aborted), "--yes")
    deck.wait_job(aborted, "canceled")

    def settled() -> dict | None:
        _text, samples = scrape(url)
        aborted = samples["batchdeck_tasks_ended_total"][(("status", "aborted"),)]
        return samples if aborted == 1 and samples["batchdeck_stuck_jobs"][()] == 0 else None

    samples = wait_for(settled, "the abort in the metrics")
    ended_total = samples["batchdeck_tasks_ended_total"]
    assert ended_total[(("status", "ended"),)] == 1
    assert ended_total[(("status", "canceled"),)] == 1
    assert ended_total[(("status", "error"),)] == 0
    assert samples["batchdeck_cancel_latency_seconds_count"][()] == 2  # both jobs Canceled
    assert samples["batchdeck_abort_latency_seconds_count"][()] == 1
    assert samples["batchdeck_abort_latency_seconds_bucket"][(("le", "+Inf"),)] == 1
    assert samples["batchdeck_tick_duration_seconds_count"][()] > 0
    assert samples["batchdeck_database_write_errors_total"][()] == 0
    assert samples["batchdeck_up"][()] == 1
    (labels,) = samples["batchdeck_build_info"]
    assert dict(labels)["version"]

    def counted() -> dict | None:
        _text, samples = scrape(url)  # the status counts are read at most every 5 s
        return samples if samples["batchdeck_jobs"].get((("status", "canceled"),)) == 2 else None

    samples = wait_for(counted, "the job counts to catch up")
    assert samples["batchdeck_jobs"][(("status", "ended"),)] == 1
    assert samples["batchdeck_tasks"][(("status", "aborted"),)] == 1
    assert samples["batchdeck_tasks"][(("status", "ended"),)] == 1
    assert samples["batchdeck_jobs"][(("status", "withhold"),)] == 0  # every status, 0 too
    check_text(scrape(url)[0])
    assert serve.stop() == 0, serve.errors()


def test_metrics_during_the_demo(deck: Deck, tmp_path: Path) -> None:
    """``serve --metrics`` on the demo's database (the console attaches to it): every
    family, of its type, with the demo's servers and jobs."""
    from tui.demo import SERVERS, build_demo

    db = build_demo(tmp_path / "demo")
    deck.db = Path(db)
    deck.env["BATCHDECK_DB"] = db
    servers = [f"{name}:{slots}" for name, slots in SERVERS.items()]
    serve = deck.serve(*(a for s in servers for a in ("--server", s)), "--metrics", "0")
    url = metrics_url(serve)

    def running() -> tuple[str, dict] | None:
        text, samples = scrape(url)
        return (text, samples) if samples["batchdeck_jobs"][(("status", "executing"),)] else None

    text, samples = wait_for(running, "the demo's jobs running in the metrics")
    check_text(text)
    for name, slots in SERVERS.items():
        assert samples["batchdeck_server_slots"][(("server", name),)] == slots
    assert samples["batchdeck_up"][()] == 1
    assert serve.stop() == 0, serve.errors()


def test_metrics_are_off_by_default_and_refuse_a_bad_address(deck: Deck) -> None:
    deck.ok("settings", "lease_seconds", "5")  # creates the database (a read would not)
    serve = deck.serve()
    assert "metrics on" not in serve.errors()
    assert serve.stop() == 0
    res = deck.refused("serve", "--metrics", "localhost:http", code=2)
    assert "HOST:PORT" in res.err and len(res.err_lines) == 1, str(res)


def test_metrics_port_in_use_is_refused_before_serving(deck: Deck) -> None:
    import socket

    deck.ok("settings", "lease_seconds", "5")  # creates the database (a read would not)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = deck.refused("serve", "--metrics", f"127.0.0.1:{port}")
    assert f"--metrics 127.0.0.1:{port}" in res.err and len(res.err_lines) == 1, str(res)
    assert deck.sql("SELECT count(*) FROM server WHERE lease_owner IS NOT NULL") == [(0,)]


def test_readme_alert_rules_pass_promtool(tmp_path: Path) -> None:
    """The three example alerts (stuck jobs, engine down, database write errors) are
    valid rules naming metrics the engine serves."""
    readme = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    block = re.search(r"```yaml\n(groups:.*?)```", readme, re.S)
    assert block is not None
    rules = block.group(1)
    for name in ("batchdeck_stuck_jobs", "batchdeck_up", "batchdeck_database_write_errors_total"):
        assert name in rules
    assert rules.count("- alert:") == 3
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    path = tmp_path / "rules.yml"
    path.write_text(rules)
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "SUCCESS: 3 rules found" in proc.stdout, (
        proc.stdout + proc.stderr
    )
