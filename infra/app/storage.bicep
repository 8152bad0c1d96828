// Storage for the Functions host (AzureWebJobsStorage), the deployment package, the summary, delivery-state and
// subscription tables, and the Event Grid dead-letter container.
// Entra ID only: shared-key (account key and SAS) access is off.
param name string
param location string
param tags object = {}
@description('Blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string
@description('Table for daily summaries (SUMMARY_TABLE).')
param summaryTableName string
@description('Table of the delivery state, one partition a message (STATE_TABLE; its journal: STATE_TABLE + Journal; its expiry index: STATE_TABLE + Expiry).')
param stateTableName string
@description('Table of webhook subscriptions (SUBSCRIPTIONS_TABLE).')
param subscriptionsTableName string
@description('Queue of fold requests (FOLD_QUEUE); the queue trigger sets failed ones aside in its -poison queue.')
param foldQueueName string
@description('Blob container for Event Grid events that could not be delivered. Empty: none.')
param deadLetterContainerName string = ''

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (!empty(deadLetterContainerName)) {
  parent: blobService
  name: empty(deadLetterContainerName) ? 'unused' : deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource summaryTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: summaryTableName
}

resource stateTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: stateTableName
}

// The delivery state's journal: events and log rows not folded into the state yet (shared/state/journal.py).
resource stateJournalTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: '${stateTableName}Journal'
}

// The delivery state's day index and "first asked" markers, read by the retention timer (shared/state/retention.py).
resource stateExpiryTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: '${stateTableName}Expiry'
}

resource subscriptionsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: subscriptionsTableName
}

// Fold requests: each journal write asks for its shards to be folded by the queue-triggered fold
// (shared/state/folds.py); requests that keep failing are moved to the poison queue by the Functions host.
// The app's identity holds Storage Queue Data Contributor on the account (rbac.bicep).
resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource foldQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: foldQueueName
}

resource foldPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: '${foldQueueName}-poison'
}

output name string = storage.name
output id string = storage.id
