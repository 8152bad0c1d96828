"""Deterministic, realistic sample ACS email logs, generated inside DuckDB.

Every random choice is a hash of ``(seed, row, salt)`` (DuckDB's ``hash``), so the same seed gives
identical rows regardless of thread scheduling, and a million messages take seconds.

Data window: the ``days`` whole UTC days ending with ``end`` (inclusive); events that would fall
after the window (late final statuses of the last sends) are not written, so those recipients are
still pending, as they would be in a live workspace.

What is in it (per-recipient status mix, roughly): Delivered 91%, Bounced 3% (IsHardBounce
"True"/"true"), Failed 2% (soft 4.x.x codes, IsHardBounce "False"/"false"/empty, often hours late),
FilteredSpam 1.5%, Suppressed 1.2%, Quarantined 0.8%; Expanded (distribution list) occasionally,
followed by Delivered; 0.5% of recipients never get a final status. Each message has a message-level
"OutForDelivery" event (empty RecipientId) just after the send; 0.3% of messages get a message-level
"Failed" instead and no recipient events. Rare duplicate final events (a few seconds apart, so they
are distinct records) and rare clock skew (final status before the send).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb

from local.replacement import writing_store
from local.store import open_store, quote, store_staged
from shared import schemas

SUBSCRIPTION_ID = "5f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
RESOURCE_GROUP = "rg-email-prod"
#: (communication services resource name, weight).
RESOURCES = (("acs-email-prod", 0.92), ("acs-email-staging", 0.08))
LOCATION = "global"
SOURCE_SYSTEM = "Azure"

_OPERATION = {
    schemas.SEND_MAIL_TABLE: ("SendMail", "2023-03-31"),
    schemas.STATUS_UPDATE_TABLE: ("DeliveryStatusUpdate", "2023-03-31"),
    schemas.ENGAGEMENT_TABLE: ("UserEngagementUpdate", "2023-03-31"),
}

#: Recipient domains: (domain, weight, mail server host names (a {n} picks 1..4), kind).
RECIPIENT_DOMAINS: tuple[tuple[str, float, str, str], ...] = (
    (
        "gmail.com",
        0.33,
        "gmail-smtp-in.l.google.com|alt1.gmail-smtp-in.l.google.com|alt2.gmail-smtp-in.l.google.com",
        "gmail",
    ),
    ("outlook.com", 0.12, "outlook-com.olc.protection.outlook.com", "microsoft"),
    ("hotmail.com", 0.06, "hotmail-com.olc.protection.outlook.com", "microsoft"),
    ("live.com", 0.02, "live-com.olc.protection.outlook.com", "microsoft"),
    ("yahoo.com", 0.10, "mta5.am0.yahoodns.net|mta6.am0.yahoodns.net|mta7.am0.yahoodns.net", "yahoo"),
    ("aol.com", 0.02, "mx-aol.mail.gm0.yahoodns.net", "yahoo"),
    ("icloud.com", 0.04, "mx01.mail.icloud.com|mx02.mail.icloud.com", "other"),
    ("comcast.net", 0.02, "mx1.comcast.net|mx2.comcast.net", "other"),
    ("contoso.com", 0.09, "contoso-com.mail.protection.outlook.com", "corporate"),
    ("fabrikam.com", 0.06, "fabrikam-com.mail.protection.outlook.com", "corporate"),
    ("northwindtraders.com", 0.04, "mx1.northwindtraders.com|mx2.northwindtraders.com", "corporate"),
    ("adventure-works.com", 0.04, "adventure-works-com.mail.protection.outlook.com", "corporate"),
    ("tailspintoys.com", 0.03, "aspmx.l.google.com|alt1.aspmx.l.google.com", "corporate"),
    ("woodgrovebank.com", 0.03, "mxa-00112233.gslb.pphosted.com|mxb-00112233.gslb.pphosted.com", "corporate"),
)

#: Sender domains: (domain, weight).
SENDER_DOMAINS = (
    ("notify.contoso.com", 0.55),
    ("mail.fabrikam.com", 0.25),
    ("7f3a9c1e-2b4d-4e6f-8a0b-1c2d3e4f5a6b.azurecomm.net", 0.20),
)
SENDER_USERNAMES = (("DoNotReply", 0.6), ("notifications", 0.2), ("billing", 0.1), ("alerts", 0.07), ("support", 0.03))
#: Sender domains with user engagement tracking on: verified custom domains only (an Azure managed domain such as
#: *.azurecomm.net can never have it; mail.fabrikam.com is a custom domain that left it off).
TRACKED_SENDER_DOMAINS = ("notify.contoso.com",)
#: Paths of the links in tracked mail (under the sender's organisational domain).
LINK_PATHS = ("/account", "/orders/status", "/offers/spring?utm_source=email", "/help", "/unsubscribe")
USER_AGENTS = (
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        0.3,
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        0.3,
    ),
    ("Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; Microsoft Outlook 16.0.17328; ms-office; MSOffice 16)", 0.15),
    (
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile",
        0.15,
    ),
    ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", 0.1),
)
TRAFFIC_SOURCES = (
    ("Email .NET SDK", 0.35),
    ("Email Python SDK", 0.2),
    ("Email JavaScript SDK", 0.15),
    ("Email Java SDK", 0.1),
    ("SMTP", 0.12),
    ("REST API", 0.08),
)

_FIRST = (
    "alex",
    "maria",
    "john",
    "wei",
    "fatima",
    "olga",
    "raj",
    "lucia",
    "kenji",
    "amara",
    "noah",
    "emma",
    "liam",
    "sofia",
    "omar",
    "chen",
    "ivan",
    "nora",
    "pablo",
    "anna",
    "david",
    "sara",
    "tom",
    "yuki",
)
_LAST = (
    "smith",
    "garcia",
    "chen",
    "mueller",
    "kowalski",
    "okafor",
    "tanaka",
    "silva",
    "johnson",
    "nguyen",
    "rossi",
    "dubois",
    "larsen",
    "patel",
    "kim",
    "novak",
    "brown",
    "lopez",
    "ali",
    "cohen",
)

#: Per-status outcome details: (status, weight within status, smtp, enhanced, reason, message, hard-bounce mix).
#: ``{domain}`` and ``{host}`` in a message are filled in per recipient.
_OUTCOMES: tuple[tuple[str, float, str, str, str, str, str], ...] = (
    ("Delivered", 0.7, "", "", "", "", "False|False|"),
    ("Delivered", 0.3, "250", "2.6.0", "", "", "False|false|"),
    (
        "Bounced",
        0.55,
        "550",
        "5.1.1",
        "RecipientNotFound",
        "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the "
        "recipient's email address for typos or unnecessary spaces.",
        "True|True|True|true",
    ),
    (
        "Bounced",
        0.12,
        "550",
        "5.1.10",
        "RecipientNotFound",
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "True|true",
    ),
    (
        "Bounced",
        0.10,
        "552",
        "5.2.2",
        "MailboxFull",
        "552 5.2.2 The recipient's inbox is out of storage space.",
        "True|True|true",
    ),
    (
        "Bounced",
        0.13,
        "554",
        "5.7.1",
        "RejectedByPolicy",
        "554 5.7.1 Service unavailable; Client host blocked using Spamhaus.",
        "True",
    ),
    (
        "Bounced",
        0.10,
        "550",
        "5.7.26",
        "AuthenticationFailed",
        "550 5.7.26 Unauthenticated email from {sender} is not accepted due to domain's DMARC policy.",
        "True|true",
    ),
    (
        "Failed",
        0.35,
        "421",
        "4.7.0",
        "TemporarilyDeferred",
        "421 4.7.0 [TSS04] Messages from 20.42.11.7 temporarily deferred due to unexpected volume or user complaints",
        "False|False|false|",
    ),
    (
        "Failed",
        0.30,
        "451",
        "4.4.1",
        "ConnectionTimedOut",
        "451 4.4.1 Connection to {host} timed out; retries exhausted",
        "False|",
    ),
    (
        "Failed",
        0.20,
        "452",
        "4.2.2",
        "MailboxFull",
        "452 4.2.2 The email account that you tried to reach is over quota.",
        "False|false|",
    ),
    (
        "Failed",
        0.15,
        "421",
        "4.7.28",
        "RateLimited",
        "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address.",
        "|False",
    ),
    (
        "Suppressed",
        1.0,
        "",
        "",
        "Suppressed",
        "The recipient address is on the suppression list because of an earlier hard bounce.",
        "|False",
    ),
    (
        "Quarantined",
        1.0,
        "250",
        "2.6.0",
        "Quarantined",
        "The message was accepted and quarantined by the recipient's mail system.",
        "False|",
    ),
    (
        "FilteredSpam",
        0.6,
        "554",
        "5.7.1",
        "FilteredSpam",
        "554 5.7.1 Message rejected as spam by Content Filtering.",
        "False|",
    ),
    (
        "FilteredSpam",
        0.4,
        "550",
        "5.7.1",
        "FilteredSpam",
        "550 5.7.1 [{host}] Our system has detected that this message is likely unsolicited mail.",
        "|False",
    ),
    ("Expanded", 1.0, "", "", "", "", ""),
)


def _seed_mix(seed: int) -> int:
    """A 56-bit number derived from *seed* (stable across Python and DuckDB versions)."""
    return int.from_bytes(hashlib.sha256(str(int(seed)).encode()).digest()[:7], "big")


def _u(seed: int, salt: int, row: str = "i") -> str:
    """SQL: a uniform double in [0, 1) from (seed, row, salt); *row* is a BIGINT expression < 2**50.

    DuckDB's multi-argument ``hash(a, b, c)`` combines its arguments weakly (uniforms with different
    salts come out strongly correlated), so one BIGINT is built from all three and hashed once.
    """
    return f"((hash(xor(({row}) * 4096 + {salt}, {_seed_mix(seed)})) >> 11)::DOUBLE / 9007199254740992.0)"


def _pick(u: str, choices: Sequence[tuple[str, float]]) -> str:
    """SQL CASE choosing a string literal with the given weights, driven by uniform *u*."""
    if len(choices) == 1:
        return _lit(choices[0][0])
    total = sum(weight for _, weight in choices)
    acc = 0.0
    branches = []
    for value, weight in choices[:-1]:
        acc += weight / total
        branches.append(f"WHEN {u} < {acc!r} THEN {_lit(value)}")
    return f"(CASE {' '.join(branches)} ELSE {_lit(choices[-1][0])} END)"


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _normal(seed: int, salt: int, row: str = "i") -> str:
    """SQL: a standard normal deviate (Box-Muller) from two hashed uniforms."""
    return f"(sqrt(-2 * ln(1 - {_u(seed, salt, row)})) * cos(2 * pi() * {_u(seed, salt + 1, row)}))"


def _resource_ids() -> list[tuple[str, str, float]]:
    """(LA-style lowercase _ResourceId, resource name, weight)."""
    return [
        (
            f"/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{RESOURCE_GROUP}/providers/"
            f"microsoft.communication/communicationservices/{name}".lower(),
            name,
            weight,
        )
        for name, weight in RESOURCES
    ]


def _window(days: int, end: date) -> tuple[datetime, datetime]:
    if days < 1:
        raise ValueError("days must be >= 1")
    stop = datetime.combine(end + timedelta(days=1), time(0))
    return stop - timedelta(days=days), stop


def _build(con: duckdb.DuckDBPyConnection, messages: int, days: int, seed: int, end: date) -> None:
    """Create temp tables _gen_send and _gen_status holding the sample rows (schema columns).

    Stages, each a temp table read by the next: lookups (domains, outcomes), messages, recipients with
    their final status, status events, the rows of the two tables, and engagement (_gen_engage).
    """
    if messages < 0:
        raise ValueError("messages must be >= 0")
    seed = int(seed)
    start, stop = _window(days, end)
    _create_lookups(con)
    _create_messages(con, messages, days, seed, start)
    _create_recipients(con, seed)
    _create_events(con, seed)
    _create_table_rows(con, stop)
    _create_engagement(con, seed, stop)
    con.execute("DROP TABLE _gen_rcpt")
    con.execute("DROP TABLE _gen_events")
    con.execute("DROP TABLE _gen_msg")


def _create_lookups(con: duckdb.DuckDBPyConnection) -> None:
    """_gen_domains (recipient domains, their mail servers and kind) and _gen_outcomes (status details)."""
    domain_rows = ", ".join(
        f"({k}, {_lit(d)}, {_lit(hosts)}, {_lit(kind)})" for k, (d, _, hosts, kind) in enumerate(RECIPIENT_DOMAINS)
    )
    outcome_rows = ", ".join(
        f"({_lit(s)}, {k}, {_lit(smtp)}, {_lit(enh)}, {_lit(reason)}, {_lit(msg)}, {_lit(hard)})"
        for k, (s, _, smtp, enh, reason, msg, hard) in enumerate(_OUTCOMES)
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _gen_domains AS SELECT * FROM (VALUES {domain_rows}) v(k, domain, hosts, kind)"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _gen_outcomes AS "
        f"SELECT * FROM (VALUES {outcome_rows}) v(status, k, smtp, enh, reason, msg, hard)"
    )


def _create_messages(con: duckdb.DuckDBPyConnection, messages: int, days: int, seed: int, start: datetime) -> None:
    """_gen_msg: one row per message (send time, ids, sender, resource, size, recipient counts)."""
    resources = _resource_ids()
    resource_pick = _pick(_u(seed, 1), [(rid, w) for rid, _, w in resources])
    # Messages. Send time: 65% around 14:00 UTC (business hours), 35% uniform over the day.
    tod = (
        f"(CASE WHEN {_u(seed, 2)} < 0.65 THEN least(greatest(50400 + 10800 * {_normal(seed, 3)}, 0), 86399.999) "
        f"ELSE {_u(seed, 5)} * 86400 END)"
    )
    size_mb = (
        f"round(CASE WHEN {_u(seed, 10)} < 0.60 THEN 0.002 * pow(49.5, {_u(seed, 11)}) "
        f"WHEN {_u(seed, 10)} < 0.85 THEN 0.1 * pow(9.9, {_u(seed, 11)}) "
        f"WHEN {_u(seed, 10)} < 0.95 THEN 1 + 3.99 * {_u(seed, 11)} "
        f"WHEN {_u(seed, 10)} < 0.99 THEN 5 + 4.99 * {_u(seed, 11)} "
        f"ELSE 10 + 19.9 * {_u(seed, 11)} END, 6)"
    )
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _gen_msg AS
        SELECT i,
            TIMESTAMP '{start.isoformat(sep=" ")}'
              + to_microseconds(CAST(
                  (least(floor({_u(seed, 4)} * {days}), {days - 1}) * 86400 + {tod}) * 1000000 AS BIGINT)) AS send_time,
            lower(substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a'
                  || substr(h, 18, 3) || '-' || substr(h, 21, 12)) AS correlation_id,
            '<' || substr(md5(h), 1, 24) || '@' || sender_domain || '>' AS internet_message_id,
            sender_domain, sender_username, resource_id, traffic_source, size_mb,
            CASE WHEN size_mb < 0.1 THEN 0
                 WHEN size_mb < 1 THEN CASE WHEN {_u(seed, 12)} < 0.5 THEN 0 ELSE 1 END
                 ELSE 1 + CAST(floor({_u(seed, 12)} * 5) AS INTEGER) END AS attachments,
            to_n, cc_n, bcc_n,
            to_n + cc_n + bcc_n - CASE WHEN to_n + cc_n + bcc_n > 1 AND {_u(seed, 16)} < 0.05 THEN 1 ELSE 0 END
              AS unique_n,
            {_u(seed, 17)} < 0.003 AS message_failed
        FROM (
            SELECT i, md5(CAST({seed} AS VARCHAR) || ':' || CAST(i AS VARCHAR)) AS h,
                {_pick(_u(seed, 6), SENDER_DOMAINS)} AS sender_domain,
                {_pick(_u(seed, 7), SENDER_USERNAMES)} AS sender_username,
                {resource_pick} AS resource_id,
                {_pick(_u(seed, 8), TRAFFIC_SOURCES)} AS traffic_source,
                {size_mb} AS size_mb,
                CASE WHEN {_u(seed, 13)} < 0.86 THEN 1 WHEN {_u(seed, 13)} < 0.95 THEN 2
                     WHEN {_u(seed, 13)} < 0.985 THEN 3
                     WHEN {_u(seed, 13)} < 0.998 THEN 4 + CAST(floor({_u(seed, 18)} * 7) AS INTEGER)
                     ELSE 20 + CAST(floor({_u(seed, 18)} * 31) AS INTEGER) END AS to_n,
                CASE WHEN {_u(seed, 14)} < 0.06 THEN 1 + CAST(floor({_u(seed, 19)} * 2) AS INTEGER) ELSE 0 END AS cc_n,
                CASE WHEN {_u(seed, 15)} < 0.03 THEN 1 + CAST(floor({_u(seed, 20)} * 3) AS INTEGER) ELSE 0 END AS bcc_n
            FROM range({messages}) t(i)
        )
    """)


