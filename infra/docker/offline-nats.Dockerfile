# A nats-server image built from Debian's binary, FROM the local Node runtime
# image so that its health check can run a one-line Node TCP probe.
ARG BASE=lockstep-node:20
FROM ${BASE}
COPY nats-server /usr/sbin/nats-server
COPY healthcheck.js /healthcheck.js
ENTRYPOINT ["/usr/sbin/nats-server"]
