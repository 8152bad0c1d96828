"""Checks of the Bicep under infra/: it parses, and it says what the project promises.

Every ``.bicep`` file is parsed with tree-sitter-bicep (no ERROR or MISSING node); the structural tests
read the parse trees, not regular expressions over the text, wherever a property's place matters.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tree_sitter

from bicep import (
    BICEP_FILES,
    INFRA,
    REPO_ROOT,
    Expr,
    Resource,
    all_resources,
    app_settings,
    body_of,
    calls,
    camel,
    declared,
    literal,
    only,
    parameter_default,
    resources,
    text,
    tree,
    value_node,
    variable,
    walk,
)

QUERIES = INFRA / "queries"

try:
    from shared.settings import APP_SETTINGS
except ModuleNotFoundError:  # pytest run without the repository root on sys.path
    sys.path.insert(0, str(REPO_ROOT))
    from shared.settings import APP_SETTINGS

#: Built-in role definition ids the deployment may assign (shared/REFERENCE.md, "Built-in role definition ids").
ROLE_IDS = {
    "Log Analytics Reader": "73c42c96-874c-492b-b04d-ab87d138a893",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

#: The only API versions a resource (new or existing) may use, per type. Extend on purpose, not by accident.
API_VERSIONS = {
    "Microsoft.Resources/resourceGroups": {"2024-03-01"},
    "Microsoft.ManagedIdentity/userAssignedIdentities": {"2023-01-31"},
    "Microsoft.Storage/storageAccounts": {"2023-05-01"},
    "Microsoft.Storage/storageAccounts/blobServices": {"2023-05-01"},
    "Microsoft.Storage/storageAccounts/blobServices/containers": {"2023-05-01"},
    "Microsoft.Storage/storageAccounts/tableServices": {"2023-05-01"},
    "Microsoft.Storage/storageAccounts/tableServices/tables": {"2023-05-01"},
    "Microsoft.Storage/storageAccounts/queueServices": {"2023-05-01"},
    "Microsoft.Storage/storageAccounts/queueServices/queues": {"2023-05-01"},
    "Microsoft.Web/serverfarms": {"2024-04-01"},
    "Microsoft.Web/sites": {"2024-04-01"},
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": {"2024-04-01"},
    "Microsoft.Insights/components": {"2020-02-02"},
    "Microsoft.OperationalInsights/workspaces": {"2023-09-01"},
    "Microsoft.Authorization/roleAssignments": {"2022-04-01"},
    "Microsoft.Communication/communicationServices": {"2023-04-01"},
    "Microsoft.Insights/diagnosticSettings": {"2021-05-01-preview"},
    "Microsoft.Insights/workbooks": {"2023-06-01"},
    "Microsoft.Insights/scheduledQueryRules": {"2023-12-01"},
    "Microsoft.Insights/actionGroups": {"2023-01-01"},
    "Microsoft.OperationalInsights/workspaces/savedSearches": {"2023-09-01"},
    "Microsoft.EventGrid/systemTopics": {"2025-02-15"},
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": {"2025-02-15"},
    "Microsoft.Authorization/roleDefinitions": {"2022-04-01"},
    "Microsoft.Communication/emailServices/domains/suppressionLists": {"2025-09-01"},
}

#: Query files the workbook tiles and alert rules load (the lead generates them from shared/kql).
WORKBOOK_QUERIES = {
    "success-rate-by-domain",
    "avg-delivery-time-by-hour",
    "top-failure-reasons",
    "bounce-rate-by-sender",
    "size-distribution",
    "p95-latency-by-domain",
}
ALERT_QUERIES = {
    "alert-hard-bounce-rate": "HardBounceRate",
    "alert-p95-latency": "P95DurationSeconds",
    "alert-sender-health": "AtRiskDomains",
}
#: Queries that join the code catalog: a second form calls its workspace functions (queries/with-functions/).
CATALOG_QUERIES = WORKBOOK_QUERIES - {"size-distribution"} | {"alert-hard-bounce-rate", "alert-sender-health"}
WITH_FUNCTIONS = QUERIES / "with-functions"
FUNCTIONS = INFRA / "functions"


def query_source(name: str) -> str:
    """The Bicep expression a tile or rule uses for the query file ``name``: the inline form, or for a query
    that joins the code catalog, the function form when the workspace functions are deployed."""
    inline = f"loadTextContent('../queries/{name}.kql')"
    if name not in CATALOG_QUERIES:
        return inline
    return f"catalogFunctions ? loadTextContent('../queries/with-functions/{name}.kql') : {inline}"


ACS_EMAIL_LOG_CATEGORIES = {
    "EmailSendMailOperational",
    "EmailStatusUpdateOperational",
    "EmailUserEngagementOperational",
}

#: Host-level app settings: Functions host storage (identity-based), Application Insights, the worker's threads.
HOST_SETTING = re.compile(r"^(AzureWebJobsStorage__\w+|APPLICATIONINSIGHTS_[A-Z_]+|PYTHON_THREADPOOL_THREAD_COUNT)$")

#: Words that must not appear in an output's name or value, nor in any app setting's value.
SECRET_LIKE = re.compile(
    r"listkeys|listsecrets|listconnectionstrings|listcredentials|connectionstring|primarykey|secondarykey"
    r"|accountkey|sharedaccess|\bsas\b|password|secret|instrumentationkey",
    re.IGNORECASE,
)

GUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)


# --- parsing ------------------------------------------------------------------------------------------------


def test_infra_has_the_modules() -> None:
    names = {path.relative_to(INFRA).as_posix() for path in BICEP_FILES}
    assert {
        "main.bicep",
        "app/api.bicep",
        "app/rbac.bicep",
        "app/storage.bicep",
        "app/monitoring.bicep",
        "app/workspace-rbac.bicep",
        "app/diagnostics.bicep",
        "app/workbook.bicep",
        "app/alerts.bicep",
    } <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_bicep_parses_without_errors(path: Path) -> None:
    bad = [
        f"{node.start_point.row + 1}:{node.start_point.column + 1} {'MISSING' if node.is_missing else 'ERROR'} "
        f"{text(node)[:60]!r}"
        for node in walk(tree(path).root_node)
        if node.type == "ERROR" or node.is_missing
    ]
    assert not bad, f"{path}: " + "; ".join(bad)
    assert not tree(path).root_node.has_error


def test_main_targets_the_subscription() -> None:
    root = tree(INFRA / "main.bicep").root_node
    scopes = [literal(n.named_children[0]) for n in root.named_children if n.type == "target_scope_assignment"]
    assert scopes == ["subscription"]


# --- roles --------------------------------------------------------------------------------------------------


def test_role_ids_are_the_documented_ones_and_only_those() -> None:
    used: set[str] = set()
    for path in BICEP_FILES:
        for node in walk(tree(path).root_node):
            if node.type == "string_content":
                used |= {match.lower() for match in GUID.findall(text(node))}
    assert used == set(ROLE_IDS.values())


def test_role_ids_match_reference_md() -> None:
    """Cross-check the ids above with shared/REFERENCE.md when the steering repo's shared/ is beside us."""
    candidates = [REPO_ROOT.parent / "shared" / "REFERENCE.md", REPO_ROOT / "shared" / "REFERENCE.md"]
    reference = next((path for path in candidates if path.is_file()), None)
    if reference is None:
        pytest.skip("shared/REFERENCE.md is not beside the repository")
    documented = {
        name.strip(" ·\n"): role_id.lower()
        for name, role_id in re.findall(r"([A-Z][A-Za-z ]+?)\s+(" + GUID.pattern + r")", reference.read_text())
    }
    for name, role_id in ROLE_IDS.items():
        assert documented.get(name) == role_id, name