def _status_case() -> str:
    """SQL: a recipient's final status from its uniform ``us`` and its domain's ``kind``."""
    # Cumulative status thresholds per domain kind (yahoo defers more, corporate filters more).
    thresholds = {
        "Delivered": (0.87, 0.895, 0.915),
        "Bounced": (0.90, 0.92, 0.945),
        "Failed": (0.94, 0.94, 0.965),
        "Suppressed": (0.955, 0.955, 0.977),
        "Quarantined": (0.965, 0.975, 0.985),
    }
    return (
        "CASE "
        + " ".join(
            f"WHEN us < CASE kind WHEN 'yahoo' THEN {y} WHEN 'corporate' THEN {c} ELSE {o} END THEN {_lit(st)}"
            for st, (y, c, o) in thresholds.items()
        )
        + " ELSE 'FilteredSpam' END"
    )


def _create_recipients(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    """_gen_rcpt: the unique recipients of messages handed to providers, with address, server and final status."""
    domain_pick = _pick(_u(seed, 40, "rid"), [(str(k), w) for k, (_, w, _, _) in enumerate(RECIPIENT_DOMAINS)])
    variant_pick = {
        status: _pick(_u(seed, 45, "rid"), [(str(k), o[1]) for k, o in enumerate(_OUTCOMES) if o[0] == status])
        for status in dict.fromkeys(o[0] for o in _OUTCOMES)
    }
    variant_case = " ".join(f"WHEN {_lit(st)} THEN {pick}" for st, pick in variant_pick.items())
    status_case = _status_case()
    # Recipients (unique ones) of messages that were handed to providers.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _gen_rcpt AS
        WITH r AS (
            SELECT m.*, r.r, m.i * 64 + r.r AS rid
            FROM _gen_msg m, LATERAL (SELECT unnest(range(m.unique_n)) AS r) r
            WHERE NOT m.message_failed
        ), d AS (
            SELECT r.*, CAST({domain_pick} AS INTEGER) AS dk FROM r
        ), a AS (
            SELECT d.*, dom.domain, dom.kind,
                string_split(dom.hosts, '|')[
                    1 + CAST(floor({_u(seed, 41, "rid")} * len(string_split(dom.hosts, '|'))) AS INTEGER)] AS host,
                list_extract({list(_FIRST)}, 1 + CAST(floor({_u(seed, 42, "rid")} * {len(_FIRST)}) AS INTEGER))
                  || CASE WHEN {_u(seed, 43, "rid")} < 0.5 THEN '.' ELSE '' END
                  || list_extract({list(_LAST)}, 1 + CAST(floor({_u(seed, 44, "rid")} * {len(_LAST)}) AS INTEGER))
                  || CASE WHEN {_u(seed, 46, "rid")} < 0.4
                          THEN CAST(CAST(floor({_u(seed, 47, "rid")} * 100) AS INTEGER) AS VARCHAR) ELSE '' END
                  AS local_part,
                {_u(seed, 48, "rid")} AS us
            FROM d JOIN _gen_domains dom ON dom.k = d.dk
        ), s AS (
            SELECT a.*,
                CASE WHEN kind = 'corporate' AND us < 0.004 THEN 'Expanded' ELSE
                {status_case} END AS status
            FROM a
        )
        SELECT s.i, s.rid, s.send_time, s.correlation_id, s.internet_message_id, s.sender_domain, s.sender_username,
            s.resource_id, s.status, s.host, s.kind,
            CASE WHEN {_u(seed, 49, "rid")} < 0.03
                 THEN upper(substr(s.local_part, 1, 1)) || substr(s.local_part, 2) || '@'
                      || upper(substr(s.domain, 1, 1)) || substr(s.domain, 2, length(s.domain) - 5)
                      || upper(substr(s.domain, length(s.domain) - 3))
                 ELSE s.local_part || '@' || s.domain END AS recipient,
            CAST(CASE s.status {variant_case} END AS INTEGER) AS ok
        FROM s
    """)


def _latency(seed: int) -> str:
    """SQL: seconds from send to final status, by status (log-normal, long tails; deferred failures late)."""
    lat = f"{_normal(seed, 50, 'rid')}"
    return f"""(CASE status
        WHEN 'Delivered' THEN exp(ln(2.0) + 0.9 * {lat})
             + CASE WHEN {_u(seed, 52, "rid")} < 0.05 THEN 60 + 840 * {_u(seed, 53, "rid")}
                    WHEN {_u(seed, 52, "rid")} < 0.057 THEN 3600 + 32400 * {_u(seed, 53, "rid")} ELSE 0 END
        WHEN 'Expanded' THEN exp(ln(1.0) + 0.5 * {lat})
        WHEN 'Bounced' THEN exp(ln(1.5) + 0.7 * {lat})
        WHEN 'Failed' THEN 300 * pow(144, {_u(seed, 53, "rid")})
        WHEN 'Suppressed' THEN 0.05 + 0.45 * {_u(seed, 53, "rid")}
        WHEN 'Quarantined' THEN exp(ln(3.0) + 0.9 * {lat})
        ELSE exp(ln(2.0) + 0.8 * {lat}) END)"""


def _create_events(con: duckdb.DuckDBPyConnection, seed: int) -> None:
    """_gen_events: message-level events, distribution-list expansions, final statuses and rare duplicates."""
    latency = _latency(seed)
    skewed = f"({_u(seed, 54, 'rid')} < 0.002 AND status <> 'Failed')"
    hard_pick = (
        f"list_extract(string_split(o.hard, '|'), 1 + CAST(floor({_u(seed, 55, 'e.rid')} "
        f"* len(string_split(o.hard, '|'))) AS INTEGER))"
    )
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _gen_events AS
        WITH finals AS (
            SELECT *, send_time + to_microseconds(CAST(
                    CASE WHEN {skewed} THEN -(50000 + 2950000 * {_u(seed, 56, "rid")})
                         ELSE ({latency}) * 1000000 END AS BIGINT)) AS t
            FROM _gen_rcpt
            WHERE {_u(seed, 57, "rid")} >= 0.005
        )
        -- message-level: OutForDelivery just after the send, or Failed.
        SELECT send_time + to_microseconds(CAST((0.05 + 1.45 * {_u(seed, 30)}) * 1000000 AS BIGINT)) AS t,
            correlation_id, '' AS recipient,
            CASE WHEN message_failed THEN 'Failed' ELSE 'OutForDelivery' END AS status,
            '' AS smtp, '' AS enh,
            CASE WHEN message_failed THEN 'SendFailed' ELSE '' END AS reason,
            CASE WHEN message_failed THEN 'Message could not be delivered to any recipient mail provider.'
                 ELSE '' END AS msg,
            '' AS hard, sender_domain, sender_username, '' AS host,
            CASE WHEN message_failed THEN '' ELSE internet_message_id END AS imid, resource_id,
            CAST(NULL AS BIGINT) AS rid
        FROM _gen_msg
        UNION ALL
        -- distribution group expanded, then its delivery a little later
        SELECT t - to_microseconds(CAST((0.2 + {_u(seed, 58, "rid")}) * 1000000 AS BIGINT)),
            correlation_id, recipient, 'Expanded',
            '', '', '', '', '', sender_domain, sender_username, host, internet_message_id, resource_id, rid
        FROM finals WHERE status = 'Expanded'
        UNION ALL
        SELECT e.t + to_microseconds(CAST(d.k * (0.2 + 19.8 * {_u(seed, 59, "e.rid")}) * 1000000 AS BIGINT)),
            e.correlation_id, e.recipient, CASE WHEN e.status = 'Expanded' THEN 'Delivered' ELSE e.status END,
            o.smtp, o.enh, o.reason,
            replace(replace(o.msg, '{{host}}', e.host), '{{sender}}', e.sender_domain),
            CASE WHEN e.status = 'Expanded' THEN 'False' ELSE {hard_pick} END,
            e.sender_domain, e.sender_username,
            CASE WHEN e.status = 'Suppressed' OR {_u(seed, 60, "e.rid")} < 0.04 THEN '' ELSE e.host END,
            e.internet_message_id, e.resource_id, e.rid
        FROM finals e JOIN _gen_outcomes o ON o.k = e.ok
        -- d.k = 0: the final event; d.k = 1: a rare duplicate, a few seconds later
        JOIN (VALUES (0), (1)) d(k) ON d.k = 0 OR {_u(seed, 61, "e.rid")} < 0.003
    """)


