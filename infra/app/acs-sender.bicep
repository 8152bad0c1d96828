// Deployed into the resource group of the existing Communication Services resource when the daily report is
// sent or the send route is allowed (allowSending): lets the app's identity send email through that resource
// with Entra ID (ACS_ENDPOINT, no access key). Both send with the same SDK call (begin_send), so one role serves.
//
// Role choice. Sending with an Entra token needs, on the Communication Services resource,
// Microsoft.Communication/CommunicationServices/Read and .../Write, plus Microsoft.Communication/EmailServices/write
// (ACS SMTP/Entra authentication docs, custom-role section). The built-in
// "Communication and Email Service Owner" (09976791-48a7-449e-bb21-39d1a415f350) also works but lets the
// identity create, change and delete Communication and Email resources, domains, sender names and suppression
// lists. A custom role with exactly those three actions, assignable only in this resource group and
// assigned on the one resource, is the narrowest grant that sends. The cost: the deployer needs
// Microsoft.Authorization/roleDefinitions/write here (Owner or User Access Administrator; Role Based Access
// Control Administrator is not enough), see docs/deploy.md.
param communicationServiceName string
@description('Principal (object) id of the user-assigned managed identity.')
param principalId string
@description('Makes the role name unique in the tenant (role names are tenant-wide).')
param resourceToken string

var sendActions = [
  'Microsoft.Communication/CommunicationServices/Read'
  'Microsoft.Communication/CommunicationServices/Write'
  'Microsoft.Communication/EmailServices/write'
]

// The role can be assigned in this resource group only (and is, on the one resource below).
var assignableScope = resourceGroup().id

resource communicationService 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: communicationServiceName
}

resource sendEmailRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'acs-email-insights-send', resourceToken)
  properties: {
    roleName: 'ACS Email Insights sender (${resourceToken})'
    description: 'Send email through a Communication Services resource with Entra ID (ACS Email Insights report and send route).'
    type: 'CustomRole'
    permissions: [
      {
        actions: sendActions
        notActions: []
      }
    ]
    assignableScopes: [
      assignableScope
    ]
  }
}

resource sendEmailAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(communicationService.id, principalId, sendEmailRole.id)
  scope: communicationService
  properties: {
    roleDefinitionId: sendEmailRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
