"""Search and the working set: the retriever (candidates and fusion) and recall (the read use
cases and the one relevance x token-budget rule)."""
