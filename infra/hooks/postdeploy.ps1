# azd postdeploy hook (Windows): the same as postdeploy.sh. Once the code is deployed, turn the Event Grid
# subscription gate on and provision once more. See docs/deploy.md, "Event Grid".
$ErrorActionPreference = 'Stop'

if (-not $env:ACS_RESOURCE_NAME -or -not $env:ACS_RESOURCE_GROUP) {
  Write-Host 'postdeploy: no ACS_RESOURCE_NAME / ACS_RESOURCE_GROUP: no Event Grid subscription.'
  exit 0
}
if ($env:CREATE_EVENT_SUBSCRIPTION -eq 'true') {
  Write-Host 'postdeploy: Event Grid subscription already provisioned (CREATE_EVENT_SUBSCRIPTION=true).'
  exit 0
}

azd env set CREATE_EVENT_SUBSCRIPTION true
for ($attempt = 1; $attempt -le 3; $attempt++) {
  azd provision --no-prompt
  if ($LASTEXITCODE -eq 0) { exit 0 }
  if ($attempt -lt 3) { Write-Host "postdeploy: retrying in 60 s (attempt $($attempt + 1) of 3)..."; Start-Sleep -Seconds 60 }
}
Write-Error 'postdeploy: the Event Grid subscription could not be created; run `azd provision` again later.'
exit 1