def test_role_assignments_use_the_identity_as_service_principal() -> None:
    assignments = [r for r in all_resources() if r.type == "Microsoft.Authorization/roleAssignments"]
    # storage (looped over three roles), metrics publisher, workspace reader, the custom send role on ACS, the
    # custom suppression-list role on the list
    assert len(assignments) == 5
    for assignment in assignments:
        assert assignment.get("properties", "principalType") == "ServicePrincipal"
        assert assignment.get("properties", "principalId") == Expr("principalId")


def test_workspace_reader_is_scoped_to_the_workspace_resource_group() -> None:
    main = INFRA / "main.bicep"
    module = next(
        node
        for node in tree(main).root_node.named_children
        if node.type == "module_declaration" and literal(node.named_children[1]) == "app/workspace-rbac.bicep"
    )
    scope = value_node(body_of(module.named_children[-1]), "scope")
    assert scope is not None
    assert text(scope) == "resourceGroup(workspaceSubscriptionId, logAnalyticsResourceGroupName)"
    reader = [r for r in resources(INFRA / "app" / "workspace-rbac.bicep") if not r.existing]
    assert [r.get("scope") for r in reader] == [Expr("workspace")]
    assert variable(INFRA / "app" / "workspace-rbac.bicep", "logAnalyticsReader") == ROLE_IDS["Log Analytics Reader"]


# --- API versions -------------------------------------------------------------------------------------------


def test_every_api_version_is_allowed() -> None:
    found = all_resources()
    assert found
    wrong = [
        f"{r.file.relative_to(INFRA)}:{r.symbol} {r.type}@{r.api_version}"
        for r in found
        if r.api_version not in API_VERSIONS.get(r.type, set())
    ]
    assert not wrong, wrong


