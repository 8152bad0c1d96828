"""Azure Functions entry point (Python v2 model): the app and its functions, nothing else.

Every function (HTTP routes, timers, the Event Grid trigger) is declared once in shared/api/spec.py;
this module imports only azure.functions and that spec, so the host starts fast.
"""

from shared.api.functions import create_app

app = create_app()
