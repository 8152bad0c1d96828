// ACS Email Insights: a Flex Consumption Function App that reads ACS email logs from an existing Log
// Analytics workspace and keeps daily summaries in Table Storage, plus a workbook and log search alerts.
//
// Deploy with `azd up`, or `az deployment sub create --template-file infra/main.bicep --parameters
// infra/main.parameters.json ...` (see docs/deploy.md).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment; used for the resource group name and a unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region of the new resource group, the Function App (must offer Flex Consumption) and its storage.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Name of the new resource group. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

@minLength(4)
@description('Name of the EXISTING Log Analytics workspace that receives the ACS email logs.')
param logAnalyticsWorkspaceName string

@minLength(1)
@description('Resource group of the existing Log Analytics workspace.')
param logAnalyticsResourceGroupName string

@description('Subscription id of the existing Log Analytics workspace. Empty: the deployment\'s subscription.')
param logAnalyticsSubscriptionId string = ''

@description('Name of an EXISTING Communication Services resource whose email logs should be routed to the workspace. Empty: no diagnostic setting is created.')
param acsResourceName string = ''

@description('Resource group of the Communication Services resource. Empty: no diagnostic setting is created.')
param acsResourceGroupName string = ''

@description('Subscription id of the Communication Services resource. Empty: the deployment\'s subscription.')
param acsSubscriptionId string = ''

@description('\'true\' once the function code is deployed: create the Event Grid subscription that pushes the Communication Services resource\'s email events to ingest_email_events. azd\'s postdeploy hook sets it (CREATE_EVENT_SUBSCRIPTION) and re-provisions. Anything else: only the system topic.')
param createEventSubscription string = ''

@description('Name of the Event Grid system topic on the Communication Services resource. A resource has at most one system topic: give the name of an existing one to reuse it. Empty: evgt-acsmail-<token>.')
param eventGridSystemTopicName string = ''

@description('Blob container (in the app\'s storage account) for email events Event Grid could not deliver. Empty: they are dropped after the retries.')
param eventDeadLetterContainer string = 'eventgrid-deadletter'

@description('REPORT_SENDER: verified sender address (on a domain linked to the Communication Services resource) of the daily report email. Empty: no report email, and no send permission for the identity.')
param reportSender string = ''

@description('\'true\': POST /api/messages may send email through the Communication Services resource (ACS_ENDPOINT), so the identity gets the send-only role even without a report sender. Anything else: the role is given only with reportSender, and the send route answers 502 naming the role.')
param allowSending string = ''

@description('REPORT_RECIPIENTS: comma-separated addresses that receive the daily report email.')
param reportRecipients string = ''

@description('SUPPRESSION_LIST_ID: ARM id of the email domain suppression list that hard bounces are added to (/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Communication/emailServices/NAME/domains/DOMAIN/suppressionLists/LIST). Empty: no list is fed, and the identity gets no role on one.')
param suppressionListId string = ''

@description('SUPPRESSION_SCHEDULE: six-field NCRONTAB schedule (UTC) of the timer that adds hard bounces to the suppression list.')
param suppressionSchedule string = '0 */15 * * * *'

@secure()
@minLength(32)
@description('LINK_SIGNING_KEY: HMAC key that signs continuation tokens and poll links (at least 32 characters). azd generates one on first provision and keeps it in the environment; rolling it invalidates outstanding tokens and links (docs/deploy.md).')
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 48
    }
  }
})
param linkSigningKey string

@description('E-mail address that receives the alert notifications. Empty: the alert rules fire without an action group.')
param alertEmailAddress string = ''

@minValue(1)
@maxValue(100)
@description('Hard-bounce alert: fires when the hard-bounce rate (percent of final per-recipient statuses) over the window exceeds this.')
param hardBounceRateThresholdPercent int = 5

@minValue(1)
@description('Latency alert: fires when the p95 send-to-delivered duration (seconds) over the window exceeds this.')
param p95LatencyThresholdSeconds int = 900

