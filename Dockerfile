# Astro Runtime image for `astro dev start` and for deployments. Pinned to Airflow 3.3.
FROM astrocrpublic.azurecr.io/runtime:3.3-2

# Astro's ONBUILD steps have copied the project to /usr/local/airflow and installed packages.txt and
# requirements.txt (the runtime requirements). Install the project's package and provider on top:
# DAG files then import `backbone` with no PYTHONPATH, and Airflow lists the vendor connection types.
RUN pip install --no-cache-dir --no-deps /usr/local/airflow
ENV GX_ANALYTICS_ENABLED=false
