/** Limits of the behaviour contract (docs/api.md). */
export const limits = {
  idMinLength: 1,
  idMaxLength: 100,
  /** Message content length, in Unicode code points. */
  contentMaxLength: 65_535,
  messagesPerCallMin: 1,
  messagesPerCallMax: 100,
  /** Peers of one session that may have `observeOthers: true` at once. */
  observersPerSession: 10,
  /**
   * Messages a summary task covers at most (the last ones of its period), so a handler is never
   * handed an unbounded range whatever `messagesPerLongSummary` says.
   */
  messagesPerSummary: 1_000,
  /** The longest coalescing window of a status subscription, in ms (docs/api.md). */
  coalesceMaxMs: 10_000,
  /** Webhook endpoints one workspace may register. */
  webhooksPerWorkspace: 20,
  /** Bytes of one `metadata` or `configuration` object, as JSON. */
  attributesMaxBytes: 16 * 1024,
} as const;

export const DEFAULT_WORKSPACE_ID = 'default';
