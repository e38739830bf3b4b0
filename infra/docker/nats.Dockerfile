# The nats-server image built where a registry is reachable (`docker compose up --build`, context the checkout):
# nats-server 2.9.10 from the official image, on the official Node 20 image so that the health check is a one-line
# Node TCP probe, like the offline image (offline-nats.Dockerfile, Debian's binary).
ARG NATS=nats:2.9.10-alpine
ARG BASE=node:20-bookworm-slim
FROM ${NATS} AS nats
FROM ${BASE}
COPY --from=nats /usr/local/bin/nats-server /usr/sbin/nats-server
COPY infra/docker/healthcheck.js /healthcheck.js
ENTRYPOINT ["/usr/sbin/nats-server"]
