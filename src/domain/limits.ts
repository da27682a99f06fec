/** Limits of the behaviour contract (SPEC sections 1 and 2). */
export const limits = {
  idMinLength: 1,
  idMaxLength: 100,
  /** Message content length, in Unicode code points. */
  contentMaxLength: 65_535,
  messagesPerCallMin: 1,
  messagesPerCallMax: 100,
  /** Peers of one session that may have `observeOthers: true` at once. */
  observersPerSession: 10,
} as const;

export const DEFAULT_WORKSPACE_ID = 'default';
