# The image every Airflow service of docker-compose.yaml runs: Apache Airflow's official image with
# the runtime requirements and this project's package (the provider: hooks, flows, warehouse,
# data dictionary) installed, and the DAG files and plugins copied in. No development tooling.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

COPY --chown=airflow:0 requirements.txt /opt/backbone/requirements.txt
RUN pip install --no-cache-dir -r /opt/backbone/requirements.txt
COPY --chown=airflow:0 pyproject.toml README.md /opt/backbone/
COPY --chown=airflow:0 include /opt/backbone/include
RUN pip install --no-cache-dir --no-deps /opt/backbone
COPY --chown=airflow:0 dags /opt/airflow/dags
COPY --chown=airflow:0 plugins /opt/airflow/plugins
ENV GX_ANALYTICS_ENABLED=false
