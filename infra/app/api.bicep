// The Flex Consumption plan and the Function App (Python 3.11, v2 programming model, repository root).
// Everything authenticates with the user-assigned identity: host storage, deployment package, telemetry,
// Log Analytics queries, the tables and sending the report. No keys or connection strings with secrets are set;
// the one secret setting is LINK_SIGNING_KEY, the app's own HMAC key.
param name string
param planName string
param location string
param tags object = {}
@description('Resource id of the user-assigned managed identity.')
param identityId string
@description('Client id of the user-assigned managed identity.')
param identityClientId string
param storageAccountName string
@description('Blob container of the storage account that holds the deployment package.')
param deploymentContainerName string
param applicationInsightsName string
param maximumInstanceCount int = 40
param instanceMemoryMB int = 2048

// Values of the app-level settings (shared/settings.py APP_SETTINGS with deployed=True).
@description('customerId (GUID) of the Log Analytics workspace with the ACS email tables.')
param workspaceCustomerId string
param logQueryTimeoutSeconds int
param summaryTable string
param dailySummarySchedule string
param summaryLookbackDays int
param summaryBackfillDays int
param statusGraceHours int
@description('Whether the code-catalog workspace functions are deployed (LOG_ANALYTICS_FUNCTIONS).')
param logAnalyticsFunctions bool
param stateTable string
param subscriptionsTable string
param followSchedule string
param maxSubscriptions int
@description('Storage queue of fold requests (FOLD_QUEUE), in the app\'s storage account.')
param foldQueue string
@description('Days a message\'s delivery state is kept after it was first seen (STATE_RETENTION_DAYS).')
param stateRetentionDays int
@description('Six-field NCRONTAB schedule (UTC) of the retention timer (RETENTION_SCHEDULE).')
param retentionSchedule string
@secure()
@description('HMAC key of continuation tokens and poll links (LINK_SIGNING_KEY).')
param linkSigningKey string
param requestBudgetSeconds int
@description('Sender address of the daily report email (REPORT_SENDER); empty: no report email.')
param reportSender string = ''
@description('Comma-separated recipients of the daily report email (REPORT_RECIPIENTS).')
param reportRecipients string = ''
@description('https://<host name> of the Communication Services resource (ACS_ENDPOINT); empty: none.')
param acsEndpoint string = ''
@description('ARM id of the suppression list fed with hard bounces (SUPPRESSION_LIST_ID); empty: none.')
param suppressionListId string = ''
param suppressionSchedule string
@description('SEND_LIMIT_PER_MINUTE: the ACS resource\'s emails per minute.')
param sendLimitPerMinute int
@description('SEND_LIMIT_PER_HOUR: the ACS resource\'s emails per hour.')
param sendLimitPerHour int

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Settings the app's code reads: exactly the APP_SETTINGS entries with deployed=True (tests/infra/test_infra.py).
var appLevelSettings = [
  { name: 'LOG_ANALYTICS_WORKSPACE_ID', value: workspaceCustomerId }
  { name: 'LOG_QUERY_TIMEOUT_SECONDS', value: string(logQueryTimeoutSeconds) }
  { name: 'AZURE_CLIENT_ID', value: identityClientId }
  { name: 'SUMMARY_STORAGE', value: 'AzureWebJobsStorage' }
  { name: 'SUMMARY_TABLE', value: summaryTable }
  { name: 'DAILY_SUMMARY_SCHEDULE', value: dailySummarySchedule }
  { name: 'SUMMARY_LOOKBACK_DAYS', value: string(summaryLookbackDays) }
  { name: 'SUMMARY_BACKFILL_DAYS', value: string(summaryBackfillDays) }
  { name: 'STATUS_GRACE_HOURS', value: string(statusGraceHours) }
  { name: 'LOG_ANALYTICS_FUNCTIONS', value: logAnalyticsFunctions ? 'true' : 'false' }
  { name: 'STATE_TABLE', value: stateTable }
  { name: 'SUBSCRIPTIONS_TABLE', value: subscriptionsTable }
  { name: 'FOLLOW_SCHEDULE', value: followSchedule }
  { name: 'MAX_SUBSCRIPTIONS', value: string(maxSubscriptions) }
  { name: 'FOLD_QUEUE', value: foldQueue }
  { name: 'STATE_RETENTION_DAYS', value: string(stateRetentionDays) }
  { name: 'RETENTION_SCHEDULE', value: retentionSchedule }
  // The one secret among the settings (a @secure() parameter, never an output): see docs/deploy.md to roll it.
  { name: 'LINK_SIGNING_KEY', value: linkSigningKey }
  { name: 'REQUEST_BUDGET_SECONDS', value: string(requestBudgetSeconds) }
  { name: 'REPORT_SENDER', value: reportSender }
  { name: 'REPORT_RECIPIENTS', value: reportRecipients }
  { name: 'ACS_ENDPOINT', value: acsEndpoint }
  { name: 'SUPPRESSION_LIST_ID', value: suppressionListId }
  { name: 'SUPPRESSION_SCHEDULE', value: suppressionSchedule }
  { name: 'SEND_LIMIT_PER_MINUTE', value: string(sendLimitPerMinute) }
  { name: 'SEND_LIMIT_PER_HOUR', value: string(sendLimitPerHour) }
  // Sender health thresholds (percent; docs/semantics.md): the defaults of shared/settings.py.
  { name: 'HEALTH_HARD_BOUNCE_WATCH_PERCENT', value: '2' }
  { name: 'HEALTH_HARD_BOUNCE_AT_RISK_PERCENT', value: '5' }
  { name: 'HEALTH_SPAM_WATCH_PERCENT', value: '0.1' }
  { name: 'HEALTH_SPAM_AT_RISK_PERCENT', value: '0.5' }
  { name: 'HEALTH_FAILURE_WATCH_PERCENT', value: '2' }
  { name: 'HEALTH_MIN_RECIPIENTS', value: '20' }
]

