// Deployed into the resource group of the existing Communication Services resource: an Event Grid system topic
// on it and, once the function code is deployed, a subscription that pushes email delivery and engagement
// reports to the `ingest_email_events` function (Event Grid trigger).
//
// The subscription is gated (createSubscription): Event Grid validates the endpoint when the subscription is
// created, and a function that is not deployed and indexed yet fails it ("Destination endpoint not found").
// `azd up` handles it with the postdeploy hook (infra/hooks/postdeploy.sh): it re-provisions with the gate on.
param communicationServiceName string
@description('Name of the system topic. A resource can have only one: reuse the name of an existing one.')
param systemTopicName string
param tags object = {}
@description('Resource id of the Function App.')
param functionAppId string
@description('Create the event subscription (only once the function code is deployed).')
param createSubscription bool = false
@description('Resource id of the user-assigned identity the topic dead-letters with (needs blob write on the container).')
param identityId string
@description('Resource id of the storage account that holds the dead-letter container.')
param deadLetterStorageAccountId string
@description('Blob container for events that could not be delivered. Empty: undeliverable events are dropped.')
param deadLetterContainerName string = ''

var functionName = 'ingest_email_events'
var eventTypes = [
  'Microsoft.Communication.EmailDeliveryReportReceived'
  'Microsoft.Communication.EmailEngagementTrackingReportReceived'
]

resource communicationService 'Microsoft.Communication/communicationServices@2023-04-01' existing = {
  name: communicationServiceName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: systemTopicName
  location: 'global'
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    source: communicationService.id
    topicType: 'Microsoft.Communication.CommunicationServices'
  }
}

resource emailEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = if (createSubscription) {
  parent: systemTopic
  name: 'acs-email-insights'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: eventTypes
    }
    // Event Grid's own schedule (10 s ... 12 h); reports older than a day are of no use to the delivery state,
    // which the log follower fills from Log Analytics anyway.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: empty(deadLetterContainerName) ? null : {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: identityId
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output systemTopicName string = systemTopic.name
output subscribed bool = createSubscription
