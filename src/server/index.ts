/** `deriver-live/server`: run the whole service in your program, with your deriver. */

export { RateLimitedError } from '../errors.ts';
export { createDemoHandler } from '../handlers/demo-handler.ts';
export {
  createHttpHandler,
  type HttpHandler,
  type HttpHandlerOptions,
  signBody,
} from '../handlers/http-handler.ts';
export type { TaskBody, TaskBodyMessage } from '../handlers/task-body.ts';
export type { BatchResult, TaskContext, TaskHandler, TaskTypeLimits } from '../scheduler/options.ts';
export type { App } from './app.ts';
export { type Config, ConfigError, loadConfig } from './config.ts';
export { type DeriverLiveOptions, startDeriverLive } from './start.ts';
