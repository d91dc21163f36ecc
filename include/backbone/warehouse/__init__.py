"""The PSA and accounting warehouses: PostgreSQL reached through Airflow Connections."""
