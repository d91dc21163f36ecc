# Astro Runtime image for `astro dev start` and for deployments. Pinned to Airflow 3.3.
FROM astrocrpublic.azurecr.io/runtime:3.3-2

ENV PYTHONPATH=/usr/local/airflow/include \
    GX_ANALYTICS_ENABLED=false
