"""Azure Functions entry point (Python v2 model): decorators and bindings only; logic lives in shared/."""

import azure.functions as func

from shared.api.routes import build_blueprint

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(build_blueprint())
