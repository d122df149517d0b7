"""docker-compose.yml: valid for `docker-compose config`, and consistent with the settings class."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from team_memory_core.contract import SEARCH_ATTRIBUTES
from team_memory_core.settings import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent
OUR_SERVICES = {"migrate", "worker", "mcp"}
SETTING_VARIABLES = {env_name(field) for field in Settings.model_fields}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose; "
                    "CI installs it)")
    result = subprocess.run(
        [binary, "--project-directory", str(ROOT), "--env-file", str(ROOT / ".env.example"),
         "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def test_services_and_official_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "temporal", "temporal-init", "temporal-ui",
                             *OUR_SERVICES}
    assert services["postgres"]["image"] == "pgvector/pgvector:pg16"
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal-init"]["image"].startswith("temporalio/admin-tools:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    for name in OUR_SERVICES:
        assert Path(services[name]["build"]["context"]).resolve() == ROOT
    commands = {name: services[name]["command"][:2] for name in OUR_SERVICES}
    assert commands == {"migrate": ["team-memory", "migrate"],
                        "worker": ["team-memory", "worker"], "mcp": ["team-memory", "serve"]}
    for name in ("postgres", "temporal", "mcp"):
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"


def test_our_services_use_only_real_settings(compose: dict[str, Any]) -> None:
    for name in OUR_SERVICES:
        env = environment(compose["services"][name])
        unknown = {k for k in env if k not in SETTING_VARIABLES and not k.startswith("OTEL_")}
        assert not unknown, f"{name}: {sorted(unknown)} are not settings"
        for needed in ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEAM_MEMORY_EMBEDDING_DIM"):
            assert env.get(needed), f"{name} lacks {needed}"
    migrate = environment(compose["services"]["migrate"])
    assert migrate["DATABASE_ADMIN_URL"] and migrate["TEAM_MEMORY_APP_DB_PASSWORD"]


def test_settings_parse_from_the_compose_environment(compose: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k in SETTING_VARIABLES
                or k.startswith("TEAM_MEMORY_")]:
        monkeypatch.delenv(key)
    env = environment(compose["services"]["mcp"])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.temporal_target == "temporal:7233"
    assert settings.mcp_host == "0.0.0.0" and settings.mcp_port == 8765
    assert settings.dedupe_policy == "local"  # ANTHROPIC_API_KEY empty in .env.example
    assert "mcp:*" in settings.allowed_hosts


def test_addresses_point_at_the_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    postgres = services["postgres"]["environment"]
    for name in OUR_SERVICES:
        env = environment(services[name])
        url = urlsplit(env["DATABASE_URL"])
        assert (url.hostname, url.port, url.path) == ("postgres", 5432,
                                                      f"/{postgres['POSTGRES_DB']}")
        assert url.username == "team_memory_app"  # the RLS-bound role, never the owner
        host, port = env["TEMPORAL_ADDRESS"].split(":")
        assert host in services and port == "7233"
    admin = urlsplit(environment(services["migrate"])["DATABASE_ADMIN_URL"])
    assert admin.username == postgres["POSTGRES_USER"]
    published = str(services["mcp"]["ports"][0]).removesuffix("/tcp")  # host:port:target
    assert published.rsplit(":", 1)[1] == environment(services["mcp"])["TEAM_MEMORY_MCP_PORT"]


def test_search_attributes_registered_by_the_init_step() -> None:
    script = (ROOT / "deploy" / "temporal-init.sh").read_text()
    registered = set(re.search(r"for name in ([\w ]+); do", script).group(1).split())  # type: ignore[union-attr]
    assert registered == {key.name for key in SEARCH_ATTRIBUTES}


def test_env_example_defines_every_variable_the_file_requires() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", text))
    example = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text()
                   .splitlines() if line and not line.startswith("#"))
    assert required <= {k for k, v in example.items() if v}


def test_image_installs_from_the_lock_file() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY pyproject.toml uv.lock" in dockerfile
    assert "uv sync --frozen --no-dev" in dockerfile


def test_the_web_ui_decodes_through_the_codec_endpoint(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ui = environment(services["temporal-ui"])
    published = str(services["mcp"]["ports"][0]).removesuffix("/tcp").rsplit(":", 1)[0]
    assert ui["TEMPORAL_CODEC_ENDPOINT"] == f"http://{published}/codec"
    assert ui["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"  # the sign-in cookie
    # The MCP server lets that UI's origin call it (CORS): the UI is published on the port the
    # server takes for the UI's.
    ui_port = int(str(services["temporal-ui"]["ports"][0]).split(":")[1])
    mcp_ui_port = environment(services["mcp"]).get("TEAM_MEMORY_TEMPORAL_UI_PORT")
    assert ui_port == int(mcp_ui_port or Settings.model_fields["temporal_ui_port"].default)
