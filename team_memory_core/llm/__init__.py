"""Claude's judgments over team memories, called only from Temporal activities.

client.py is the transport (one forced tool call, the error taxonomy, usage and its span);
each task is a module holding its prompt, its reply model (the tool's input schema is generated
from it, task.py) and its validator, which checks the reply against the ids the model was shown:
ingest.py (dedupe decision), consolidate.py (merge/supersede plan), manifesto.py (the rules),
observe.py (observations from a captured session), freshness.py (memories whose files
changed: keep, revise or archive).
"""
