"""The Finance page: a read-only view of the run ledger, served inside the Airflow UI."""
