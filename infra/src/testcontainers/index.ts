// @lockstep/testcontainers: a lockstep cluster in containers, from any test runner or plain Node (README: Containers).
export { LockstepCluster } from './builder.ts';
export {
  type ClientSummary,
  ClusterOptions,
  type ContainerSpec,
  type ClusterLogin,
  clusterContainers,
  containerEngine,
  type StartedLockstepCluster,
  startLockstepCluster,
} from './cluster.ts';
export {
  buildImages,
  DEFAULT_IMAGE,
  DEFAULT_NATS_IMAGE,
  ImageBuildFailed,
  ImageEnv,
  ImageOptions,
  ImageRef,
  imageDefaults,
  LOCAL_NODE_BASE,
} from './images.ts';
export type { ClusterPlan, ProcessPlan, ServerPlan } from '../plan.ts';
export type { Credentials, Login } from '../nats/users.ts';
export { InvalidInput, InvalidTopology, parseTopology, preset, presetNames, type Topology } from '@lockstep/topology';
