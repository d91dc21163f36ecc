# The vendor sandbox for a local trial of docker-compose.yaml (profile "trial"): the Airflow image
# plus the development kit. Never deployed: real accounts replace it through the Connections in .env.
ARG BACKBONE_IMAGE=service-backbone-airflow:latest
FROM ${BACKBONE_IMAGE}

RUN pip install --no-cache-dir Faker==40.63.0
COPY --chown=airflow:0 devkit /opt/backbone/devkit
RUN pip install --no-cache-dir --no-deps /opt/backbone/devkit
ENTRYPOINT ["python", "-m", "backbone_sandbox", "--host", "0.0.0.0", "--port", "8765", "--state-file", "/opt/backbone/state/sandbox.pickle"]
