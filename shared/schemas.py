"""The documented columns and types of the ACS Email tables in Log Analytics.

One source of truth: the DuckDB store, the importers, the Kusto language check and the
Log Analytics views that tolerate missing columns all read these definitions.
Types are Kusto scalar type names (``datetime``, ``int``, ``real``, ``string``).
"""

from __future__ import annotations

from dataclasses import dataclass

SEND_MAIL_TABLE = "ACSEmailSendMailOperational"
STATUS_UPDATE_TABLE = "ACSEmailStatusUpdateOperational"
ENGAGEMENT_TABLE = "ACSEmailUserEngagementOperational"

#: Kusto scalar type -> DuckDB column type.
DUCKDB_TYPES = {
    "datetime": "TIMESTAMP",
    "int": "INTEGER",
    "long": "BIGINT",
    "real": "DOUBLE",
    "string": "VARCHAR",
    "bool": "BOOLEAN",
}

_COMMON = (
    ("OperationName", "string"),
    ("OperationVersion", "string"),
    ("Category", "string"),
    ("Location", "string"),
    ("_ResourceId", "string"),
    ("_SubscriptionId", "string"),
    ("TenantId", "string"),
    ("SourceSystem", "string"),
    ("Type", "string"),
    ("_IsBillable", "string"),
    ("_BilledSize", "real"),
)


@dataclass(frozen=True)
class TableSchema:
    name: str
    #: Diagnostic-settings category whose records land in this table.
    category: str
    columns: tuple[tuple[str, str], ...]
    #: Columns that older workspaces may lack; queries must not fail without them.
    optional: frozenset[str] = frozenset()
    #: The whole table may be missing from a workspace (Log Analytics creates a table with its first row, and
    #: engagement rows exist only for custom domains with tracking on): queries read it through a fuzzy union.
    may_be_absent: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def type_of(self, column: str) -> str:
        for name, kusto_type in self.columns:
            if name == column:
                return kusto_type
        raise KeyError(f"{self.name} has no column {column}")


SEND_MAIL = TableSchema(
    name=SEND_MAIL_TABLE,
    category="EmailSendMailOperational",
    columns=(
        ("TimeGenerated", "datetime"),
        ("CorrelationId", "string"),
        ("Size", "real"),
        ("AttachmentsCount", "int"),
        ("ToRecipientsCount", "int"),
        ("CcRecipientsCount", "int"),
        ("BccRecipientsCount", "int"),
        ("UniqueRecipientsCount", "int"),
        ("TrafficSource", "string"),
        *_COMMON,
    ),
    optional=frozenset({"TrafficSource"}),
)

STATUS_UPDATE = TableSchema(
    name=STATUS_UPDATE_TABLE,
    category="EmailStatusUpdateOperational",
    columns=(
        ("TimeGenerated", "datetime"),
        ("CorrelationId", "string"),
        ("RecipientId", "string"),
        ("DeliveryStatus", "string"),
        ("SmtpStatusCode", "string"),
        ("EnhancedSmtpStatusCode", "string"),
        ("FailureReason", "string"),
        ("FailureMessage", "string"),
        ("IsHardBounce", "string"),
        ("SenderDomain", "string"),
        ("SenderUsername", "string"),
        ("RecipientMailServerHostName", "string"),
        ("InternetMessageId", "string"),
        *_COMMON,
    ),
    optional=frozenset({"RecipientMailServerHostName", "InternetMessageId"}),
)

ENGAGEMENT = TableSchema(
    name=ENGAGEMENT_TABLE,
    category="EmailUserEngagementOperational",
    columns=(
        ("TimeGenerated", "datetime"),
        ("CorrelationId", "string"),
        ("RecipientId", "string"),
        ("EngagementType", "string"),
        ("EngagementContext", "string"),
        ("UserAgent", "string"),
        ("InternetMessageId", "string"),
        *_COMMON,
    ),
    optional=frozenset({"InternetMessageId", "UserAgent", "EngagementContext"}),
    may_be_absent=True,
)

TABLES: tuple[TableSchema, ...] = (SEND_MAIL, STATUS_UPDATE, ENGAGEMENT)
TABLES_BY_NAME = {table.name: table for table in TABLES}
TABLES_BY_CATEGORY = {table.category.lower(): table for table in TABLES}

#: Statuses the seed treats as a recipient's final status.
FINAL_STATUSES = ("Delivered", "Failed", "Bounced", "Suppressed", "Quarantined", "FilteredSpam")
#: Message-level statuses (empty RecipientId) that end a message.
MESSAGE_TERMINAL_STATUSES = ("Failed", "Dropped")


def kusto_schema() -> dict[str, dict[str, str]]:
    """Table -> column -> Kusto type, the shape the Kusto language check takes."""
    return {table.name: dict(table.columns) for table in TABLES}


def duckdb_create_statements() -> list[str]:
    """CREATE TABLE statements for the embedded store, from the same definitions."""
    statements = []
    for table in TABLES:
        columns = ", ".join(f'"{name}" {DUCKDB_TYPES[kusto_type]}' for name, kusto_type in table.columns)
        statements.append(f'CREATE TABLE IF NOT EXISTS "{table.name}" ({columns})')
    return statements
