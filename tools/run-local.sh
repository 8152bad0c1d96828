#!/usr/bin/env bash
# `make run`: Azurite (blob, queue, table) + the embedded log store with sample data + the local Functions host,
# which runs its timers on their schedules (the follower every minute) and its queue trigger (the shard folds),
# so it follows, folds and pushes by itself. Ctrl-C stops everything this script started.
set -euo pipefail
PY="$1"; PORT="$2"; MESSAGES="$3"; DAYS="$4"
STORE="${ACS_LOCAL_STORE:-.data/acs-logs.duckdb}"
mkdir -p .data/azurite

[ -f local.settings.json ] || cp local.settings.sample.json local.settings.json

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

if (exec 3<>/dev/tcp/127.0.0.1/10002) 2>/dev/null; then
  echo "Azurite (or something) already listens on 10002; using it."
else
  tools/azurite/node_modules/.bin/azurite --silent --location .data/azurite --skipApiVersionCheck --loose \
    --disableTelemetry --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 &
  pids+=($!)
  for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/10002) 2>/dev/null && break; sleep 0.2; done
fi

if [ ! -f "$STORE" ]; then
  echo "Filling $STORE with $MESSAGES sample messages over $DAYS days..."
  "$PY" -m shared sample --messages "$MESSAGES" --days "$DAYS" --seed 1
fi
echo "Computing daily summaries into Azurite..."
"$PY" -m shared summarize >/dev/null

MESSAGE_ID=$("$PY" - <<'PY'
import os, duckdb
con = duckdb.connect(os.environ.get("ACS_LOCAL_STORE", ".data/acs-logs.duckdb"), read_only=True)
row = con.execute('SELECT CorrelationId FROM ACSEmailSendMailOperational WHERE TimeGenerated <= now() '
                  'ORDER BY TimeGenerated DESC LIMIT 1').fetchone()
print(row[0] if row else "unknown")
PY
)
EVENTS="$STORE.events.json"
if [ ! -f "$EVENTS" ]; then
  echo "Writing the sample's Event Grid events to $EVENTS..."
  "$PY" - "$STORE" <<'PY'
import sys
from local.sample_events import write_sample_events
write_sample_events(sys.argv[1])
PY
fi

# Trace after send from events alone: a second host on an EMPTY log store and its own state table gets the
# sample's Event Grid events on its webhook URL, then answers a trace from the delivery state ("source": "state").
DEMO_PORT=$((PORT + 1)); EMPTY_STORE=.data/empty-logs.duckdb; DEMO_TABLE=EventsDemo$(date +%s)
rm -f "$EMPTY_STORE"
"$PY" -c "from local.store import open_store; open_store('$EMPTY_STORE').close()"
ACS_LOCAL_STORE="$EMPTY_STORE" STATE_TABLE="$DEMO_TABLE" FOLD_QUEUE="demo-folds-$(date +%s)" \
  "$PY" -m tools.devhost --port "$DEMO_PORT" --no-timers >/dev/null &
demo_pid=$!
for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/$DEMO_PORT) 2>/dev/null && break; sleep 0.2; done
# The events of 50 messages keep `make run` quick (the whole file: `python -m shared events send` it by hand).
DEMO_EVENTS=.data/demo-events.json
EVENTS_MESSAGE_ID=$("$PY" - "$EVENTS" "$DEMO_EVENTS" <<'PY'
import json, sys
finals = {"Delivered", "Failed", "Bounced", "Suppressed", "Quarantined", "FilteredSpam"}
events = json.load(open(sys.argv[1]))
statuses = {}
for event in events:
    data = event["data"]
    if "status" in data:
        statuses.setdefault(data["messageId"], set()).add(data["status"])
chosen = sorted((m for m, s in statuses.items() if s <= finals), key=lambda m: (statuses[m] != {"Delivered"}, m))[:50]
keep = set(chosen)
json.dump([e for e in events if e["data"].get("messageId") in keep], open(sys.argv[2], "w"))
print(chosen[0] if chosen else "unknown")
PY
)
echo "Replaying the Event Grid events of 50 sample messages to a host with an empty log store (port $DEMO_PORT)..."
"$PY" -m shared events send "$DEMO_EVENTS" --batch 500 \
  --to "http://127.0.0.1:$DEMO_PORT/runtime/webhooks/eventgrid?functionName=ingest_email_events"
