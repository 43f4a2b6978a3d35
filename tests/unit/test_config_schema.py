"""The config file is a typed schema (issue 17 pt 7, issue 14 pt 4): a misspelled table or key, or a value
of the wrong type, is refused at start naming the file, the key and a did-you-mean; every example the
docs show is valid; `[modes] minimal_allowed` reaches the gate."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from console.config import ConfigError, load_config
from console.config_schema import SCHEMA

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    ("[schedular]\nweekly_cycle = 'fri 16:00'\n", "unknown key 'schedular' (did you mean 'scheduler'?)"),
    ("[scheduler]\nweekly_cyle = 'fri 16:00'\n", "[scheduler] has unknown key 'weekly_cyle' (did you mean 'weekly_cycle'?)"),
    ("[serve]\nread_rat = 5\n", "[serve] has unknown key 'read_rat' (did you mean 'read_rate'?)"),
    ("[serve]\nport = 4007\n", "[serve] has unknown key 'port'; the keys are max_body_mib, read_rate"),
    ("databse_url = 'x.db'\n", "unknown key 'databse_url' (did you mean 'database_url'?)"),
    ("[scheduler]\nretention_days = '90'\n", "[scheduler] retention_days = '90': expected a whole number"),
    ("[serve]\nread_rate = true\n", "[serve] read_rate = True: expected a number"),
    ("[agents]\nrequire_lease = 'yes'\n", "[agents] require_lease = 'yes': expected true or false"),
    ("[modes]\nminimal_allowed = 'read'\n", "[modes] minimal_allowed = 'read': expected a list of strings"),
    ("[modes]\nminimal_allowed = ['read', 3]\n", "expected a list of strings"),
    ("scheduler = 5\n", "[scheduler] must be a table, not int"),
    ("database_url = 5\n", "database_url = 5: expected a string"),
])
def test_a_mistake_is_refused_naming_the_file_and_the_key(tmp_path, text, message):
    path = _config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_a_policy_table_takes_any_name_and_its_loader_judges_its_keys(tmp_path):
    cfg = load_config(_config(tmp_path, "[policies.nightly_restarts]\ncommand_types = ['restart_service']\n"
                                        "max_per_day = 2\n"))
    assert cfg.section("policies")["nightly_restarts"]["max_per_day"] == 2


def test_every_toml_example_in_the_docs_is_valid(tmp_path):
    blocks = []
    for doc in sorted((ROOT / "docs").glob("*.md")):
        for block in re.findall(r"```toml\n(.*?)```", doc.read_text(), flags=re.S):
            blocks.append((doc.name, block))
    assert blocks, "the docs show no config example"
    for name, block in blocks:
        text = "\n".join(line.strip() for line in block.splitlines())  # examples indented in lists
        load_config(_config(tmp_path, text))  # raises naming the key if a doc shows a key govcon refuses
        assert tomllib.loads(text) is not None, name


def test_every_table_of_the_schema_is_read_somewhere():
    """A key in the schema that nothing reads would be accepted and ignored: the very thing refused here."""
    sources = "\n".join(p.read_text() for layer in ("console", "engine") for p in (ROOT / layer).glob("*.py")
                        if p.name != "config_schema.py")
    for table, keys in SCHEMA.items():
        if table:
            assert f'"{table}"' in sources, f"[{table}] is in the schema but no module reads it"
        for key in keys:
            assert f'"{key}"' in sources, f"{table or 'top level'} {key!r} is in the schema but nothing reads it"


def test_the_cli_refuses_a_misspelled_key_at_start_without_touching_the_store(tmp_path):
    path = _config(tmp_path, "[scheduler]\nweekly_cyle = 'fri 16:00'\n")
    store = tmp_path / "store.db"
    env = {"GOVCON_CONFIG": str(path), "GOVCON_DATABASE_URL": str(store), "PATH": "/usr/bin:/bin",
           "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "console", "status"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result
    assert f"{path}: [scheduler] has unknown key 'weekly_cyle' (did you mean 'weekly_cycle'?)" in result.stderr
    assert "Traceback" not in result.stderr and not store.exists()



def test_minimal_allowed_from_the_config_decides_minimal_mode(tmp_path, clock):
    """With ``[modes] minimal_allowed = ["restart_service"]`` a restart acts in minimal mode and a cache
    clear (on the default list) needs approval: the config's list, not the default, is judged."""
    from console.config import build_governance
    from storage.store import Store
    from tests.integration.test_agent_leases import at_l4

    cfg = load_config(_config(tmp_path, "[modes]\nminimal_allowed = ['restart_service']\n"))
    gov = at_l4(build_governance(Store(str(tmp_path / "store.db")), cfg, clock))
    try:
        from tests.conftest import OPERATOR
        gov.modes.set(OPERATOR, "minimal", "provider incident")
        kept = gov.gate.decide("restart_service", action_class="restart_service")
        held = gov.gate.decide("rotate_logs", action_class="clear_cache")
        assert kept.decision == "allow", kept
        assert held.decision == "needs_approval" and "restart_service" in held.reason, held
    finally:
        gov.close()
