// Azure Workbook over the ACS email tables. The layout comes from workbook/acs-email-insights.workbook.json;
// every tile's KQL is loaded from queries/<name>.kql (generated from the project's query builder), or from
// queries/with-functions/<name>.kql when the code-catalog workspace functions are deployed.
param location string
param tags object = {}
@description('Resource id of the Log Analytics workspace the tiles query.')
param workspaceResourceId string
param environmentName string
@description('Whether the code-catalog workspace functions exist: tiles that join the catalog then call them.')
param catalogFunctions bool = false

var template = loadJsonContent('../workbook/acs-email-insights.workbook.json')

var tiles = [
  {
    name: 'success-rate-by-domain'
    title: 'Success rate by recipient domain (%)'
    visualization: 'barchart'
    query: catalogFunctions ? loadTextContent('../queries/with-functions/success-rate-by-domain.kql') : loadTextContent('../queries/success-rate-by-domain.kql')
  }
  {
    name: 'avg-delivery-time-by-hour'
    title: 'Average delivery time by send hour (seconds)'
    visualization: 'timechart'
    query: catalogFunctions ? loadTextContent('../queries/with-functions/avg-delivery-time-by-hour.kql') : loadTextContent('../queries/avg-delivery-time-by-hour.kql')
  }
  {
    name: 'top-failure-reasons'
    title: 'Top failure reasons'
    visualization: 'table'
    query: catalogFunctions ? loadTextContent('../queries/with-functions/top-failure-reasons.kql') : loadTextContent('../queries/top-failure-reasons.kql')
  }
  {
    name: 'bounce-rate-by-sender'
    title: 'Hard-bounce rate by sender (%)'
    visualization: 'barchart'
    query: catalogFunctions ? loadTextContent('../queries/with-functions/bounce-rate-by-sender.kql') : loadTextContent('../queries/bounce-rate-by-sender.kql')
  }
  {
    name: 'size-distribution'
    title: 'Message size distribution (MB)'
    visualization: 'barchart'
    query: loadTextContent('../queries/size-distribution.kql')
  }
  {
    name: 'p95-latency-by-domain'
    title: 'p95 delivery latency by recipient domain (seconds)'
    visualization: 'barchart'
    query: catalogFunctions ? loadTextContent('../queries/with-functions/p95-latency-by-domain.kql') : loadTextContent('../queries/p95-latency-by-domain.kql')
  }
]

var tileItems = [for tile in tiles: union(template.tile, {
  name: tile.name
  content: union(template.tile.content, {
    title: tile.title
    query: tile.query
    visualization: tile.visualization
    crossComponentResources: [
      workspaceResourceId
    ]
  })
})]

var serializedData = string(union(template.workbook, {
  items: concat(template.workbook.items, tileItems)
  fallbackResourceIds: [
    workspaceResourceId
  ]
}))

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'acs-email-insights-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'ACS Email Insights (${environmentName})'
    category: 'workbook'
    version: 'Notebook/1.0'
    sourceId: workspaceResourceId
    serializedData: serializedData
  }
}

output id string = workbook.id
