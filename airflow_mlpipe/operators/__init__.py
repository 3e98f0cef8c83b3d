"""Operators the DAG factory builds pipelines from."""
