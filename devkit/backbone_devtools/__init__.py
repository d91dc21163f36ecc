"""Developer tooling behind the Makefile: embedded PostgreSQL, local Airflow environment, demo."""
