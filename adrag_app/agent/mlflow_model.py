"""Models-from-code entry for MLflow: the adrag chat agent as a ``ResponsesAgent``.

    mlflow.pyfunc.log_model(name="adrag_agent", python_model="adrag_app/mlflow_model.py")

The served model reads its configuration (``ADRAG_*``) from the serving environment. adrag's
tracing points MLflow at ``ADRAG_MLFLOW_TRACKING_URI`` (default: a store under ADRAG_HOME)
when the agent runs, and MLflow validates a logged model by running it once: when logging
into another tracking server, set ``ADRAG_MLFLOW_TRACKING_URI`` to that server too (or
``ADRAG_TRACING=off``) so the tracking URI stays the same throughout.
"""

import mlflow

from adrag_app.agent.responses_agent import AdragResponsesAgent

mlflow.models.set_model(AdragResponsesAgent())
