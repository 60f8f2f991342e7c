#!/bin/sh
# Creates kbflow's Temporal namespace with its retention (how long Temporal keeps a
# closed case's history; kbflow has erased the case's data before the run closes) unless
# it exists. Does not change an existing namespace's retention: use
# `temporal operator namespace update --namespace NAME --retention DURATION` for that.
#
# Runs in temporalio/admin-tools; the temporal CLI reads TEMPORAL_ADDRESS.
set -eu

: "${TEMPORAL_ADDRESS:?}" "${NAMESPACE:?}" "${RETENTION:?}"

attempt=1
until temporal operator cluster health >/dev/null 2>&1; do
    if [ "${attempt}" -ge 60 ]; then
        echo "create-namespace: Temporal at ${TEMPORAL_ADDRESS} not healthy after ${attempt} tries" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 2
done

if temporal operator namespace describe --namespace "${NAMESPACE}" >/dev/null 2>&1; then
    echo "create-namespace: ${NAMESPACE} exists; retention left as it is"
    exit 0
fi
temporal operator namespace create --namespace "${NAMESPACE}" --retention "${RETENTION}" \
    --description "kbflow: child-protection data-sharing cases"
echo "create-namespace: ${NAMESPACE} created, retention ${RETENTION}"
