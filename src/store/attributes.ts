/**
 * Honcho's attributes (`metadata`, `configuration`) as both stores keep them: nullable JSON columns
 * where NULL is the empty object (migrations sqlite 012, pg 011). SQLite hands back text, PostgreSQL
 * parsed `jsonb`; both come out as objects here.
 */
import type { Attributes, AttributesUpdate, JsonObject } from '../domain/model.ts';

/** A stored column (text, parsed jsonb or NULL) as an object. */
export function jsonColumn(value: unknown): JsonObject {
  if (value === null || value === undefined) return {};
  return (typeof value === 'string' ? JSON.parse(value) : value) as JsonObject;
}

/** The row's `created_at`, `metadata` and `configuration` as `Attributes`. */
export const attributesOf = (row: {
  readonly created_at: number | string;
  readonly metadata: unknown;
  readonly configuration: unknown;
}): Attributes => ({
  createdAt: Number(row.created_at),
  metadata: jsonColumn(row.metadata),
  configuration: jsonColumn(row.configuration),
});

/**
 * An update's objects as column values (JSON text, or null to keep the stored one); `null` when it
 * changes nothing, so no store writes an empty update.
 */
export function updateColumns(
  update: AttributesUpdate | undefined,
): { metadata: string | null; configuration: string | null } | null {
  if (update?.metadata === undefined && update?.configuration === undefined) return null;
  return {
    metadata: update.metadata === undefined ? null : JSON.stringify(update.metadata),
    configuration: update.configuration === undefined ? null : JSON.stringify(update.configuration),
  };
}

/** A message's metadata as its column: NULL for the empty object (the common case costs nothing). */
export const messageMetadataColumn = (metadata: JsonObject | undefined): string | null =>
  metadata === undefined || Object.keys(metadata).length === 0 ? null : JSON.stringify(metadata);