@minValue(1)
@maxValue(1000)
@description('Upper bound of Flex Consumption instances.')
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
@description('Memory (MB) of each Flex Consumption instance.')
param instanceMemoryMB int = 2048

@description('Deploy the SMTP code catalog into the workspace as KQL functions (saved searches with a function alias): every query, workbook tile and alert rule then calls them instead of carrying ~42 KB of datatables. Needs write access to the workspace\'s saved searches. false: queries carry the catalog inline.')
param deployWorkspaceFunctions bool = true

// App-level settings (shared/settings.py APP_SETTINGS, deployed=True); the defaults must equal the ones there.
@minValue(1)
@maxValue(600)
@description('LOG_QUERY_TIMEOUT_SECONDS: server timeout for one Log Analytics query.')
param logQueryTimeoutSeconds int = 180

@minLength(3)
@maxLength(63)
@description('SUMMARY_TABLE: Azure Table Storage table for daily summaries.')
param summaryTable string = 'DeliverySummaries'

@minLength(3)
@maxLength(63)
@description('STATE_TABLE: Azure Table Storage table of the delivery state.')
param stateTable string = 'DeliveryState'

@minLength(3)
@maxLength(63)
@description('SUBSCRIPTIONS_TABLE: Azure Table Storage table of webhook subscriptions.')
param subscriptionsTable string = 'Subscriptions'

@description('FOLLOW_SCHEDULE: six-field NCRONTAB schedule (UTC) of the Log Analytics follower timer.')
param followSchedule string = '0 */1 * * * *'

@minValue(1)
@maxValue(100000)
@description('MAX_SUBSCRIPTIONS: most push subscriptions that may exist at once; creating one more answers 409.')
param maxSubscriptions int = 1000
@minLength(3)
@maxLength(56)
@description('FOLD_QUEUE: storage queue of fold requests (lowercase); failed requests go to FOLD_QUEUE-poison.')
param foldQueue string = 'journal-folds'

@description('STATE_RETENTION_DAYS: days a message\'s delivery state is kept after it was first seen.')
param stateRetentionDays int = 30

@description('RETENTION_SCHEDULE: six-field NCRONTAB schedule (UTC) of the retention timer (expired state, notFound markers).')
param retentionSchedule string = '0 */10 * * * *'

@minValue(5)
@maxValue(230)
@description('REQUEST_BUDGET_SECONDS: time budget of one HTTP request, Log Analytics retries included (below the 230 s HTTP limit).')
param requestBudgetSeconds int = 25

@minValue(1)
@description('SEND_LIMIT_PER_MINUTE: emails (send requests) per minute the ACS resource may send (custom-domain default 30; Azure-managed 5).')
param sendLimitPerMinute int = 30

@minValue(1)
@description('SEND_LIMIT_PER_HOUR: emails (send requests) per hour the ACS resource may send (custom-domain default 100; Azure-managed 10).')
param sendLimitPerHour int = 100

@description('DAILY_SUMMARY_SCHEDULE: six-field NCRONTAB schedule (UTC) of the daily summary timer.')
param dailySummarySchedule string = '0 30 1 * * *'

@minValue(1)
@description('SUMMARY_LOOKBACK_DAYS: days recomputed on every run, since status events arrive late.')
param summaryLookbackDays int = 3

@minValue(0)
@description('SUMMARY_BACKFILL_DAYS: days checked for missing summaries and backfilled.')
param summaryBackfillDays int = 14

@minValue(1)
@description('STATUS_GRACE_HOURS: how long after a send status events are still looked for.')
param statusGraceHours int = 72

