export * from './nats/config.ts';
