// Deployed into the resource group of the email domain's suppression list when SUPPRESSION_LIST_ID is set: lets
// the app's identity read, add and remove the addresses of that one list (shared/suppression/arm.py).
//
// Role choice. Suppression lists live under the Email Communication Services resource (emailServices), not the
// Communication Services resource, so no role on the latter reaches them (emailServices/domains/suppressionLists). The
// built-in "Communication and Email Service Owner" (09976791-48a7-449e-bb21-39d1a415f350) and Contributor work
// but can also change or delete the email service, its domains, sender usernames and the lists themselves. A
// custom role with only the three address actions, assigned on the one list, is the narrowest grant that works:
// the identity cannot create or delete lists, touch another domain's list, or change the domain. As for the
// report's send role (acs-sender.bicep), the deployer needs Microsoft.Authorization/roleDefinitions/write here.
@description('Name of the Email Communication Services resource (emailServices) holding the domain.')
param emailServiceName string
@description('Name of the email domain resource holding the list.')
param domainName string
@description('Name of the suppression list.')
param suppressionListName string
@description('Principal (object) id of the user-assigned managed identity.')
param principalId string
@description('Makes the role name unique in the tenant (role names are tenant-wide).')
param resourceToken string

var listAddressActions = [
  'Microsoft.Communication/EmailServices/Domains/SuppressionLists/SuppressionListAddresses/read'
  'Microsoft.Communication/EmailServices/Domains/SuppressionLists/SuppressionListAddresses/write'
  'Microsoft.Communication/EmailServices/Domains/SuppressionLists/SuppressionListAddresses/delete'
]

// The role can be assigned in this resource group only (and is, on the one list below).
var assignableScope = resourceGroup().id

resource suppressionList 'Microsoft.Communication/emailServices/domains/suppressionLists@2025-09-01' existing = {
  name: '${emailServiceName}/${domainName}/${suppressionListName}'
}

resource listWriterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, 'acs-email-insights-suppression', resourceToken)
  properties: {
    roleName: 'ACS Email Insights suppression list writer (${resourceToken})'
    description: 'Read, add and remove the addresses of an email domain suppression list (ACS Email Insights).'
    type: 'CustomRole'
    permissions: [
      {
        actions: listAddressActions
        notActions: []
      }
    ]
    assignableScopes: [
      assignableScope
    ]
  }
}

resource listWriterAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(suppressionList.id, principalId, listWriterRole.id)
  scope: suppressionList
  properties: {
    roleDefinitionId: listWriterRole.id
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