// `az deployment sub create --parameters infra/main.parameters.json` passes azd's ${VARIABLE} placeholders
// through unexpanded; an optional parameter still holding one is treated as empty (not set).
var placeholderPrefix = '\${'
var workspaceSubscriptionId = empty(logAnalyticsSubscriptionId) || startsWith(logAnalyticsSubscriptionId, placeholderPrefix) ? subscription().subscriptionId : logAnalyticsSubscriptionId
var acsName = startsWith(acsResourceName, placeholderPrefix) ? '' : acsResourceName
var acsGroupName = startsWith(acsResourceGroupName, placeholderPrefix) ? '' : acsResourceGroupName
var acsSubscription = empty(acsSubscriptionId) || startsWith(acsSubscriptionId, placeholderPrefix) ? subscription().subscriptionId : acsSubscriptionId
var alertEmail = startsWith(alertEmailAddress, placeholderPrefix) ? '' : alertEmailAddress
var routeAcsLogs = !empty(acsName) && !empty(acsGroupName)
var withEventSubscription = routeAcsLogs && toLower(createEventSubscription) == 'true'
var sender = startsWith(reportSender, placeholderPrefix) ? '' : reportSender
var recipients = startsWith(reportRecipients, placeholderPrefix) ? '' : reportRecipients
var sendsReport = routeAcsLogs && !empty(sender)
// The send-only role serves the report and the send route (POST /api/messages) alike.
var sendsEmail = sendsReport || (routeAcsLogs && toLower(allowSending) == 'true')
var suppressionList = startsWith(suppressionListId, placeholderPrefix) ? '' : suppressionListId
// /subscriptions/{1}/resourceGroups/{3}/providers/Microsoft.Communication/emailServices/{7}/domains/{9}/suppressionLists/{11}
var suppressionListParts = split(empty(suppressionList) ? '/s/x/r/x/p/x/e/x/d/x/l/x' : suppressionList, '/')
var feedsSuppressionList = !empty(suppressionList)
var deadLetterContainer = startsWith(eventDeadLetterContainer, placeholderPrefix) ? '' : eventDeadLetterContainer

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-acsmail-${resourceToken}'
var defaultTopicName = 'evgt-acsmail-${resourceToken}'
var topicName = empty(eventGridSystemTopicName) || startsWith(eventGridSystemTopicName, placeholderPrefix) ? defaultTopicName : eventGridSystemTopicName
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-${environmentName}'
  location: location
  tags: tags
}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' existing = {
  name: logAnalyticsWorkspaceName
  scope: resourceGroup(workspaceSubscriptionId, logAnalyticsResourceGroupName)
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-acsmail-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'stacsmail${take(resourceToken, 15)}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    summaryTableName: summaryTable
    stateTableName: stateTable
    subscriptionsTableName: subscriptionsTable
    foldQueueName: foldQueue
    deadLetterContainerName: routeAcsLogs ? deadLetterContainer : ''
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    name: 'appi-acsmail-${resourceToken}'
    location: location
    tags: tags
    workspaceResourceId: workspace.id
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.name
    principalId: identity.outputs.principalId
  }
}

module workspaceRbac 'app/workspace-rbac.bicep' = {
  name: 'workspace-rbac-${resourceToken}'
  scope: resourceGroup(workspaceSubscriptionId, logAnalyticsResourceGroupName)
  params: {
    workspaceName: logAnalyticsWorkspaceName
    principalId: identity.outputs.principalId
  }
}

module workspaceFunctions 'app/workspace-functions.bicep' = if (deployWorkspaceFunctions) {
  name: 'workspace-functions-${resourceToken}'
  scope: resourceGroup(workspaceSubscriptionId, logAnalyticsResourceGroupName)
  params: {
    workspaceName: logAnalyticsWorkspaceName
  }
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-acsmail-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.name
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    workspaceCustomerId: workspace.properties.customerId
    logQueryTimeoutSeconds: logQueryTimeoutSeconds
    summaryTable: summaryTable
    dailySummarySchedule: dailySummarySchedule
    summaryLookbackDays: summaryLookbackDays
    summaryBackfillDays: summaryBackfillDays
    statusGraceHours: statusGraceHours
    logAnalyticsFunctions: deployWorkspaceFunctions
    stateTable: stateTable
    subscriptionsTable: subscriptionsTable
    followSchedule: followSchedule
    maxSubscriptions: maxSubscriptions
    foldQueue: foldQueue
    stateRetentionDays: stateRetentionDays
    retentionSchedule: retentionSchedule
    linkSigningKey: linkSigningKey
    requestBudgetSeconds: requestBudgetSeconds
    reportSender: sender
    reportRecipients: recipients
    acsEndpoint: routeAcsLogs ? diagnostics.outputs.endpoint : ''
    suppressionListId: suppressionList
    suppressionSchedule: suppressionSchedule
    sendLimitPerMinute: sendLimitPerMinute
    sendLimitPerHour: sendLimitPerHour
  }
  // The host starts with identity-based storage: grant the roles first. Its queries call the workspace functions.
  dependsOn: [
    rbac
    workspaceRbac
    workspaceFunctions
  ]
}

