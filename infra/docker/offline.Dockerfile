# The lockstep role image, offline, as @lockstep/testcontainers builds it (buildImages(), lockstep-images,
# scripts/images.sh): the CLI's bundle (orchestrator/dist, the same files a checkout runs) and the npm packages it
# leaves external (app/modules: pino and what pino needs), on a Node 20 base. One image for every role (`pod`, `host`, `client`).
ARG BASE=lockstep-node:20
FROM ${BASE}
COPY app/orchestrator /app/orchestrator
COPY app/modules /app/node_modules
ENV NODE_ENV=production LOCKSTEP_ENTRY=dist
ENTRYPOINT ["node", "/app/orchestrator/bin/lockstep.js"]
CMD ["--help"]
