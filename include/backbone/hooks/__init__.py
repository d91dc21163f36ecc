"""One stateless hook per external system; each reads its Airflow Connection in ``get_conn()``."""
