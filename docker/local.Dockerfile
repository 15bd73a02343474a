# The runtime stage of docker/Dockerfile, built from the locally made base image
# (docker/base.sh) and binaries built on the host (docker/build-local.sh copies them into the
# build context's bin/). Keep the two in step.
ARG RUNTIME_BASE=mimi-base:bookworm
FROM ${RUNTIME_BASE}
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin mimi \
 && mkdir -p /etc/mimi /var/lib/mimi \
 && chown mimi:mimi /var/lib/mimi && chmod 0700 /var/lib/mimi
COPY bin/ /usr/local/bin/
USER mimi
WORKDIR /var/lib/mimi
VOLUME ["/etc/mimi", "/var/lib/mimi"]
EXPOSE 4433/udp 4433/tcp 8080/tcp 9090/tcp
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["mimi", "health", "--config", "/etc/mimi/config.toml"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["mimi"]
CMD ["run", "--config", "/etc/mimi/config.toml"]