def _create_table_rows(con: duckdb.DuckDBPyConnection, stop: datetime) -> None:
    """_gen_send and _gen_status: the schema's columns; status events after the window are not written."""
    status_table = schemas.STATUS_UPDATE
    op_name, op_version = _OPERATION[schemas.STATUS_UPDATE_TABLE]
    send_op, send_ver = _OPERATION[schemas.SEND_MAIL_TABLE]
    common = (
        f"'{{op}}' AS \"OperationName\", '{{ver}}' AS \"OperationVersion\", '{{cat}}' AS \"Category\", "
        f'\'{LOCATION}\' AS "Location", resource_id AS "_ResourceId", '
        f"split_part(resource_id, '/', 3) AS \"_SubscriptionId\", '' AS \"TenantId\", "
        f"'{SOURCE_SYSTEM}' AS \"SourceSystem\", '{{table}}' AS \"Type\", '' AS \"_IsBillable\", "
        f'CAST(NULL AS DOUBLE) AS "_BilledSize"'
    )
    send = schemas.SEND_MAIL
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _gen_send AS
        SELECT send_time AS "TimeGenerated", correlation_id AS "CorrelationId", size_mb AS "Size",
            attachments AS "AttachmentsCount", to_n AS "ToRecipientsCount", cc_n AS "CcRecipientsCount",
            bcc_n AS "BccRecipientsCount", unique_n AS "UniqueRecipientsCount", traffic_source AS "TrafficSource",
            {common.format(op=send_op, ver=send_ver, cat=send.category, table=send.name)}
        FROM _gen_msg
    """)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _gen_status AS
        SELECT t AS "TimeGenerated", correlation_id AS "CorrelationId", recipient AS "RecipientId",
            status AS "DeliveryStatus", smtp AS "SmtpStatusCode", enh AS "EnhancedSmtpStatusCode",
            reason AS "FailureReason", msg AS "FailureMessage", hard AS "IsHardBounce",
            sender_domain AS "SenderDomain", sender_username AS "SenderUsername",
            host AS "RecipientMailServerHostName", imid AS "InternetMessageId",
            {common.format(op=op_name, ver=op_version, cat=status_table.category, table=status_table.name)}
        FROM _gen_events
        WHERE t < TIMESTAMP '{stop.isoformat(sep=" ")}'
    """)