// Settings the Functions host reads. Storage is identity-based; Application Insights accepts Entra-authenticated
// telemetry only (local auth is off), so its connection string carries no usable secret.
// The runtime is set in functionAppConfig.runtime: Flex Consumption rejects the worker-runtime app setting.
var hostSettings = [
  { name: 'AzureWebJobsStorage__accountName', value: storage.name }
  { name: 'AzureWebJobsStorage__blobServiceUri', value: storage.properties.primaryEndpoints.blob }
  { name: 'AzureWebJobsStorage__queueServiceUri', value: storage.properties.primaryEndpoints.queue }
  { name: 'AzureWebJobsStorage__tableServiceUri', value: storage.properties.primaryEndpoints.table }
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: applicationInsights.properties.ConnectionString }
  { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identityClientId};Authorization=AAD' }
  // The worker's threads for concurrent invocations (its most): the events of one Event Grid delivery run at
  // once and share journal writes (shared/state/journal.py), so more threads, fewer Table requests.
  { name: 'PYTHON_THREADPOOL_THREAD_COUNT', value: '32' }
]

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      // Exactly hostSettings + appLevelSettings, set with the site so the host's first start has them.
      appSettings: concat(hostSettings, appLevelSettings)
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      // No ftpsState: Flex Consumption refuses it ("Site.SiteConfig.FtpsState ... is invalid"); FTP publishing is
      // off through the ftp basicPublishingCredentialsPolicies below.
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Publishing with user name and password (FTP and SCM basic auth) is off; azd and Core Tools use Entra ID.
// ARM requires `location` on these policies although the generated type data omits it (Microsoft's verified
// modules set it too); tests/infra/test_bicep_types.py allows it through overrides.json.
resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  location: location
  properties: {
    allow: false
  }
}

resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  location: location
  properties: {
    allow: false
  }
}

output name string = functionApp.name
output id string = functionApp.id
output defaultHostName string = functionApp.properties.defaultHostName
output uri string = 'https://${functionApp.properties.defaultHostName}'