# --- storage ------------------------------------------------------------------------------------------------


def test_storage_account_is_locked_down() -> None:
    storage = only(resources(INFRA / "app" / "storage.bicep"), "Microsoft.Storage/storageAccounts")
    assert storage.get("properties", "allowSharedKeyAccess") is False
    assert storage.get("properties", "minimumTlsVersion") == "TLS1_2"
    assert storage.get("properties", "supportsHttpsTrafficOnly") is True
    assert storage.get("properties", "allowBlobPublicAccess") is False
    containers = [r for r in resources(INFRA / "app" / "storage.bicep") if r.type.endswith("/blobServices/containers")]
    assert sorted(r.symbol for r in containers) == ["deadLetterContainer", "deploymentContainer"]
    for container in containers:
        assert container.get("properties", "publicAccess") == "None"


def test_storage_creates_every_table_the_app_uses() -> None:
    """SUMMARY_TABLE, STATE_TABLE (with its journal and its expiry index) and SUBSCRIPTIONS_TABLE exist before the
    app first writes."""
    from shared.state import journal, retention

    path = INFRA / "app" / "storage.bicep"
    tables = {r.get("name") for r in resources(path) if r.type.endswith("/tableServices/tables")}
    beside = {Expr("'${stateTableName}" + module.TABLE_SUFFIX + "'") for module in (journal, retention)}
    assert tables == {Expr("summaryTableName"), Expr("stateTableName"), *beside, Expr("subscriptionsTableName")}
    storage = _module("storage")
    params = value_node(storage, "params")
    assert params is not None
    for name in ("summaryTable", "stateTable", "subscriptionsTable"):
        assert text(value_node(params, f"{name}Name")) == name  # the same main parameter as the app setting


# --- function app -------------------------------------------------------------------------------------------


def _function_app() -> Resource:
    return only(resources(INFRA / "app" / "api.bicep"), "Microsoft.Web/sites")


def test_flex_consumption_plan() -> None:
    plan = only(resources(INFRA / "app" / "api.bicep"), "Microsoft.Web/serverfarms")
    assert plan.get("sku") == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan.get("properties", "reserved") is True


def test_function_app_runtime_https_and_identity() -> None:
    app = _function_app()
    assert app.get("kind") == "functionapp,linux"
    assert app.get("properties", "httpsOnly") is True
    assert app.get("properties", "functionAppConfig", "runtime") == {"name": "python", "version": "3.11"}
    assert app.get("identity", "type") == "UserAssigned"
    storage = app.get("properties", "functionAppConfig", "deployment", "storage")
    assert storage["type"] == "blobContainer"
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": Expr("identityId"),
    }
    assert app.get("properties", "siteConfig", "minTlsVersion") == "1.2"
    # Flex Consumption refuses siteConfig.ftpsState; FTP is off through the basic-auth policy instead.
    assert app.get("properties", "siteConfig", "ftpsState") is None