def _create_engagement(con: duckdb.DuckDBPyConnection, seed: int, stop: datetime) -> None:
    """_gen_engage: views and clicks of delivered recipients of tracked sender domains (TRACKED_SENDER_DOMAINS).

    About 38% of them open (1-3 views, minutes to a day after delivery, long-tailed) and 28% of those click
    (1-2 clicks, on a link of the sender's site, after the first view). Rows after the window are not written.
    """
    tracked = ", ".join(_lit(domain) for domain in TRACKED_SENDER_DOMAINS)
    pick = f"1 + CAST(floor({_u(seed, 75, 'rid * 8 + k')} * {len(LINK_PATHS)}) AS INTEGER)"
    path = f"list_extract({list(LINK_PATHS)}, {pick})"
    engagement = schemas.ENGAGEMENT
    op, ver = _OPERATION[schemas.ENGAGEMENT_TABLE]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _gen_engage AS
        WITH delivered AS (
            SELECT rid, min(t) AS t, any_value(correlation_id) AS correlation_id, any_value(recipient) AS recipient,
                any_value(imid) AS imid, any_value(resource_id) AS resource_id,
                any_value(sender_domain) AS sender_domain
            FROM _gen_events
            WHERE status = 'Delivered' AND recipient <> '' AND sender_domain IN ({tracked})
            GROUP BY rid
        ), opened AS (
            SELECT *,
                CASE WHEN {_u(seed, 70, "rid")} < 0.38 THEN 1 + CAST(floor({_u(seed, 71, "rid")} * 3) AS INTEGER)
                     ELSE 0 END AS views,
                t + to_microseconds(CAST((30 + 86400 * pow({_u(seed, 72, "rid")}, 3)) * 1000000 AS BIGINT))
                  AS first_view
            FROM delivered
        ), clicked AS (
            SELECT *, CASE WHEN views > 0 AND {_u(seed, 73, "rid")} < 0.28
                           THEN 1 + CAST(floor({_u(seed, 74, "rid")} * 2) AS INTEGER) ELSE 0 END AS clicks
            FROM opened
        ), e AS (
            SELECT o.*, k, 'View' AS kind, '' AS context,
                first_view + to_microseconds(CAST(k * 7200 * {_u(seed, 76, "rid * 8 + k")} * 1000000 AS BIGINT)) AS ts
            FROM clicked o, LATERAL (SELECT unnest(range(o.views)) AS k) v
            UNION ALL
            SELECT o.*, k, 'Click',
                'https://www.' || regexp_replace(sender_domain, '^[^.]+[.]', '') || {path},
                first_view + to_microseconds(CAST((5 + 600 * {_u(seed, 77, "rid * 8 + k")}) * 1000000 AS BIGINT))
            FROM clicked o, LATERAL (SELECT unnest(range(o.clicks)) AS k) c
        )
        SELECT ts AS "TimeGenerated", correlation_id AS "CorrelationId", recipient AS "RecipientId",
            kind AS "EngagementType", context AS "EngagementContext",
            {_pick(_u(seed, 78, "rid"), USER_AGENTS)} AS "UserAgent", imid AS "InternetMessageId",
            '{op}' AS "OperationName", '{ver}' AS "OperationVersion", '{engagement.category}' AS "Category",
            '{LOCATION}' AS "Location", resource_id AS "_ResourceId",
            split_part(resource_id, '/', 3) AS "_SubscriptionId", '' AS "TenantId", '{SOURCE_SYSTEM}' AS "SourceSystem",
            '{engagement.name}' AS "Type", '' AS "_IsBillable", CAST(NULL AS DOUBLE) AS "_BilledSize"
        FROM e
        WHERE ts < TIMESTAMP '{stop.isoformat(sep=" ")}'
    """)


def _drop(con: duckdb.DuckDBPyConnection) -> None:
    for name in (
        "_gen_send",
        "_gen_status",
        "_gen_engage",
        "_gen_domains",
        "_gen_outcomes",
        "_gen_msg",
        "_gen_rcpt",
        "_gen_events",
    ):
        con.execute(f"DROP TABLE IF EXISTS {name}")


_GENERATED = (
    (schemas.SEND_MAIL, "_gen_send"),
    (schemas.STATUS_UPDATE, "_gen_status"),
    (schemas.ENGAGEMENT, "_gen_engage"),
)


def fill_store(con: duckdb.DuckDBPyConnection, messages: int, days: int, seed: int, end: date) -> dict[str, int]:
    """Generate sample data straight into the store; returns rows inserted per table.

    Exact duplicates of rows already stored are skipped, so filling twice with the same arguments
    changes nothing.
    """
    try:
        _build(con, messages, days, seed, end)
        stored = store_staged(con, _GENERATED)
    finally:
        _drop(con)
    return {name: inserted for name, (_, inserted) in stored.items()}


def fill_store_file(store: str | Path, messages: int, days: int, seed: int, end: date) -> dict[str, int]:
    """:func:`fill_store` into the store file at *store* while it may be served (see
    :mod:`local.replacement`); raises ``StoreBusy`` while an import runs for too long."""
    window(days, end)  # bad arguments fail before the store is copied
    if messages < 0:
        raise ValueError("messages must be >= 0")
    with writing_store(store) as con:
        return fill_store(con, messages, days, seed, end)


def generate(
    messages: int, days: int, seed: int, end: date, batch_size: int = 10_000
) -> Iterator[list[dict[str, Any]]]:
    """Batches of sample rows as dicts with a ``Type`` key naming the table (same data as fill_store)."""
    con = open_store(":memory:")
    try:
        _build(con, messages, days, seed, end)
        for _table, staging in _GENERATED:
            cursor = con.execute(f'SELECT * FROM {staging} ORDER BY "TimeGenerated", "CorrelationId"')
            names = [d[0] for d in cursor.description]
            while rows := cursor.fetchmany(batch_size):
                yield [dict(zip(names, row, strict=True)) for row in rows]
    finally:
        con.close()


def _archive_sql(table: schemas.TableSchema, staging: str, seed: int) -> str:
    """SQL: (path, text) per PT1H.json blob of *table*, JSON Lines as diagnostic settings write them."""
    own = [name for name in table.column_names if name not in _ENVELOPE]
    row = ", ".join(quote(c) for c in ("CorrelationId", "TimeGenerated", "RecipientId") if c in table.column_names)
    u = _u(seed, 90, f"CAST(hash(hash({row})) >> 14 AS BIGINT)")
    # Documented casing for 97% of records, all lowercase for 2%, all uppercase for 1%.
    props = ", ".join(
        f"CASE WHEN v < 0.97 THEN {_lit(name)} WHEN v < 0.99 THEN {_lit(name.lower())} ELSE {_lit(name.upper())} END, "
        f"{quote(name)}"
        for name in own
    )
    container = f"insights-logs-{table.category.lower()}"
    return f"""
        WITH r AS (
            SELECT *, {u} AS v FROM {staging} WHERE "TimeGenerated" >= $start AND "TimeGenerated" < $stop
        ),
        j AS (
            SELECT "TimeGenerated",
                '{container}/resourceId=' || upper("_ResourceId")
                  || strftime("TimeGenerated", '/y=%Y/m=%m/d=%d/h=%H/m=00/PT1H.json') AS path,
                CAST(json_object(
                    'time', strftime("TimeGenerated", '%Y-%m-%dT%H:%M:%S.%f') || '0Z',
                    'resourceId', upper("_ResourceId"),
                    'operationName', "OperationName",
                    'operationVersion', "OperationVersion",
                    'category', "Category",
                    'level', 'Informational',
                    'resultType', 'Succeeded',
                    'correlationId', "CorrelationId",
                    'location', "Location",
                    'properties', json_object({props})
                ) AS VARCHAR) AS line
            FROM r
        )
        SELECT path, string_agg(line, chr(10) ORDER BY "TimeGenerated", line) || chr(10) AS text
        FROM j GROUP BY path ORDER BY path
    """


#: Archive record envelope columns (not inside ``properties``).
_ENVELOPE = frozenset(
    {
        "TimeGenerated",
        "CorrelationId",
        "OperationName",
        "OperationVersion",
        "Category",
        "Location",
        "_ResourceId",
        "_SubscriptionId",
        "TenantId",
        "SourceSystem",
        "Type",
        "_IsBillable",
        "_BilledSize",
    }
)


def write_archive(folder: str | Path, messages: int, days: int, seed: int, end: date) -> list[Path]:
    """Write the same data as :func:`fill_store` as a diagnostic-settings storage archive.

    Layout: ``<folder>/insights-logs-<category>/resourceId=/SUBSCRIPTIONS/.../y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json``,
    one JSON Lines blob per category, resource and hour. Returns the files written.
    """
    root = Path(folder)
    files: list[Path] = []
    con = open_store(":memory:")
    try:
        _build(con, messages, days, seed, end)
        start, stop = _window(days, end)
        for table, staging in _GENERATED:
            sql = _archive_sql(table, staging, seed)
            # Clock-skewed events can precede the window; start at the first event's day.
            first = con.execute(f'SELECT min("TimeGenerated") FROM {staging}').fetchall()[0][0]
            day = min(start, datetime.combine(first.date(), time(0))) if first else stop
            while day < stop:  # a day at a time keeps memory bounded
                cursor = con.execute(sql, {"start": day, "stop": day + timedelta(days=1)})
                while rows := cursor.fetchmany(64):
                    for rel, text in rows:
                        path = root / str(rel)
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text(str(text), encoding="utf-8")
                        files.append(path)
                day += timedelta(days=1)
    finally:
        con.close()
    return files


def window(days: int, end: date) -> tuple[datetime, datetime]:
    """The [start, stop) UTC window (naive datetimes) the sample covers."""
    return _window(days, end)
