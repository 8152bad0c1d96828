// Log search alert rules over the workspace, evaluated as the user-assigned identity (which holds Log
// Analytics Reader on the workspace). Each rule's KQL is loaded from queries/alert-*.kql and returns one row
// whose real column is compared with the threshold (metricMeasureColumn). A query that joins the code catalog
// has a second form in queries/with-functions/ that calls the catalog's workspace functions.
param location string
param tags object = {}
param resourceToken string
@description('Resource id of the Log Analytics workspace with the ACS email tables.')
param workspaceResourceId string
@description('Resource id of the user-assigned managed identity the rules query as.')
param identityId string
@description('E-mail receiver of the action group. Empty: no action group; the rules still fire in the portal.')
param alertEmailAddress string = ''
param hardBounceRateThresholdPercent int
param p95LatencyThresholdSeconds int
@description('Whether the code-catalog workspace functions exist: the hard-bounce rule then calls them (6 KB) instead of carrying the catalog (48 KB of the 64 KB a rule may hold).')
param catalogFunctions bool = false
@description('How often the rules run (ISO 8601 duration).')
param evaluationFrequency string = 'PT1H'
@description('Time window each evaluation looks at (ISO 8601 duration).')
param windowSize string = 'PT6H'

var withActionGroup = !empty(alertEmailAddress)
var actionGroupName = 'ag-acsmail-${resourceToken}'
var ruleIdentity = {
  type: 'UserAssigned'
  userAssignedIdentities: {
    '${identityId}': {}
  }
}
var ruleActions = {
  actionGroups: withActionGroup ? [
    resourceId('Microsoft.Insights/actionGroups', actionGroupName)
  ] : []
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (withActionGroup) {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'acsmail'
    enabled: true
    emailReceivers: [
      {
        name: 'acs-email-insights'
        emailAddress: alertEmailAddress
        useCommonAlertSchema: true
      }
    ]
  }
}

resource hardBounceRateAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-acsmail-hard-bounce-rate-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  identity: ruleIdentity
  properties: {
    displayName: 'ACS email: hard-bounce rate above ${hardBounceRateThresholdPercent}%'
    description: 'Share of final per-recipient statuses that are hard bounces exceeded the threshold. See docs/deploy.md#alerts.'
    severity: 2
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: evaluationFrequency
    windowSize: windowSize
    criteria: {
      allOf: [
        {
          query: catalogFunctions ? loadTextContent('../queries/with-functions/alert-hard-bounce-rate.kql') : loadTextContent('../queries/alert-hard-bounce-rate.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'HardBounceRate'
          operator: 'GreaterThan'
          threshold: hardBounceRateThresholdPercent
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: ruleActions
  }
  dependsOn: [
    actionGroup
  ]
}

resource p95LatencyAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-acsmail-p95-latency-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  identity: ruleIdentity
  properties: {
    displayName: 'ACS email: p95 delivery latency above ${p95LatencyThresholdSeconds} s'
    description: '95th percentile of send-to-delivered time exceeded the threshold. See docs/deploy.md#alerts.'
    severity: 3
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: evaluationFrequency
    windowSize: windowSize
    criteria: {
      allOf: [
        {
          query: loadTextContent('../queries/alert-p95-latency.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'P95DurationSeconds'
          operator: 'GreaterThan'
          threshold: p95LatencyThresholdSeconds
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: ruleActions
  }
  dependsOn: [
    actionGroup
  ]
}

resource senderHealthAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-acsmail-sender-health-${resourceToken}'
  location: location
  tags: tags
  kind: 'LogAlert'
  identity: ruleIdentity
  properties: {
    displayName: 'ACS email: a sender domain is at risk'
    description: 'Over the last 24 hours a sender domain reached the atRisk verdict of GET /api/senders/health (hard-bounce or spam / quarantine rate at the default thresholds). See docs/semantics.md#sender-health.'
    severity: 2
    enabled: true
    scopes: [
      workspaceResourceId
    ]
    evaluationFrequency: evaluationFrequency
    // The query looks back 24 h (shared/monitoring.py ALERT_LOOKBACKS): a reputation is a day's, not an hour's.
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: catalogFunctions ? loadTextContent('../queries/with-functions/alert-sender-health.kql') : loadTextContent('../queries/alert-sender-health.kql')
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'AtRiskDomains'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: ruleActions
  }
  dependsOn: [
    actionGroup
  ]
}

output hardBounceRateAlertId string = hardBounceRateAlert.id
output p95LatencyAlertId string = p95LatencyAlert.id
output senderHealthAlertId string = senderHealthAlert.id
