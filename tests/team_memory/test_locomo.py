"""`team-memory eval locomo` on a tiny synthetic LoCoMo-format file written here."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from team_memory import locomo as evaluation
from tests.conftest import Services

SESSIONS = {
    1: ("2:15 pm on 3 March, 2023", [
        ("Ana", "I finally adopted a dog, her name is Biscuit!", None),
        ("Ben", "Congrats! What breed is she?", None),
        ("Ana", "A beagle mix from the shelter on Elm street.", "a photo of a small dog"),
    ]),
    2: ("10:00 am on 20 April, 2023", [
        ("Ben", "I started learning the cello last week.", None),
        ("Ana", "That's a beautiful instrument. Who teaches you?", None),
        ("Ben", "A retired orchestra player, Mrs. Olsen.", None),
    ]),
}


def synthetic_locomo() -> list[dict[str, Any]]:
    conversation: dict[str, Any] = {"speaker_a": "Ana", "speaker_b": "Ben"}
    for number, (date, turns) in SESSIONS.items():
        conversation[f"session_{number}_date_time"] = date
        conversation[f"session_{number}"] = [
            {"speaker": s, "dia_id": f"D{number}:{i + 1}", "text": t,
             **({"blip_caption": c} if c else {})}
            for i, (s, t, c) in enumerate(turns)
        ]
    qa = [
        {"question": "What is the name of Ana's dog?", "answer": "Biscuit",
         "evidence": ["D1:1"], "category": 1},
        {"question": "Who teaches Ben the cello?", "answer": "Mrs. Olsen",
         "evidence": ["D2:3", "D9:9"], "category": 4},
        {"question": "Where did Ana get the dog?", "evidence": ["D1:3"], "category": 2},
        {"question": "An adversarial one", "evidence": ["D1:2"], "category": 5},
        {"question": "No evidence at all", "evidence": ["bogus"], "category": 1},
    ]
    return [{"sample_id": "syn-1", "conversation": conversation, "qa": qa}]


def test_loader_builds_turns_dates_and_questions(tmp_path: Path) -> None:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(synthetic_locomo()))
    [conversation] = evaluation.load(path)
    assert conversation.project == "locomo-syn-1"
    assert [t.dia_id for t in conversation.turns] == ["D1:1", "D1:2", "D1:3", "D2:1", "D2:2",
                                                      "D2:3"]
    assert conversation.turns[2].content == ("Ana: A beagle mix from the shelter on Elm "
                                             "street. [shared image: a photo of a small dog]")
    assert conversation.turns[3].occurred_at == datetime(2023, 4, 20, 10, 0, tzinfo=UTC)
    assert [(q.text, set(q.evidence)) for q in conversation.questions] == [
        ("What is the name of Ana's dog?", {"D1:1"}),
        ("Who teaches Ben the cello?", {"D2:3"}),
        ("Where did Ana get the dog?", {"D1:3"}),
    ]


def test_a_file_of_another_shape_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(evaluation.BadDataset, match="JSON list"):
        evaluation.load(path)


@pytest.mark.anyio
async def test_eval_command_prints_the_table(services: Services, tmp_path: Path) -> None:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(synthetic_locomo()))
    env = {**os.environ, "DATABASE_URL": services.postgres.app_url,
           "DATABASE_ADMIN_URL": services.postgres.admin_url,
           "TEMPORAL_ADDRESS": services.temporal_address,
           "TEAM_MEMORY_DATA_DIR": str(services.data_dir)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "team_memory", "eval", "locomo", "--configured", str(path),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 300)
    assert process.returncode == 0, err.decode()[-2000:]
    text = out.decode()
    assert "1 conversations, 6 turns imported" in text
    assert "3 questions (categories 1-4)" in text
    assert ("| method | R@5 | R@10 | R@20 | session any R@5 | any R@10 | session all R@5 "
            "| all R@10 | p50 ms | p95 ms |") in text
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in text.splitlines()
            if line.startswith("| ") and "method" not in line and "---" not in line
            and "| model |" not in line}
    cross_validated = "hybrid, fusion weights cross-validated (held-out conversations)"
    model = "all-MiniLM-L6-v2-dynamic-int8"  # the configured one: the default
    assert set(rows) == {"hybrid (search_memory)", "BM25 only", "vector only", cross_validated,
                         model}
    # One conversation: no other to choose its weights on, so the first of the grid ranks it.
    assert "per held-out conversation: syn-1: dense 0.5, neighbour 0.25" in text
    assert [cell.strip() for cell in rows[cross_validated][-2:]] == ["-", "-"]
    # Side by side: the model's recall as above, its CPU per text and its search latency.
    side = [cell.strip() for cell in rows[model]]
    assert side[1] == rows["hybrid (search_memory)"][1].strip()
    assert all(cell.endswith("ms") for cell in side[10:12] + side[13:])
    # Six turns: every evidence turn is within the top 20, and the dog's name within the top 5.
    assert float(rows["hybrid (search_memory)"][2]) == 1.0
    assert float(rows["hybrid (search_memory)"][0]) >= 2 / 3
    # Two sessions only: every question's evidence session is among the top 5 sessions.
    assert [float(v) for v in rows["hybrid (search_memory)"][3:7]] == [1.0, 1.0, 1.0, 1.0]


def test_another_model_is_not_evaluated_on_the_configured_database(tmp_path: Path) -> None:
    """The configured database keeps the vectors of its model; other models get stacks of
    their own."""
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(synthetic_locomo()))
    done = subprocess.run([sys.executable, "-m", "team_memory", "eval", "locomo", "--configured",
                           "--model", "all-MiniLM-L6-v2-dynamic-int8", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "the configured database keeps the configured model" in done.stderr
    unknown = subprocess.run([sys.executable, "-m", "team_memory", "eval", "locomo",
                              "--model", "BAAI/bge-small-en-v1.5", str(path)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert unknown.returncode == 1
    assert "the local provider has no model 'BAAI/bge-small-en-v1.5'" in unknown.stderr


def test_session_recall_ranks_sessions_by_their_best_turn() -> None:
    found = [{"D3:1"}, {"D3:4"}, {"D1:2"}, set(), {"D2:7", "D1:1"}]
    assert evaluation.ranked_sessions(found) == ["D3", "D1", "D2"]
    result = evaluation.MethodResult()
    result.add(found, frozenset({"D1:9", "D2:1"}), 0.01)
    assert result.recalls[5] == [0.0]  # neither evidence turn was returned
    assert result.any_session[5] == [1.0] and result.all_sessions[5] == [1.0]
    result.add([{"D3:1"}] * 3 + [{"D4:1"}] * 3 + [{"D1:1"}], frozenset({"D1:1", "D9:1"}), 0.01)
    assert result.recalls[5] == [0.0, 0.0] and result.recalls[10] == [0.0, 0.5]
    assert result.any_session[5] == [1.0, 1.0] and result.all_sessions[5] == [1.0, 0.0]
