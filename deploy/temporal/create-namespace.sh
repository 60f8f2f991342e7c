#!/bin/sh
# Creates kbflow's Temporal namespace with its retention (how long Temporal keeps a
# closed case's history; kbflow has erased the case's data before the run closes) unless
# it exists, and its search attributes (SEARCH_ATTRIBUTES) unless they exist. Does not change an existing namespace's retention: use
# `temporal operator namespace update --namespace NAME --retention DURATION` for that.
#
# Runs in temporalio/admin-tools; the temporal CLI reads TEMPORAL_ADDRESS.
set -eu

: "${TEMPORAL_ADDRESS:?}" "${NAMESPACE:?}" "${RETENTION:?}" "${SEARCH_ATTRIBUTES:?}"

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
else
    temporal operator namespace create --namespace "${NAMESPACE}" --retention "${RETENTION}" \
        --description "kbflow: child-protection data-sharing cases"
    echo "create-namespace: ${NAMESPACE} created, retention ${RETENTION}"
fi

# kbflow's search attributes (kbflow/search_attributes.py), NAME=TYPE separated by spaces.
# Creating one that exists with the same type does nothing; with another type it fails.
# A namespace just created takes a few seconds to be known to this call: retried.
for pair in ${SEARCH_ATTRIBUTES}; do
    attempt=1
    until temporal operator search-attribute create --namespace "${NAMESPACE}" \
            --name "${pair%%=*}" --type "${pair#*=}"; do
        if [ "${attempt}" -ge 30 ]; then
            echo "create-namespace: cannot create search attribute ${pair}" >&2
            exit 1
        fi
        attempt=$((attempt + 1))
        sleep 2
    done
done
echo "create-namespace: ${NAMESPACE} has the search attributes ${SEARCH_ATTRIBUTES}"
