# Synapse for the compose federation's `bridges` profile, from the local Debian base and PyPI.
FROM mimi-base:bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/synapse && /opt/synapse/bin/pip install -q matrix-synapse==1.163.2
COPY homeserver.yaml appservice-mimi.yaml /data/
RUN /opt/synapse/bin/python -m synapse.app.homeserver -c /data/homeserver.yaml --generate-keys
EXPOSE 8008
CMD ["/opt/synapse/bin/python", "-m", "synapse.app.homeserver", "-c", "/data/homeserver.yaml"]
