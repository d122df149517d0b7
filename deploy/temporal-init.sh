#!/bin/sh
# One-shot: wait for the Temporal frontend, then register the search attributes operators filter
# ingestions by (the same ones `team-memory up` gives the dev server). Safe to rerun.
set -eu
address=${TEMPORAL_ADDRESS:-temporal:7233}
namespace=${TEMPORAL_NAMESPACE:-default}
until temporal operator cluster health --address "$address" >/dev/null 2>&1; do sleep 2; done
until temporal operator namespace describe --address "$address" -n "$namespace" >/dev/null 2>&1; do
    temporal operator namespace create --address "$address" -n "$namespace" >/dev/null 2>&1 || sleep 2
done
existing=$(temporal operator search-attribute list --address "$address" -n "$namespace")
for name in TenantName Project Category Decision; do
    if ! printf '%s\n' "$existing" | grep -qw "$name"; then
        temporal operator search-attribute create --address "$address" -n "$namespace" \
            --name "$name" --type Keyword
    fi
done
echo "search attributes ready on $namespace"