module diagnostics 'app/diagnostics.bicep' = if (routeAcsLogs) {
  name: 'acs-diagnostics-${resourceToken}'
  scope: resourceGroup(acsSubscription, routeAcsLogs ? acsGroupName : rg.name)
  params: {
    communicationServiceName: acsName
    workspaceResourceId: workspace.id
  }
}

module eventGrid 'app/event-grid.bicep' = if (routeAcsLogs) {
  name: 'acs-event-grid-${resourceToken}'
  scope: resourceGroup(acsSubscription, routeAcsLogs ? acsGroupName : rg.name)
  params: {
    communicationServiceName: acsName
    systemTopicName: topicName
    tags: tags
    functionAppId: api.outputs.id
    createSubscription: withEventSubscription
    identityId: identity.outputs.id
    deadLetterStorageAccountId: storage.outputs.id
    deadLetterContainerName: deadLetterContainer
  }
  // The topic dead-letters as the identity, which holds Storage Blob Data Owner on the account.
  dependsOn: [
    rbac
  ]
}

module acsSender 'app/acs-sender.bicep' = if (sendsEmail) {
  name: 'acs-sender-${resourceToken}'
  scope: resourceGroup(acsSubscription, sendsEmail ? acsGroupName : rg.name)
  params: {
    communicationServiceName: acsName
    principalId: identity.outputs.principalId
    resourceToken: resourceToken
  }
}

module suppressionWriter 'app/suppression-writer.bicep' = if (feedsSuppressionList) {
  name: 'suppression-writer-${resourceToken}'
  scope: resourceGroup(feedsSuppressionList ? suppressionListParts[2] : subscription().subscriptionId, feedsSuppressionList ? suppressionListParts[4] : rg.name)
  params: {
    emailServiceName: suppressionListParts[8]
    domainName: suppressionListParts[10]
    suppressionListName: suppressionListParts[12]
    principalId: identity.outputs.principalId
    resourceToken: resourceToken
  }
}

module workbook 'app/workbook.bicep' = {
  name: 'workbook'
  scope: rg
  params: {
    location: location
    tags: tags
    workspaceResourceId: workspace.id
    environmentName: environmentName
    catalogFunctions: deployWorkspaceFunctions
  }
  dependsOn: [
    workspaceFunctions
  ]
}

module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    location: workspace.location
    tags: tags
    resourceToken: resourceToken
    workspaceResourceId: workspace.id
    identityId: identity.outputs.id
    alertEmailAddress: alertEmail
    hardBounceRateThresholdPercent: hardBounceRateThresholdPercent
    p95LatencyThresholdSeconds: p95LatencyThresholdSeconds
    catalogFunctions: deployWorkspaceFunctions
  }
  // The rules query the workspace as the identity: it needs Log Analytics Reader first; ARM validates each
  // rule's query on creation, so the workspace functions it calls must exist first.
  dependsOn: [
    workspaceRbac
    workspaceFunctions
  ]
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output LOG_ANALYTICS_WORKSPACE_ID string = workspace.properties.customerId
output EVENT_GRID_SYSTEM_TOPIC string = routeAcsLogs ? eventGrid.outputs.systemTopicName : ''
output EVENT_SUBSCRIPTION_CREATED bool = withEventSubscription
