export * from './nats/config.ts';
export * from './dcn/proxy.ts';
export * from './nats/users.ts';
export * from './nats/route.ts';
export * from './plan.ts';
export * from './imagetags.ts';