echo "curl -s http://localhost:$DEMO_PORT/api/messages/$EVENTS_MESSAGE_ID  (no logs at all, only events):"
curl -s "http://127.0.0.1:$DEMO_PORT/api/messages/$EVENTS_MESSAGE_ID" | "$PY" -c \
  'import json,sys; b=json.load(sys.stdin); print(json.dumps({k: b.get(k) for k in ("messageId","outcome","state","source","asOf","counts")}, indent=2))'
kill "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true

TODAY=$(date -u +%F); WEEK_AGO=$(date -u -d "-7 days" +%F); YESTERDAY=$(date -u -d "-1 day" +%F)
echo "Quota headroom and sender health of yesterday's sample sends (python -m shared quota / health):"
"$PY" - "${YESTERDAY}T00:00:00Z" "${TODAY}T00:00:00Z" <<'PY'
import io, json, sys
from shared import cli

def answer(*argv):
    out = io.StringIO()
    if cli.run(list(argv), out) != 0:
        sys.exit(1)
    return json.loads(out.getvalue())

start, end = sys.argv[1:3]
quota = answer("quota", "--from", start, "--to", end)
for period in ("minute", "hour"):
    p = quota[period]
    print(f"  per {period}: peak {p['peakMessages']} messages ({p['peakRecipients']} recipients), p95 "
          f"{p['p95Messages']}, limit {p['limit']}, headroom {p['headroomPercent']} %, "
          f"{p['periodsOverLimit']} {period}s over the limit")
print("  " + quota["lastHour"]["note"])
evidence = quota["evidence"]
print(f"  quota-increase evidence: every sender domain under 2 % failures: {evidence['allDomainsUnderBar']}; "
      f"hard bounces synced to a suppression list: {evidence['suppressionSync']}")
health = answer("health", "--to", end)
print(f"  sender health: {health['verdict']}")
for domain in health["value"]:
    c = domain["current"]
    print(f"    {domain['senderDomain']}: {domain['verdict']} (failures {c['failureRate']} %, hard bounces "
          f"{c['hardBounceRate']} %, spam/quarantine {c['spamRate']} %)")
PY
cat <<MSG

ACS Email Insights is serving on http://localhost:$PORT (embedded store: $STORE). Try:
  curl -s http://localhost:$PORT/api/health
  curl -s http://localhost:$PORT/api/messages/$MESSAGE_ID
  curl -s "http://localhost:$PORT/api/messages?recipientDomain=gmail.com&top=5"
  curl -s "http://localhost:$PORT/api/stats/domains?from=${WEEK_AGO}T00:00:00Z&to=${TODAY}T23:59:59Z"
  curl -s "http://localhost:$PORT/api/bounces?type=hard&format=csv&from=${WEEK_AGO}T00:00:00Z"
  curl -s "http://localhost:$PORT/api/summaries/daily?from=$WEEK_AGO&to=$TODAY&dimension=total&format=csv"
  curl -s "http://localhost:$PORT/api/sending/quota?from=${YESTERDAY}T00:00:00Z&to=${TODAY}T00:00:00Z"
  curl -s "http://localhost:$PORT/api/senders/health?window=7d"
  curl -s "http://localhost:$PORT/api/stats/providers?from=${WEEK_AGO}T00:00:00Z"

The daily report of yesterday (open it in a browser):
  http://localhost:$PORT/api/reports/daily/$YESTERDAY

  curl -s http://localhost:$PORT/api/openapi.json
Ctrl-C stops it.

MSG
"$PY" -m tools.devhost --port "$PORT" &
pids+=($!)
wait "${pids[-1]}"
