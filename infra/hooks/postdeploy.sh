#!/bin/sh
# azd postdeploy hook: once the code is deployed, `ingest_email_events` exists and the Event Grid subscription
# can be created (Event Grid checks the endpoint when the subscription is made). With a Communication Services
# resource configured and the gate still off, turn the gate on and provision once more; later `azd up` runs
# provision with the gate already on, so this does nothing. See docs/deploy.md, "Event Grid".
set -eu

if [ -z "${ACS_RESOURCE_NAME:-}" ] || [ -z "${ACS_RESOURCE_GROUP:-}" ]; then
  echo "postdeploy: no ACS_RESOURCE_NAME / ACS_RESOURCE_GROUP: no Event Grid subscription."
  exit 0
fi
if [ "${CREATE_EVENT_SUBSCRIPTION:-}" = "true" ]; then
  echo "postdeploy: Event Grid subscription already provisioned (CREATE_EVENT_SUBSCRIPTION=true)."
  exit 0
fi

azd env set CREATE_EVENT_SUBSCRIPTION true
# Flex Consumption indexes the functions shortly after the package lands: retry while the endpoint is unknown.
attempt=1
until azd provision --no-prompt; do
  if [ "$attempt" -ge 3 ]; then
    echo "postdeploy: the Event Grid subscription could not be created; run \`azd provision\` again later." >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  echo "postdeploy: retrying in 60 s (attempt $attempt of 3)..."
  sleep 60
done
