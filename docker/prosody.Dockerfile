# Prosody for the compose federation's `bridges` profile, from the local Debian base.
FROM mimi-base:bookworm
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prosody \
 && rm -rf /var/lib/apt/lists/*
COPY prosody.cfg.lua /etc/prosody/prosody.cfg.lua
EXPOSE 5222 5347
CMD ["prosody", "-F"]
