// Deployed into the resource group of an existing Communication Services resource: routes its email log
// categories to the Log Analytics workspace (tables ACSEmailSendMailOperational, ...), and reports the
// resource's endpoint (ACS_ENDPOINT) for sending the daily report.
param communicationServiceName string
param workspaceResourceId string

var emailCategories = [
  'EmailSendMailOperational'
  'EmailStatusUpdateOperational'
  'EmailUserEngagementOperational'
]

resource communicationService 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: communicationServiceName
}

resource emailLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'acs-email-insights'
  scope: communicationService
  properties: {
    workspaceId: workspaceResourceId
    logs: [for category in emailCategories: {
      category: category
      enabled: true
    }]
  }
}

@description('Endpoint of the Communication Services resource (ACS_ENDPOINT), from its host name.')
output endpoint string = 'https://${communicationService.properties.hostName}'
