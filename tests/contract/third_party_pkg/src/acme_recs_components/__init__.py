"""ACME's pipeline components for airflow-mlpipe."""
