"""Declarative ML pipelines as code for Apache Airflow 3.

Importing this package is cheap: nothing from Airflow or the ML libraries is imported here,
so the CLI, the pytest plugin and the parse-time loader only pay for what they use.
"""

__version__ = "0.1.0"
