// Workspace-based Application Insights for the Function App. Local (instrumentation key) authentication is
// off: telemetry is accepted only with an Entra ID token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
param name string
param location string
param tags object = {}
@description('Resource id of the Log Analytics workspace that stores the telemetry.')
param workspaceResourceId string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: name
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspaceResourceId
    DisableLocalAuth: true
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

output name string = applicationInsights.name
output id string = applicationInsights.id
