"""Synthetic but varied team memories and questions (every text distinct, deterministic)."""

from __future__ import annotations

import random

_SUBJECTS = ["The billing service", "Our mobile app", "The search API", "The data pipeline",
             "The auth gateway", "The admin dashboard", "The notification worker",
             "The payments team", "The platform team", "The checkout flow", "The CI pipeline",
             "The reporting job", "The onboarding flow", "The inventory service"]
_VERBS = ["uses", "switched to", "must keep", "standardised on", "stopped using", "relies on",
          "migrated to", "caches results in", "logs every request to", "retries calls through"]
_THINGS = ["PostgreSQL 16", "Redis streams", "UUID v7 keys", "gRPC", "Kafka", "S3 lifecycle "
           "rules", "feature flags in LaunchDarkly", "OpenTelemetry traces", "Svelte", "React",
           "exponential backoff", "a circuit breaker", "read replicas", "pgvector", "Temporal",
           "idempotency keys", "blue-green deploys", "JSON logs", "rate limiting per tenant",
           "a nightly vacuum"]
_REASONS = ["because p99 latency matters more than cost", "after the outage of March",
            "since the auditors asked for it", "to keep deploys reversible",
            "because the old client leaked connections", "so tenants stay isolated",
            "as agreed in the architecture review", "to cut the cloud bill",
            "because on-call kept getting paged at night", "until the vendor fixes their SDK"]
_QUESTIONS = ["What does {s} use for {t}?", "Why did we pick {t}?", "How does {s} handle {t}?",
              "Which decision was made about {t}?", "Tell me the rule about {t} in {s}"]


def memory_text(i: int) -> str:
    """The i-th memory: unique through its number, varied through the templates."""
    rng = random.Random(i)
    return (f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_THINGS)} "
            f"{rng.choice(_REASONS)} (ticket {i})")


def question(i: int) -> str:
    rng = random.Random(-1 - i)
    template = rng.choice(_QUESTIONS)
    return template.format(s=rng.choice(_SUBJECTS).lower(), t=rng.choice(_THINGS))