def test_basic_publishing_policies_are_off_and_have_a_location() -> None:
    """ARM refuses basicPublishingCredentialsPolicies without `location` (error 51008); the type data omits it."""
    policies = [
        r
        for r in resources(INFRA / "app" / "api.bicep")
        if r.type == "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    ]
    assert sorted(r.get("name") for r in policies) == ["ftp", "scm"]
    for policy in policies:
        assert policy.get("location") == Expr("location")
        assert policy.get("properties", "allow") is False


def test_no_functions_worker_runtime_anywhere() -> None:
    """Flex Consumption takes the runtime from functionAppConfig.runtime; the setting is rejected."""
    for path in BICEP_FILES:
        code = [text(node) for node in walk(tree(path).root_node) if not node.children and node.type != "comment"]
        assert not [leaf for leaf in code if "FUNCTIONS_WORKER_RUNTIME" in leaf], path


def test_basic_auth_publishing_is_off() -> None:
    policies = [
        r
        for r in resources(INFRA / "app" / "api.bicep")
        if r.type == "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
    ]
    assert {(r.get("name"), r.get("properties", "allow")) for r in policies} == {("ftp", False), ("scm", False)}


# --- app settings -------------------------------------------------------------------------------------------

API = INFRA / "app" / "api.bicep"


def test_app_level_settings_match_shared_settings() -> None:
    app_level = app_settings(API, "appLevelSettings")
    assert set(app_level) == {spec.name for spec in APP_SETTINGS if spec.deployed}


def test_host_settings_are_host_level_and_identity_based() -> None:
    host = app_settings(API, "hostSettings")
    assert all(HOST_SETTING.match(name) for name in host), sorted(host)
    assert host["AzureWebJobsStorage__credential"] == "managedidentity"
    assert host["PYTHON_THREADPOOL_THREAD_COUNT"] == "32"  # the journal's group commit; the sample says the same
    assert host["AzureWebJobsStorage__clientId"] == Expr("identityClientId")
    assert {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__tableServiceUri"} <= set(host)
    auth = host["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert auth == Expr("'ClientId=${identityClientId};Authorization=AAD'")
    assert not set(host) & {spec.name for spec in APP_SETTINGS}


def test_site_app_settings_are_exactly_host_plus_app_level() -> None:
    settings = value_node(_function_app().body, "properties")
    for key in ("siteConfig", "appSettings"):
        assert settings is not None
        settings = value_node(settings, key)
    assert text(settings) == "concat(hostSettings, appLevelSettings)"
    assert not set(app_settings(API, "hostSettings")) & set(app_settings(API, "appLevelSettings"))
    # Nothing else writes app settings (a sites/config 'appsettings' resource would replace them).
    assert not [r for r in all_resources() if r.type == "Microsoft.Web/sites/config"]


def test_app_level_values() -> None:
    app_level = app_settings(API, "appLevelSettings")
    assert app_level["LOG_ANALYTICS_WORKSPACE_ID"] == Expr("workspaceCustomerId")
    assert app_level["AZURE_CLIENT_ID"] == Expr("identityClientId")
    main = INFRA / "main.bicep"
    api_module = next(
        node
        for node in tree(main).root_node.named_children
        if node.type == "module_declaration" and literal(node.named_children[1]) == "app/api.bicep"
    )
    params = value_node(body_of(api_module.named_children[-1]), "params")
    assert params is not None
    assert text(value_node(params, "workspaceCustomerId")) == "workspace.properties.customerId"
    assert text(value_node(params, "identityClientId")) == "identity.outputs.clientId"


#: Settings whose value follows from what the deployment does, not from a parameter of their own:
#: name -> the Bicep expression in api.bicep and the main.bicep parameter that drives it.
DERIVED_SETTINGS = {
    "LOG_ANALYTICS_FUNCTIONS": ("logAnalyticsFunctions ? 'true' : 'false'", "deployWorkspaceFunctions"),
}


@pytest.mark.parametrize(
    "spec", [s for s in APP_SETTINGS if s.deployed and s.default is not None], ids=lambda s: s.name
)
def test_setting_defaults_match_shared_settings(spec: Any) -> None:
    """A deployed setting with a default is a main.bicep parameter of that default, or that literal value
    (or follows from what the deployment does: DERIVED_SETTINGS)."""
    value = app_settings(API, "appLevelSettings")[spec.name]
    if spec.name in DERIVED_SETTINGS:
        expression, main_parameter = DERIVED_SETTINGS[spec.name]
        assert value == Expr(expression)
        assert main_parameter in declared(INFRA / "main.bicep", "parameter")
        return
    if isinstance(value, str):
        assert value == spec.default
        return
    main_parameters = declared(INFRA / "main.bicep", "parameter")
    name = camel(spec.name)
    assert name in main_parameters, f"main.bicep has no parameter {name} for {spec.name}"
    assert str(parameter_default(INFRA / "main.bicep", name)) == spec.default
    assert name in text(declared(API, "variable")["appLevelSettings"])


# --- workspace functions ------------------------------------------------------------------------------------


def _module(name: str) -> tree_sitter.Node:
    """The object of main.bicep's module declaration that deploys ``app/<name>.bicep``."""
    return next(
        body_of(node.named_children[-1])
        for node in tree(INFRA / "main.bicep").root_node.named_children
        if node.type == "module_declaration" and literal(node.named_children[1]) == f"app/{name}.bicep"
    )


def test_workspace_functions_are_the_code_catalog() -> None:
    from shared.codes import CATALOG_FUNCTIONS
    from shared.providers import PROVIDER_FUNCTIONS

    path = INFRA / "app" / "workspace-functions.bicep"
    (searches,) = [r for r in resources(path) if r.type == "Microsoft.OperationalInsights/workspaces/savedSearches"]
    assert searches.get("properties", "functionAlias") == Expr("fn.alias")
    assert searches.get("properties", "query") == Expr("fn.query")
    functions = variable(path, "functions")
    aliases = [*CATALOG_FUNCTIONS.values(), *PROVIDER_FUNCTIONS.values()]
    assert [fn["alias"] for fn in functions] == aliases
    for fn in functions:
        assert fn["query"] == Expr(f"loadTextContent('../functions/{fn['alias']}.kql')")
    assert {p.stem for p in FUNCTIONS.glob("*.kql")} == set(aliases)


def test_workspace_functions_come_before_their_callers() -> None:
    module = _module("workspace-functions")
    assert text(value_node(module, "scope")) == "resourceGroup(workspaceSubscriptionId, logAnalyticsResourceGroupName)"
    for caller, flag in (
        ("api", "logAnalyticsFunctions"),
        ("alerts", "catalogFunctions"),
        ("workbook", "catalogFunctions"),
    ):
        body = _module(caller)
        params = value_node(body, "params")
        assert params is not None and text(value_node(params, flag)) == "deployWorkspaceFunctions", caller
        assert "workspaceFunctions" in text(value_node(body, "dependsOn")), caller


# --- secrets ------------------------------------------------------------------------------------------------


def test_outputs_carry_no_keys_or_secrets() -> None:
    outputs = [(path, name, node) for path in BICEP_FILES for name, node in declared(path, "output").items()]
    assert outputs
    for path, name, node in outputs:
        assert not SECRET_LIKE.search(name), f"{path}: output {name}"
        assert not SECRET_LIKE.search(text(node.named_children[-1])), f"{path}: output {name}"
        assert not any(d.type == "decorators" and "secure" in text(d) for d in [node.prev_named_sibling] if d)


def test_no_key_listing_anywhere() -> None:
    for path in BICEP_FILES:
        for node in walk(tree(path).root_node):
            if node.type == "call_expression":
                function = text(node.child_by_field_name("function")).rsplit(".", 1)[-1].lower()
                assert not function.startswith("list"), f"{path}: {text(node)[:80]}"  # listKeys, listSecrets, ...


def test_app_setting_values_carry_no_secrets() -> None:
    # APPLICATIONINSIGHTS_CONNECTION_STRING is the one exception by name: it holds the resource's endpoints and
    # (non-secret) ikey, and ingestion needs an Entra token because local auth is off (disableLocalAuth).
    host = app_settings(API, "hostSettings")
    for name, value in {**host, **app_settings(API, "appLevelSettings")}.items():
        source = value.source if isinstance(value, Expr) else str(value)
        if name == "APPLICATIONINSIGHTS_CONNECTION_STRING":
            assert source == "applicationInsights.properties.ConnectionString"
            continue
        assert not SECRET_LIKE.search(source), f"{name} = {source}"


def test_main_outputs_name_url_and_workspace_id() -> None:
    outputs = {name: text(node.named_children[-1]) for name, node in declared(INFRA / "main.bicep", "output").items()}
    assert outputs["AZURE_FUNCTION_APP_NAME"] == "api.outputs.name"
    assert outputs["SERVICE_API_URI"] == "api.outputs.uri"
    assert outputs["LOG_ANALYTICS_WORKSPACE_ID"] == "workspace.properties.customerId"


# --- monitoring ---------------------------------------------------------------------------------------------


def test_application_insights_is_workspace_based_without_local_auth() -> None:
    insights = only(resources(INFRA / "app" / "monitoring.bicep"), "Microsoft.Insights/components")
    assert insights.get("properties", "DisableLocalAuth") is True
    assert insights.get("properties", "WorkspaceResourceId") == Expr("workspaceResourceId")
    assert (
        variable(INFRA / "app" / "rbac.bicep", "monitoringMetricsPublisher") == ROLE_IDS["Monitoring Metrics Publisher"]
    )


def test_diagnostic_setting_routes_the_email_categories() -> None:
    path = INFRA / "app" / "diagnostics.bicep"
    assert set(variable(path, "emailCategories")) == ACS_EMAIL_LOG_CATEGORIES
    setting = only(resources(path), "Microsoft.Insights/diagnosticSettings")
    assert setting.get("scope") == Expr("communicationService")
    assert setting.get("properties", "workspaceId") == Expr("workspaceResourceId")
    acs = [r for r in resources(path) if r.type == "Microsoft.Communication/communicationServices"]
    assert [r.existing for r in acs] == [True]


def test_alert_rules_are_identity_based_and_measure_the_query_columns() -> None:
    path = INFRA / "app" / "alerts.bicep"
    rules = [r for r in resources(path) if r.type == "Microsoft.Insights/scheduledQueryRules"]
    assert len(rules) == 3
    identity = variable(path, "ruleIdentity")
    assert identity["type"] == "UserAssigned"
    measured = {}
    for rule in rules:
        assert rule.get("identity") == Expr("ruleIdentity")
        (criterion,) = rule.get("properties", "criteria", "allOf")
        query = criterion["query"]
        assert isinstance(query, Expr)
        name = Path(query.source.rsplit("'", 2)[-2]).stem
        assert query.source == query_source(name)
        measured[name] = criterion["metricMeasureColumn"]
        assert criterion["operator"] == "GreaterThan"
    assert measured == ALERT_QUERIES


# --- queries and workbook -----------------------------------------------------------------------------------


def _loaded_files() -> dict[Path, set[Path]]:
    loaded: dict[Path, set[Path]] = {}
    for path in BICEP_FILES:
        for function in ("loadTextContent", "loadJsonContent", "loadFileAsBase64"):
            for call in calls(path, function):
                argument = call.child_by_field_name("arguments").named_children[0]  # type: ignore[union-attr]
                relative = literal(argument)
                assert isinstance(relative, str), f"{path}: {text(call)}"
                loaded.setdefault(path, set()).add((path.parent / relative).resolve())
    return loaded


def test_every_loaded_file_exists() -> None:
    for path, files in _loaded_files().items():
        for file in files:
            assert file.is_file(), f"{path} loads {file}, which does not exist"


def test_every_query_is_loaded_and_exists() -> None:
    loaded = set().union(*_loaded_files().values())
    expected = {(QUERIES / f"{name}.kql").resolve() for name in WORKBOOK_QUERIES | set(ALERT_QUERIES)}
    assert expected <= loaded
    assert {p.resolve() for p in QUERIES.glob("*.kql")} <= loaded, "a .kql file under infra/queries is unused"
    with_functions = {(WITH_FUNCTIONS / f"{name}.kql").resolve() for name in CATALOG_QUERIES}
    assert {p.resolve() for p in WITH_FUNCTIONS.glob("*.kql")} == with_functions
    assert with_functions <= loaded
    for file in expected | with_functions:
        assert file.read_text().strip(), file


@pytest.mark.parametrize("name,column", sorted(ALERT_QUERIES.items()))
def test_alert_queries_name_their_measure_column(name: str, column: str) -> None:
    assert re.search(rf"\b{column}\b", (QUERIES / f"{name}.kql").read_text())


def test_workbook_template_and_tiles() -> None:
    template = json.loads((INFRA / "workbook" / "acs-email-insights.workbook.json").read_text())
    assert template["workbook"]["version"] == "Notebook/1.0"
    assert template["tile"]["content"]["version"] == "KqlItem/1.0"
    tiles = variable(INFRA / "app" / "workbook.bicep", "tiles")
    assert {tile["name"] for tile in tiles} == WORKBOOK_QUERIES
    for tile in tiles:
        assert tile["query"] == Expr(query_source(tile["name"]))
    workbook = only(resources(INFRA / "app" / "workbook.bicep"), "Microsoft.Insights/workbooks")
    assert workbook.get("properties", "serializedData") == Expr("serializedData")


@pytest.mark.slow  # the Kusto parser over every query: make test runs it, make test-fast does not
def test_queries_are_valid_kql() -> None:
    kusto_check = pytest.importorskip("kusto_check")
    files = sorted(QUERIES.glob("*.kql"))
    try:
        kusto_check.assert_valid_kql([file.read_text() for file in files])
    except kusto_check.KustoCheckUnavailable as exc:
        pytest.skip(str(exc))


# --- parameters file ----------------------------------------------------------------------------------------


def test_parameters_file_matches_main() -> None:
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    main_parameters = declared(INFRA / "main.bicep", "parameter")
    assert set(parameters) <= set(main_parameters)
    required = {name for name in main_parameters if parameter_default(INFRA / "main.bicep", name) is None}
    generated = {name for name, node in main_parameters.items() if "type: 'generate'" in _decorators(node)}
    assert generated == {"linkSigningKey"}  # azd generates it once and keeps it in the environment
    assert required - generated <= set(parameters)
    assert not generated & set(parameters)  # azd generates only parameters the file leaves out
    for name, entry in parameters.items():
        assert re.fullmatch(r"\$\{[A-Z_]+\}", entry["value"]), f"{name}: azd-style ${{VARIABLE}} expected"


def _decorators(declaration: tree_sitter.Node) -> str:
    previous = declaration.prev_named_sibling
    return text(previous) if previous is not None and previous.type == "decorators" else ""


# --- event grid, report email, link signing -----------------------------------------------------------------

EVENT_GRID = INFRA / "app" / "event-grid.bicep"


def test_event_subscription_pushes_both_email_events_to_the_function() -> None:
    found = resources(EVENT_GRID)
    topic = only(found, "Microsoft.EventGrid/systemTopics")
    assert topic.get("location") == "global"
    assert topic.get("properties", "source") == Expr("communicationService.id")
    assert topic.get("properties", "topicType") == "Microsoft.Communication.CommunicationServices"
    subscription = only(found, "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    destination = subscription.get("properties", "destination")
    assert destination["endpointType"] == "AzureFunction"
    assert destination["properties"]["resourceId"] == Expr("'${functionAppId}/functions/${functionName}'")
    assert variable(EVENT_GRID, "functionName") == "ingest_email_events"
    assert subscription.get("properties", "filter", "includedEventTypes") == Expr("eventTypes")
    assert set(variable(EVENT_GRID, "eventTypes")) == {
        "Microsoft.Communication.EmailDeliveryReportReceived",
        "Microsoft.Communication.EmailEngagementTrackingReportReceived",
    }
    retry = subscription.get("properties", "retryPolicy")
    assert 1 <= retry["maxDeliveryAttempts"] <= 30 and 1 <= retry["eventTimeToLiveInMinutes"] <= 1440
    assert "deadLetterWithResourceIdentity" in text(subscription.body)


def test_event_subscription_waits_for_the_code() -> None:
    """Gated: created only when CREATE_EVENT_SUBSCRIPTION is true; azd's postdeploy hook turns it on."""
    declaration = next(
        node
        for node in tree(EVENT_GRID).root_node.named_children
        if node.type == "resource_declaration" and text(node.named_children[0]) == "emailEvents"
    )
    assert text(declaration.named_children[-1]).startswith("if (createSubscription)")
    assert parameter_default(EVENT_GRID, "createSubscription") is False
    module = _module("event-grid")
    params = value_node(module, "params")
    assert params is not None and text(value_node(params, "createSubscription")) == "withEventSubscription"
    assert json.loads((INFRA / "main.parameters.json").read_text())["parameters"]["createEventSubscription"] == {
        "value": "${CREATE_EVENT_SUBSCRIPTION}"
    }
    azure_yaml = (REPO_ROOT / "azure.yaml").read_text()
    assert "postdeploy:" in azure_yaml and "infra/hooks/postdeploy.sh" in azure_yaml
    hook = (INFRA / "hooks" / "postdeploy.sh").read_text()
    assert "azd env set CREATE_EVENT_SUBSCRIPTION true" in hook and "azd provision" in hook


def test_report_sender_role_is_the_narrow_custom_one() -> None:
    path = INFRA / "app" / "acs-sender.bicep"
    role = only(resources(path), "Microsoft.Authorization/roleDefinitions")
    assert role.get("properties", "type") == "CustomRole"
    assert role.get("properties", "permissions") == [{"actions": Expr("sendActions"), "notActions": []}]
    assert variable(path, "sendActions") == [
        "Microsoft.Communication/CommunicationServices/Read",
        "Microsoft.Communication/CommunicationServices/Write",
        "Microsoft.Communication/EmailServices/write",
    ]
    assert role.get("properties", "assignableScopes") == [Expr("assignableScope")]
    assert variable(path, "assignableScope") == Expr("resourceGroup().id")
    assignment = only(resources(path), "Microsoft.Authorization/roleAssignments")
    assert assignment.get("scope") == Expr("communicationService")
    assert assignment.get("properties", "roleDefinitionId") == Expr("sendEmailRole.id")
    module = next(
        node
        for node in tree(INFRA / "main.bicep").root_node.named_children
        if node.type == "module_declaration" and literal(node.named_children[1]) == "app/acs-sender.bicep"
    )
    # No send right unless the report is sent or the send route is allowed (ALLOW_SENDING).
    assert text(module.named_children[-1]).startswith("if (sendsEmail)")
    assert variable(INFRA / "main.bicep", "sendsEmail") == Expr(
        "sendsReport || (routeAcsLogs && toLower(allowSending) == 'true')"
    )


def test_suppression_list_role_is_the_narrow_custom_one_on_the_one_list() -> None:
    """Only the three address actions (no list create/delete, no domain or email-service rights), assigned on the
    list itself, in the list's resource group, and only when SUPPRESSION_LIST_ID is set."""
    path = INFRA / "app" / "suppression-writer.bicep"
    role = only(resources(path), "Microsoft.Authorization/roleDefinitions")
    assert role.get("properties", "type") == "CustomRole"
    assert role.get("properties", "permissions") == [{"actions": Expr("listAddressActions"), "notActions": []}]
    assert variable(path, "listAddressActions") == [
        f"Microsoft.Communication/EmailServices/Domains/SuppressionLists/SuppressionListAddresses/{action}"
        for action in ("read", "write", "delete")
    ]
    assert role.get("properties", "assignableScopes") == [Expr("assignableScope")]
    assert variable(path, "assignableScope") == Expr("resourceGroup().id")
    assignment = only(resources(path), "Microsoft.Authorization/roleAssignments")
    assert assignment.get("scope") == Expr("suppressionList")
    assert assignment.get("properties", "roleDefinitionId") == Expr("listWriterRole.id")
    lists = [r for r in resources(path) if r.type == "Microsoft.Communication/emailServices/domains/suppressionLists"]
    assert [r.existing for r in lists] == [True]  # the list is the customer's: never created or changed here
    module = next(
        node
        for node in tree(INFRA / "main.bicep").root_node.named_children
        if node.type == "module_declaration" and literal(node.named_children[1]) == "app/suppression-writer.bicep"
    )
    assert text(module.named_children[-1]).startswith("if (feedsSuppressionList)")
    scope = value_node(body_of(module.named_children[-1]), "scope")
    assert scope is not None and "suppressionListParts[2]" in text(scope) and "suppressionListParts[4]" in text(scope)
    app_level = app_settings(API, "appLevelSettings")
    assert app_level["SUPPRESSION_LIST_ID"] == Expr("suppressionListId")


def test_report_settings_and_acs_endpoint() -> None:
    app_level = app_settings(API, "appLevelSettings")
    assert app_level["REPORT_SENDER"] == Expr("reportSender")
    assert app_level["REPORT_RECIPIENTS"] == Expr("reportRecipients")
    assert app_level["ACS_ENDPOINT"] == Expr("acsEndpoint")
    params = value_node(_module("api"), "params")
    assert params is not None
    assert text(value_node(params, "acsEndpoint")) == "routeAcsLogs ? diagnostics.outputs.endpoint : ''"
    outputs = declared(INFRA / "app" / "diagnostics.bicep", "output")
    assert text(outputs["endpoint"].named_children[-1]) == "'https://${communicationService.properties.hostName}'"


def test_link_signing_key_is_a_secure_parameter_and_never_an_output() -> None:
    assert app_settings(API, "appLevelSettings")["LINK_SIGNING_KEY"] == Expr("linkSigningKey")
    for path in (INFRA / "main.bicep", API):
        assert "@secure()" in _decorators(declared(path, "parameter")["linkSigningKey"]), path
    assert "@minLength(32)" in _decorators(declared(INFRA / "main.bicep", "parameter")["linkSigningKey"])
    for path in BICEP_FILES:
        for node in declared(path, "output").values():
            assert "linkSigningKey" not in text(node), path


# --- deployment package -------------------------------------------------------------------------------------

#: Packages of the embedded store only (requirements-local.txt): never in the deployment package.
LOCAL_ONLY_PACKAGES = {"duckdb", "duckdb-kql", "antlr4-python3-runtime", "pytz"}


def _requirements(name: str) -> tuple[set[str], set[str]]:
    """(pinned package names, included files) of one requirements file."""
    packages, includes = set(), set()
    for line in (REPO_ROOT / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            includes.add(line[3:].strip())
        elif line:
            assert "==" in line, f"{name}: {line} is not pinned"
            packages.add(line.split("==")[0].lower())
    return packages, includes


def test_deployed_requirements_leave_out_the_embedded_engine() -> None:
    deployed, deployed_includes = _requirements("requirements.txt")
    local, local_includes = _requirements("requirements-local.txt")
    _, dev_includes = _requirements("requirements-dev.txt")
    assert not deployed_includes
    assert not deployed & LOCAL_ONLY_PACKAGES
    assert local == LOCAL_ONLY_PACKAGES and local_includes == {"requirements.txt"}
    assert "requirements-local.txt" in dev_includes  # make run / make test still get the embedded engine


def test_app_on_log_analytics_imports_no_local_only_package() -> None:
    """With a workspace id, the app imports and builds its Log Analytics source without the embedded engine."""
    script = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"duckdb", "duckdb_kql", "antlr4", "pytz"}:
            raise ImportError(f"{name} is not deployed")
sys.meta_path.insert(0, Block())
import function_app
from shared.services import make_source
from shared.settings import Settings
print(type(make_source(Settings.from_env())).__name__)
"""
    env = {**os.environ, "LOG_ANALYTICS_WORKSPACE_ID": "00000000-0000-0000-0000-000000000000"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "LogAnalyticsSource"


def test_funcignore_keeps_development_files_out() -> None:
    ignored = {line.strip().rstrip("/") for line in (REPO_ROOT / ".funcignore").read_text().splitlines()}
    assert {"tests", "benchmarks", "tools", "docs", "infra"} <= ignored  # tools/devhost: the dev host
    assert {"requirements-dev.txt", "requirements-local.txt", "local.settings.json"} <= ignored
    assert "requirements.txt" not in ignored and "function_app.py" not in ignored and "shared" not in ignored


def test_azure_yaml_matches_its_schema() -> None:
    schema_path = REPO_ROOT.parent / "shared" / "reference-data" / "schemas" / "azure.yaml.schema.json"
    if not schema_path.is_file():
        pytest.skip(f"azure.yaml schema not found at {schema_path}")
    jsonschema = pytest.importorskip("jsonschema")
    yaml = pytest.importorskip("yaml")
    jsonschema.validate(yaml.safe_load((REPO_ROOT / "azure.yaml").read_text()), json.loads(schema_path.read_text()))
