"""Data backbone of a service company: CRM, HRIS, PSA and accounting kept in step by Airflow."""
